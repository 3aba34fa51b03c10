"""Triton helpers shared by the kernels: the logistic functions, the last-program reduction, the gradient
scale, memory layouts and tiles, the activations.

The activation codes are the `code` column of fastgan.fused.activations' table, which the launchers
receive from the fused layer; the jit functions branch on these names (tests check that they agree).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

SUM_BLOCK = tl.constexpr(1024)
SCALE_BLOCK = 1024
# Programs a reducing kernel aims for: enough to fill a large GPU a few times over, few enough that the
# last program's ordered sum over their partials stays short.
REDUCE_PROGRAMS = 512
TILE = 1024  # elements of one (channels x inner) tile

# A jit function may read only constexpr globals.
LINEAR = tl.constexpr(0)
RELU = tl.constexpr(1)
LRELU = tl.constexpr(2)
TANH = tl.constexpr(3)
SIGMOID = tl.constexpr(4)


# ---------------------------------------------------------------- the interpreter's scalars

def _interpreter_scalars_index() -> None:
    """Lets loop bounds that are kernel arguments (`range(0, n, BLOCK)`) run under TRITON_INTERPRET=1 with
    NumPy >= 2.4.

    The interpreter holds a scalar as a one-element array and converts it to an int with int(array), which
    NumPy 2.4 turned from a deprecation into a TypeError ("only 0-dimensional arrays can be converted to
    Python scalars"). Triton's later interpreter squeezes the array first (triton-lang/triton#9171); on one
    that does not (triton 3.6), the same conversion is added to the per-launch patches. Checked by behaviour,
    not version: nothing changes where the interpreter's own conversion works, or where its internals differ.
    """
    from triton.runtime import interpreter

    patch_tensor = getattr(interpreter, "_patch_lang_tensor", None)
    scope_type = getattr(interpreter, "_LangPatchScope", None)
    builder = getattr(interpreter, "interpreter_builder", None)
    if patch_tensor is None or scope_type is None or builder is None:
        return
    scope = scope_type()
    patch_tensor(tl.tensor, scope)
    try:
        range(tl.tensor(builder.get_int32(3), tl.int32))  # a loop bound takes the scalar through __index__
        return
    except TypeError:
        pass
    finally:
        scope.restore()

    def patch_tensor_with_scalar_index(tensor, scope):
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))
    interpreter._patch_lang_tensor = patch_tensor_with_scalar_index


if triton.knobs.runtime.interpret:
    _interpreter_scalars_index()


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


# ---------------------------------------------------------------- reductions in one launch
# A reducing kernel stores one partial per program, then counts itself in with an atomic add; the program
# that arrives last (it sees every other program's stores, acq_rel) adds the partials in a fixed order and
# resets the counter. One launch, deterministic results, no zero-filled buffer per call.

_COUNTERS: dict[tuple, torch.Tensor] = {}


def arrival_counter(device: torch.device) -> torch.Tensor:
    """The int32 arrival counter of `device` and its current stream; every kernel leaves it at zero."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    counter = _COUNTERS.get((device, stream))
    if counter is None:
        counter = _COUNTERS[device, stream] = torch.zeros(1, dtype=torch.int32, device=device)
    return counter


@triton.jit
def last_to_arrive(counter_ptr, n_programs):
    """True in the one program that arrives last (call after storing this program's partials)."""
    arrived = tl.atomic_add(counter_ptr, 1, sem="acq_rel")
    return arrived == n_programs - 1


@triton.jit
def release_counter(counter_ptr):
    tl.atomic_xchg(counter_ptr, 0)


@triton.jit
def sum_in_order(ptr, n, BLOCK: tl.constexpr):
    """The float32 sum of ptr[0:n] in a fixed order (one program)."""
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n, BLOCK):
        k = start + tl.arange(0, BLOCK)
        acc += tl.load(ptr + k, mask=k < n, other=0.0, cache_modifier=".cg")
    return tl.sum(acc, axis=0)


# ---------------------------------------------------------------- the gradient scale of a loss backward

@triton.jit
def _scale_kernel(g_ptr, s_ptr, out_ptr, n, S_FULL: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0)
    if S_FULL:
        s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        s = tl.load(s_ptr).to(tl.float32)
    tl.store(out_ptr + offs, (g * s).to(out_ptr.dtype.element_ty), mask=mask)


def scale(grad: torch.Tensor, s: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(grad * s) in dtype, one launch: grad is a float32 gradient stored by a loss's forward, s the upstream
    gradient (a scalar, or one value per element of grad). Nothing is read back to the host."""
    s = s.contiguous()
    out = torch.empty(grad.shape, dtype=dtype, device=grad.device)
    n = grad.numel()
    if n:
        _scale_kernel[(triton.cdiv(n, SCALE_BLOCK),)](grad, s, out, n, S_FULL=s.numel() != 1, BLOCK=SCALE_BLOCK)
    return out


# ---------------------------------------------------------------- memory layouts and tiles

def is_dense(x: torch.Tensor) -> bool:
    """Whether the kernels can address x as it lies in memory (contiguous or channels_last)."""
    if x.is_contiguous():
        return True
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.ndim)
    return fmt is not None and x.is_contiguous(memory_format=fmt)


def dense(x: torch.Tensor) -> torch.Tensor:
    """x, or a contiguous copy when it is not dense; outputs made with torch.empty_like keep its layout."""
    return x if is_dense(x) else x.contiguous()


def as_layout_of(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t (same shape as dense x) with x's strides: a copy only when they differ."""
    return t if t.stride() == x.stride() else torch.empty_like(x, dtype=t.dtype).copy_(t)


def channel_layout(x: torch.Tensor, dim: int) -> tuple[int, int, int]:
    """(outer, channels, inner) of dense x in memory order: the element at memory offset
    (r * channels + c) * inner + i has index c along dim."""
    channels = x.shape[dim]
    inner = x.stride(dim) if channels > 1 else 1
    return x.numel() // max(channels * inner, 1), channels, inner


def tiles(outer: int, channels: int, inner: int) -> tuple[int, int, int, int]:
    """(BLOCK_C, BLOCK_I, n_cblocks, rows_per_group) of a reducing tile kernel: a program covers BLOCK_C
    channels x BLOCK_I inner elements per step, over rows_per_group rows of the (outer, channels, inner) view."""
    block_i = min(triton.next_power_of_2(inner), 256)
    block_c = min(triton.next_power_of_2(channels), max(1, TILE // block_i))
    n_cblocks = triton.cdiv(channels, block_c)
    groups = max(1, min(outer, REDUCE_PROGRAMS // n_cblocks))
    return block_c, block_i, n_cblocks, triton.cdiv(outer, groups)


# ---------------------------------------------------------------- activations

@triton.jit
def _tanh(z):
    # tanh(|z|) = expm1(2|z|) / (expm1(2|z|) + 2), with Kahan's expm1 so small |z| keep full relative
    # precision (1 - exp(-2|z|) would cancel); |z| > 15 already rounds to 1 in float32.
    # where rather than tl.minimum, whose min-num semantics would turn NaN into 15 (and tanh into 1).
    az = tl.abs(z)
    a = tl.where(az > 15.0, 15.0, az) * 2.0
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
        g = tl.where(z <= 0, 0.0, 1.0)  # as aten.threshold_backward: NaN passes the gradient
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
        g = tl.where(a <= 0, 0.0, 1.0)  # as aten.threshold_backward: NaN passes the gradient
    elif ACT == LRELU:
        g = tl.where(a > 0, 1.0, alpha)
    elif ACT == TANH:
        g = 1.0 - a * a
    else:  # SIGMOID
        g = a * (1.0 - a)
    return g
