"""Fused elementwise epilogues for generator and discriminator blocks, registered as torch.library ops
(fastgan::bias_act, fastgan::batch_norm_act and their backward ops).

A face of fastgan.fused.bias_act and fastgan.fused.batch_norm_act, where the ops, their references,
their autograd formulas and their checks live.
"""
from __future__ import annotations

from .fused.batch_norm_act import MIN_NUMEL_BATCH_NORM_ACT, batch_norm_act
from .fused.bias_act import MIN_NUMEL_BIAS_ACT, bias_act

__all__ = ["MIN_NUMEL_BATCH_NORM_ACT", "MIN_NUMEL_BIAS_ACT", "batch_norm_act", "bias_act"]
