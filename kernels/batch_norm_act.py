"""Triton kernels for training-mode batch norm fused with an activation, over x of shape (N, C, *).

x is addressed as it lies in memory (contiguous or channels_last) as an (outer, channels, inner) view
(kernels._common.channel_layout); a program covers tiles of BLOCK_C channels x BLOCK_I inner elements over
a group of rows, and only grid axis 0 is used, so any size launches.
Forward: a statistics pass, in which each program merges its tiles' count, mean and centred sum of squares
(Chan et al. 1979: M2 = sum M2_i + n_i (mean_i - mean)^2, so a large mean offset does not cancel) and the
last program to finish merges the groups in a fixed order and folds weight and bias into scale and shift;
then the normalise + activation pass of kernels.bias_act; then, outside the op, the running-statistics
update (update_running_stats). Backward: one reduction pass (per-group sums of dz and dz * xhat, where
dz = dy * act'(z) recomputed from x, totalled by the last program), one elementwise pass for dx.
Per-sample weight and bias (N, C), conditional batch norm's: the same statistics pass without the affine, then an
elementwise pass that scales and shifts each sample by its own row; the backward sums dz and dz * xhat per sample
and channel (the per-sample gradients), the last program totals them per channel, weighted by each sample's scale,
for the statistics' terms, and an elementwise pass writes dx. Results are deterministic.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import bias_act as _ba
from .bias_act import INT32_LIMIT, channel_of
from ._common import (activation, activation_grad_from_input, arrival_counter, as_layout_of, channel_layout, dense, last_to_arrive,
                      release_counter, tiles)

BLOCK = 1024


@triton.jit
def _merge(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Chan et al.'s merge of two (count, mean, M2) summaries (per channel)."""
    n = n_a + n_b
    delta = mean_b - mean_a
    w = tl.where(n > 0, n_b / tl.where(n > 0, n, 1.0), 0.0)
    return n, mean_a + delta * w, m2_a + m2_b + delta * delta * n_a * w


@triton.jit
def _stats_kernel(x_ptr, count_ptr, mean_ptr, m2_ptr, weight_ptr, bias_ptr, bmean_ptr, var_ptr, rstd_ptr, scale_ptr,
                  shift_ptr, counter_ptr, outer, channels, inner, rows_per_group, n_cblocks, n_programs, eps,
                  HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_I: tl.constexpr):
    pid = tl.program_id(0)
    cb = pid % n_cblocks
    group = pid // n_cblocks
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < channels
    row_stride = (tl.full([], 0, tl.int64) + channels) * inner  # int64: r * row_stride can pass 2^31
    cols = c[:, None].to(tl.int64) * inner
    n_acc = tl.zeros((BLOCK_C,), tl.float32)
    mean_acc = tl.zeros((BLOCK_C,), tl.float32)
    m2_acc = tl.zeros((BLOCK_C,), tl.float32)
    first = group * rows_per_group
    for r in range(first, tl.minimum(first + rows_per_group, outer)):
        for i0 in range(0, inner, BLOCK_I):
            i = i0 + tl.arange(0, BLOCK_I)
            mask = cmask[:, None] & (i[None, :] < inner)
            x = tl.load(x_ptr + r * row_stride + cols + i[None, :], mask=mask, other=0.0).to(tl.float32)
            n_t = tl.sum(mask.to(tl.float32), axis=1)
            mean_t = tl.sum(x, axis=1) / tl.where(n_t > 0, n_t, 1.0)
            d = tl.where(mask, x - mean_t[:, None], 0.0)
            n_acc, mean_acc, m2_acc = _merge(n_acc, mean_acc, m2_acc, n_t, mean_t, tl.sum(d * d, axis=1))
    out = group * channels + c
    tl.store(count_ptr + out, n_acc, mask=cmask)
    tl.store(mean_ptr + out, mean_acc, mask=cmask)
    tl.store(m2_ptr + out, m2_acc, mask=cmask)
    if last_to_arrive(counter_ptr, n_programs):
        n_groups = n_programs // n_cblocks
        for c0 in range(0, channels, BLOCK_C):
            cc = c0 + tl.arange(0, BLOCK_C)
            m = cc < channels
            n = tl.zeros((BLOCK_C,), tl.float32)
            mean = tl.zeros((BLOCK_C,), tl.float32)
            m2 = tl.zeros((BLOCK_C,), tl.float32)
            for g in range(0, n_groups):
                k = g * channels + cc
                n, mean, m2 = _merge(n, mean, m2, tl.load(count_ptr + k, mask=m, other=0.0, cache_modifier=".cg"),
                                     tl.load(mean_ptr + k, mask=m, other=0.0, cache_modifier=".cg"),
                                     tl.load(m2_ptr + k, mask=m, other=0.0, cache_modifier=".cg"))
            var = m2 / tl.where(n > 0, n, 1.0)
            rstd = 1.0 / tl.sqrt(var + eps)
            scale = rstd
            if HAS_WEIGHT:
                scale = scale * tl.load(weight_ptr + cc, mask=m, other=1.0).to(tl.float32)
            shift = tl.zeros((BLOCK_C,), tl.float32)
            if HAS_BIAS:
                shift = tl.load(bias_ptr + cc, mask=m, other=0.0).to(tl.float32)
            tl.store(bmean_ptr + cc, mean, mask=m)
            tl.store(var_ptr + cc, var, mask=m)
            tl.store(rstd_ptr + cc, rstd, mask=m)
            tl.store(scale_ptr + cc, scale, mask=m)
            tl.store(shift_ptr + cc, shift, mask=m)
        release_counter(counter_ptr)


@triton.jit
def _dz_xhat(x_ptr, dy_ptr, offs, mask, c, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, alpha,
             HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr):
    """dz = dy * act'(z) (zero outside the mask), xhat, and weight * rstd at offsets offs of channels c."""
    w = 1.0
    if HAS_WEIGHT:
        w = tl.load(weight_ptr + c, mask=mask, other=1.0).to(tl.float32)
    b = 0.0
    if HAS_BIAS:
        b = tl.load(bias_ptr + c, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(rstd_ptr + c, mask=mask, other=0.0)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    xhat = (x - tl.load(mean_ptr + c, mask=mask, other=0.0)) * rstd
    dz = dy * activation_grad_from_input(xhat * w + b, ACT, alpha)
    return tl.where(mask, dz, 0.0), xhat, w * rstd


@triton.jit
def _total_partial_sums(part_dz_ptr, part_dzx_ptr, dz_ptr, dzx_ptr, n_parts, channels, weight_ptr, w_stride,
                        WEIGHTED: tl.constexpr, BLOCK_C: tl.constexpr):
    """dz[c] and dzx[c]: the (n_parts, channels) partial sums totalled over their parts, each part's row times its
    weight row (one weight per sample) when WEIGHTED. Run by the last program of a reduction to arrive; the .cg
    loads read the other programs' partial sums from L2, not from this SM's L1."""
    for c0 in range(0, channels, BLOCK_C):
        cc = c0 + tl.arange(0, BLOCK_C)
        m = cc < channels
        t_dz = tl.zeros((BLOCK_C,), tl.float32)
        t_dzx = tl.zeros((BLOCK_C,), tl.float32)
        for k in range(0, n_parts):
            wk = tl.full((BLOCK_C,), 1.0, tl.float32)
            if WEIGHTED:
                wk = _sample_row(k, cc, m, weight_ptr, w_stride, 1.0)
            t_dz += wk * tl.load(part_dz_ptr + k * channels + cc, mask=m, other=0.0, cache_modifier=".cg")
            t_dzx += wk * tl.load(part_dzx_ptr + k * channels + cc, mask=m, other=0.0, cache_modifier=".cg")
        tl.store(dz_ptr + cc, t_dz, mask=m)
        tl.store(dzx_ptr + cc, t_dzx, mask=m)


@triton.jit
def _backward_reduce_kernel(x_ptr, dy_ptr, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, psdz_ptr, psdzx_ptr, sdz_ptr,
                            sdzx_ptr, counter_ptr, outer, channels, inner, rows_per_group, n_cblocks, n_programs, alpha,
                            HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                            BLOCK_C: tl.constexpr, BLOCK_I: tl.constexpr):
    pid = tl.program_id(0)
    cb = pid % n_cblocks
    group = pid // n_cblocks
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < channels
    row_stride = (tl.full([], 0, tl.int64) + channels) * inner
    cols = c[:, None].to(tl.int64) * inner
    acc_dz = tl.zeros((BLOCK_C,), tl.float32)
    acc_dzx = tl.zeros((BLOCK_C,), tl.float32)
    first = group * rows_per_group
    for r in range(first, tl.minimum(first + rows_per_group, outer)):
        for i0 in range(0, inner, BLOCK_I):
            i = i0 + tl.arange(0, BLOCK_I)
            mask = cmask[:, None] & (i[None, :] < inner)
            dz, xhat, _ = _dz_xhat(x_ptr, dy_ptr, r * row_stride + cols + i[None, :], mask, c[:, None], mean_ptr,
                                   rstd_ptr, weight_ptr, bias_ptr, alpha, HAS_WEIGHT, HAS_BIAS, ACT)
            acc_dz += tl.sum(dz, axis=1)
            acc_dzx += tl.sum(dz * xhat, axis=1)
    tl.store(psdz_ptr + group * channels + c, acc_dz, mask=cmask)
    tl.store(psdzx_ptr + group * channels + c, acc_dzx, mask=cmask)
    if last_to_arrive(counter_ptr, n_programs):
        _total_partial_sums(psdz_ptr, psdzx_ptr, sdz_ptr, sdzx_ptr, n_programs // n_cblocks, channels, weight_ptr, 0,
                            False, BLOCK_C)
        release_counter(counter_ptr)


@triton.jit
def _backward_dx_kernel(x_ptr, dy_ptr, dx_ptr, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, sdz_ptr, sdzx_ptr,
                        n, inner, channels, per_channel, alpha,
                        HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                        TRAINING: tl.constexpr, INDEX64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    c = channel_of(offs, inner, channels, INDEX64)
    dz, xhat, w_rstd = _dz_xhat(x_ptr, dy_ptr, offs, mask, c, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, alpha,
                                HAS_WEIGHT, HAS_BIAS, ACT)
    if TRAINING:
        # The batch statistics depend on x: subtract the projections onto 1 and xhat.
        dz = dz - (tl.load(sdz_ptr + c, mask=mask, other=0.0) + xhat * tl.load(sdzx_ptr + c, mask=mask, other=0.0)) \
            / per_channel
    tl.store(dx_ptr + offs, (dz * w_rstd).to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _sample_row(s, c, mask, ptr, row_stride, other):
    """ptr[s * row_stride + c] in float32: a per-sample (row_stride = C) or per-channel (row_stride = 0) row."""
    return tl.load(ptr + s * row_stride + c, mask=mask, other=other).to(tl.float32)


@triton.jit
def _affine_act_kernel(x_ptr, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, y_ptr, n, inner, channels, sample_size,
                       w_stride, b_stride, alpha, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                       INDEX64: tl.constexpr, BLOCK: tl.constexpr):
    """y = act((x - mean) * rstd * weight[s] + bias[s]); s = offs // sample_size holds in both layouts, since each
    sample's C x spatial elements are contiguous in memory whether the tensor is contiguous or channels_last."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    c = channel_of(offs, inner, channels, INDEX64)
    s = offs // sample_size
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    z = (x - tl.load(mean_ptr + c, mask=mask, other=0.0)) * tl.load(rstd_ptr + c, mask=mask, other=0.0)
    if HAS_WEIGHT:
        z = z * _sample_row(s, c, mask, weight_ptr, w_stride, 1.0)
    if HAS_BIAS:
        z = z + _sample_row(s, c, mask, bias_ptr, b_stride, 0.0)
    tl.store(y_ptr + offs, activation(z, ACT, alpha).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _sample_sums_kernel(x_ptr, dy_ptr, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, sdz_ptr, sdzx_ptr, tdz_ptr, tdzx_ptr,
                        counter_ptr, n_samples, channels, spatial, stride_c, stride_p, w_stride, b_stride, n_cblocks,
                        n_programs, alpha, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                        BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """sdz[s, c] and sdzx[s, c]: sums of dz and dz * xhat over sample s's positions (program (s, channel block));
    the last program totals them over the samples, each times the sample's scale, into tdz[c] and tdzx[c]."""
    pid = tl.program_id(0)
    cb = pid % n_cblocks
    s = pid // n_cblocks
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < channels
    w = tl.full((BLOCK_C,), 1.0, tl.float32)
    if HAS_WEIGHT:
        w = _sample_row(s, c, cmask, weight_ptr, w_stride, 1.0)
    b = tl.zeros((BLOCK_C,), tl.float32)
    if HAS_BIAS:
        b = _sample_row(s, c, cmask, bias_ptr, b_stride, 0.0)
    mean = tl.load(mean_ptr + c, mask=cmask, other=0.0)
    rstd = tl.load(rstd_ptr + c, mask=cmask, other=0.0)
    base = s.to(tl.int64) * channels * spatial + c[:, None].to(tl.int64) * stride_c
    acc_dz = tl.zeros((BLOCK_C,), tl.float32)
    acc_dzx = tl.zeros((BLOCK_C,), tl.float32)
    for p0 in range(0, spatial, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        mask = cmask[:, None] & (p[None, :] < spatial)
        offs = base + p[None, :].to(tl.int64) * stride_p
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        xhat = (x - mean[:, None]) * rstd[:, None]
        dz = tl.where(mask, dy * activation_grad_from_input(xhat * w[:, None] + b[:, None], ACT, alpha), 0.0)
        acc_dz += tl.sum(dz, axis=1)
        acc_dzx += tl.sum(dz * xhat, axis=1)
    tl.store(sdz_ptr + s * channels + c, acc_dz, mask=cmask)
    tl.store(sdzx_ptr + s * channels + c, acc_dzx, mask=cmask)
    if last_to_arrive(counter_ptr, n_programs):
        _total_partial_sums(sdz_ptr, sdzx_ptr, tdz_ptr, tdzx_ptr, n_samples, channels, weight_ptr, w_stride, HAS_WEIGHT,
                            BLOCK_C)
        release_counter(counter_ptr)


@triton.jit
def _affine_dx_kernel(x_ptr, dy_ptr, dx_ptr, mean_ptr, rstd_ptr, weight_ptr, bias_ptr, tdz_ptr, tdzx_ptr, n, inner,
                      channels, sample_size, w_stride, b_stride, per_channel, alpha,
                      HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, TRAINING: tl.constexpr,
                      INDEX64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    c = channel_of(offs, inner, channels, INDEX64)
    s = offs // sample_size
    w = 1.0
    if HAS_WEIGHT:
        w = _sample_row(s, c, mask, weight_ptr, w_stride, 1.0)
    b = 0.0
    if HAS_BIAS:
        b = _sample_row(s, c, mask, bias_ptr, b_stride, 0.0)
    rstd = tl.load(rstd_ptr + c, mask=mask, other=0.0)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    xhat = (x - tl.load(mean_ptr + c, mask=mask, other=0.0)) * rstd
    dxhat = dy * activation_grad_from_input(xhat * w + b, ACT, alpha) * w
    if TRAINING:
        # The batch statistics depend on x: subtract the projections onto 1 and xhat of d/dxhat.
        dxhat = dxhat - (tl.load(tdz_ptr + c, mask=mask, other=0.0)
                         + xhat * tl.load(tdzx_ptr + c, mask=mask, other=0.0)) / per_channel
    tl.store(dx_ptr + offs, (dxhat * rstd).to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _running_stats_kernel(mean_ptr, var_ptr, running_mean_ptr, running_var_ptr, channels, momentum, unbias,
                          BLOCK: tl.constexpr):
    for c0 in range(0, channels, BLOCK):
        c = c0 + tl.arange(0, BLOCK)
        m = c < channels
        rm = tl.load(running_mean_ptr + c, mask=m, other=0.0).to(tl.float32)
        rv = tl.load(running_var_ptr + c, mask=m, other=0.0).to(tl.float32)
        mean = tl.load(mean_ptr + c, mask=m, other=0.0)
        var = tl.load(var_ptr + c, mask=m, other=0.0) * unbias
        tl.store(running_mean_ptr + c, (rm + momentum * (mean - rm)).to(running_mean_ptr.dtype.element_ty), mask=m)
        tl.store(running_var_ptr + c, (rv + momentum * (var - rv)).to(running_var_ptr.dtype.element_ty), mask=m)


def _layout(x: torch.Tensor):
    outer, channels, inner = channel_layout(x, 1)
    block_c, block_i, n_cblocks, rows = tiles(outer, channels, inner)
    return outer, channels, inner, block_c, block_i, n_cblocks, rows, n_cblocks * triton.cdiv(outer, rows)


def forward_train(x, weight, bias, eps: float, act: int, alpha: float):
    """(y, mean, rstd, var) for training mode; y in x's layout, the statistics float32, var the biased batch
    variance; two launches. act is the activation's code (kernels._common)."""
    x = dense(x)
    mean, var, rstd, scale, shift = _batch_stats(x, weight, bias, eps)
    y = _ba.forward(x, shift, act, alpha, 1.0, None, 1, mean=mean, scale=scale)
    return y, mean, rstd, var


def forward_train_per_sample(x, weight, bias, eps: float, act: int, alpha: float):
    """forward_train with per-sample (N, C) weight and / or bias (the other may be per channel or None); two
    launches."""
    x = dense(x)
    mean, var, rstd, _, _ = _batch_stats(x, None, None, eps)
    return affine_act(x, weight, bias, mean, rstd, act, alpha), mean, rstd, var


def _row_stride(t) -> int:
    """Elements between the rows of samples s and s + 1 of a weight or bias: C per sample, 0 per channel."""
    return 0 if t is None or t.ndim == 1 else t.shape[1]


def affine_act(x, weight, bias, mean, rstd, act: int, alpha: float):
    """act((x - mean) * rstd * weight + bias) in x's layout (dense x), weight and bias each per channel, per sample
    (N, C, contiguous) or None; one launch."""
    x = dense(x)
    y = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return y
    _, channels, inner = channel_layout(x, 1)
    _affine_act_kernel[(triton.cdiv(n, BLOCK),)](
        x, mean, rstd, weight, bias, y, n, inner, channels, n // x.shape[0], _row_stride(weight), _row_stride(bias),
        alpha, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, ACT=act, INDEX64=n >= INT32_LIMIT,
        BLOCK=BLOCK,
    )
    return y


def backward_per_sample(dy, x, weight, bias, mean, rstd, training: bool, act: int, alpha: float):
    """(dx in x's layout, dweight, dbias) for per-sample weight and / or bias: dweight and dbias are float32
    per-sample sums (N, C); two launches."""
    x = dense(x)
    dy = as_layout_of(dy, x)
    n_samples, channels = x.shape[:2]
    spatial = x.numel() // max(n_samples * channels, 1)
    _, _, inner = channel_layout(x, 1)
    f32 = dict(device=x.device, dtype=torch.float32)
    sdz, sdzx = torch.empty(n_samples, channels, **f32), torch.empty(n_samples, channels, **f32)
    tdz, tdzx = torch.empty(channels, **f32), torch.empty(channels, **f32)
    dx = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return dx, sdzx, sdz
    common = dict(HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, ACT=act)
    block_c = min(triton.next_power_of_2(channels), 64)
    block_p = min(triton.next_power_of_2(spatial), max(1, 4096 // block_c))
    n_cblocks = triton.cdiv(channels, block_c)
    n_programs = n_samples * n_cblocks
    # Within a sample, channel c and position p lie at c * inner + p * (1 if contiguous else C).
    stride_p = 1 if inner > 1 else channels
    _sample_sums_kernel[(n_programs,)](
        x, dy, mean, rstd, weight, bias, sdz, sdzx, tdz, tdzx, arrival_counter(x.device), n_samples, channels,
        spatial, inner, stride_p, _row_stride(weight), _row_stride(bias), n_cblocks, n_programs, alpha,
        BLOCK_C=block_c, BLOCK_P=block_p, **common,
    )
    _affine_dx_kernel[(triton.cdiv(n, BLOCK),)](
        x, dy, dx, mean, rstd, weight, bias, tdz, tdzx, n, inner, channels, n // n_samples, _row_stride(weight),
        _row_stride(bias), float(n // channels), alpha, TRAINING=training, INDEX64=n >= INT32_LIMIT, BLOCK=BLOCK,
        **common,
    )
    return dx, sdzx, sdz


def _batch_stats(x, weight, bias, eps: float):
    """(mean, var, rstd, scale, shift) of dense x from the statistics kernel, scale and shift with weight and bias
    folded in; one launch."""
    outer, channels, inner, block_c, block_i, n_cblocks, rows, n_programs = _layout(x)
    f32 = dict(device=x.device, dtype=torch.float32)
    count, pmean, m2 = torch.empty(3, n_programs // n_cblocks, channels, **f32)
    # Separate tensors: the op returns mean, rstd and var, which may not alias one another.
    mean, var, rstd, scale, shift = (torch.empty(channels, **f32) for _ in range(5))
    _stats_kernel[(n_programs,)](
        x, count, pmean, m2, weight, bias, mean, var, rstd, scale, shift, arrival_counter(x.device), outer, channels,
        inner, rows, n_cblocks, n_programs, eps,
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, BLOCK_C=block_c, BLOCK_I=block_i,
    )
    return mean, var, rstd, scale, shift


def backward(dy, x, weight, bias, mean, rstd, training: bool, act: int, alpha: float):
    """(dx in x's layout, dweight, dbias); dweight and dbias are float32 per-channel sums; two launches."""
    x = dense(x)
    dy = as_layout_of(dy, x)
    outer, channels, inner, block_c, block_i, n_cblocks, rows, n_programs = _layout(x)
    f32 = dict(device=x.device, dtype=torch.float32)
    psdz, psdzx = torch.empty(2, n_programs // n_cblocks, channels, **f32)
    sdz, sdzx = torch.empty(channels, **f32), torch.empty(channels, **f32)
    common = dict(HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, ACT=act)
    _backward_reduce_kernel[(n_programs,)](
        x, dy, mean, rstd, weight, bias, psdz, psdzx, sdz, sdzx, arrival_counter(x.device), outer, channels, inner,
        rows, n_cblocks, n_programs, alpha, BLOCK_C=block_c, BLOCK_I=block_i, **common,
    )
    dx = torch.empty_like(x)
    n = x.numel()
    _backward_dx_kernel[(triton.cdiv(n, BLOCK),)](
        x, dy, dx, mean, rstd, weight, bias, sdz, sdzx, n, inner, channels, float(n // channels), alpha,
        TRAINING=training, INDEX64=n >= INT32_LIMIT, BLOCK=BLOCK, **common,
    )
    return dx, sdzx, sdz


def update_running_stats(mean, var, running_mean, running_var, momentum: float, n: int) -> None:
    """running = running + momentum * (batch - running), in place, with the unbiased batch variance; one launch."""
    _running_stats_kernel[(1,)](mean, var, running_mean, running_var, mean.numel(), momentum, n / (n - 1),
                                BLOCK=1024)
