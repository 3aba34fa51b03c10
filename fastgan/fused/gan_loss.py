"""The GAN losses: references and gradients, the fastgan::d_loss and fastgan::g_loss ops, the public
functions; then the gradient penalties (R1, WGAN-GP, R1 + R2 in one pass), plain autograd with no kernel of
their own.

RpGAN (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024) is a loss over pairs (real_i, fake_i): D's loss is
mean softplus(fake - real), G's the same with the roles swapped, mean softplus(real - fake). G's is therefore
D's on (fake, real), and runs through the same op, kernel and one-pass code as D's.

The Triton kernel (fastgan.kernels.gan_loss) computes a loss and its logit gradients in one launch.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .arguments import check_float, wide
from .backend import use_triton
from .bce_with_logits import MIN_NUMEL_LOSS, _loss_grad_op, one_pass_mean, takes_one_pass
from .eager import fast_apply, runs_eager

D_LOSS_KINDS = ("bce", "hinge", "lsgan", "wgan", "rpgan")
G_LOSS_KINDS = ("ns", "saturating", "hinge", "lsgan", "wgan", "rpgan")


# ---------------------------------------------------------------- references and gradients

def d_loss_reference(real_logits, fake_logits, kind="bce", label_smoothing=0.0) -> torch.Tensor:
    """Discriminator loss, a float32 (float64 for float64 logits) scalar: the real term plus the fake term, each a batch mean.

    bce:   -log D(x) - log(1 - D(G(z))); with one-sided label smoothing s the real target is 1 - s
           (Salimans et al. 2016, sec. 3.4).
    hinge: relu(1 - D(x)) + relu(1 + D(G(z)))             (Lim & Ye 2017; Miyato et al. 2018)
    lsgan: (D(x) - 1)^2 / 2 + D(G(z))^2 / 2               (Mao et al. 2017, eq. 9 with a=0, b=c=1)
    wgan:  D(G(z)) - D(x)                                  (Arjovsky et al. 2017)
    rpgan: softplus(-(D(x) - D(G(z)))) over pairs, one mean (Jolicoeur-Martineau 2019; Huang et al. 2024, eq. 2);
           real and fake logits have one shape
    """
    r, f = wide(real_logits), wide(fake_logits)
    if kind == "bce":
        real_term = -((1 - label_smoothing) * F.logsigmoid(r) + label_smoothing * F.logsigmoid(-r))
        return real_term.mean() + (-F.logsigmoid(-f)).mean()
    if kind == "hinge":
        return F.relu(1 - r).mean() + F.relu(1 + f).mean()
    if kind == "lsgan":
        return 0.5 * (r - 1).square().mean() + 0.5 * f.square().mean()
    if kind == "wgan":
        return f.mean() - r.mean()
    if kind == "rpgan":
        return F.softplus(f - r).mean()
    raise ValueError(f"d_loss: kind must be one of {', '.join(D_LOSS_KINDS)}; got {kind!r}")


def g_loss_reference(fake_logits, kind="ns", real_logits=None) -> torch.Tensor:
    """Generator loss, a float32 (float64 for float64 logits) scalar batch mean.

    ns:         -log D(G(z))            the non-saturating form (Goodfellow et al. 2014, sec. 3)
    saturating: log(1 - D(G(z)))        the original minimax objective, minimised by G
    hinge, wgan: -D(G(z))
    lsgan:      (D(G(z)) - 1)^2 / 2
    rpgan:      softplus(-(D(G(z)) - D(x))) over pairs: d_loss's rpgan with the roles swapped (needs real_logits)
    """
    if kind == "rpgan":
        if real_logits is None:
            raise ValueError("g_loss: kind='rpgan' pairs each fake logit with a real one: pass real_logits")
        return d_loss_reference(fake_logits, real_logits, "rpgan")
    f = wide(fake_logits)
    if kind == "ns":
        return (-F.logsigmoid(f)).mean()
    if kind == "saturating":
        return F.logsigmoid(-f).mean()
    if kind in ("hinge", "wgan"):
        return -f.mean()
    if kind == "lsgan":
        return 0.5 * (f - 1).square().mean()
    raise ValueError(f"g_loss: kind must be one of {', '.join(G_LOSS_KINDS)}; got {kind!r}")


def d_loss_grads(r: torch.Tensor, f: torch.Tensor, kind: str, s: float):
    """d loss / d real and d loss / d fake of d_loss_reference in float32 (the kernel's reference)."""
    if kind == "bce":
        # -(1-s) sigmoid(-r) + s sigmoid(r), not sigmoid(r) - (1-s), which cancels for large r.
        gr, gf = s * torch.sigmoid(r) - (1 - s) * torch.sigmoid(-r), torch.sigmoid(f)
    elif kind == "hinge":
        gr, gf = -(r < 1).float(), (f > -1).float()
        gr, gf = torch.where(r.isnan(), r, gr), torch.where(f.isnan(), f, gf)  # NaN in, NaN out
    elif kind == "wgan":
        gr, gf = torch.where(r.isnan(), r, -1.0), torch.where(f.isnan(), f, 1.0)
    elif kind == "rpgan":
        gf = torch.sigmoid(f - r)
        gr = -gf
    else:  # lsgan
        gr, gf = r - 1, f.clone()
    return gr / r.numel(), gf / f.numel()


def g_loss_grad(f: torch.Tensor, kind: str) -> torch.Tensor:
    """d loss / d fake of g_loss_reference in float32."""
    if kind == "ns":
        g = -torch.sigmoid(-f)
    elif kind == "saturating":
        g = -torch.sigmoid(f)
    elif kind == "lsgan":
        g = f - 1
    else:
        g = torch.where(f.isnan(), f, -1.0)  # NaN in, NaN out
    return g / f.numel()


# ---------------------------------------------------------------- fastgan::d_loss, fastgan::g_loss

@torch.library.custom_op("fastgan::d_loss", mutates_args=(), device_types=("cpu", "cuda"))
def _d_loss_op(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str, label_smoothing: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, gradient), both float32: the gradient holds d loss / d real flattened, then d loss / d fake, so
    the backward scales both in one launch; one launch on the Triton path."""
    if use_triton(real_logits, MIN_NUMEL_LOSS) and use_triton(fake_logits, MIN_NUMEL_LOSS):
        from ..kernels import gan_loss as kernel

        return kernel.d_loss(real_logits, fake_logits, kind, label_smoothing)
    r, f = real_logits.float(), fake_logits.float()
    gr, gf = d_loss_grads(r, f, kind, label_smoothing)
    return d_loss_reference(r, f, kind, label_smoothing), torch.cat([gr.flatten(), gf.flatten()])


@_d_loss_op.register_fake
def _(real_logits, fake_logits, kind, label_smoothing):
    f32 = dict(dtype=torch.float32, device=real_logits.device)
    return torch.empty((), **f32), torch.empty(real_logits.numel() + fake_logits.numel(), **f32)


@torch.library.custom_op("fastgan::g_loss", mutates_args=(), device_types=("cpu", "cuda"))
def _g_loss_op(fake_logits: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, d loss / d fake), both float32."""
    if use_triton(fake_logits, MIN_NUMEL_LOSS):
        from ..kernels import gan_loss as kernel

        return kernel.g_loss(fake_logits, kind)
    f = fake_logits.float()
    return g_loss_reference(f, kind), g_loss_grad(f, kind).flatten()


@_g_loss_op.register_fake
def _(fake_logits, kind):
    f32 = dict(dtype=torch.float32, device=fake_logits.device)
    return torch.empty((), **f32), torch.empty(fake_logits.numel(), **f32)


def _d_setup(ctx, inputs, output):
    real, fake, kind, label_smoothing = inputs
    ctx.set_materialize_grads(False)  # no zero-filled gradient for the gradient output
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1], real, fake)
    ctx.args = (kind, label_smoothing)


def _d_backward(ctx, dloss, _dgrad):
    grad, real, fake = ctx.saved_tensors
    if dloss is None:
        return None, None, None, None
    if torch.is_grad_enabled():
        # create_graph: the stored gradients carry no graph, so differentiate the reference instead.
        with torch.enable_grad():
            loss = d_loss_reference(real, fake, *ctx.args)
            dr, df = torch.autograd.grad(loss, (real, fake), dloss, create_graph=True, allow_unused=True)
        return dr, df, None, None
    n = real.numel()
    if real.dtype == fake.dtype:  # one launch scales both
        g = _loss_grad_op(grad, dloss, real.dtype)
        return g[:n].view(real.shape), g[n:].view(fake.shape), None, None
    return (_loss_grad_op(grad[:n], dloss, real.dtype).view(real.shape),
            _loss_grad_op(grad[n:], dloss, fake.dtype).view(fake.shape), None, None)


def _g_setup(ctx, inputs, output):
    fake, kind = inputs
    ctx.set_materialize_grads(False)
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1], fake)
    ctx.kind = kind


def _g_backward(ctx, dloss, _dgrad):
    grad, fake = ctx.saved_tensors
    if dloss is None:
        return None, None
    if torch.is_grad_enabled():
        with torch.enable_grad():
            (df,) = torch.autograd.grad(g_loss_reference(fake, ctx.kind), fake, dloss, create_graph=True)
        return df, None
    return _loss_grad_op(grad, dloss, fake.dtype).view(fake.shape), None


_d_loss_op.register_autograd(_d_backward, setup_context=_d_setup)
_g_loss_op.register_autograd(_g_backward, setup_context=_g_setup)


# ---------------------------------------------------------------- fast eager paths

# The references' formulas in the fewest torch ops, differentiated by autograd (to any order). softplus(x, -1)
# is logsigmoid(x) in one vectorised pass (log_sigmoid's own kernel also writes a buffer, at several times
# the cost); like logsigmoid it never forms sigmoid(x), so |x| up to 1e4 stays finite and exact.

class _BCEMeansOnePass(torch.autograd.Function):
    """sum over i of mean(bce(logits_i, targets[i])), each target one value: d_loss's bce (real logits against
    1 - label_smoothing, fake against 0) and g_loss's ns (fake against 1) on float32 CPU logits, each mean and
    its gradient in one pass of fastgan.fused._cpu_losses (fastgan.fused.bce_with_logits._BCEOnePass explains the
    formula, and why the tensors are ctx attributes). The backward scales the kept gradients; a create_graph
    backward computes them anew in torch ops.
    """

    @staticmethod
    def forward(ctx, targets, *logits):
        # Plain loops: on a one-element batch, generator expressions cost a tenth of the call.
        grads, versions, total = [], [], 0.0
        for x, t in zip(logits, targets):
            grad = torch.empty_like(x, memory_format=torch.contiguous_format)  # (empty(x.shape): twice the time)
            total += one_pass_mean(x, t, grad)
            grads.append(grad)
            versions.append(x._version)
        ctx.grads, ctx.targets, ctx.logits, ctx.versions = grads, targets, logits, versions
        return torch.full((), total, dtype=torch.float32)  # whatever torch's default dtype

    @staticmethod
    def backward(ctx, dloss):
        if not torch.is_grad_enabled():
            return (None, *[g * dloss for g in ctx.grads])
        if [x._version for x in ctx.logits] != ctx.versions:
            raise RuntimeError("GAN loss: its logits were modified in place after the forward; a create_graph "
                               "backward needs their values: clone them first")
        return (None, *((torch.sigmoid(x) - t) * (dloss / x.numel()) for x, t in zip(ctx.logits, ctx.targets)))


def _bce_means(targets: tuple[float, ...], *logits: torch.Tensor) -> torch.Tensor:
    total = 0.0
    for x, t in zip(logits, targets):
        total += one_pass_mean(x, t, None)
    return torch.full((), total, dtype=torch.float32)  # whatever torch's default dtype


class _RpGANOnePass(torch.autograd.Function):
    """mean softplus(fake - real) on float32 CPU logits: the differences (no graph of their own) and their mean and
    gradient in one pass of fastgan.fused._cpu_losses (softplus(d) is bce(d, target 0)); d / d fake = sigmoid(d) / N,
    d / d real its negation. A create_graph backward computes them anew in torch ops."""

    @staticmethod
    def forward(ctx, real, fake):
        d = fake - real
        grad = torch.empty_like(d, memory_format=torch.contiguous_format)
        mean = one_pass_mean(d, 0.0, grad)
        ctx.grad, ctx.real, ctx.fake, ctx.versions = grad, real, fake, (real._version, fake._version)
        return torch.full((), mean, dtype=torch.float32)  # whatever torch's default dtype

    @staticmethod
    def backward(ctx, dloss):
        if not torch.is_grad_enabled():
            g = ctx.grad * dloss
            return g.neg(), g
        real, fake = ctx.real, ctx.fake
        if (real._version, fake._version) != ctx.versions:
            raise RuntimeError("GAN loss: its logits were modified in place after the forward; a create_graph "
                               "backward needs their values: clone them first")
        g = torch.sigmoid(fake - real) * (dloss / fake.numel())
        return -g, g


_bce_means_one_pass = fast_apply(_BCEMeansOnePass)
_rpgan_one_pass = fast_apply(_RpGANOnePass)


def _one_pass(*logits: torch.Tensor) -> int:
    """How a loss on these logits runs: 0, torch ops; 1, fastgan.fused._cpu_losses without a graph; 2, _cpu_losses
    behind an autograd.Function (called through fast_apply, which costs about what torch's own nodes cost, and
    is faster with the backward at every size). torch.compile traces the torch ops."""
    for x in logits:
        if not takes_one_pass(x):
            return 0
    if torch.compiler.is_compiling():
        return 0
    return 2 if torch.is_grad_enabled() and (logits[0].requires_grad or logits[-1].requires_grad) else 1


def _d_loss_eager(real_logits, fake_logits, kind: str, label_smoothing: float) -> torch.Tensor:
    if kind == "bce":
        how = _one_pass(real_logits, fake_logits)
        if how == 1:
            return _bce_means((1.0 - label_smoothing, 0.0), real_logits, fake_logits)
        if how == 2:
            return _bce_means_one_pass((1.0 - label_smoothing, 0.0), real_logits, fake_logits)
    elif kind == "rpgan":
        how = _one_pass(real_logits, fake_logits)
        if how == 1:  # softplus(f - r) is bce(f - r, target 0)
            return _bce_means((0.0,), fake_logits - real_logits)
        if how == 2:
            return _rpgan_one_pass(real_logits, fake_logits)
    r, f = wide(real_logits), wide(fake_logits)
    if kind == "rpgan":
        return F.softplus(f - r).mean()
    if kind == "bce":
        # The real term is subtracted as mean(logsigmoid(r)) (one op fewer than adding its negation).
        if label_smoothing:
            # lerp(logsigmoid(r), logsigmoid(-r), s): lerp is exact at s = 0 and 1 and cancels nothing between.
            real_term = torch.lerp(F.softplus(r, -1.0), F.softplus(r).neg_(), label_smoothing).mean()
        else:
            real_term = F.softplus(r, -1.0).mean()
        return F.softplus(f).mean() - real_term
    if kind == "hinge":
        return (1 - r).relu_().mean() + (1 + f).relu_().mean()
    if kind == "lsgan":
        return 0.5 * ((r - 1).square().mean() + f.square().mean())
    return f.mean() - r.mean()  # wgan


def _g_loss_eager(fake_logits, kind: str) -> torch.Tensor:
    if kind == "ns":
        how = _one_pass(fake_logits)
        if how == 1:
            return _bce_means((1.0,), fake_logits)
        if how == 2:
            return _bce_means_one_pass((1.0,), fake_logits)
    f = wide(fake_logits)
    if kind == "ns":
        return F.softplus(f, -1.0).mean().neg()
    if kind == "saturating":
        return F.softplus(f).mean().neg()
    if kind == "lsgan":
        return 0.5 * (f - 1).square().mean()
    return f.mean().neg()  # hinge, wgan


# ---------------------------------------------------------------- public functions

def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce",
           label_smoothing: float = 0.0) -> torch.Tensor:
    """Discriminator loss from D's logits on a real and a fake batch (float32 scalar).

    kind: bce | hinge | lsgan | wgan | rpgan (formulas in fastgan.reference.d_loss; rpgan pairs real_logits[i]
    with fake_logits[i], so their shapes must be equal). label_smoothing
    (bce only) is one-sided: the real target becomes 1 - label_smoothing, the fake one stays 0.
    Runs as the fused op fastgan::d_loss: loss and both logit gradients in one launch on the Triton path.
    Under create_graph=True its backward differentiates the reference, so higher derivatives exist.
    """
    if kind not in D_LOSS_KINDS:
        raise ValueError(f"d_loss: kind must be one of {', '.join(D_LOSS_KINDS)}; got {kind!r}")
    check_float("d_loss", "real_logits", real_logits)
    check_float("d_loss", "fake_logits", fake_logits)
    if kind == "rpgan":
        _check_pairs("d_loss", real_logits, fake_logits)
    elif real_logits.shape[1:] != fake_logits.shape[1:]:
        raise ValueError(
            f"d_loss: real_logits {tuple(real_logits.shape)} and fake_logits {tuple(fake_logits.shape)} "
            "must agree in every dimension but the batch"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"d_loss: label_smoothing must be in [0, 1); got {label_smoothing}")
    if label_smoothing and kind != "bce":
        raise ValueError(f"d_loss: label_smoothing applies to kind='bce' only; got kind={kind!r}")
    return _d_loss_dispatch(real_logits, fake_logits, kind, float(label_smoothing))


def _d_loss_dispatch(real_logits, fake_logits, kind: str, label_smoothing: float) -> torch.Tensor:
    # float64 keeps its float64 arithmetic (the kernel is float32 inside), traced or not.
    if (torch.float64 in (real_logits.dtype, fake_logits.dtype) or runs_eager(real_logits, MIN_NUMEL_LOSS)
            or runs_eager(fake_logits, MIN_NUMEL_LOSS)):
        return _d_loss_eager(real_logits, fake_logits, kind, label_smoothing)
    return _d_loss_op(real_logits, fake_logits, kind, label_smoothing)[0]


def _check_pairs(name: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            f"{name}: kind='rpgan' pairs real_logits {tuple(real_logits.shape)} with fake_logits "
            f"{tuple(fake_logits.shape)} element by element: their shapes must be equal"
        )


def g_loss(fake_logits: torch.Tensor, kind: str = "ns", real_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Generator loss from D's logits on a fake batch (float32 scalar).

    kind: ns (non-saturating, -log D(G(z))) | saturating (log(1 - D(G(z))), the minimax form) |
    hinge | lsgan | wgan | rpgan. Runs as the fused op fastgan::g_loss (see d_loss). rpgan pairs fake_logits[i]
    with real_logits[i] (needed, of the same shape; other kinds ignore real_logits) and is d_loss's rpgan with
    the roles swapped: it runs as fastgan::d_loss(fake_logits, real_logits, 'rpgan').
    """
    if kind not in G_LOSS_KINDS:
        raise ValueError(f"g_loss: kind must be one of {', '.join(G_LOSS_KINDS)}; got {kind!r}")
    check_float("g_loss", "fake_logits", fake_logits)
    if kind == "rpgan":
        if real_logits is None:
            raise ValueError("g_loss: kind='rpgan' pairs each fake logit with a real one: pass real_logits")
        check_float("g_loss", "real_logits", real_logits)
        _check_pairs("g_loss", real_logits, fake_logits)
        return _d_loss_dispatch(fake_logits, real_logits, "rpgan", 0.0)  # the roles swapped
    if fake_logits.dtype == torch.float64 or runs_eager(fake_logits, MIN_NUMEL_LOSS):
        return _g_loss_eager(fake_logits, kind)
    return _g_loss_op(fake_logits, kind)[0]


# ---------------------------------------------------------------- gradient penalties
# Plain autograd (double backward through D), no kernel and no op of their own: they sit here because
# they regularise the D loss above.

def _input_grad(name: str, logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    if not inputs.requires_grad:
        raise ValueError(f"{name}: the images must require grad before D is applied (call .requires_grad_())")
    (grad,) = torch.autograd.grad(logits.float().sum(), inputs, create_graph=True)
    return grad.float().flatten(1)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 over real images (Mescheder et al. 2018, eq. 9, without the gamma/2).

    real_images must have required grad when real_logits = D(real_images) was computed; the
    result is differentiable w.r.t. D's parameters (double backward).
    """
    check_float("r1_penalty", "real_logits", real_logits)
    return _input_grad("r1_penalty", real_logits, real_images).square().sum(1).mean()


def gradient_penalty(discriminator, real_images: torch.Tensor, fake_images: torch.Tensor,
                     generator: torch.Generator | None = None, target: float = 1.0) -> torch.Tensor:
    """WGAN-GP: E (||grad D(x_hat)|| - target)^2 on random interpolates x_hat (Gulrajani et al. 2017, eq. 3)."""
    if real_images.shape != fake_images.shape:
        raise ValueError(
            f"gradient_penalty: real {tuple(real_images.shape)} and fake {tuple(fake_images.shape)} shapes differ"
        )
    shape = (real_images.shape[0],) + (1,) * (real_images.ndim - 1)
    eps = torch.rand(shape, generator=generator, device=real_images.device, dtype=real_images.dtype)
    x_hat = torch.lerp(real_images.detach(), fake_images.detach(), eps).requires_grad_(True)
    grad = _input_grad("gradient_penalty", discriminator(x_hat), x_hat)
    # The small epsilon keeps the norm differentiable where the gradient is exactly zero.
    return (grad.square().sum(1).add(1e-12).sqrt() - target).square().mean()


class R1R2(NamedTuple):
    """What r1_r2_penalty returns: the D loss, R1 and R2 (each a batch mean, without gamma / 2; float32, float64
    for float64 logits and images), and
    whether the one-pass form ran (False: the two-pass form, D has a cross-sample layer)."""

    loss: torch.Tensor
    r1: torch.Tensor
    r2: torch.Tensor
    one_pass: bool


def mixes_samples(discriminator) -> bool:
    """Whether D's output for one sample depends on the others in its batch, as far as its modules tell: a
    batch norm that normalises with batch statistics (training mode, or no running statistics), or a module
    with a true `cross_sample` attribute. A cross-sample op called as a function inside forward is not seen."""
    modules = discriminator.modules() if isinstance(discriminator, torch.nn.Module) else ()
    for m in modules:
        if getattr(m, "cross_sample", False):
            return True
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and (m.training or m.running_mean is None):
            return True
    return False


def r1_r2_penalty(discriminator, real_images: torch.Tensor, fake_images: torch.Tensor, kind: str = "rpgan",
                  one_pass: bool | None = None, labels: torch.Tensor | None = None) -> R1R2:
    """R3GAN's D step without the weights: (d_loss(D(real), D(fake), kind), R1, R2, one_pass).

    R1 = E ||grad_x D(x)||^2 over real images, R2 the same over generated ones (Mescheder et al. 2018;
    Huang et al. 2024, eq. 4); R3GAN's D loss is loss + gamma / 2 * (r1 + r2). Both images are detached: this
    is the D step, and the results are differentiable w.r.t. D's parameters (double backward).

    The one-pass form runs D once over torch.cat([real, fake]) and takes one double backward for both
    penalties, serving the loss from the same logits. It is exact when no sample's logit depends on another
    sample, which mixes_samples(discriminator) checks (R3GAN's D has no such layer). Where D mixes samples,
    a training-mode batch norm for one, the batch statistics of the joint batch would differ from those of
    each batch alone, so the exact two-pass form runs instead: D(real) and D(fake) apart, then one backward
    for both. one_pass=None chooses so; True or False forces a form. The returned one_pass says which ran.
    The one pass saves per-op overhead (and GPU launches); on the CPU, where the joint batch's activations
    outgrow the cache, two passes can be faster (bench.eager_ops, r1_r2_penalty rows): one_pass=False.
    labels: a conditional D's class of each pair (both of its samples), passed to D after the images.
    """
    if real_images.shape != fake_images.shape:
        raise ValueError(f"r1_r2_penalty: real {tuple(real_images.shape)} and fake {tuple(fake_images.shape)} "
                         "shapes differ (RpGAN pairs them)")
    if one_pass is None:
        one_pass = not mixes_samples(discriminator)
    n = real_images.shape[0]
    if one_pass:
        x = torch.cat([real_images.detach(), fake_images.detach()]).requires_grad_(True)
        logits = discriminator(x) if labels is None else discriminator(x, torch.cat([labels, labels]))
        real_logits, fake_logits = logits[:n], logits[n:]
        (grad,) = torch.autograd.grad(wide(logits).sum(), x, create_graph=True)
        norms = wide(grad).flatten(1).square().sum(1)
        r1, r2 = norms[:n].mean(), norms[n:].mean()
    else:
        real = real_images.detach().requires_grad_(True)
        fake = fake_images.detach().requires_grad_(True)
        cond = () if labels is None else (labels,)
        real_logits, fake_logits = discriminator(real, *cond), discriminator(fake, *cond)
        grads = torch.autograd.grad(wide(real_logits).sum() + wide(fake_logits).sum(), (real, fake),
                                    create_graph=True)
        r1, r2 = (wide(g).flatten(1).square().sum(1).mean() for g in grads)
    return R1R2(d_loss(real_logits, fake_logits, kind), r1, r2, one_pass)
