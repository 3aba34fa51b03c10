"""The activation table: every layer (references, backward formulas, public checks, Triton kernels) reads
its activations from ACTIVATIONS, and from nowhere else.

Every activation here has a derivative expressible through its output alone, which is why the fused
bias_act backward saves y rather than x. The derivatives use aten's own activation backward ops: one
pass each (a chain of torch.where / comparisons costs several, and is slow on CPU), with derivative
formulas of their own, so a create_graph backward stays differentiable.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass(frozen=True)
class Activation:
    """One row of the activation table.

    func(x, alpha) is the activation; grad_from_output(dy, a, alpha) is dy * act'(z) given its output
    a = act(z), and grad_from_input(dy, z, alpha) the same given its input z. code is the number the
    Triton kernels branch on (the constants of fastgan.kernels._common).
    """

    name: str
    func: Callable[[Tensor, float], Tensor]
    grad_from_output: Callable[[Tensor, Tensor, float], Tensor]
    grad_from_input: Callable[[Tensor, Tensor, float], Tensor]
    def_alpha: float
    def_gain: float
    code: int


_aten = torch.ops.aten

ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (
    Activation("linear", lambda x, a: x,
               lambda dy, y, a: dy,
               lambda dy, z, a: dy,
               0.0, 1.0, code=0),
    Activation("relu", lambda x, a: F.relu(x),
               lambda dy, y, a: _aten.threshold_backward(dy, y, 0.0),
               lambda dy, z, a: _aten.threshold_backward(dy, z, 0.0),
               0.0, 1.0, code=1),
    Activation("lrelu", lambda x, a: F.leaky_relu(x, a),
               lambda dy, y, a: _aten.leaky_relu_backward(dy, y, a, True),
               lambda dy, z, a: _aten.leaky_relu_backward(dy, z, a, False),
               0.2, 1.0, code=2),
    Activation("tanh", lambda x, a: torch.tanh(x),
               lambda dy, y, a: _aten.tanh_backward(dy, y),
               lambda dy, z, a: _aten.tanh_backward(dy, torch.tanh(z)),
               0.0, 1.0, code=3),
    Activation("sigmoid", lambda x, a: torch.sigmoid(x),
               lambda dy, y, a: _aten.sigmoid_backward(dy, y),
               lambda dy, z, a: _aten.sigmoid_backward(dy, torch.sigmoid(z)),
               0.0, 1.0, code=4),
)}


def activation_spec(act: str) -> Activation:
    """The row of `act`, or a ValueError naming the choices."""
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}") from None


def code(act: str) -> int:
    """The code the Triton kernels know `act` by."""
    return activation_spec(act).code
