"""Fused elementwise epilogues for generator and discriminator blocks, registered as torch.library ops.

Each op (namespace "fastgan") has one implementation registered for CPU and CUDA tensors that runs
the Triton kernel (fastgan.kernels) where fastgan.backend.use_triton says so and the PyTorch
reference otherwise, a fake implementation for torch.compile, and an autograd formula.

Second derivatives (R1, WGAN-GP through a discriminator built from these ops): a backward that runs
with grad mode on (create_graph=True) is written in differentiable torch ops, so autograd can
differentiate it again; a plain backward launches the backward kernel.
"""
from __future__ import annotations

import importlib

import torch

from . import reference
from .backend import use_triton

__all__ = ["bias_act", "batch_norm_act"]

# Smallest tensors (elements) for which the CUDA path launches a Triton kernel; below these the op
# runs the reference, whose eager launches cost about the same as one fused launch at these sizes.
# Starting points to be re-tuned with `python -m bench.kernels` on the target GPU.
MIN_NUMEL_BIAS_ACT = 1 << 16
MIN_NUMEL_BATCH_NORM_ACT = 1 << 16


def _kernels(name: str):
    # Imported on first Triton use, so `import fastgan` does not import triton.
    return importlib.import_module(f"fastgan.kernels.{name}")


def _new_tensor(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # A custom op may not return its input (or a view of it): the identity configuration copies.
    y = y.contiguous()
    return y.clone() if y is x else y


def _sum_except(t: torch.Tensor, dim: int) -> torch.Tensor:
    dims = [i for i in range(t.ndim) if i != dim % t.ndim]
    # sum(dim=[]) would reduce every dimension, so a 1-D tensor is returned as is.
    return reference.wide(t).sum(dims) if dims else reference.wide(t)


# ---------------------------------------------------------------- bias_act

# aten's own activation backward ops: one pass each (a chain of torch.where / comparisons costs several,
# and is slow on CPU), with derivative formulas of their own, so a create_graph backward stays differentiable.

def _act_backward_from_output(dy: torch.Tensor, a: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    """dy * act'(z) given the activation's output a = act(z)."""
    if act == "linear":
        return dy
    if act == "relu":
        return torch.ops.aten.threshold_backward(dy, a, 0.0)
    if act == "lrelu":
        return torch.ops.aten.leaky_relu_backward(dy, a, alpha, True)
    if act == "tanh":
        return torch.ops.aten.tanh_backward(dy, a)
    return torch.ops.aten.sigmoid_backward(dy, a)


def _act_backward_from_input(dy: torch.Tensor, z: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    """dy * act'(z) given the activation's input z."""
    if act == "linear":
        return dy
    if act == "relu":
        return torch.ops.aten.threshold_backward(dy, z, 0.0)
    if act == "lrelu":
        return torch.ops.aten.leaky_relu_backward(dy, z, alpha, False)
    return _act_backward_from_output(dy, torch.tanh(z) if act == "tanh" else torch.sigmoid(z), act, alpha)


def _bias_act_grad_from_output(dy: torch.Tensor, y: torch.Tensor, act: str, alpha: float, gain: float,
                               clamp: float | None) -> torch.Tensor:
    """dx of bias_act from dy and the output y, in differentiable torch ops (the kernel's reference)."""
    a, g = reference.wide(y), reference.wide(dy)
    if gain != 1:
        a, g = a / gain, g * gain
    dx = _act_backward_from_output(g, a, act, alpha)
    if clamp is not None:
        # A clamped output passes no gradient. The comparison runs in y's dtype (a Python scalar does
        # not widen a tensor), so a float16 y clamped at 0.9 and stored as 0.89990234 counts as clamped;
        # aten.hardtanh_backward would compare in float32 and pass it.
        dx = torch.where(y.abs() < clamp, dx, 0.0)
    return dx.to(y.dtype)


@torch.library.custom_op("fastgan::bias_act", mutates_args=(), device_types=("cpu", "cuda"))
def _bias_act_op(x: torch.Tensor, b: torch.Tensor | None, act: str, alpha: float, gain: float,
                 clamp: float | None, dim: int) -> torch.Tensor:
    if use_triton(x, MIN_NUMEL_BIAS_ACT):
        return _kernels("bias_act").forward(x, b, act, alpha, gain, clamp, dim)
    return _new_tensor(reference.bias_act(x, b, act, alpha, gain, clamp, dim), x)


@_bias_act_op.register_fake
def _(x, b, act, alpha, gain, clamp, dim):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


@torch.library.custom_op("fastgan::bias_act_backward", mutates_args=(), device_types=("cpu", "cuda"))
def _bias_act_backward_op(dy: torch.Tensor, y: torch.Tensor, act: str, alpha: float, gain: float,
                          clamp: float | None) -> torch.Tensor:
    if use_triton(y, MIN_NUMEL_BIAS_ACT):
        return _kernels("bias_act").backward(dy, y, act, alpha, gain, clamp)
    return _new_tensor(_bias_act_grad_from_output(dy, y, act, alpha, gain, clamp), dy)


@_bias_act_backward_op.register_fake
def _(dy, y, act, alpha, gain, clamp):
    return torch.empty(y.shape, dtype=y.dtype, device=y.device)


def _bias_act_setup(ctx, inputs, output):
    x, b, act, alpha, gain, clamp, dim = inputs
    ctx.save_for_backward(output)
    ctx.args = (act, alpha, gain, clamp)
    ctx.dim = dim
    ctx.b_dtype = None if b is None else b.dtype


def _bias_act_backward(ctx, dy):
    (y,) = ctx.saved_tensors
    if torch.is_grad_enabled():
        dx = _bias_act_grad_from_output(dy, y, *ctx.args)
    else:
        dx = torch.ops.fastgan.bias_act_backward(dy, y, *ctx.args)
    db = None if ctx.b_dtype is None else _sum_except(dx, ctx.dim).to(ctx.b_dtype)
    return dx, db, None, None, None, None, None


_bias_act_op.register_autograd(_bias_act_backward, setup_context=_bias_act_setup)


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, act: str = "lrelu", alpha: float | None = None,
             gain: float | None = None, clamp: float | None = None, dim: int = 1) -> torch.Tensor:
    """clamp(act(x + b, alpha) * gain, -clamp, clamp): per-channel bias along `dim`, activation, gain, clamp.

    Same values as fastgan.reference.bias_act; one read of x and one write of y. The backward
    recomputes the activation's derivative from y, so gain must be positive and lrelu's alpha
    non-negative, and an output at +-clamp passes no gradient (torch.clamp's backward passes it: from y
    alone a value at the clamp cannot be told from a clamped one). clamp=None or a negative clamp means
    no clamping. A non-contiguous x is copied to a contiguous one first.
    """
    spec = reference.activation_spec(act)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"bias_act: x must be a floating-point tensor; got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim == 0:
        raise ValueError("bias_act: x must have at least one dimension")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"bias_act: dim={dim} is out of range for x of shape {tuple(x.shape)}")
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias_act: b must have shape ({x.shape[dim]},) to match x.shape[{dim}]; got {tuple(b.shape)}")
    alpha = spec.def_alpha if alpha is None else float(alpha)
    gain = spec.def_gain if gain is None else float(gain)
    if gain <= 0:
        raise ValueError(f"bias_act: gain must be positive (the backward divides the output by it); got {gain}")
    if act == "lrelu" and alpha < 0:
        raise ValueError(f"bias_act: lrelu alpha must be >= 0 (the backward reads the sign of the output); got {alpha}")
    clamp = None if clamp is None or clamp < 0 else float(clamp)
    return _bias_act_op(x, b, act, alpha, gain, clamp, dim % x.ndim)


# ---------------------------------------------------------------- batch_norm_act

def _reduce_dims(x: torch.Tensor) -> list[int]:
    return [0] + list(range(2, x.ndim))


def _stat_dtype(x: torch.Tensor) -> torch.dtype:
    return reference.wide(x[:0]).dtype


def _batch_norm_act_vjp(dy, x, weight, bias, mean, rstd, training, eps, act, alpha, needs, create_graph):
    """(dx, dweight, dbias) by differentiating the reference formula; entries not in `needs` are None.

    In training mode the statistics are recomputed from x so their dependence on x is differentiated;
    in eval mode the given mean and rstd are constants.
    """
    with torch.enable_grad():
        xf = reference.wide(x)
        shape = [1, -1] + [1] * (x.ndim - 2)
        if training:
            m = xf.mean(_reduce_dims(x), keepdim=True)
            r = torch.rsqrt(xf.var(_reduce_dims(x), unbiased=False, keepdim=True) + eps)
        else:
            m, r = mean.detach().reshape(shape), rstd.detach().reshape(shape)
        z = (xf - m) * r
        if weight is not None:
            z = z * weight.to(xf.dtype).reshape(shape)
        if bias is not None:
            z = z + bias.to(xf.dtype).reshape(shape)
        y = reference.activation_spec(act).func(z, alpha)
        wanted = [t for t, need in zip((x, weight, bias), needs) if need]
        grads = iter(torch.autograd.grad(y, wanted, dy.to(xf.dtype), create_graph=create_graph))
    return tuple(next(grads).to(t.dtype) if need else None for t, need in zip((x, weight, bias), needs))


@torch.library.custom_op("fastgan::batch_norm_act", mutates_args=(), device_types=("cpu", "cuda"))
def _batch_norm_act_op(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                       mean: torch.Tensor | None, var: torch.Tensor | None, training: bool, eps: float, act: str,
                       alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, mean, rstd, var), the statistics float32 (float64 for float64 x). Training mode ignores the given
    mean / var and returns the batch's (var biased); eval mode normalises with the given ones and returns copies."""
    fused = use_triton(x, MIN_NUMEL_BATCH_NORM_ACT)
    if training:
        if fused:
            return _kernels("batch_norm_act").forward_train(x, weight, bias, eps, act, alpha)
        xf = reference.wide(x)
        mean = xf.mean(_reduce_dims(x))
        # Two passes over the centred values: as exact as Welford's var(), which is several times slower
        # on the CPU when reducing over the non-adjacent dimensions N and H, W.
        var = (xf - mean.reshape([1, -1] + [1] * (x.ndim - 2))).square_().mean(_reduce_dims(x))
    else:
        mean, var = mean.to(_stat_dtype(x), copy=True), var.to(_stat_dtype(x), copy=True)
    rstd = torch.rsqrt(var + eps)
    if fused:
        scale = rstd if weight is None else rstd * weight.float()
        y = _kernels("bias_act").forward(x, bias, act, alpha, 1.0, None, 1, mean=mean, scale=scale)
    else:
        y = _new_tensor(reference.batch_norm_act(x, weight, bias, mean, var, False, 0.0, eps, act, alpha), x)
    return y, mean, rstd, var


@_batch_norm_act_op.register_fake
def _(x, weight, bias, mean, var, training, eps, act, alpha):
    stat = torch.empty(x.shape[1], dtype=_stat_dtype(x), device=x.device)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device), stat, torch.empty_like(stat), torch.empty_like(stat)


@torch.library.custom_op("fastgan::batch_norm_act_backward", mutates_args=(), device_types=("cpu", "cuda"))
def _batch_norm_act_backward_op(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None,
                                bias: torch.Tensor | None, mean: torch.Tensor, rstd: torch.Tensor,
                                training: bool, eps: float, act: str, alpha: float
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dweight, dbias) with dweight and dbias float32 (float64 for float64 x) per-channel sums, returned
    even without weight."""
    if use_triton(x, MIN_NUMEL_BATCH_NORM_ACT):
        return _kernels("batch_norm_act").backward(dy, x, weight, bias, mean, rstd, training, act, alpha)
    xf = reference.wide(x)
    shape = [1, -1] + [1] * (x.ndim - 2)
    xhat = (xf - mean.reshape(shape)) * rstd.reshape(shape)
    w = torch.ones_like(rstd) if weight is None else weight.to(xf.dtype)
    z = xhat * w.reshape(shape)
    if bias is not None:
        z = z + bias.to(xf.dtype).reshape(shape)
    dz = _act_backward_from_input(dy.to(xf.dtype), z, act, alpha)
    dbias, dweight = dz.sum(_reduce_dims(x)), (dz * xhat).sum(_reduce_dims(x))
    if training:
        # The batch statistics depend on x: subtract the projections onto 1 and xhat.
        n = x.numel() // x.shape[1]
        dz = dz - dbias.reshape(shape) / n - xhat * (dweight.reshape(shape) / n)
    return (dz * (w * rstd).reshape(shape)).to(x.dtype), dweight, dbias


@_batch_norm_act_backward_op.register_fake
def _(dy, x, weight, bias, mean, rstd, training, eps, act, alpha):
    stat = torch.empty(x.shape[1], dtype=_stat_dtype(x), device=x.device)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device), stat, torch.empty_like(stat)


def _batch_norm_act_setup(ctx, inputs, output):
    x, weight, bias, _, _, training, eps, act, alpha = inputs
    _, mean, rstd, var = output
    ctx.mark_non_differentiable(mean, rstd, var)
    ctx.save_for_backward(x, weight, bias, mean, rstd)
    ctx.args = (training, eps, act, alpha)


def _batch_norm_act_backward(ctx, dy, _dmean, _drstd, _dvar):
    x, weight, bias, mean, rstd = ctx.saved_tensors
    training, eps, act, alpha = ctx.args
    needs = (ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1],
             bias is not None and ctx.needs_input_grad[2])
    if torch.is_grad_enabled():
        dx, dw, db = _batch_norm_act_vjp(dy, x, weight, bias, mean, rstd, training, eps, act, alpha, needs, True)
    else:
        dx, dw, db = torch.ops.fastgan.batch_norm_act_backward(dy, x, weight, bias, mean, rstd, training, eps,
                                                               act, alpha)
        dw = dw.to(weight.dtype) if needs[1] else None
        db = db.to(bias.dtype) if needs[2] else None
    return dx, dw, db, None, None, None, None, None, None


_batch_norm_act_op.register_autograd(_batch_norm_act_backward, setup_context=_batch_norm_act_setup)


def batch_norm_act(x: torch.Tensor, weight, bias, running_mean, running_var, training: bool,
                   momentum: float = 0.1, eps: float = 1e-5, act: str = "relu", alpha: float | None = None):
    """Batch norm (per channel over N and the spatial dimensions) followed by an activation.

    Training mode normalises with the batch statistics (biased variance) and updates running_mean /
    running_var in place with the unbiased variance, as torch.nn.BatchNorm2d; eval mode folds the
    running statistics into one scale-and-shift pass. The backward recomputes the activation's
    input from x, so the output is not kept alive for it.
    """
    spec = reference.activation_spec(act)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"batch_norm_act: x must be a floating-point tensor; got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim < 2:
        raise ValueError(f"batch_norm_act: x must have a channel dimension (N, C, ...); got shape {tuple(x.shape)}")
    channels = x.shape[1]
    for what, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (channels,):
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
    y, mean, _, var = _batch_norm_act_op(x, weight, bias, running_mean, running_var, bool(training), float(eps),
                                         act, alpha)
    if training and running_mean is not None:
        # A separate in-place update keeps the op functional (autograd and compile need that); the
        # running variance is unbiased, as in torch.nn.BatchNorm.
        n = x.numel() // channels
        with torch.no_grad():
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_((var * (n / (n - 1))).to(running_var.dtype), momentum)
    return y
