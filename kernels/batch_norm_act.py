"""Triton kernels for training-mode batch norm fused with an activation, over x of shape (N, C, *).

Forward: a statistics pass (grid channels x blocks; each block writes its count, mean and centred
sum of squares), a per-channel merge (Chan et al. 1979: M2 = sum M2_i + n_i (mean_i - mean)^2, so
a large mean offset does not cancel) that also folds weight and bias into scale and shift, then the
normalise + activation pass of kernels.bias_act.
Backward: one reduction pass (per-block partial sums of dz and dz * xhat, where dz = dy * act'(z)
recomputed from x), one elementwise pass for dx. Partials are summed in a fixed order, so results
are deterministic.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import bias_act as _ba
from ._common import activation_grad_from_input

BLOCK = 2048
MERGE_BLOCK = 256


@triton.jit
def _channel_block(hw, channels, per_channel, BLOCK: tl.constexpr):
    """(channel, block index, flat offsets, mask) of this program: grid axis 0 is the channel, axis 1 the
    block of that channel's N * hw values in a contiguous (N, C, *) tensor."""
    c = tl.program_id(0)
    blk = tl.program_id(1)
    j = blk.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    offs = (j // hw) * channels * hw + c * hw + j % hw
    return c, blk, offs, j < per_channel


@triton.jit
def _stats_kernel(x_ptr, count_ptr, mean_ptr, m2_ptr, hw, channels, per_channel, n_blocks, BLOCK: tl.constexpr):
    c, blk, offs, mask = _channel_block(hw, channels, per_channel, BLOCK)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    cnt = tl.sum(mask.to(tl.float32), axis=0)
    m = tl.sum(x, axis=0) / cnt
    d = tl.where(mask, x - m, 0.0)
    out = c * n_blocks + blk
    tl.store(count_ptr + out, cnt)
    tl.store(mean_ptr + out, m)
    tl.store(m2_ptr + out, tl.sum(d * d, axis=0))


@triton.jit
def _merge_kernel(count_ptr, pmean_ptr, m2_ptr, weight_ptr, bias_ptr, mean_ptr, var_ptr, rstd_ptr, scale_ptr,
                  shift_ptr, n_blocks, per_channel, eps,
                  HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
    c = tl.program_id(0)
    base = c * n_blocks
    n = per_channel.to(tl.float32)
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_blocks, BLOCK):
        k = start + tl.arange(0, BLOCK)
        mk = k < n_blocks
        acc += tl.load(count_ptr + base + k, mask=mk, other=0.0) * tl.load(pmean_ptr + base + k, mask=mk, other=0.0)
    mean = tl.sum(acc, axis=0) / n
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_blocks, BLOCK):
        k = start + tl.arange(0, BLOCK)
        mk = k < n_blocks
        dm = tl.load(pmean_ptr + base + k, mask=mk, other=0.0) - mean
        acc += tl.load(m2_ptr + base + k, mask=mk, other=0.0) + tl.load(count_ptr + base + k, mask=mk, other=0.0) * dm * dm
    var = tl.sum(acc, axis=0) / n
    rstd = 1.0 / tl.sqrt(var + eps)
    scale = rstd
    if HAS_WEIGHT:
        scale = scale * tl.load(weight_ptr + c).to(tl.float32)
    shift = 0.0
    if HAS_BIAS:
        shift = tl.load(bias_ptr + c).to(tl.float32)
    tl.store(mean_ptr + c, mean)
    tl.store(var_ptr + c, var)
    tl.store(rstd_ptr + c, rstd)
    tl.store(scale_ptr + c, scale)
    tl.store(shift_ptr + c, shift)


@triton.jit
def _grad_terms(x_ptr, dy_ptr, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, hw, channels, per_channel, alpha,
                HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, BLOCK: tl.constexpr):
    """What both backward passes start from: this program's block of dz = dy * act'(z) (zero outside the
    mask) and xhat, with its channel, block index, offsets, mask, weight and rstd."""
    c, blk, offs, mask = _channel_block(hw, channels, per_channel, BLOCK)
    w = 1.0
    if HAS_WEIGHT:
        w = tl.load(weight_ptr + c).to(tl.float32)
    b = 0.0
    if HAS_BIAS:
        b = tl.load(bias_ptr + c).to(tl.float32)
    rstd = tl.load(rstd_ptr + c)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    xhat = (x - tl.load(mean_ptr + c)) * rstd
    dz = dy * activation_grad_from_input(xhat * w + b, ACT, alpha)
    return tl.where(mask, dz, 0.0), xhat, c, blk, offs, mask, w, rstd


@triton.jit
def _backward_reduce_kernel(x_ptr, dy_ptr, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, sdz_ptr, sdzx_ptr,
                            hw, channels, per_channel, n_blocks, alpha,
                            HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                            BLOCK: tl.constexpr):
    dz, xhat, c, blk, _, _, _, _ = _grad_terms(x_ptr, dy_ptr, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, hw, channels,
                                               per_channel, alpha, HAS_WEIGHT, HAS_BIAS, ACT, BLOCK)
    tl.store(sdz_ptr + c * n_blocks + blk, tl.sum(dz, axis=0))
    tl.store(sdzx_ptr + c * n_blocks + blk, tl.sum(dz * xhat, axis=0))


@triton.jit
def _backward_dx_kernel(x_ptr, dy_ptr, dx_ptr, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, sdz_ptr, sdzx_ptr,
                        hw, channels, per_channel, alpha,
                        HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                        TRAINING: tl.constexpr, BLOCK: tl.constexpr):
    dz, xhat, c, _, offs, mask, w, rstd = _grad_terms(x_ptr, dy_ptr, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, hw,
                                                      channels, per_channel, alpha, HAS_WEIGHT, HAS_BIAS, ACT, BLOCK)
    if TRAINING:
        # The batch statistics depend on x: subtract the projections onto 1 and xhat.
        n = per_channel.to(tl.float32)
        dz = dz - tl.load(sdz_ptr + c) / n - xhat * (tl.load(sdzx_ptr + c) / n)
    tl.store(dx_ptr + offs, (dz * (w * rstd)).to(dx_ptr.dtype.element_ty), mask=mask)


def _layout(x: torch.Tensor) -> tuple[int, int, int, int]:
    channels = x.shape[1]
    hw = x.numel() // (x.shape[0] * channels)
    per_channel = x.shape[0] * hw
    return channels, hw, per_channel, triton.cdiv(per_channel, BLOCK)


def forward_train(x, weight, bias, eps: float, act: int, alpha: float):
    """(y, mean, rstd, var) for training mode; the statistics are float32, var is the biased batch variance.
    act is the activation's code (kernels._common)."""
    x = x.contiguous()
    channels, hw, per_channel, n_blocks = _layout(x)
    f32 = dict(device=x.device, dtype=torch.float32)
    count, pmean, m2 = (torch.empty(channels * n_blocks, **f32) for _ in range(3))
    mean, var, rstd, scale, shift = (torch.empty(channels, **f32) for _ in range(5))
    _stats_kernel[(channels, n_blocks)](x, count, pmean, m2, hw, channels, per_channel, n_blocks, BLOCK=BLOCK)
    _merge_kernel[(channels,)](
        count, pmean, m2, weight, bias, mean, var, rstd, scale, shift, n_blocks, per_channel, eps,
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, BLOCK=MERGE_BLOCK,
    )
    y = _ba.forward(x, shift, act, alpha, 1.0, None, 1, mean=mean, scale=scale)
    return y, mean, rstd, var


def backward(dy, x, weight, bias, mean, rstd, training: bool, act: int, alpha: float):
    """(dx, dweight, dbias); dweight and dbias are float32 per-channel sums."""
    x, dy = x.contiguous(), dy.contiguous()
    channels, hw, per_channel, n_blocks = _layout(x)
    sdz = torch.empty(channels, n_blocks, device=x.device, dtype=torch.float32)
    sdzx = torch.empty_like(sdz)
    common = dict(HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, ACT=act, BLOCK=BLOCK)
    _backward_reduce_kernel[(channels, n_blocks)](
        x, dy, mean, rstd, weight, bias, sdz, sdzx, hw, channels, per_channel, n_blocks, alpha, **common
    )
    dbias, dweight = sdz.sum(1), sdzx.sum(1)
    dx = torch.empty_like(x)
    _backward_dx_kernel[(channels, n_blocks)](
        x, dy, dx, mean, rstd, weight, bias, dbias, dweight, hw, channels, per_channel, alpha,
        TRAINING=training, **common
    )
    return dx, dweight, dbias
