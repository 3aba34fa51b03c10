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
        self._source: nn.Module | None = None  # the model `_params` was listed from
        self._params: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    def update(self, model: nn.Module) -> None:
        # The parameter lists are made once per model rather than by walking the module tree every step.
        # Parameter objects outlive .to() and load_state_dict (both fill them in place);
        # buffers may be replaced, so they are listed afresh. (no_grad as a block, not a decorator: mutation
        # testing leaves decorated functions out.)
        with torch.no_grad():
            if self._source is not model:
                self._source, self._params = model, (list(self.module.parameters()), list(model.parameters()))
            torch._foreach_lerp_(*self._params, 1.0 - self.current_decay())
            self.num_updates += 1
            buffers = list(model.buffers())
            if buffers:
                torch._foreach_copy_(list(self.module.buffers()), buffers)
