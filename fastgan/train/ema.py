"""Exponential moving average of the generator's weights."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """An eval-mode copy of `model` whose parameters track decay * ema + (1 - decay) * model.

    The decay ramps up as min(decay, (1 + t) / (10 + t)) after t updates, so early averages are not
    dominated by the random initial weights (the num_updates rule of TensorFlow's
    ExponentialMovingAverage). Buffers (batch-norm running statistics) are copied, not averaged:
    they are already averages.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.current_decay())
        self.num_updates += 1
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)
