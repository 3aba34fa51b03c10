"""Binary cross-entropy on logits: reference and gradient, the fastgan::bce_with_logits op, the public function.

The Triton kernel (fastgan.kernels.bce_with_logits) computes the loss and d loss / d input in one pass on the
GPU; on the CPU the C++ extension fastgan.fused._cpu_losses (csrc/cpu_losses/) does, for float32 logits; other CPU
calls take _BCEEager's torch ops.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .arguments import wide
from .backend import use_triton
from .eager import fast_apply, runs_eager

try:  # built by setup.py; without it the eager path below computes with torch ops
    from . import _cpu_losses
except ImportError:  # pragma: no cover - a source tree without the built extension
    _cpu_losses = None

REDUCTIONS = ("mean", "sum", "none")

# The fused loss is one launch against eager's chain of elementwise kernels, so the CUDA path uses it at
# every size; raise this if `python -m bench.kernels` shows otherwise on a target GPU. fastgan.fused.gan_loss
# uses it too.
MIN_NUMEL_LOSS = 0

# From this many logits the eager CPU path computes the loss in fewer memory passes rather than fewer ops
# (the crossover measured by `python -m bench.eager_ops`).
FEW_PASSES_NUMEL = 1 << 12


# ---------------------------------------------------------------- reference and gradient

def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def bce_with_logits_reference(input, target, weight=None, reduction="mean", pos_weight=None) -> torch.Tensor:
    """-[pos_weight * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x))] * weight, reduced.

    logsigmoid is evaluated without forming sigmoid(x), so |x| up to 1e4 stays finite, and its
    gradient (sigmoid) is exact at x = 0, where max(x, 0) + log1p(exp(-|x|)) would give 0 or 1.
    Computed in float32, or float64 when input or target is float64; the loss is in target's dtype, as torch's.
    """
    dtype = target.dtype
    computing = torch.promote_types(wide(input).dtype, wide(target).dtype)
    x, t = input.to(computing), target.to(computing)
    if pos_weight is None:
        loss = -(t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x))
    else:
        loss = -(wide(pos_weight) * t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x))
    if weight is not None:
        loss = loss * wide(weight)
    return _reduce(loss, reduction).to(dtype)


def bce_with_logits_grad(x, t, weight, pos_weight):
    """d bce / d x = w ((1 - t) sigmoid(x) - p t sigmoid(-x)), the reference of the kernel's gradient."""
    pt = t if pos_weight is None else t * pos_weight.float()
    grad = (1 - t) * torch.sigmoid(x) - pt * torch.sigmoid(-x)
    return grad if weight is None else grad * weight.float()


# ---------------------------------------------------------------- fastgan::bce_with_logits

@torch.library.custom_op("fastgan::bce_with_logits", mutates_args=(), device_types=("cpu", "cuda"))
def _bce_op(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
            pos_weight: torch.Tensor | None, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss in target's dtype, float32 d loss / d input), the gradient already divided by N for reduction='mean'."""
    if use_triton(input, MIN_NUMEL_LOSS):
        from ..kernels import bce_with_logits as kernel

        # The kernel writes the loss in its input's dtype: given float32 logits when the dtypes differ, it
        # rounds once, to target's dtype, rather than first to input's.
        x = input if input.dtype == target.dtype else input.float()
        loss, grad = kernel.bce_with_logits(x, target, weight, pos_weight, reduction)
        return loss.to(target.dtype), grad
    x, t = input.float(), target.float()
    grad = torch.broadcast_to(bce_with_logits_grad(x, t, weight, pos_weight), input.shape).contiguous()
    if reduction == "mean":
        grad = grad / input.numel()
    loss = bce_with_logits_reference(input, target, weight, reduction, pos_weight)
    return loss.clone() if loss is input else loss, grad


@torch.library.custom_op("fastgan::loss_grad", mutates_args=(), device_types=("cpu", "cuda"))
def _loss_grad_op(grad: torch.Tensor, dloss: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """grad * dloss in dtype: the backward of a loss whose forward stored its float32 gradient. dloss is the
    upstream gradient, a scalar or one value per element; one launch on the Triton path."""
    if use_triton(grad, MIN_NUMEL_LOSS):
        from ..kernels import _common

        return _common.scale(grad, dloss, dtype)
    return (grad * dloss.float()).to(dtype)


@_loss_grad_op.register_fake
def _(grad, dloss, dtype):
    return torch.empty(grad.shape, dtype=dtype, device=grad.device)


@_bce_op.register_fake
def _(input, target, weight, pos_weight, reduction):
    grad = torch.empty(input.shape, dtype=torch.float32, device=input.device)
    return torch.empty(() if reduction != "none" else input.shape, dtype=target.dtype, device=input.device), grad


def _bce_setup(ctx, inputs, output):
    input, target, weight, pos_weight, reduction = inputs
    ctx.set_materialize_grads(False)  # no zero-filled gradient for the gradient output
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1], input, target, weight, pos_weight)
    ctx.reduction = reduction


def _bce_backward(ctx, dloss, _dgrad):
    grad, input, target, weight, pos_weight = ctx.saved_tensors
    if dloss is None:
        return None, None, None, None, None
    if torch.is_grad_enabled():
        # create_graph: the stored gradient carries no graph, so differentiate the reference instead.
        with torch.enable_grad():
            loss = bce_with_logits_reference(input, target, weight, ctx.reduction, pos_weight)
            (dx,) = torch.autograd.grad(loss, input, dloss, create_graph=True)
        return dx, None, None, None, None
    return _loss_grad_op(grad, dloss, input.dtype), None, None, None, None


_bce_op.register_autograd(_bce_backward, setup_context=_bce_setup)


# ---------------------------------------------------------------- fast eager path

class _BCEEager(torch.autograd.Function):
    """bce_with_logits_reference in few passes, with a gradient for every argument that asks for one (input,
    target, weight, pos_weight, broadcast or not), in any floating dtype.

    loss = lerp(softplus(x), p softplus(-x), t), the t = 0 and t = 1 losses weighted (p: pos_weight, 1 without),
    both never negative, so nothing cancels at any |x| (torch's (1 - t) x - (1 + (p - 1) t) logsigmoid(x) cancels
    for x << 0, where a confident discriminator's fake logits are); lerp's two-sided formula is exact at t = 0 and
    1. Small inputs compute it so, in the fewest ops; from FEW_PASSES_NUMEL on (without pos_weight), as
    lerp(relu(x), relu(-x), t) + log1p(exp(-|x|)) (the same sum, split), in fewer passes: every pass after the
    first of each term is in place (on the CPU a fresh tensor costs a page-faulting allocation as large as a pass)
    and log1p(exp(-|x|)) is cheaper than softplus, whose threshold branch is not vectorised. Infinite logits make
    NaN here (inf - inf) where the documented value is +inf, so a NaN result is computed again by the reference
    (one check of the reduced scalar; a pass over the loss for reduction="none").

    The gradients, each times w and the upstream gradient (over N for the mean):
    d / dx = (1 - t) sigmoid(x) - p t sigmoid(-x) (sigmoid(x) - t without p); d / dt = p softplus(-x) - softplus(x)
    (-x without p); d / dw = the unweighted loss; d / dp = t softplus(-x); the last two summed to the shape of
    weight and pos_weight. A backward that must itself be differentiable (create_graph) differentiates the
    reference.
    """

    @staticmethod
    def forward(ctx, input, target, weight, pos_weight, reduction):
        # forward(ctx, ...) rather than setup_context: a third of the per-call cost in torch 2.13.
        ctx.save_for_backward(input, target, weight, pos_weight)
        ctx.reduction = reduction
        x, t, computing = _computing(input, target)
        p = None if pos_weight is None else pos_weight.to(computing)
        if p is not None or x.numel() < FEW_PASSES_NUMEL:  # few ops: each costs about a microsecond whatever its size
            spare = F.softplus(x, -1.0).neg_()  # softplus(-x)
            loss = torch.lerp(F.softplus(x), spare if p is None else spare.mul_(p), t)
        else:  # few passes, in place after the first of each term; log1p(exp(-|x|)) reuses relu(-x)'s buffer
            loss = F.relu(x)
            spare = torch.sub(loss, x)  # relu(-x)
            loss.lerp_(spare, t).add_(torch.abs(x, out=spare).neg_().exp_().log1p_())
        if weight is not None:
            w = weight.to(computing)
            if ctx.needs_input_grad[2]:  # d / dw is the unweighted loss
                ctx.unweighted = loss
                loss = loss * w
            else:
                loss = loss.mul_(w)  # weight broadcasts to input's shape
        out = _reduce(loss, reduction)
        if out.isnan().any() if reduction == "none" else math.isnan(out):  # rare: a NaN or infinite logit
            out = bce_with_logits_reference(input.detach(), target.detach(), None if weight is None else weight.detach(),
                                            reduction, None if pos_weight is None else pos_weight.detach())
            ctx.unweighted = None
        return out if out.dtype == target.dtype else out.to(target.dtype)

    @staticmethod
    def backward(ctx, dloss):
        input, target, weight, pos_weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph: autograd differentiates the reference
            args = (input, target, weight, pos_weight)
            with torch.enable_grad():
                loss = bce_with_logits_reference(input, target, weight, ctx.reduction, pos_weight)
                grads = iter(torch.autograd.grad(loss, [a for a, need in zip(args, needs) if need], dloss,
                                                 create_graph=True))
            return (*(next(grads) if need else None for need in needs[:4]), None)
        x, t, computing = _computing(input, target)
        scale = dloss.to(computing)
        if ctx.reduction == "mean":
            scale = scale / input.numel()
        if weight is not None:
            scale = scale * weight.to(computing)
        p = None if pos_weight is None else pos_weight.to(computing)
        dx = dt = dw = dp = None
        if needs[0]:
            if p is None:
                dx = torch.sigmoid(x).sub_(t)
            else:  # (1 - t) sigmoid(x) - p t sigmoid(-x)
                dx = torch.lerp(torch.sigmoid(x), torch.sigmoid(x.neg()).mul_(p).neg_(), t)
            dx = _grad(dx.mul_(scale), input)  # scale broadcasts to input's shape
        if needs[1]:
            if p is None:
                dt = x.neg()
            else:  # p softplus(-x) - softplus(x); softplus(x, -1) is -softplus(-x)
                dt = F.softplus(x, -1.0).mul_(p).add_(F.softplus(x)).neg_()
            dt = _grad(dt.mul_(scale), target)
        if needs[2]:
            unweighted = getattr(ctx, "unweighted", None)
            if unweighted is None:  # the forward took the reference
                unweighted = bce_with_logits_reference(x, t, None, "none", p)
            up = dloss.to(computing)
            dw = _grad((unweighted * (up / input.numel() if ctx.reduction == "mean" else up))
                       .sum_to_size(weight.shape), weight)
        if needs[3]:
            dp = _grad((F.softplus(x, -1.0).mul_(t).mul_(scale).neg_()).sum_to_size(pos_weight.shape), pos_weight)
        return dx, dt, dw, dp, None


def _computing(input, target):
    """input and target in the dtype the loss is computed in (float32, float64 if either is), and that dtype."""
    computing = torch.float64 if torch.float64 in (input.dtype, target.dtype) else torch.float32
    return input.to(computing), target.to(computing), computing


def _grad(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return g if g is None or g.dtype == like.dtype else g.to(like.dtype)


class _BCEOnePass(torch.autograd.Function):
    """bce_with_logits on float32 CPU tensors without weights (float16 and bfloat16 ones on float32 copies, the loss
    rounded once to target's dtype): loss and gradient in one pass of _cpu_losses.

    The same formula as _BCEEager's (lerp(softplus(x), softplus(-x), t), split so that nothing cancels), with the
    gradient sigmoid(x) - t computed alongside and kept for the backward, which is then one multiplication (and
    one more for a target that requires grad: d / dt = -x).
    Infinite logits get their documented loss directly (no NaN check, so no host sync). The sum accumulates
    in double. A backward that must itself be differentiable (create_graph) computes the gradient anew in
    torch ops.

    The tensors the backward needs are ctx attributes rather than save_for_backward's saved variables, whose
    packing costs a fifth of a small call: the gradient is this function's own tensor, which nothing else can
    modify, and input and target, read only by a create_graph backward or for d / d target, are checked there against the
    versions they had in the forward, as saved variables would be.
    """

    @staticmethod
    def forward(ctx, input, target, reduction):
        x, t = _float32(input), _float32(target)
        grad = torch.empty_like(x, memory_format=torch.contiguous_format)  # (empty(shape): twice the time)
        out, scale = _one_pass(x, t, reduction, grad)
        ctx.grad, ctx.scale, ctx.x = grad, scale, x
        ctx.input, ctx.target, ctx.versions = input, target, (input._version, target._version)
        return out if out.dtype == target.dtype else out.to(target.dtype)

    @staticmethod
    def backward(ctx, dloss):
        input, target = ctx.input, ctx.target
        if ctx.needs_input_grad[1] or torch.is_grad_enabled():  # d / d target or create_graph: reads input, target
            if (input._version, target._version) != ctx.versions:
                raise RuntimeError("binary_cross_entropy_with_logits: its input or target was modified in place "
                                   "after the forward; the backward needs their values: clone them first")
        dx = dt = None
        if not torch.is_grad_enabled():
            if ctx.needs_input_grad[0]:
                dx = ctx.grad * dloss
            if ctx.needs_input_grad[1]:  # d / d target = softplus(-x) - softplus(x) = -x
                dt = ctx.x * (dloss * -ctx.scale)
        else:  # create_graph: differentiable in input and target
            x, scale = wide(input), dloss * ctx.scale
            if ctx.needs_input_grad[0]:
                dx = (torch.sigmoid(x) - wide(target)) * scale
            if ctx.needs_input_grad[1]:
                dt = x * -scale
        return _grad(dx, input), _grad(dt, target), None


def _float32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype is torch.float32 else t.float()


ONE_PASS_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # what _BCEOnePass takes (float32 copies of halves)
_bce_one_pass = fast_apply(_BCEOnePass)
_bce_eager = fast_apply(_BCEEager)


def _one_pass(input, target, reduction: str, grad: torch.Tensor | None) -> tuple[torch.Tensor, float]:
    """(the loss, the gradient's scale) by fastgan.fused._cpu_losses, writing d loss / d input into grad if given."""
    x, t = input.contiguous(), target.contiguous()
    n = x.numel()
    scale = 1.0 / n if reduction == "mean" and n else 1.0
    grad_address = 0 if grad is None else grad.data_ptr()
    threads = torch.get_num_threads()
    if reduction == "none":
        out = torch.empty_like(input, memory_format=torch.contiguous_format)
        # Positional arguments: pybind11 parses keywords at several times the cost.
        _cpu_losses.bce_with_logits(x.data_ptr(), t.data_ptr(), grad_address, out.data_ptr(), n, scale, True,
                                    threads, 0.0)
    else:
        total = _cpu_losses.bce_with_logits(x.data_ptr(), t.data_ptr(), grad_address, 0, n, scale, True, threads,
                                            0.0)
        # float32 whatever torch's default dtype, as the reference gives float32 for float32 logits
        out = torch.full((), total * scale if n else (math.nan if reduction == "mean" else 0.0), dtype=torch.float32)
    return out, scale


def one_pass_mean(logits: torch.Tensor, target: float, grad: torch.Tensor | None) -> float:
    """mean(bce(logits, target)) for one target value, by fastgan.fused._cpu_losses (float32 CPU logits), writing
    (sigmoid(logits) - target) / N into grad if given; NaN for empty logits, as torch's mean."""
    x = logits.contiguous()
    n = x.numel()
    if not n:
        return math.nan
    total = _cpu_losses.bce_with_logits(x.data_ptr(), 0, 0 if grad is None else grad.data_ptr(), 0, n, 1.0 / n,
                                        True, torch.get_num_threads(), target)
    return total / n


def takes_one_pass(input: torch.Tensor) -> bool:
    """Whether fastgan.fused._cpu_losses takes a loss on these logits (float32, CPU) that would otherwise take a fast
    eager path (the callers check the rest)."""
    return _cpu_losses is not None and input.dtype == torch.float32 and input.is_cpu


_REDUCTION_ENUM = {"none": 0, "mean": 1, "sum": 2}  # torch's own numbering (torch.nn._reduction)


def _torchs(input, target, weight, pos_weight, reduction: str) -> torch.Tensor:
    """torch's binary_cross_entropy_with_logits, called past its Python wrapper (whose checks the public function
    has made): its formula, its rounding and its NaN for infinite logits; but computed in float32 (float64 if input
    or target is) and rounded once to target's dtype, where torch would compute in a narrower dtype. A weight that
    requires grad, which torch's op refuses, multiplies torch's unreduced loss."""
    dtype = target.dtype
    if input.dtype != dtype or dtype not in (torch.float32, torch.float64):
        computing = torch.float64 if torch.float64 in (input.dtype, dtype) else torch.float32
        input, target = input.to(computing), target.to(computing)
    if weight is not None and weight.requires_grad:
        loss = torch.binary_cross_entropy_with_logits(input, target, None, pos_weight, 0)
        out = _reduce(loss * (weight if weight.dtype == loss.dtype else weight.to(loss.dtype)), reduction)
    else:
        out = torch.binary_cross_entropy_with_logits(input, target, weight, pos_weight, _REDUCTION_ENUM[reduction])
    return out if out.dtype == dtype else out.to(dtype)


# ---------------------------------------------------------------- public function

def _check_tensor(name: str, what: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: {what} must be a torch.Tensor; got {type(t).__name__}")


def _check_broadcastable(name: str, what: str, t: torch.Tensor, shape: torch.Size) -> None:
    # torch.broadcast_shapes(t.shape, shape) == shape, without its cost (tens of microseconds a call)
    dims = t.shape
    if len(dims) > len(shape) or any(a != b and a != 1 for a, b in zip(reversed(dims), reversed(shape))):
        raise RuntimeError(f"{name}: {what} of shape {tuple(t.shape)} does not broadcast to input shape {tuple(shape)}")


def _plain_weight(t, shape: torch.Size) -> bool:
    """Whether weight or pos_weight t is a floating-point tensor that broadcasts to input's shape (what the checks
    of the public function let through unchanged)."""
    if type(t) is not torch.Tensor or not t.is_floating_point():
        return False
    dims = t.shape
    return dims == shape or len(dims) <= len(shape) and all(
        a == b or a == 1 for a, b in zip(reversed(dims), reversed(shape)))


def _suffix_broadcast(t: torch.Tensor | None, shape: torch.Size) -> bool:
    """Whether t broadcasts to shape as a trailing block (what the kernel reads at offset % t.numel())."""
    if t is None:
        return True
    dims = list(t.shape)
    while dims and dims[0] == 1:
        dims.pop(0)
    return len(dims) <= len(shape) and tuple(dims) == tuple(shape[len(shape) - len(dims):])


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy on logits, as torch.nn.functional.binary_cross_entropy_with_logits.

    Same signature, broadcasting, values, gradients, result dtype and (but for the message) exceptions as
    torch's, with the differences and the details below.

    - Result dtype: target's dtype, as torch's (its formula works in place on a tensor made from target):
      float16 logits with float32 targets give a float32 loss, float32 with float64 a float64 loss, float32
      with float16 a float16 loss; weight and pos_weight do not change it. d loss / d input is in input's dtype.
    - Precision: computed in float32 (float64 when input or target is float64) and rounded once to the
      result dtype (torch computes float16 and bfloat16 in their own dtype). Without weight and pos_weight, in
      float32 (float16, bfloat16 logits are computed on float32 copies), fastgan's formula is stable for logits
      of any magnitude, where torch's (1 - t) x - logsigmoid(x) cancels (x << 0 with t near 0: a confident
      discriminator's fake logits). With weight or pos_weight, or in float64, on the CPU (and wherever no
      Triton kernel runs), the loss is torch's own op's, which is as fast as fastgan's would be there: torch's
      formula and rounding, and d / d target from it.
    - weight and pos_weight: floating-point, integer or bool tensors, as torch's, converted to the dtype the
      loss is computed in, so each counts as its value (torch raises for a bool pos_weight, and computes
      pos_weight - 1 in the integer dtype, which wraps around for a uint8 pos_weight of 0).
    - Infinite logits (the difference, where fastgan's formula runs: every Triton path, and the CPU's without
      weight and pos_weight and not in float64): the loss is the limit, +inf, where the target disagrees with
      the logit (x = -inf with t > 0, x = +inf with t < 1); torch gives NaN for x = -inf with t = 1 (its
      (1 - t) x - logsigmoid(x) is -inf + inf there) and +inf for x = +inf with t = 0. Where the target agrees
      exactly (x = +inf with t = 1, x = -inf with t = 0) the loss is NaN (0 * inf), as torch's. The gradient
      stays finite, as torch's. Where torch's op runs, its values: NaN for x = -inf with t = 1.
    - Gradients: for input and target as torch's; also for a weight or pos_weight that requires grad (torch's
      op refuses them): d / d weight is the unweighted loss (torch's, times the upstream gradient), d / d
      pos_weight t softplus(-x) (fastgan's formula), each summed to the argument's shape.
    - Errors name the argument and what is wrong with it, with torch's exception types: TypeError when an
      argument is not a tensor (torch raises it for weight and pos_weight; for input and target its
      AttributeError is an accident of calling .size()); RuntimeError when input or target is not
      floating-point (torch raises NotImplementedError, a RuntimeError, for input) or weight or pos_weight
      is complex or does not broadcast to input's shape; ValueError when target's shape differs from
      input's (no broadcasting, as torch's) or reduction is unknown.

    On the CPU: float32 logits and targets without weights take fastgan.fused._cpu_losses (loss and gradient in
    one pass; d / d target = -x), float16 and bfloat16 ones the same on float32 copies; the rest calls torch's op
    (a pos_weight that requires grad: _BCEEager). With a Triton kernel (CUDA): the fused op
    fastgan::bce_with_logits (loss and d loss / d input in one launch). It falls back to the reference, which
    autograd differentiates directly, when target, weight or pos_weight requires grad (the kernel computes
    d / d input only), when weight or pos_weight broadcast other than as a trailing block of input's shape (e.g.
    a per-row weight of shape (N, 1)), for float64 input or target (the kernel accumulates in float32) and for
    empty inputs.
    """
    if (type(input) is torch.Tensor and type(target) is torch.Tensor and input.shape == target.shape
            and input.is_floating_point() and target.is_floating_point() and reduction in REDUCTIONS
            and runs_eager(input, MIN_NUMEL_LOSS) and not torch.compiler.is_compiling()):  # CPU calls, checked at once
        if weight is None and pos_weight is None:
            if input.dtype in ONE_PASS_DTYPES and target.dtype in ONE_PASS_DTYPES:
                if _cpu_losses is not None and input.is_cpu:
                    if (input.requires_grad or target.requires_grad) and torch.is_grad_enabled():
                        return _bce_one_pass(input, target, reduction)
                    # no graph: no gradient to compute
                    out = _one_pass(_float32(input), _float32(target), reduction, None)[0]
                    return out if out.dtype == target.dtype else out.to(target.dtype)
                return _bce_eager(input, target, None, None, reduction)
            return _torchs(input, target, None, None, reduction)
        if ((weight is None or _plain_weight(weight, input.shape))
                and (pos_weight is None or _plain_weight(pos_weight, input.shape))):
            if pos_weight is not None and pos_weight.requires_grad:  # torch's op has no d / d pos_weight
                return _bce_eager(input, target, weight, pos_weight, reduction)
            return _torchs(input, target, weight, pos_weight, reduction)
    name = "binary_cross_entropy_with_logits"
    _check_tensor(name, "input", input)
    _check_tensor(name, "target", target)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    if target.shape != input.shape:
        raise ValueError(
            f"{name}: target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)}"
        )
    for what, t in (("input", input), ("target", target)):
        if not t.is_floating_point():
            raise RuntimeError(f"{name}: {what} must be a floating-point tensor; got {t.dtype}")
    computing = torch.float64 if torch.float64 in (input.dtype, target.dtype) else torch.float32
    checked = []
    for what, t in (("weight", weight), ("pos_weight", pos_weight)):
        if t is not None:
            _check_tensor(name, what, t)
            if t.is_complex():
                raise RuntimeError(f"{name}: {what} must be a real tensor; got {t.dtype}")
            _check_broadcastable(name, what, t, input.shape)
            if not t.is_floating_point():  # integer or bool, as torch accepts
                t = t.to(computing)
        checked.append(t)
    weight, pos_weight = checked
    if runs_eager(input, MIN_NUMEL_LOSS):
        if torch.compiler.is_compiling():  # traced: the NaN checks of the paths below read a value
            return bce_with_logits_reference(input, target, weight, reduction, pos_weight)
        if pos_weight is not None and pos_weight.requires_grad:
            return _bce_eager(input, target, weight, pos_weight, reduction)
        return _torchs(input, target, weight, pos_weight, reduction)
    fused = (input.numel() > 0 and computing != torch.float64
             and _suffix_broadcast(weight, input.shape) and _suffix_broadcast(pos_weight, input.shape)
             and not any(t is not None and t.requires_grad for t in (target, weight, pos_weight)))
    if not fused:
        return bce_with_logits_reference(input, target, weight, reduction, pos_weight)
    return _bce_op(input, target, weight, pos_weight, reduction)[0]
