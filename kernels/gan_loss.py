"""Triton kernels for the GAN losses: the D loss on real and fake logits in one launch, the G loss on fake.

A loss is a sum of batch means of one elementwise term per logit set. Each term is (kind, p0, p1):

  softplus  p0 * softplus(-x) + p1 * softplus(x)    d = p1 * sigmoid(x) - p0 * sigmoid(-x)
  hinge     relu(1 + p0 * x)                        d = p0 where 1 + p0 * x > 0
  square    (x - p0)^2 / 2                          d = x - p0
  linear    p0 * x                                  d = p0

The launch covers the blocks of the real logits, then those of the fake ones; each block writes its
partial sum already divided by its set's size, and kernels._common.sum_partials_kernel adds them in a
fixed order. The gradients (float32, divided by the set's size) are written in the same pass.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import SUM_BLOCK, logistic, sum_partials_kernel

BLOCK = 1024

# Term kinds (constexpr: a jit function may read only constexpr globals).
SOFTPLUS = tl.constexpr(0)
HINGE = tl.constexpr(1)
SQUARE = tl.constexpr(2)
LINEAR = tl.constexpr(3)
Term = tuple[tl.constexpr, float, float]  # (kind, p0, p1)


def d_terms(kind: str, label_smoothing: float) -> tuple[Term, Term]:
    """(real term, fake term) of fastgan.fused.gan_loss.d_loss_reference."""
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
        grad = tl.where(m > 0, p0, 0.0)
    elif KIND == SQUARE:
        loss = 0.5 * (x - p0) * (x - p0)
        grad = x - p0
    else:  # LINEAR
        loss = p0 * x
        grad = x * 0.0 + p0
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
def _gan_loss_kernel(real_ptr, fake_ptr, g_real_ptr, g_fake_ptr, partial_ptr, n_real, n_fake, inv_real, inv_fake, real_blocks,
                     real_p0, real_p1, fake_p0, fake_p1,
                     REAL_KIND: tl.constexpr, FAKE_KIND: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if pid < real_blocks:
        _segment(real_ptr, g_real_ptr, partial_ptr, pid, pid, n_real, inv_real, REAL_KIND, real_p0, real_p1, BLOCK)
    else:
        _segment(fake_ptr, g_fake_ptr, partial_ptr, pid, pid - real_blocks, n_fake, inv_fake, FAKE_KIND, fake_p0, fake_p1, BLOCK)


def _launch(real: torch.Tensor | None, fake: torch.Tensor, real_term, fake_term):
    f32 = dict(device=fake.device, dtype=torch.float32)
    fake = fake.contiguous()
    g_fake = torch.empty(fake.shape, **f32)
    if real is None:
        # No real blocks are launched, so these stand-ins are never read or written.
        real, g_real, real_term = fake, g_fake, fake_term
        n_real = 0
    else:
        real = real.contiguous()
        g_real = torch.empty(real.shape, **f32)
        n_real = real.numel()
    real_blocks = triton.cdiv(n_real, BLOCK)
    n_blocks = real_blocks + triton.cdiv(fake.numel(), BLOCK)
    partials = torch.empty(n_blocks, **f32)
    loss = torch.empty((), **f32)
    _gan_loss_kernel[(n_blocks,)](
        real, fake, g_real, g_fake, partials, n_real, fake.numel(), 1.0 / max(n_real, 1), 1.0 / fake.numel(), real_blocks,
        real_term[1], real_term[2], fake_term[1], fake_term[2],
        REAL_KIND=real_term[0].value, FAKE_KIND=fake_term[0].value, BLOCK=BLOCK,
    )
    sum_partials_kernel[(1,)](partials, loss, n_blocks, 1.0, BLOCK=SUM_BLOCK)
    return loss, g_real, g_fake


def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str, label_smoothing: float):
    """(float32 loss, d loss / d real, d loss / d fake), both gradients float32."""
    real_term, fake_term = d_terms(kind, label_smoothing)
    return _launch(real, fake, real_term, fake_term)


def g_loss(fake: torch.Tensor, kind: str):
    """(float32 loss, d loss / d fake in float32)."""
    loss, _, g_fake = _launch(None, fake, None, g_term(kind))
    return loss, g_fake
