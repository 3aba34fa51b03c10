"""bias_act, StyleGAN2's fused epilogue: reference and gradients, the fastgan::bias_act,
fastgan::bias_act_backward and fastgan::bias_act_double_backward ops, the public function.

The op (namespace "fastgan") has one implementation registered for CPU and CUDA tensors that runs the
Triton kernel (fastgan.kernels.bias_act) where fastgan.fused.backend.use_triton says so and the
PyTorch reference otherwise, a fake implementation for torch.compile, and an autograd formula.

Second derivatives (R1, R2, WGAN-GP through a discriminator built from these ops), as StyleGAN2-ADA's
bias_act has them: a create_graph backward runs fastgan::bias_act_backward, whose own backward is
fastgan::bias_act_double_backward, one launch per layer on the Triton path and a few torch ops on the CPU.
Only a backward of a still higher order (grad mode on inside the double backward) runs differentiable torch
ops, so autograd can differentiate it again.
"""
from __future__ import annotations

import torch

from . import activations
from .activations import activation_spec
from .arguments import empty_like_layout, new_tensor, wide
from .backend import use_triton
from .eager import ACT_IN_PLACE, runs_eager

# Smallest tensors (elements) for which the CUDA path launches a Triton kernel; below this the op
# runs the reference, whose eager launches cost about the same as one fused launch at these sizes.
# A starting point to be re-tuned with `python -m bench.kernels` on the target GPU.
MIN_NUMEL_BIAS_ACT = 1 << 16
# Activations whose derivative, in terms of the output, is not piecewise constant: their double backward has a
# gradient for y.
SECOND_ORDER_ACTS = ("tanh", "sigmoid")


# ---------------------------------------------------------------- reference and gradient

def bias_act_reference(x, b=None, act="lrelu", alpha=None, gain=None, clamp=None, dim=1) -> torch.Tensor:
    """clamp(act(x + b, alpha) * gain, -clamp, clamp), with b broadcast along dimension `dim`."""
    spec = activation_spec(act)
    alpha = spec.def_alpha if alpha is None else float(alpha)
    gain = spec.def_gain if gain is None else float(gain)
    dtype = x.dtype
    y = wide(x)
    if b is not None:
        y = y + wide(b).reshape([-1 if i == dim % x.ndim else 1 for i in range(x.ndim)])
    y = spec.func(y, alpha)
    if gain != 1:
        y = y * gain
    if clamp is not None and clamp >= 0:
        y = y.clamp(-clamp, clamp)
    return y.to(dtype)


def bias_act_grad_from_output(dy: torch.Tensor, y: torch.Tensor, act: str, alpha: float, gain: float,
                              clamp: float | None) -> torch.Tensor:
    """dx of bias_act from dy and the output y, in differentiable torch ops (the kernel's reference)."""
    a, g = wide(y), wide(dy)
    if gain != 1:
        a, g = a / gain, g * gain
    dx = activation_spec(act).grad_from_output(g, a, alpha)
    if clamp is not None:
        # A clamped output passes no gradient. The comparison runs in y's dtype (a Python scalar does
        # not widen a tensor), so a float16 y clamped at 0.9 and stored as 0.89990234 counts as clamped;
        # aten.hardtanh_backward would compare in float32 and pass it.
        dx = torch.where(y.abs() < clamp, dx, 0.0)
    return dx.to(y.dtype)


def bias_act_double_backward_reference(ddx: torch.Tensor | None, ddb: torch.Tensor | None, dy: torch.Tensor,
                                       y: torch.Tensor, act: str, alpha: float, gain: float, clamp: float | None,
                                       dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The backward of (dx, db) = bias_act's backward(dy, y), given the gradients ddx and ddb of dx and db, in
    differentiable torch ops (the kernel's reference): (d dy, d y), d y None where the activation's derivative is
    piecewise constant in y (linear, relu, lrelu). db = sum of dx over all but `dim`, so ddb reaches every
    element of its channel: t = ddx + ddb. dx = dy * gain * act'(y / gain), hence
    d dy = t * gain * act'(y / gain) (bias_act's backward applied to t), and d y = t * dy * gain * act''/gain:
    tanh' = 1 - a^2 gives -2 a, sigmoid' = a (1 - a) gives 1 - 2 a, with a = y / gain; a clamped output
    passes nothing either way."""
    t = wide(ddx) if ddx is not None else None
    if ddb is not None:
        t_b = wide(ddb).view((-1,) + (1,) * (y.ndim - 1 - dim % y.ndim))
        t = t_b.expand(y.shape) if t is None else t + t_b
    d_dy = bias_act_grad_from_output(t, y, act, alpha, gain, clamp).to(dy.dtype)
    if act not in SECOND_ORDER_ACTS:
        return d_dy, None
    a = wide(y) / gain
    d_y = t * wide(dy) * (a * -2.0 if act == "tanh" else 1.0 - 2.0 * a)
    if clamp is not None:
        d_y = torch.where(y.abs() < clamp, d_y, 0.0)
    return d_dy, d_y.to(y.dtype)


def _sum_except(t: torch.Tensor, dim: int) -> torch.Tensor:
    dims = [i for i in range(t.ndim) if i != dim % t.ndim]
    # sum(dim=[]) would reduce every dimension, so a 1-D tensor is returned as is.
    return wide(t).sum(dims) if dims else wide(t)


# ---------------------------------------------------------------- fastgan::bias_act, fastgan::bias_act_backward

@torch.library.custom_op("fastgan::bias_act", mutates_args=(), device_types=("cpu", "cuda"))
def _bias_act_op(x: torch.Tensor, b: torch.Tensor | None, act: str, alpha: float, gain: float,
                 clamp: float | None, dim: int) -> torch.Tensor:
    if use_triton(x, MIN_NUMEL_BIAS_ACT):
        from ..kernels import bias_act as kernel

        return kernel.forward(x, b, activations.code(act), alpha, gain, clamp, dim)
    return new_tensor(bias_act_reference(x, b, act, alpha, gain, clamp, dim), x)


@_bias_act_op.register_fake
def _(x, b, act, alpha, gain, clamp, dim):
    return empty_like_layout(x)


@torch.library.custom_op("fastgan::bias_act_backward", mutates_args=(), device_types=("cpu", "cuda"))
def _bias_act_backward_op(dy: torch.Tensor, y: torch.Tensor, b: torch.Tensor | None, act: str, alpha: float,
                          gain: float, clamp: float | None, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx in y's layout, db in b's dtype: an empty tensor without b); b is read for its dtype only. One launch
    on the Triton path."""
    if use_triton(y, MIN_NUMEL_BIAS_ACT):
        from ..kernels import bias_act as kernel

        return kernel.backward(dy, y, b, activations.code(act), alpha, gain, clamp, dim)
    dx = new_tensor(bias_act_grad_from_output(dy, y, act, alpha, gain, clamp), y, dy)
    db = dy.new_empty(0) if b is None else _sum_except(dx, dim).to(b.dtype)
    return dx, (db.clone() if db is dx else db)


@_bias_act_backward_op.register_fake
def _(dy, y, b, act, alpha, gain, clamp, dim):
    db = torch.empty(0 if b is None else b.shape[0], dtype=y.dtype if b is None else b.dtype, device=y.device)
    return empty_like_layout(y), db


@torch.library.custom_op("fastgan::bias_act_double_backward", mutates_args=(), device_types=("cpu", "cuda"))
def _bias_act_double_backward_op(ddx: torch.Tensor | None, ddb: torch.Tensor | None, dy: torch.Tensor,
                                  y: torch.Tensor, act: str, alpha: float, gain: float, clamp: float | None,
                                  dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(d dy in y's layout and dy's dtype, d y: an empty tensor where the activation has no second derivative);
    one launch on the Triton path."""
    if use_triton(y, MIN_NUMEL_BIAS_ACT):
        from ..kernels import bias_act as kernel

        return kernel.double_backward(ddx, ddb, dy, y, activations.code(act), alpha, gain, clamp, dim,
                                      act in SECOND_ORDER_ACTS)
    d_dy, d_y = bias_act_double_backward_reference(ddx, ddb, dy, y, act, alpha, gain, clamp, dim)
    return new_tensor(d_dy, y, dy, *(t for t in (ddx,) if t is not None)), (y.new_empty(0) if d_y is None
                                                                              else new_tensor(d_y, y, dy))


@_bias_act_double_backward_op.register_fake
def _(ddx, ddb, dy, y, act, alpha, gain, clamp, dim):
    return empty_like_layout(y, dy.dtype), (empty_like_layout(y) if act in SECOND_ORDER_ACTS else y.new_empty(0))


def _backward_setup(ctx, inputs, output):
    dy, y, b, act, alpha, gain, clamp, dim = inputs
    ctx.save_for_backward(dy, y)
    ctx.args = (act, alpha, gain, clamp, dim)
    ctx.has_b = b is not None


def _backward_backward(ctx, ddx, ddb):
    dy, y = ctx.saved_tensors
    ddb = ddb if ctx.has_b else None
    if ddx is None and ddb is None:
        return (None,) * 8
    if torch.is_grad_enabled():  # a third order: autograd differentiates the torch ops
        d_dy, d_y = bias_act_double_backward_reference(ddx, ddb, dy, y, *ctx.args)
    else:
        d_dy, d_y = torch.ops.fastgan.bias_act_double_backward(ddx, ddb, dy, y, *ctx.args)
        d_y = d_y if ctx.args[0] in SECOND_ORDER_ACTS else None
    return d_dy, d_y, None, None, None, None, None, None


_bias_act_backward_op.register_autograd(_backward_backward, setup_context=_backward_setup)


def _bias_act_setup(ctx, inputs, output):
    _, b, act, alpha, gain, clamp, dim = inputs
    ctx.save_for_backward(output, b)
    ctx.args = (act, alpha, gain, clamp)
    ctx.dim = dim


def _bias_act_backward(ctx, dy):
    y, b = ctx.saved_tensors
    # Under create_graph the op records its own backward (fastgan::bias_act_double_backward).
    dx, db = torch.ops.fastgan.bias_act_backward(dy, y, b, *ctx.args, ctx.dim)
    return dx, (None if b is None else db), None, None, None, None, None


_bias_act_op.register_autograd(_bias_act_backward, setup_context=_bias_act_setup)


# ---------------------------------------------------------------- fast eager path

def _bias_act_eager(x, b, act: str, alpha: float, gain: float, clamp: float | None, dim: int) -> torch.Tensor:
    """bias_act_reference in fewer passes: the activation runs in place on the sum it just made, and
    autograd differentiates it (to any order)."""
    y = wide(x)
    if b is not None:
        y = y + wide(b).view((-1,) + (1,) * (x.ndim - 1 - dim))
    y = ACT_IN_PLACE[act](y, alpha) if y is not x else activation_spec(act).func(y, alpha)
    if gain != 1:
        y = y * gain
    if clamp is not None:
        y = y.clamp(-clamp, clamp)
    if y is x:
        return x.clone()
    return y if y.dtype == x.dtype else y.to(x.dtype)  # (y.to(its own dtype) still costs a dispatch)


# ---------------------------------------------------------------- public function

def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, act: str = "lrelu", alpha: float | None = None,
             gain: float | None = None, clamp: float | None = None, dim: int = 1) -> torch.Tensor:
    """clamp(act(x + b, alpha) * gain, -clamp, clamp): per-channel bias along `dim`, activation, gain, clamp.

    Same values as fastgan.reference.bias_act; one read of x and one write of y. The backward
    recomputes the activation's derivative from y, so gain must be positive and lrelu's alpha
    non-negative, and an output at +-clamp passes no gradient (torch.clamp's backward passes it: from y
    alone a value at the clamp cannot be told from a clamped one). clamp=None or a negative clamp means
    no clamping. A contiguous or channels_last x is read in place and y (and dx) keep its layout; any
    other x is copied to a contiguous one first.
    """
    spec = activation_spec(act)
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
    dim = dim % x.ndim
    if runs_eager(x, MIN_NUMEL_BIAS_ACT):
        return _bias_act_eager(x, b, act, alpha, gain, clamp, dim)
    return _bias_act_op(x, b, act, alpha, gain, clamp, dim)
