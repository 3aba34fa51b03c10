"""Loss modules."""
from __future__ import annotations

import torch
from torch import nn

from ..fused.bce_with_logits import binary_cross_entropy_with_logits


class BCEWithLogitsLoss(nn.Module):
    """Module twin of fastgan.functional.binary_cross_entropy_with_logits (and of torch.nn.BCEWithLogitsLoss)."""

    def __init__(self, weight: torch.Tensor | None = None, reduction: str = "mean",
                 pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )
