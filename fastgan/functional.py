"""Drop-in functional API: the same signatures as torch.nn.functional, fused where fastgan has a kernel.

A face of fastgan.fused.bce_with_logits, where the op, its reference and its checks live.
"""
from __future__ import annotations

from .fused.bce_with_logits import MIN_NUMEL_LOSS, binary_cross_entropy_with_logits

__all__ = ["MIN_NUMEL_LOSS", "binary_cross_entropy_with_logits"]
