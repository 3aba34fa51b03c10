"""Triton kernels for binary cross-entropy on logits: the loss and d loss / d input in one pass.

loss_i = w_i * (p_i * t_i * softplus(-x_i) + (1 - t_i) * softplus(x_i))
dloss_i / dx_i = w_i * ((1 - t_i) * sigmoid(x_i) - p_i * t_i * sigmoid(-x_i))

The gradient is written (float32, already divided by N for reduction="mean") next to the loss, so the
backward is one multiply by grad_output (kernels._common.scale). Reductions are deterministic and take
the same launch: each block writes a float32 partial sum, and the last block to finish adds them in
order. Nothing reads back to the host.
weight and pos_weight are read at offset % numel, which covers a scalar, a full tensor and any
trailing-dimension broadcast (shape equal to input.shape[-k:]) of a contiguous input.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import SUM_BLOCK, arrival_counter, last_to_arrive, logistic, release_counter, sum_in_order

BLOCK = 1024


@triton.jit
def _bce_kernel(x_ptr, t_ptr, w_ptr, pw_ptr, loss_ptr, grad_ptr, partial_ptr, counter_ptr, n, n_blocks, w_period,
                pw_period, grad_scale,
                HAS_WEIGHT: tl.constexpr, HAS_POS_WEIGHT: tl.constexpr, REDUCE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    t = tl.load(t_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    sp_pos, sp_neg, sig_pos, sig_neg = logistic(x)
    pt = t
    if HAS_POS_WEIGHT:
        pt = t * tl.load(pw_ptr + offs % pw_period, mask=mask, other=0.0).to(tl.float32)
    loss = pt * sp_neg + (1.0 - t) * sp_pos
    grad = (1.0 - t) * sig_pos - pt * sig_neg
    if HAS_WEIGHT:
        w = tl.load(w_ptr + offs % w_period, mask=mask, other=0.0).to(tl.float32)
        loss = loss * w
        grad = grad * w
    tl.store(grad_ptr + offs, grad * grad_scale, mask=mask)
    if REDUCE:
        tl.store(partial_ptr + pid, tl.sum(tl.where(mask, loss, 0.0), axis=0))
        if last_to_arrive(counter_ptr, n_blocks):
            total = sum_in_order(partial_ptr, n_blocks, SUM_BLOCK) * grad_scale
            tl.store(loss_ptr, total.to(loss_ptr.dtype.element_ty))
            release_counter(counter_ptr)
    else:
        tl.store(loss_ptr + offs, loss.to(loss_ptr.dtype.element_ty), mask=mask)


def bce_with_logits(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                    pos_weight: torch.Tensor | None, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss in input's dtype, float32 d loss / d input). Inputs are made contiguous (a copy if not)."""
    x, t = input.contiguous(), target.contiguous()
    n = x.numel()
    w = None if weight is None else weight.contiguous()
    pw = None if pos_weight is None else pos_weight.contiguous()
    reduce = reduction != "none"
    grad = torch.empty(x.shape, device=x.device, dtype=torch.float32)
    loss = torch.empty(() if reduce else x.shape, device=x.device, dtype=x.dtype)
    n_blocks = triton.cdiv(n, BLOCK)
    partials = torch.empty(n_blocks if reduce else 0, device=x.device, dtype=torch.float32)
    scale = 1.0 / n if reduction == "mean" else 1.0
    _bce_kernel[(n_blocks,)](
        x, t, w, pw, loss, grad, partials, arrival_counter(x.device), n, n_blocks,
        1 if w is None else w.numel(), 1 if pw is None else pw.numel(), scale,
        HAS_WEIGHT=w is not None, HAS_POS_WEIGHT=pw is not None, REDUCE=reduce, BLOCK=BLOCK,
    )
    return loss, grad
