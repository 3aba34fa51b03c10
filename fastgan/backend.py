"""Which implementation the fused ops use: a face of fastgan.fused.backend, where the choice is made."""
from __future__ import annotations

from .fused.backend import BACKENDS, backend, describe, use_triton

__all__ = ["BACKENDS", "backend", "describe", "use_triton"]
