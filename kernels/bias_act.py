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

from ._common import activation, activation_grad_from_output

BLOCK = 1024


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


def forward(x: torch.Tensor, shift: torch.Tensor | None, act: int, alpha: float, gain: float,
            clamp: float | None, dim: int, mean: torch.Tensor | None = None,
            scale: torch.Tensor | None = None) -> torch.Tensor:
    """One read of x and one write of y; x is made contiguous first (a copy if it was not). act is the
    activation's code (kernels._common)."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return y
    inner, channels = channel_layout(x, dim)
    _forward_kernel[(triton.cdiv(n, BLOCK),)](
        x, mean, scale, shift, y, n, inner, channels, alpha, gain, 0.0 if clamp is None else clamp,
        HAS_MEAN=mean is not None, HAS_SCALE=scale is not None, HAS_SHIFT=shift is not None,
        ACT=act, HAS_CLAMP=clamp is not None, BLOCK=BLOCK,
    )
    return y


def backward(dy: torch.Tensor, y: torch.Tensor, act: int, alpha: float, gain: float,
             clamp: float | None) -> torch.Tensor:
    """dx from the upstream gradient and the saved output (every activation here has a derivative in terms of its output)."""
    dy, y = dy.contiguous(), y.contiguous()
    dx = torch.empty_like(y)
    n = y.numel()
    if n == 0:
        return dx
    _backward_kernel[(triton.cdiv(n, BLOCK),)](
        dy, y, dx, n, alpha, gain, 0.0 if clamp is None else clamp,
        ACT=act, HAS_CLAMP=clamp is not None, BLOCK=BLOCK,
    )
    return dx
