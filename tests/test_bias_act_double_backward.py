"""bias_act's double backward on the op's CPU path: fastgan::bias_act_backward differentiable through
fastgan::bias_act_double_backward, against autograd of the reference and finite differences in float64."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastgan import reference
from fastgan.fused import bias_act as bias_act_module

ACTS = list(reference.ACTIVATIONS)


def op(act, gain=1.4, clamp=None, dim=1, alpha=0.2):
    return lambda x, b: torch.ops.fastgan.bias_act(x, b, act, alpha, gain, clamp, dim)


def ref(act, gain=1.4, clamp=None, dim=1, alpha=0.2):
    return lambda x, b: reference.bias_act(x, b, act, alpha, gain, clamp, dim)


def inputs(shape=(2, 3, 4), use_bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape[1], generator=g, dtype=torch.float64, requires_grad=True) if use_bias else None
    dy = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    return x, b, dy, w


def second_order(fn, x, b, dy, w):
    """d/d(x, b, dy) of an asymmetric function of (dx, db), the gradients taken with create_graph."""
    wrt = [t for t in (x, b) if t is not None]
    first = torch.autograd.grad(fn(x, b), wrt, dy, create_graph=True)
    objective = (first[0] * w).sum() + (first[1].square().sum() if b is not None else 0)
    return first, torch.autograd.grad(objective, [*wrt, dy], allow_unused=True)


@pytest.mark.parametrize("clamp", [None, 0.8])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("act", ACTS)
def test_double_backward_equals_autograd_of_the_reference_in_float64(act, use_bias, clamp):
    x, b, dy, w = inputs(use_bias=use_bias)
    (first, second), (ref_first, ref_second) = (second_order(f(act, clamp=clamp), x, b, dy, w) for f in (op, ref))
    for a, e in zip([*first, *second], [*ref_first, *ref_second]):
        e = torch.zeros_like(a) if e is None else e  # a piecewise-linear activation: no gradient for x
        a = torch.zeros_like(e) if a is None else a
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("act, gain, clamp, dim", [("lrelu", 1.4, None, 1), ("tanh", 1.4, 0.9, 1),
                                                   ("sigmoid", 2.0, None, 2), ("linear", 1.0, None, 0),
                                                   ("relu", 1.5, 0.8, 1)])
def test_gradcheck_and_gradgradcheck_of_the_op(act, gain, clamp, dim):
    x, b, _, _ = inputs(seed=1)
    b = b if dim == 1 else torch.randn(x.shape[dim], dtype=torch.float64, requires_grad=True)
    fn = op(act, gain=gain, clamp=clamp, dim=dim)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


class Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.name())
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("act", ACTS)
def test_create_graph_backward_runs_the_backward_op_and_its_backward_the_double_backward_op(act):
    x, b, dy, w = inputs()
    y = op(act, clamp=0.8)(x, b)
    with Ops() as first:
        dx, db = torch.autograd.grad(y, (x, b), dy, create_graph=True)
    assert first.names.count("fastgan::bias_act_backward") == 1
    with Ops() as second:
        torch.autograd.grad((dx * w).sum() + db.square().sum(), (x, b, dy), allow_unused=True)
    assert second.names.count("fastgan::bias_act_double_backward") == 1
    # The epilogue's second order runs in the op alone, not in aten's activation backward ops.
    assert not [n for n in second.names if n.endswith("_backward") and not n.startswith("fastgan::")]


def test_a_third_derivative_is_the_references():
    # Grad mode inside the double backward: differentiable torch ops, so a third order exists and is exact.
    x, b, dy, w = inputs(seed=2)
    results = []
    for f in (op("tanh", clamp=0.9), ref("tanh", clamp=0.9)):
        (dx,) = torch.autograd.grad(f(x, b), x, dy, create_graph=True)
        gx, gdy = torch.autograd.grad((dx * w).sum(), (x, dy), create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum() + gdy.square().sum(), (x, b)))
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-13)


def test_double_backward_op_without_a_second_derivative_returns_no_y_gradient():
    x, b, dy, w = inputs()
    y = bias_act_module.bias_act_reference(x, b, "lrelu")
    d_dy, d_y = torch.ops.fastgan.bias_act_double_backward(w, None, dy.detach(), y.detach(), "lrelu", 0.2, 1.0,
                                                           None, 1)
    assert d_y.numel() == 0
    torch.testing.assert_close(d_dy, torch.where(y > 0, w, 0.2 * w))
