"""Triton helpers shared by the kernels: the logistic functions, the ordered sum of partials, the activations.

The activation codes are the `code` column of fastgan.fused.activations' table, which the launchers
receive from the fused layer; the jit functions branch on these names (tests check that they agree).
"""
from __future__ import annotations

import triton
import triton.language as tl

SUM_BLOCK = 1024

# A jit function may read only constexpr globals.
LINEAR = tl.constexpr(0)
RELU = tl.constexpr(1)
LRELU = tl.constexpr(2)
TANH = tl.constexpr(3)
SIGMOID = tl.constexpr(4)


# ---------------------------------------------------------------- logistic functions

@triton.jit
def _log1p(u):
    # Goldberg's log1p: exact to a few ulps for tiny u, where log(1 + u) rounds u away.
    w = 1.0 + u
    return tl.where(w == 1.0, u, tl.log(w) * u / tl.where(w == 1.0, 1.0, w - 1.0))


@triton.jit
def logistic(x):
    """(softplus(x), softplus(-x), sigmoid(x), sigmoid(-x)), finite for any finite x.

    Built on exp(-|x|) <= 1, so nothing overflows at |x| = 1e4; NaN propagates through every output.
    """
    e = tl.exp(-tl.abs(x))
    l1p = _log1p(e)
    sp_pos = tl.where(x > 0, x, 0.0) + l1p
    sp_neg = tl.where(x < 0, -x, 0.0) + l1p
    big = 1.0 / (1.0 + e)
    small = e / (1.0 + e)
    sig_pos = tl.where(x < 0, small, big)
    sig_neg = tl.where(x < 0, big, small)
    return sp_pos, sp_neg, sig_pos, sig_neg


# ---------------------------------------------------------------- reductions

@triton.jit
def sum_partials_kernel(partial_ptr, out_ptr, n_partials, scale, BLOCK: tl.constexpr):
    """out = scale * sum(partials), in a fixed order (one program)."""
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_partials, BLOCK):
        k = start + tl.arange(0, BLOCK)
        acc += tl.load(partial_ptr + k, mask=k < n_partials, other=0.0)
    tl.store(out_ptr, (tl.sum(acc, axis=0) * scale).to(out_ptr.dtype.element_ty))


# ---------------------------------------------------------------- activations

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
    if ACT == RELU:
        z = tl.where(z < 0, 0.0, z)  # written so NaN stays NaN
    elif ACT == LRELU:
        z = tl.where(z < 0, z * alpha, z)
    elif ACT == TANH:
        z = _tanh(z)
    elif ACT == SIGMOID:
        z = tl.sigmoid(z)
    return z


@triton.jit
def activation_grad_from_input(z, ACT: tl.constexpr, alpha):
    """d act / dz at the pre-activation z (what batch norm's backward recomputes from x)."""
    if ACT == LINEAR:
        g = tl.full(z.shape, 1.0, tl.float32)
    elif ACT == RELU:
        g = tl.where(z > 0, 1.0, 0.0)
    elif ACT == LRELU:
        g = tl.where(z > 0, 1.0, alpha)
    elif ACT == TANH:
        t = _tanh(z)
        g = 1.0 - t * t
    else:  # SIGMOID
        s = tl.sigmoid(z)
        g = s * (1.0 - s)
    return g


@triton.jit
def activation_grad_from_output(a, ACT: tl.constexpr, alpha):
    """d act / dz from a = act(z), for every activation of the table."""
    if ACT == LINEAR:
        g = tl.full(a.shape, 1.0, tl.float32)
    elif ACT == RELU:
        g = tl.where(a > 0, 1.0, 0.0)
    elif ACT == LRELU:
        g = tl.where(a > 0, 1.0, alpha)
    elif ACT == TANH:
        g = 1.0 - a * a
    else:  # SIGMOID
        g = a * (1.0 - a)
    return g
