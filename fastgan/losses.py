"""GAN losses and gradient penalties.

A face of fastgan.fused.gan_loss, where the ops, their references and their checks live.
"""
from __future__ import annotations

from .fused.gan_loss import (D_LOSS_KINDS, G_LOSS_KINDS, R1R2, d_loss, g_loss, gradient_penalty, mixes_samples,
                             r1_penalty, r1_r2_penalty)

__all__ = ["D_LOSS_KINDS", "G_LOSS_KINDS", "R1R2", "d_loss", "g_loss", "gradient_penalty", "mixes_samples",
           "r1_penalty", "r1_r2_penalty"]
