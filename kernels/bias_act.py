"""Triton kernels for y = clamp(act((x - mean) * scale + shift, alpha) * gain, -clamp, clamp).

With mean and scale absent this is StyleGAN2's bias_act (shift is the bias); with them present it is
eval-mode batch norm plus activation, and the normalise pass of training-mode batch norm. The
channel of a flat offset is (offset // inner) % channels for a contiguous tensor.
All arithmetic is float32; loads and stores use the tensors' own dtypes.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# Activation codes shared with kernels.batch_norm_act; the names are those of fastgan.reference.ACTIVATIONS.
ACT_CODES = {"linear": 0, "relu": 1, "lrelu": 2, "tanh": 3, "sigmoid": 4}

BLOCK = 1024


@triton.jit
def _tanh(z):
    # tanh(|z|) = expm1(2|z|) / (expm1(2|z|) + 2), with Kahan's expm1 so small |z| keep full relative
    # precision (1 - exp(-2|z|) would cancel); |z| > 15 already rounds to 1 in float32.
    a = tl.minimum(tl.abs(z), 15.0) * 2.0
    u = tl.exp(a)
    em = tl.where(u == 1.0, a, (u - 1.0) * a / tl.where(u == 1.0, 1.0, tl.log(u)))
    t = em / (em + 2.0)
    return tl.where(z < 0, -t, t)


@triton.jit
def activation(z, ACT: tl.constexpr, alpha):
    if ACT == 1:
        z = tl.where(z < 0, 0.0, z)  # written so NaN stays NaN
    elif ACT == 2:
        z = tl.where(z < 0, z * alpha, z)
    elif ACT == 3:
        z = _tanh(z)
    elif ACT == 4:
        z = tl.sigmoid(z)
    return z


@triton.jit
def activation_grad_from_input(z, ACT: tl.constexpr, alpha):
    """d act / dz at the pre-activation z (what batch norm's backward recomputes from x)."""
    if ACT == 0:
        g = tl.full(z.shape, 1.0, tl.float32)
    elif ACT == 1:
        g = tl.where(z > 0, 1.0, 0.0)
    elif ACT == 2:
        g = tl.where(z > 0, 1.0, alpha)
    elif ACT == 3:
        t = _tanh(z)
        g = 1.0 - t * t
    else:
        s = tl.sigmoid(z)
        g = s * (1.0 - s)
    return g


@triton.jit
def activation_grad_from_output(a, ACT: tl.constexpr, alpha):
    """d act / dz from a = act(z), every activation of fastgan.reference.ACTIVATIONS."""
    if ACT == 0:
        g = tl.full(a.shape, 1.0, tl.float32)
    elif ACT == 1:
        g = tl.where(a > 0, 1.0, 0.0)
    elif ACT == 2:
        g = tl.where(a > 0, 1.0, alpha)
    elif ACT == 3:
        g = 1.0 - a * a
    else:
        g = a * (1.0 - a)
    return g


@triton.jit
def _forward_kernel(x_ptr, mean_ptr, scale_ptr, shift_ptr, y_ptr, n, inner, channels, alpha, gain, clamp,
                    HAS_MEAN: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
                    ACT: tl.constexpr, HAS_CLAMP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    c = (offs // inner) % channels
    z = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    # (x - mean) * scale rather than x * scale - mean * scale: with a large mean offset the
    # folded form cancels catastrophically.
    if HAS_MEAN:
        z = z - tl.load(mean_ptr + c, mask=mask, other=0.0).to(tl.float32)
    if HAS_SCALE:
        z = z * tl.load(scale_ptr + c, mask=mask, other=1.0).to(tl.float32)
    if HAS_SHIFT:
        z = z + tl.load(shift_ptr + c, mask=mask, other=0.0).to(tl.float32)
    y = activation(z, ACT, alpha) * gain
    if HAS_CLAMP:
        y = tl.where(y > clamp, clamp, tl.where(y < -clamp, -clamp, y))
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(dy_ptr, y_ptr, dx_ptr, n, alpha, gain, clamp,
                     ACT: tl.constexpr, HAS_CLAMP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = activation_grad_from_output(y / gain, ACT, alpha) * gain
    if HAS_CLAMP:
        # A clamped output passes no gradient; one exactly at the clamp cannot be told from a clamped one,
        # so it passes none either (torch.clamp's backward passes it). y was clamped in float32 and then
        # rounded to its storage dtype, so compare with the clamp rounded the same way: a float16 output
        # clamped at 0.9 is stored as 0.89990234, which is below float32 0.9.
        limit = tl.full((), clamp, tl.float32).to(y_ptr.dtype.element_ty).to(tl.float32)
        g = tl.where(tl.abs(y) < limit, g, 0.0)
    tl.store(dx_ptr + offs, (dy * g).to(dx_ptr.dtype.element_ty), mask=mask)


def channel_layout(x: torch.Tensor, dim: int) -> tuple[int, int]:
    """(inner, channels) such that the channel of flat offset o in contiguous x is (o // inner) % channels."""
    dim = dim % x.ndim if x.ndim else 0
    channels = x.shape[dim] if x.ndim else 1
    inner = 1
    for s in x.shape[dim + 1:]:
        inner *= s
    return inner, channels


def forward(x: torch.Tensor, shift: torch.Tensor | None, act: str, alpha: float, gain: float,
            clamp: float | None, dim: int, mean: torch.Tensor | None = None,
            scale: torch.Tensor | None = None) -> torch.Tensor:
    """One read of x and one write of y; x is made contiguous first (a copy if it was not)."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return y
    inner, channels = channel_layout(x, dim)
    _forward_kernel[(triton.cdiv(n, BLOCK),)](
        x, mean, scale, shift, y, n, inner, channels, alpha, gain, 0.0 if clamp is None else clamp,
        HAS_MEAN=mean is not None, HAS_SCALE=scale is not None, HAS_SHIFT=shift is not None,
        ACT=ACT_CODES[act], HAS_CLAMP=clamp is not None, BLOCK=BLOCK,
    )
    return y


def backward(dy: torch.Tensor, y: torch.Tensor, act: str, alpha: float, gain: float,
             clamp: float | None) -> torch.Tensor:
    """dx from the upstream gradient and the saved output (every activation here has a derivative in terms of its output)."""
    dy, y = dy.contiguous(), y.contiguous()
    dx = torch.empty_like(y)
    n = y.numel()
    if n == 0:
        return dx
    _backward_kernel[(triton.cdiv(n, BLOCK),)](
        dy, y, dx, n, alpha, gain, 0.0 if clamp is None else clamp,
        ACT=ACT_CODES[act], HAS_CLAMP=clamp is not None, BLOCK=BLOCK,
    )
    return dx
