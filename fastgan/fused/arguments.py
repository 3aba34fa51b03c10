"""What every fused op does with its arguments: the checks that name a bad one, the dtype they are
computed in, and the rule that an op's output is never one of them."""
from __future__ import annotations

import torch


def check_float(name: str, what: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: {what} must be a torch.Tensor; got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: {what} must be a floating-point tensor; got {t.dtype}")


def wide(t: torch.Tensor) -> torch.Tensor:
    """The dtype fastgan computes in: float16/bfloat16/float32 -> float32; float64 stays float64."""
    dtype = t.dtype  # (t.float() of a float32 t returns t, but through the dispatcher: ~1 us a call)
    return t if dtype is torch.float32 or dtype is torch.float64 else t.float()


def is_dense(x: torch.Tensor) -> bool:
    """Whether the fused kernels read x as it lies in memory (contiguous or channels_last) rather than a copy."""
    if x.is_contiguous():
        return True
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.ndim)
    return fmt is not None and x.is_contiguous(memory_format=fmt)


def empty_like_layout(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An output for x on either path, fake impls included: x's layout when dense, contiguous otherwise."""
    dtype = x.dtype if dtype is None else dtype
    return torch.empty_like(x, dtype=dtype) if is_dense(x) else torch.empty(x.shape, dtype=dtype, device=x.device)


def new_tensor(y: torch.Tensor, x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
    """y as the op's output for input x: in the layout empty_like_layout(x) gives, and never x or another of
    the op's inputs (a custom op may not return an input or a view of one: the identity configuration copies)."""
    out = empty_like_layout(x, y.dtype)
    if all(y is not t for t in (x, *inputs)) and y.stride() == out.stride() and y._base is None:
        return y
    return out.copy_(y)
