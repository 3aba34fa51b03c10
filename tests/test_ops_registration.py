"""The torch.library registration of the fused ops: schemas, fake impls, autograd, torch.compile, validation."""
from __future__ import annotations

import pytest
import torch

from fastgan import functional, losses, ops, reference
from fastgan.nn import BatchNormAct


@pytest.mark.parametrize("args", [
    lambda: (torch.ops.fastgan.bias_act.default, (torch.randn(2, 3, 4, requires_grad=True),
                                                  torch.randn(3, requires_grad=True), "lrelu", 0.2, 1.0, None, 1)),
    lambda: (torch.ops.fastgan.batch_norm_act.default, (torch.randn(2, 3, 4, requires_grad=True), torch.rand(3),
                                                        torch.randn(3), torch.zeros(3), torch.ones(3), True, 1e-5,
                                                        "relu", 0.0)),
    lambda: (torch.ops.fastgan.bce_with_logits.default, (torch.randn(5, 2, requires_grad=True), torch.rand(5, 2),
                                                         None, torch.rand(2), "mean")),
    lambda: (torch.ops.fastgan.d_loss.default, (torch.randn(4, 1, requires_grad=True),
                                                torch.randn(6, 1, requires_grad=True), "hinge", 0.0)),
    lambda: (torch.ops.fastgan.g_loss.default, (torch.randn(4, 1, requires_grad=True), "ns")),
    lambda: (torch.ops.fastgan.d_loss.default, (torch.randn(4, 1, requires_grad=True),
                                                torch.randn(4, 1, requires_grad=True), "rpgan", 0.0)),
    lambda: (torch.ops.fastgan.bias_act_backward.default, (torch.randn(2, 3, 4, requires_grad=True),
                                                           torch.rand(2, 3, 4).requires_grad_(), torch.randn(3),
                                                           "tanh", 0.2, 1.0, None, 1)),
    lambda: (torch.ops.fastgan.bias_act_double_backward.default, (torch.randn(2, 3, 4), torch.randn(3),
                                                                  torch.randn(2, 3, 4), torch.rand(2, 3, 4),
                                                                  "sigmoid", 0.2, 1.0, None, 1)),
], ids=["bias_act", "batch_norm_act", "bce_with_logits", "d_loss", "g_loss", "d_loss_rpgan", "bias_act_backward",
        "bias_act_double_backward"])
def test_op_registration_passes_opcheck(args):
    op, inputs = args()
    torch.library.opcheck(op, inputs, test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def _first_and_second_grads(out, inputs, dy):
    """d out / d inputs (with create_graph) and the gradient of their squared norm, d ||grad||^2 / d inputs."""
    first = torch.autograd.grad(out, inputs, dy, create_graph=True)
    norm = sum(g.square().sum() for g in first)
    # A linear activation's gradient does not depend on the inputs: its second derivative is zero.
    second = torch.autograd.grad(norm, inputs, allow_unused=True) if norm.requires_grad else [None] * len(inputs)
    return [g.detach() for g in first], [torch.zeros_like(i) if g is None else g for g, i in zip(second, inputs)]


@pytest.mark.parametrize("act, gain, clamp", [("linear", None, None), ("relu", 1.5, None), ("lrelu", None, 0.8),
                                              ("tanh", 1.4, 0.9), ("sigmoid", 2.0, None)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bias_act_cpu_path_matches_reference_to_second_order(act, gain, clamp, dtype):
    # float64 is computed in float64, forward and backward, so it meets float64 tolerances.
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 3, 5, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=dtype, requires_grad=True)
    dy = torch.randn(2, 4, 3, 5, generator=g, dtype=dtype)
    out, ref = ops.bias_act(x, b, act, None, gain, clamp), reference.bias_act(x, b, act, None, gain, clamp)
    torch.testing.assert_close(out, ref, **(dict(rtol=1e-6, atol=1e-7) if dtype == torch.float32 else tol))
    # A plain backward runs the fastgan::bias_act_backward op; create_graph runs its differentiable formula.
    (dx, db) = torch.autograd.grad(out, (x, b), dy, retain_graph=True)
    (first, second), (ref_first, ref_second) = (_first_and_second_grads(o, (x, b), dy) for o in (out, ref))
    for actual, expected in zip([dx, db, *first, *second], [*ref_first, *ref_first, *ref_second]):
        assert actual.dtype == dtype
        torch.testing.assert_close(actual, expected, **tol)


@pytest.mark.parametrize("act", list(reference.ACTIVATIONS))
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_norm_act_cpu_path_matches_reference_to_second_order(act, training, dtype):
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-12)
    g = torch.Generator().manual_seed(8)
    x = (torch.randn(3, 4, 2, 5, generator=g, dtype=dtype) * 2 + 1).requires_grad_()
    w = (torch.rand(4, generator=g, dtype=dtype) + 0.5).requires_grad_()
    b = torch.randn(4, generator=g, dtype=dtype, requires_grad=True)
    stats = [torch.randn(4, generator=g, dtype=dtype), torch.rand(4, generator=g, dtype=dtype) + 0.5]
    ref_stats = [s.clone() for s in stats]
    dy = torch.randn(3, 4, 2, 5, generator=g, dtype=dtype)
    out = ops.batch_norm_act(x, w, b, *stats, training, 0.1, 1e-5, act, 0.2)
    ref = reference.batch_norm_act(x, w, b, *ref_stats, training, 0.1, 1e-5, act, 0.2)
    torch.testing.assert_close(out, ref, **(dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else tol))
    for s, r in zip(stats, ref_stats):  # running statistics updated alike
        torch.testing.assert_close(s, r, **tol)
    grads = torch.autograd.grad(out, (x, w, b), dy, retain_graph=True)
    (first, second), (ref_first, ref_second) = (_first_and_second_grads(o, (x, w, b), dy) for o in (out, ref))
    for actual, expected in zip([*grads, *first, *second], [*ref_first, *ref_first, *ref_second]):
        assert actual.dtype == dtype
        torch.testing.assert_close(actual, expected, **tol)


def test_compiled_loss_and_bias_act_have_no_graph_breaks():
    def step(x, b, fake):
        return losses.g_loss(ops.bias_act(x, b, "lrelu").sum(1, keepdim=True), "ns")

    x, b, fake = torch.randn(4, 3), torch.randn(3), torch.randn(4, 1)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, b, fake), reference.g_loss(reference.bias_act(x, b).sum(1, keepdim=True)))


def test_compiled_rpgan_losses_have_no_graph_breaks():
    def step(real, fake):
        return losses.d_loss(real, fake, "rpgan") + losses.g_loss(fake, "rpgan", real)

    real, fake = torch.randn(6, 1), torch.randn(6, 1)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    expected = reference.d_loss(real, fake, "rpgan") + reference.g_loss(fake, "rpgan", real)
    torch.testing.assert_close(compiled(real, fake), expected)


def test_compiled_batch_norm_act_updates_running_stats_without_graph_breaks():
    layer = BatchNormAct(3, act="lrelu", alpha=0.2)
    ref = torch.nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5)
    out = torch.compile(layer, fullgraph=True, backend="aot_eager")(x)
    expected = torch.nn.functional.leaky_relu(ref(x), 0.2)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(layer.running_var, ref.running_var)
    assert layer.state_dict().keys() == ref.state_dict().keys()


def test_bce_falls_back_to_reference_when_weight_needs_grad_or_broadcasts_per_row():
    x = torch.randn(4, 3, requires_grad=True)
    t = torch.rand(4, 3)
    w = torch.rand(4, 1, requires_grad=True)
    out = functional.binary_cross_entropy_with_logits(x, t, w)
    (gw,) = torch.autograd.grad(out, w)
    ref = reference.bce_with_logits(x, t, w)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(gw, torch.autograd.grad(ref, w)[0])


def test_bias_act_identity_configuration_returns_a_new_tensor():
    x = torch.randn(2, 3)
    y = ops.bias_act(x, None, "linear")
    assert y.data_ptr() != x.data_ptr()
    torch.testing.assert_close(y, x)


@pytest.mark.parametrize("call, message", [
    (lambda: ops.bias_act(torch.randn(2, 3), torch.randn(4)), "b must have shape"),
    (lambda: ops.bias_act(torch.randn(2, 3), act="swish"), "unknown activation"),
    (lambda: ops.bias_act(torch.randn(2, 3), gain=0.0), "gain must be positive"),
    (lambda: ops.bias_act(torch.randn(2, 3), alpha=-0.1), "alpha must be >= 0"),
    (lambda: ops.bias_act(torch.randn(2, 3), dim=2), "out of range"),
    (lambda: ops.batch_norm_act(torch.randn(1, 3), None, None, None, None, True), "more than one value per channel"),
    (lambda: ops.batch_norm_act(torch.randn(2, 3), None, None, None, None, False), "needs running_mean"),
    (lambda: ops.batch_norm_act(torch.randn(2, 3), torch.ones(2), None, None, None, True), "weight must have shape"),
])
def test_bad_arguments_raise_errors_that_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
