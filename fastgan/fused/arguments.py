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
    return t if t.dtype == torch.float64 else t.float()


def new_tensor(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # A custom op may not return its input (or a view of it): the identity configuration copies.
    y = y.contiguous()
    return y.clone() if y is x else y
