"""batch_norm_act, batch norm fused with an activation: reference and gradient, the fastgan::batch_norm_act and
fastgan::batch_norm_act_backward ops, the public function.

Registered like fastgan.fused.bias_act: CPU and CUDA impls that launch the Triton kernels
(fastgan.kernels.batch_norm_act; eval mode folds into fastgan.kernels.bias_act) where
fastgan.fused.backend.use_triton says so and the reference otherwise, a fake impl, and an autograd
formula whose create_graph backward is written in differentiable torch ops.

weight and bias are per channel (C,) or per sample (N, C): conditional batch norm (de Vries et al. 2017;
Miyato & Koyama 2018) gives each sample its class's scale and shift, in the same passes (kernels'
forward_train_per_sample, affine_act and backward_per_sample); its gradients are per-sample sums (N, C) over the
spatial dimensions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import activations
from .activations import activation_spec
from .arguments import empty_like_layout, new_tensor, wide
from .backend import use_triton
from .bias_act import bias_act_reference
from .eager import ACT_IN_PLACE, runs_eager

# Smallest tensors (elements) for which the CUDA path launches a Triton kernel; below this the op
# runs the reference, whose eager launches cost about the same as one fused launch at these sizes.
# A starting point to be re-tuned with `python -m bench.kernels` on the target GPU.
MIN_NUMEL_BATCH_NORM_ACT = 1 << 16


# ---------------------------------------------------------------- reference and gradient

def batch_norm_act_reference(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5,
                             act="relu", alpha=None) -> torch.Tensor:
    """Batch norm over every dimension but 1 (N, H, W for images), then the activation.

    In training mode the batch statistics normalise x and the running statistics are updated in
    place (unbiased variance, as torch.nn.BatchNorm does); in eval mode the running statistics are
    folded into a per-channel scale and shift. weight and bias are per channel (C,) or per sample (N, C).
    """
    dtype = x.dtype
    if per_sample(weight, bias):
        y = _affine(F.batch_norm(wide(x), running_mean, running_var, None, None, training, momentum, eps),
                    weight, bias)
    else:
        # F.batch_norm on the CPU takes no weight of another dtype than x's (float16 parameters of float16 x).
        xw = wide(x)
        weight, bias = (None if t is None else t.to(xw.dtype) for t in (weight, bias))
        y = F.batch_norm(xw, running_mean, running_var, weight, bias, training, momentum, eps)
    return bias_act_reference(y, None, act, alpha).to(dtype)


def per_sample(weight, bias) -> bool:
    """Whether weight or bias is per sample (N, C) rather than per channel (C,)."""
    return (weight is not None and weight.ndim == 2) or (bias is not None and bias.ndim == 2)


def _view(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-channel (C,) or per-sample (N, C) tensor shaped to broadcast against x (N, C, *)."""
    return t.reshape(([1] if t.ndim == 1 else [x.shape[0]]) + [x.shape[1]] + [1] * (x.ndim - 2))


def _affine(z: torch.Tensor, weight, bias) -> torch.Tensor:
    """z * weight + bias (either may be None, not both), each broadcast by _view, in z's dtype: a new tensor."""
    y = z * _view(weight.to(z.dtype), z) if weight is not None else z
    return y + _view(bias.to(z.dtype), z) if bias is not None else y


def _contiguous(t):
    """A weight or bias as the kernels address it (rows of C values; an expanded row is copied)."""
    return None if t is None else t.contiguous()


def _spatial_sum(t: torch.Tensor) -> torch.Tensor:
    """Sums over the dimensions after N and C: (N, C, *) -> (N, C), a new tensor (an op's output may not be dy)."""
    return t.sum(list(range(2, t.ndim))) if t.ndim > 2 else t.clone()


def _reduce_dims(x: torch.Tensor) -> list[int]:
    return [0] + list(range(2, x.ndim))


def _stat_dtype(x: torch.Tensor) -> torch.dtype:
    return wide(x[:0]).dtype


def _batch_norm_act_vjp(dy, x, weight, bias, mean, rstd, training, eps, act, alpha, needs, create_graph):
    """(dx, dweight, dbias) by differentiating the reference formula; entries not in `needs` are None.

    In training mode the statistics are recomputed from x so their dependence on x is differentiated;
    in eval mode the given mean and rstd are constants.
    """
    with torch.enable_grad():
        xf = wide(x)
        shape = [1, -1] + [1] * (x.ndim - 2)
        if training:
            m = xf.mean(_reduce_dims(x), keepdim=True)
            r = torch.rsqrt(xf.var(_reduce_dims(x), unbiased=False, keepdim=True) + eps)
        else:
            m, r = mean.detach().reshape(shape), rstd.detach().reshape(shape)
        z = (xf - m) * r
        if weight is not None:
            z = z * _view(weight.to(xf.dtype), x)
        if bias is not None:
            z = z + _view(bias.to(xf.dtype), x)
        y = activation_spec(act).func(z, alpha)
        wanted = [t for t, need in zip((x, weight, bias), needs) if need]
        grads = iter(torch.autograd.grad(y, wanted, dy.to(xf.dtype), create_graph=create_graph))
    return tuple(next(grads).to(t.dtype) if need else None for t, need in zip((x, weight, bias), needs))


def batch_norm_act_grad(dy, x, weight, bias, mean, rstd, training: bool, act: str, alpha: float):
    """(dx, dweight, dbias) of batch_norm_act from dy, x and the statistics used (the kernels' reference);
    dweight and dbias are float32 (float64 for float64 x) per-channel sums, returned even without weight, or
    per-sample sums (N, C) where weight or bias is per sample."""
    xf = wide(x)
    shape = [1, -1] + [1] * (x.ndim - 2)
    xhat = (xf - mean.reshape(shape)) * rstd.reshape(shape)
    w = torch.ones_like(rstd) if weight is None else weight.to(xf.dtype)
    z = xhat * _view(w, x)
    if bias is not None:
        z = z + _view(bias.to(xf.dtype), x)
    dz = activation_spec(act).grad_from_input(dy.to(xf.dtype), z, alpha)
    if per_sample(weight, bias):
        # The scale varies over N, so it does not factor out of the statistics' terms: work with d/dxhat.
        dxhat = dz * _view(w, x)
        if training:
            n = x.numel() // x.shape[1]
            dxhat = (dxhat - dxhat.sum(_reduce_dims(x), keepdim=True) / n
                     - xhat * ((dxhat * xhat).sum(_reduce_dims(x), keepdim=True) / n))
        return (dxhat * rstd.reshape(shape)).to(x.dtype), _spatial_sum(dz * xhat), _spatial_sum(dz)
    dbias, dweight = dz.sum(_reduce_dims(x)), (dz * xhat).sum(_reduce_dims(x))
    if training:
        # The batch statistics depend on x: subtract the projections onto 1 and xhat.
        n = x.numel() // x.shape[1]
        dz = dz - dbias.reshape(shape) / n - xhat * (dweight.reshape(shape) / n)
    return (dz * (w * rstd).reshape(shape)).to(x.dtype), dweight, dbias


# ---------------------------------------------------------------- fastgan::batch_norm_act, fastgan::batch_norm_act_backward

@torch.library.custom_op("fastgan::batch_norm_act", mutates_args=(), device_types=("cpu", "cuda"))
def _batch_norm_act_op(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                       mean: torch.Tensor | None, var: torch.Tensor | None, training: bool, eps: float, act: str,
                       alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, mean, rstd, var), the statistics float32 (float64 for float64 x). Training mode ignores the given
    mean / var and returns the batch's (var biased); eval mode normalises with the given ones and returns copies."""
    fused = use_triton(x, MIN_NUMEL_BATCH_NORM_ACT)
    rows = per_sample(weight, bias)
    if rows:
        weight, bias = _contiguous(weight), _contiguous(bias)
    if training:
        if fused:
            from ..kernels import batch_norm_act as kernel

            train = kernel.forward_train_per_sample if rows else kernel.forward_train
            return train(x, weight, bias, eps, activations.code(act), alpha)
        xf = wide(x)
        mean = xf.mean(_reduce_dims(x))
        # Two passes over the centred values: as exact as Welford's var(), which is several times slower
        # on the CPU when reducing over the non-adjacent dimensions N and H, W.
        var = (xf - mean.reshape([1, -1] + [1] * (x.ndim - 2))).square_().mean(_reduce_dims(x))
    else:
        mean, var = mean.to(_stat_dtype(x), copy=True), var.to(_stat_dtype(x), copy=True)
    rstd = torch.rsqrt(var + eps)
    if fused and rows:
        from ..kernels import batch_norm_act as kernel

        y = kernel.affine_act(x, weight, bias, mean, rstd, activations.code(act), alpha)
    elif fused:
        from ..kernels import bias_act as bias_act_kernel

        scale = rstd if weight is None else rstd * weight.float()
        y = bias_act_kernel.forward(x, bias, activations.code(act), alpha, 1.0, None, 1, mean=mean, scale=scale)
    else:
        y = new_tensor(batch_norm_act_reference(x, weight, bias, mean, var, False, 0.0, eps, act, alpha), x)
    return y, mean, rstd, var


@_batch_norm_act_op.register_fake
def _(x, weight, bias, mean, var, training, eps, act, alpha):
    stat = torch.empty(x.shape[1], dtype=_stat_dtype(x), device=x.device)
    return empty_like_layout(x), stat, torch.empty_like(stat), torch.empty_like(stat)


@torch.library.custom_op("fastgan::batch_norm_act_backward", mutates_args=(), device_types=("cpu", "cuda"))
def _batch_norm_act_backward_op(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None,
                                bias: torch.Tensor | None, mean: torch.Tensor, rstd: torch.Tensor,
                                training: bool, eps: float, act: str, alpha: float
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dweight, dbias) with dweight and dbias float32 (float64 for float64 x) per-channel sums, returned
    even without weight; per-sample sums (N, C) where weight or bias is per sample."""
    if use_triton(x, MIN_NUMEL_BATCH_NORM_ACT):
        from ..kernels import batch_norm_act as kernel

        if per_sample(weight, bias):
            return kernel.backward_per_sample(dy, x, _contiguous(weight), _contiguous(bias), mean, rstd, training,
                                              activations.code(act), alpha)
        return kernel.backward(dy, x, weight, bias, mean, rstd, training, activations.code(act), alpha)
    dx, dweight, dbias = batch_norm_act_grad(dy, x, weight, bias, mean, rstd, training, act, alpha)
    return new_tensor(dx, x), dweight, dbias


@_batch_norm_act_backward_op.register_fake
def _(dy, x, weight, bias, mean, rstd, training, eps, act, alpha):
    sums = x.shape[:2] if per_sample(weight, bias) else x.shape[1:2]
    stat = torch.empty(sums, dtype=_stat_dtype(x), device=x.device)
    return empty_like_layout(x), stat, torch.empty_like(stat)


def _batch_norm_act_setup(ctx, inputs, output):
    x, weight, bias, _, _, training, eps, act, alpha = inputs
    _, mean, rstd, var = output
    ctx.set_materialize_grads(False)  # the statistics' gradients are never zero-filled
    ctx.mark_non_differentiable(mean, rstd, var)
    ctx.save_for_backward(x, weight, bias, mean, rstd)
    ctx.args = (training, eps, act, alpha)


def _batch_norm_act_backward(ctx, dy, _dmean, _drstd, _dvar):
    x, weight, bias, mean, rstd = ctx.saved_tensors
    if dy is None:
        return None, None, None, None, None, None, None, None, None
    training, eps, act, alpha = ctx.args
    needs = (ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1],
             bias is not None and ctx.needs_input_grad[2])
    if torch.is_grad_enabled():
        dx, dw, db = _batch_norm_act_vjp(dy, x, weight, bias, mean, rstd, training, eps, act, alpha, needs, True)
    else:
        dx, dw, db = torch.ops.fastgan.batch_norm_act_backward(dy, x, weight, bias, mean, rstd, training, eps,
                                                               act, alpha)
        # Per-sample sums (N, C) add up to a per-channel parameter's gradient when the other one is per sample.
        dw = _sum_to(dw, weight) if needs[1] else None
        db = _sum_to(db, bias) if needs[2] else None
    return dx, dw, db, None, None, None, None, None, None


def _sum_to(grad: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    return (grad.sum(0) if grad.ndim > param.ndim else grad).to(param.dtype)


_batch_norm_act_op.register_autograd(_batch_norm_act_backward, setup_context=_batch_norm_act_setup)


# ---------------------------------------------------------------- fast eager path

def _batch_norm_act_eager(x, weight, bias, running_mean, running_var, training: bool, momentum: float, eps: float,
                          act: str, alpha: float) -> torch.Tensor:
    """batch_norm_act_reference with the activation in place on F.batch_norm's output (which its backward does
    not read), or on the per-sample affine's (whose backward reads its inputs only); F.batch_norm updates the
    running statistics, and autograd differentiates all of it. torch.batch_norm is what F.batch_norm calls, past
    its Python checks (the public function has made them: more than one value per channel when training)."""
    cudnn = torch.backends.cudnn.enabled
    if per_sample(weight, bias):
        y = _affine(torch.batch_norm(wide(x), None, None, running_mean, running_var, training, momentum, eps, cudnn),
                    weight, bias)
    else:
        y = torch.batch_norm(wide(x), weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
    y = ACT_IN_PLACE[act](y, alpha)
    return y if y.dtype == x.dtype else y.to(x.dtype)


def _eager_dtypes_match(x, *params) -> bool:
    """Whether F.batch_norm takes the parameters as they are: each absent or in x's computing dtype (the op
    converts others, and updates running statistics of another dtype through a cast)."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    for p in params:  # (a loop: all() over a generator costs a microsecond a call)
        if p is not None and p.dtype != dtype:
            return False
    return True


# ---------------------------------------------------------------- public function

def batch_norm_act(x: torch.Tensor, weight, bias, running_mean, running_var, training: bool,
                   momentum: float = 0.1, eps: float = 1e-5, act: str = "relu", alpha: float | None = None):
    """Batch norm (per channel over N and the spatial dimensions) followed by an activation.

    Training mode normalises with the batch statistics (biased variance) and updates running_mean /
    running_var in place with the unbiased variance, as torch.nn.BatchNorm2d; eval mode folds the
    running statistics into one scale-and-shift pass. The backward recomputes the activation's
    input from x, so the output is not kept alive for it. weight and bias are each per channel (C,) or per
    sample (N, C), the latter for conditional batch norm (each sample's class's scale and shift).
    """
    spec = activation_spec(act)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"batch_norm_act: x must be a floating-point tensor; got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim < 2:
        raise ValueError(f"batch_norm_act: x must have a channel dimension (N, C, ...); got shape {tuple(x.shape)}")
    channels = x.shape[1]
    for what, t in (("weight", weight), ("bias", bias)):  # (torch.Size compares with a tuple as it is)
        if t is not None and t.shape != (channels,) and t.shape != (x.shape[0], channels):
            raise ValueError(f"batch_norm_act: {what} must have shape ({channels},) or, per sample, "
                             f"({x.shape[0]}, {channels}) for x of shape {tuple(x.shape)}; got {tuple(t.shape)}")
    for what, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and t.shape != (channels,):
            raise ValueError(f"batch_norm_act: {what} must have shape ({channels},) for x of shape {tuple(x.shape)}; "
                             f"got {tuple(t.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm_act: pass both running_mean and running_var, or neither")
    if momentum is None:
        raise ValueError("batch_norm_act: momentum must be a number (the cumulative average, momentum=None, is not supported)")
    if training and x.numel() // max(channels, 1) <= 1:
        raise ValueError(f"batch_norm_act: training needs more than one value per channel; got x of shape {tuple(x.shape)}")
    if not training and running_mean is None:
        raise ValueError("batch_norm_act: eval mode (training=False) needs running_mean and running_var")
    alpha = spec.def_alpha if alpha is None else float(alpha)
    if runs_eager(x, MIN_NUMEL_BATCH_NORM_ACT) and _eager_dtypes_match(x, weight, bias, running_mean, running_var):
        return _batch_norm_act_eager(x, weight, bias, running_mean, running_var, bool(training), momentum, eps,
                                     act, alpha)
    y, mean, _, var = _batch_norm_act_op(x, weight, bias, running_mean, running_var, bool(training), float(eps),
                                         act, alpha)
    if training and running_mean is not None:
        _update_running_stats(x, mean, var, running_mean, running_var, momentum)
    return y


def _update_running_stats(x, mean, var, running_mean, running_var, momentum: float) -> None:
    """running = lerp(running, batch, momentum) in place, with the unbiased batch variance, as torch.nn.BatchNorm.

    A separate in-place update keeps the op functional (autograd and compile need that): one launch on the
    Triton path, plain in-place torch ops under torch.compile (which fuses them) and on the reference path.
    """
    n = x.numel() // x.shape[1]
    if (use_triton(x, MIN_NUMEL_BATCH_NORM_ACT) and not torch.compiler.is_compiling()
            and mean.dtype == torch.float32 and running_mean.is_contiguous() and running_var.is_contiguous()):
        from ..kernels import batch_norm_act as kernel

        kernel.update_running_stats(mean, var, running_mean, running_var, float(momentum), n)
        return
    with torch.no_grad():
        running_mean.lerp_(mean.to(running_mean.dtype), momentum)
        running_var.lerp_((var * (n / (n - 1))).to(running_var.dtype), momentum)
