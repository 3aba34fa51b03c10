"""Triton kernels for the GAN losses: the D loss on real and fake logits in one launch, the G loss on fake.

A loss is a sum of batch means of one elementwise term per logit set. Each term is (kind, p0, p1):

  softplus  p0 * softplus(-x) + p1 * softplus(x)    d = p1 * sigmoid(x) - p0 * sigmoid(-x)
  hinge     relu(1 + p0 * x)                        d = p0 where 1 + p0 * x > 0
  square    (x - p0)^2 / 2                          d = x - p0
  linear    p0 * x                                  d = p0

RpGAN's loss is not a sum over the two sets but a mean over pairs, softplus(fake_i - real_i); its launch
covers the pairs once, each block reading both logits and writing both gradients (-sigmoid, +sigmoid).

One launch covers the blocks of the real logits, then those of the fake ones; each block writes its
partial sum already divided by its set's size, and the last block to finish adds them in a fixed order
(kernels._common.last_to_arrive). The gradients (float32, divided by the set's size) are written in the
same pass, real then fake in one buffer, so the backward scales both in one launch.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import SUM_BLOCK, arrival_counter, last_to_arrive, logistic, release_counter, sum_in_order

BLOCK = 1024

# Term kinds (constexpr: a jit function may read only constexpr globals).
SOFTPLUS = tl.constexpr(0)
HINGE = tl.constexpr(1)
SQUARE = tl.constexpr(2)
LINEAR = tl.constexpr(3)
Term = tuple[tl.constexpr, float, float]  # (kind, p0, p1)


def d_terms(kind: str, label_smoothing: float) -> tuple[Term, Term]:
    """(real term, fake term) of fastgan.fused.gan_loss.d_loss_reference (not rpgan: _pair_kernel)."""
    s = label_smoothing
    return {
        "bce": ((SOFTPLUS, 1.0 - s, s), (SOFTPLUS, 0.0, 1.0)),
        "hinge": ((HINGE, -1.0, 0.0), (HINGE, 1.0, 0.0)),
        "lsgan": ((SQUARE, 1.0, 0.0), (SQUARE, 0.0, 0.0)),
        "wgan": ((LINEAR, -1.0, 0.0), (LINEAR, 1.0, 0.0)),
    }[kind]


def g_term(kind: str) -> Term:
    """The term of fastgan.fused.gan_loss.g_loss_reference."""
    return {
        "ns": (SOFTPLUS, 1.0, 0.0),
        "saturating": (SOFTPLUS, 0.0, -1.0),  # log(1 - sigmoid(x)) = -softplus(x)
        "hinge": (LINEAR, -1.0, 0.0),
        "wgan": (LINEAR, -1.0, 0.0),
        "lsgan": (SQUARE, 1.0, 0.0),
    }[kind]


@triton.jit
def _term(x, KIND: tl.constexpr, p0, p1):
    if KIND == SOFTPLUS:
        sp_pos, sp_neg, sig_pos, sig_neg = logistic(x)
        loss = p0 * sp_neg + p1 * sp_pos
        grad = p1 * sig_pos - p0 * sig_neg
    elif KIND == HINGE:
        m = 1.0 + p0 * x
        loss = tl.where(m < 0, 0.0, m)  # written so NaN stays NaN
        grad = tl.where(m > 0, p0, tl.where(m <= 0, 0.0, m))
    elif KIND == SQUARE:
        loss = 0.5 * (x - p0) * (x - p0)
        grad = x - p0
    else:  # LINEAR
        loss = p0 * x
        grad = tl.where(x != x, x, p0)  # NaN in, NaN out
    return loss, grad


@triton.jit
def _segment(x_ptr, g_ptr, partial_ptr, out_idx, blk, n, inv_n, KIND: tl.constexpr, p0, p1, BLOCK: tl.constexpr):
    offs = blk.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    loss, grad = _term(x, KIND, p0, p1)
    tl.store(g_ptr + offs, grad * inv_n, mask=mask)
    tl.store(partial_ptr + out_idx, tl.sum(tl.where(mask, loss, 0.0), axis=0) * inv_n)


@triton.jit
def _pair_kernel(real_ptr, fake_ptr, g_ptr, partial_ptr, loss_ptr, counter_ptr, n, inv_n, n_blocks,
                 BLOCK: tl.constexpr):
    """RpGAN: mean softplus(fake - real) over pairs; g holds d/d real (n values), then d/d fake."""
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    r = tl.load(real_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    f = tl.load(fake_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    sp_pos, _, sig_pos, _ = logistic(f - r)
    g = sig_pos * inv_n
    tl.store(g_ptr + offs, -g, mask=mask)
    tl.store(g_ptr + n + offs, g, mask=mask)
    tl.store(partial_ptr + pid, tl.sum(tl.where(mask, sp_pos, 0.0), axis=0) * inv_n)
    if last_to_arrive(counter_ptr, n_blocks):
        tl.store(loss_ptr, sum_in_order(partial_ptr, n_blocks, SUM_BLOCK))
        release_counter(counter_ptr)


@triton.jit
def _gan_loss_kernel(real_ptr, fake_ptr, g_ptr, partial_ptr, loss_ptr, counter_ptr, n_real, n_fake, inv_real, inv_fake,
                     real_blocks, n_blocks, real_p0, real_p1, fake_p0, fake_p1,
                     REAL_KIND: tl.constexpr, FAKE_KIND: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if pid < real_blocks:
        _segment(real_ptr, g_ptr, partial_ptr, pid, pid, n_real, inv_real, REAL_KIND, real_p0, real_p1, BLOCK)
    else:
        _segment(fake_ptr, g_ptr + n_real, partial_ptr, pid, pid - real_blocks, n_fake, inv_fake, FAKE_KIND,
                 fake_p0, fake_p1, BLOCK)
    if last_to_arrive(counter_ptr, n_blocks):
        tl.store(loss_ptr, sum_in_order(partial_ptr, n_blocks, SUM_BLOCK))
        release_counter(counter_ptr)


def _launch(real: torch.Tensor | None, fake: torch.Tensor, real_term, fake_term):
    f32 = dict(device=fake.device, dtype=torch.float32)
    fake = fake.contiguous()
    if real is None:
        # No real blocks are launched, so this stand-in is never read.
        real, real_term, n_real = fake, fake_term, 0
    else:
        real = real.contiguous()
        n_real = real.numel()
    grad = torch.empty(n_real + fake.numel(), **f32)
    real_blocks = triton.cdiv(n_real, BLOCK)
    n_blocks = real_blocks + triton.cdiv(fake.numel(), BLOCK)
    partials = torch.empty(n_blocks, **f32)
    loss = torch.empty((), **f32)
    _gan_loss_kernel[(n_blocks,)](
        real, fake, grad, partials, loss, arrival_counter(fake.device), n_real, fake.numel(),
        1.0 / max(n_real, 1), 1.0 / fake.numel(), real_blocks, n_blocks,
        real_term[1], real_term[2], fake_term[1], fake_term[2],
        REAL_KIND=real_term[0].value, FAKE_KIND=fake_term[0].value, BLOCK=BLOCK,
    )
    return loss, grad


def _launch_pairs(real: torch.Tensor, fake: torch.Tensor):
    f32 = dict(device=fake.device, dtype=torch.float32)
    real, fake = real.contiguous(), fake.contiguous()
    n = real.numel()
    grad = torch.empty(2 * n, **f32)
    n_blocks = max(triton.cdiv(n, BLOCK), 1)  # an empty batch still writes its (NaN) mean
    partials = torch.empty(n_blocks, **f32)
    loss = torch.empty((), **f32)
    _pair_kernel[(n_blocks,)](real, fake, grad, partials, loss, arrival_counter(fake.device), n,
                              1.0 / n if n else float("nan"), n_blocks, BLOCK=BLOCK)
    return loss, grad


def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str, label_smoothing: float):
    """(float32 loss, float32 gradient): d loss / d real flattened, then d loss / d fake, in one buffer."""
    if kind == "rpgan":
        return _launch_pairs(real, fake)
    real_term, fake_term = d_terms(kind, label_smoothing)
    return _launch(real, fake, real_term, fake_term)


def g_loss(fake: torch.Tensor, kind: str):
    """(float32 loss, d loss / d fake in float32, flattened)."""
    return _launch(None, fake, None, g_term(kind))
