"""Triton kernels for y = clamp(act((x - mean) * scale + shift, alpha) * gain, -clamp, clamp).

With mean and scale absent this is StyleGAN2's bias_act (shift is the bias); with them present it is
eval-mode batch norm plus activation, and the normalise pass of training-mode batch norm. Tensors are
addressed as they lie in memory (contiguous or channels_last: kernels._common.channel_layout), so a
channels_last x gives a channels_last y and dx. The backward writes dx and, in the same launch, the bias
gradient: per-channel partial sums over tiles of the (outer, channels, inner) view, added in a fixed order
by the last program. The double backward (the backward of the backward, under R1 and R2) is one
elementwise launch. All arithmetic is float32; loads and stores use the tensors' own dtypes.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (TANH, activation, activation_grad_from_output, arrival_counter, as_layout_of, channel_layout,
                      dense, last_to_arrive, release_counter, tiles)

BLOCK = 1024
INT32_LIMIT = 2**31


@triton.jit
def channel_of(offs, inner, channels, INDEX64: tl.constexpr):
    """The channel of memory offsets offs (int64): int32 division unless the tensor has 2^31 elements."""
    if INDEX64:
        return (offs // inner) % channels
    o = offs.to(tl.int32)
    return (o // inner) % channels


@triton.jit
def _forward_kernel(x_ptr, mean_ptr, scale_ptr, shift_ptr, y_ptr, n, inner, channels, alpha, gain, clamp,
                    HAS_MEAN: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
                    ACT: tl.constexpr, HAS_CLAMP: tl.constexpr, INDEX64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    z = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_MEAN or HAS_SCALE or HAS_SHIFT:
        c = channel_of(offs, inner, channels, INDEX64)
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
def _dx(dy_ptr, y_ptr, dx_ptr, offs, mask, alpha, gain, clamp, ACT: tl.constexpr, HAS_CLAMP: tl.constexpr):
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
    dx = dy * g
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    return tl.where(mask, dx, 0.0)


@triton.jit
def _backward_kernel(dy_ptr, y_ptr, dx_ptr, n, alpha, gain, clamp,
                     ACT: tl.constexpr, HAS_CLAMP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    _dx(dy_ptr, y_ptr, dx_ptr, offs, offs < n, alpha, gain, clamp, ACT, HAS_CLAMP)


@triton.jit
def _backward_bias_kernel(dy_ptr, y_ptr, dx_ptr, partial_ptr, db_ptr, counter_ptr, outer, channels, inner,
                          rows_per_group, n_cblocks, n_programs, alpha, gain, clamp,
                          ACT: tl.constexpr, HAS_CLAMP: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_I: tl.constexpr):
    """dx, and db = sum of dx over everything but the channel: this program's tiles of BLOCK_C channels,
    over rows_per_group rows of the (outer, channels, inner) view; partials[group, channel]."""
    pid = tl.program_id(0)
    cb = pid % n_cblocks
    group = pid // n_cblocks
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < channels
    row_stride = (tl.full([], 0, tl.int64) + channels) * inner  # int64: r * row_stride can pass 2^31
    cols = c[:, None].to(tl.int64) * inner
    acc = tl.zeros((BLOCK_C,), tl.float32)
    first = group * rows_per_group
    for r in range(first, tl.minimum(first + rows_per_group, outer)):
        for i0 in range(0, inner, BLOCK_I):
            i = i0 + tl.arange(0, BLOCK_I)
            mask = cmask[:, None] & (i[None, :] < inner)
            dx = _dx(dy_ptr, y_ptr, dx_ptr, r * row_stride + cols + i[None, :], mask, alpha, gain, clamp, ACT, HAS_CLAMP)
            acc += tl.sum(dx, axis=1)
    tl.store(partial_ptr + group * channels + c, acc, mask=cmask)
    if last_to_arrive(counter_ptr, n_programs):
        n_groups = n_programs // n_cblocks
        for c0 in range(0, channels, BLOCK_C):
            cc = c0 + tl.arange(0, BLOCK_C)
            total = tl.zeros((BLOCK_C,), tl.float32)
            for g in range(0, n_groups):
                total += tl.load(partial_ptr + g * channels + cc, mask=cc < channels, other=0.0, cache_modifier=".cg")
            tl.store(db_ptr + cc, total.to(db_ptr.dtype.element_ty), mask=cc < channels)
        release_counter(counter_ptr)


@triton.jit
def _double_backward_kernel(ddx_ptr, ddb_ptr, dy_ptr, y_ptr, d_dy_ptr, d_y_ptr, n, inner, channels, alpha, gain, clamp,
                            HAS_DDX: tl.constexpr, HAS_DDB: tl.constexpr, ACT: tl.constexpr, HAS_CLAMP: tl.constexpr,
                            SECOND: tl.constexpr, INDEX64: tl.constexpr, BLOCK: tl.constexpr):
    """The backward of the backward (fastgan.fused.bias_act.bias_act_double_backward_reference): with
    t = ddx + ddb[channel], d dy = t * gain * act'(y / gain) and, for tanh and sigmoid (SECOND), the gradient of
    y, t * dy * (-2 a or 1 - 2 a) with a = y / gain; one read of each input, one write of each output."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    t = tl.zeros((BLOCK,), tl.float32)
    if HAS_DDX:
        t += tl.load(ddx_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_DDB:
        t += tl.load(ddb_ptr + channel_of(offs, inner, channels, INDEX64), mask=mask, other=0.0).to(tl.float32)
    a = y / gain
    g = activation_grad_from_output(a, ACT, alpha) * gain
    if HAS_CLAMP:
        # As in _dx: the clamp rounded to y's storage dtype decides what was clamped.
        limit = tl.full((), clamp, tl.float32).to(y_ptr.dtype.element_ty).to(tl.float32)
        keep = tl.abs(y) < limit
        g = tl.where(keep, g, 0.0)
    tl.store(d_dy_ptr + offs, (t * g).to(d_dy_ptr.dtype.element_ty), mask=mask)
    if SECOND:
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if ACT == TANH:
            s = -2.0 * a
        else:  # SIGMOID
            s = 1.0 - 2.0 * a
        d_y = t * dy * s
        if HAS_CLAMP:
            d_y = tl.where(keep, d_y, 0.0)
        tl.store(d_y_ptr + offs, d_y.to(d_y_ptr.dtype.element_ty), mask=mask)


def forward(x: torch.Tensor, shift: torch.Tensor | None, act: int, alpha: float, gain: float,
            clamp: float | None, dim: int, mean: torch.Tensor | None = None,
            scale: torch.Tensor | None = None) -> torch.Tensor:
    """One read of x and one write of y in x's layout (a contiguous copy first if x is neither contiguous nor
    channels_last). act is the activation's code (kernels._common)."""
    x = dense(x)
    y = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return y
    _, channels, inner = channel_layout(x, dim)
    _forward_kernel[(triton.cdiv(n, BLOCK),)](
        x, mean, scale, shift, y, n, inner, channels, alpha, gain, 0.0 if clamp is None else clamp,
        HAS_MEAN=mean is not None, HAS_SCALE=scale is not None, HAS_SHIFT=shift is not None,
        ACT=act, HAS_CLAMP=clamp is not None, INDEX64=n >= INT32_LIMIT, BLOCK=BLOCK,
    )
    return y


def backward(dy: torch.Tensor, y: torch.Tensor, b: torch.Tensor | None, act: int, alpha: float, gain: float,
             clamp: float | None, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx in y's layout, db in b's dtype, or an empty tensor without b), from the upstream gradient and the
    saved output (every activation here has a derivative in terms of its output); one launch."""
    dy = as_layout_of(dy, y)
    dx = torch.empty_like(y)
    n = y.numel()
    db = torch.empty(0 if b is None else b.shape[0], device=y.device, dtype=y.dtype if b is None else b.dtype)
    if n == 0:
        return dx, db.zero_()
    common = dict(ACT=act, HAS_CLAMP=clamp is not None)
    clamp = 0.0 if clamp is None else clamp
    if b is None:
        _backward_kernel[(triton.cdiv(n, BLOCK),)](dy, y, dx, n, alpha, gain, clamp, BLOCK=BLOCK, **common)
        return dx, db
    outer, channels, inner = channel_layout(y, dim)
    block_c, block_i, n_cblocks, rows = tiles(outer, channels, inner)
    n_programs = n_cblocks * triton.cdiv(outer, rows)
    partials = torch.empty(n_programs // n_cblocks, channels, device=y.device, dtype=torch.float32)
    _backward_bias_kernel[(n_programs,)](
        dy, y, dx, partials, db, arrival_counter(y.device), outer, channels, inner, rows, n_cblocks, n_programs,
        alpha, gain, clamp, BLOCK_C=block_c, BLOCK_I=block_i, **common,
    )
    return dx, db


def double_backward(ddx: torch.Tensor | None, ddb: torch.Tensor | None, dy: torch.Tensor, y: torch.Tensor, act: int,
                    alpha: float, gain: float, clamp: float | None, dim: int,
                    second: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(d dy in y's layout and dy's dtype, d y in y's layout, or an empty tensor unless `second`: tanh and
    sigmoid); one launch."""
    dy = as_layout_of(dy, y)
    ddx = None if ddx is None else as_layout_of(ddx, y)
    d_dy = torch.empty_like(y, dtype=dy.dtype)
    d_y = torch.empty_like(y) if second else y.new_empty(0)
    n = y.numel()
    if n == 0:
        return d_dy, d_y
    _, channels, inner = channel_layout(y, dim)
    _double_backward_kernel[(triton.cdiv(n, BLOCK),)](
        ddx, ddb, dy, y, d_dy, d_y, n, inner, channels, alpha, gain, 0.0 if clamp is None else clamp,
        HAS_DDX=ddx is not None, HAS_DDB=ddb is not None, ACT=act, HAS_CLAMP=clamp is not None, SECOND=second,
        INDEX64=n >= INT32_LIMIT, BLOCK=BLOCK,
    )
    return d_dy, d_y
