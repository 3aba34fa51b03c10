"""fastgan.functional.binary_cross_entropy_with_logits against torch's, value and gradient."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgan as fg

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def _both(x, t, **kw):
    """(fastgan loss, grad), (torch loss, grad) for the same inputs."""
    out = []
    for fn in (fg.functional.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits):
        xi = x.detach().clone().requires_grad_(True)
        loss = fn(xi, t, **kw)
        (grad,) = torch.autograd.grad(loss.sum(), xi) if loss.numel() else (torch.zeros_like(xi),)
        out.append((loss.detach(), grad))
    return out


@st.composite
def bce_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    seed = draw(st.integers(0, 2**31 - 1))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    weight_dims = draw(st.sampled_from(["none", "full", "last", "scalar"]))
    pos_weight_dims = draw(st.sampled_from(["none", "last", "scalar"]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return shape, seed, reduction, weight_dims, pos_weight_dims, dtype


def _param(kind, shape, g, dtype):
    if kind == "none":
        return None
    size = {"full": shape, "last": shape[-1:], "scalar": ()}[kind]
    return torch.rand(size, generator=g, dtype=dtype) * 2


@settings(max_examples=150, deadline=None)
@given(bce_case())
def test_bce_matches_torch_over_shapes_reductions_and_weights(case):
    shape, seed, reduction, wk, pk, dtype = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) * 5
    t = torch.rand(shape, generator=g, dtype=dtype)
    kw = dict(weight=_param(wk, shape, g, dtype), pos_weight=_param(pk, shape, g, dtype), reduction=reduction)
    (ours, ours_grad), (ref, ref_grad) = _both(x, t, **kw)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    torch.testing.assert_close(ours_grad, ref_grad, **TOL[dtype])


@pytest.mark.parametrize("magnitude", [30.0, 1e2, 1e4])
def test_bce_matches_torch_for_extreme_logits(magnitude):
    x = torch.tensor([-magnitude, magnitude, -magnitude, magnitude, 0.0])
    t = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5])
    (ours, ours_grad), (ref, ref_grad) = _both(x, t, reduction="none")
    assert torch.isfinite(ours).all() and torch.isfinite(ours_grad).all()
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-6, atol=1e-6)
    # Confidently wrong logits cost |x| nats; the gradient saturates at +-1.
    assert ours[2].item() == pytest.approx(magnitude, rel=1e-6)
    assert ours_grad[2].item() == pytest.approx(-1.0, abs=1e-6)


def test_bce_gradient_is_half_at_zero_logit():
    x = torch.zeros(1, requires_grad=True)
    fg.functional.binary_cross_entropy_with_logits(x, torch.zeros(1)).backward()
    assert x.grad.item() == pytest.approx(0.5, abs=1e-7)


def test_bce_propagates_nan():
    x = torch.tensor([0.3, math.nan, -2.0])
    t = torch.tensor([1.0, 0.0, 0.0])
    out = fg.functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert torch.isnan(out[1]) and torch.isfinite(out[[0, 2]]).all()
    assert torch.isnan(fg.functional.binary_cross_entropy_with_logits(x, t))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_on_empty_tensors_matches_torch(reduction):
    x, t = torch.empty(0, 3), torch.empty(0, 3)
    ours = fg.functional.binary_cross_entropy_with_logits(x, t, reduction=reduction)
    ref = F.binary_cross_entropy_with_logits(x, t, reduction=reduction)
    torch.testing.assert_close(ours, ref, equal_nan=True)


def test_bce_on_non_contiguous_inputs():
    base = torch.randn(8, 6, dtype=torch.float64)
    x = base.t()[::2]  # strided view
    t = torch.rand(6, 8, dtype=torch.float64)[::2]
    assert not x.is_contiguous()
    (ours, g1), (ref, g2) = _both(x, t, reduction="sum", pos_weight=torch.rand(8, dtype=torch.float64))
    torch.testing.assert_close(ours, ref, **TOL[torch.float64])
    torch.testing.assert_close(g1, g2, **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_bce_computes_reduced_precision_in_float32(dtype):
    x = (torch.randn(4096) * 8).to(dtype)
    t = torch.rand(4096).to(dtype)
    ours = fg.functional.binary_cross_entropy_with_logits(x, t)
    exact = F.binary_cross_entropy_with_logits(x.double(), t.double())
    assert ours.dtype == dtype
    # One rounding of the float32 result to the output dtype.
    eps = torch.finfo(dtype).eps
    assert abs(ours.double().item() - exact.item()) <= eps * abs(exact.item())


def test_bce_module_matches_functional():
    x, t = torch.randn(5, 3), torch.rand(5, 3)
    w, pw = torch.rand(3), torch.rand(3)
    loss = fg.nn.BCEWithLogitsLoss(weight=w, reduction="sum", pos_weight=pw)
    torch.testing.assert_close(loss(x, t), F.binary_cross_entropy_with_logits(x, t, w, reduction="sum", pos_weight=pw))
    assert set(dict(loss.named_buffers())) == {"weight", "pos_weight"}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fg.functional.binary_cross_entropy_with_logits(torch.randn(3), torch.rand(3, 1)), "target shape"),
        (lambda: fg.functional.binary_cross_entropy_with_logits(torch.arange(3), torch.rand(3)), "floating-point"),
        (lambda: fg.functional.binary_cross_entropy_with_logits(torch.randn(3), torch.ones(3, dtype=torch.long)),
         "target must be a floating-point"),
        (lambda: fg.functional.binary_cross_entropy_with_logits(torch.randn(3), torch.rand(3), reduction="avg"),
         "reduction must be one of"),
        (lambda: fg.functional.binary_cross_entropy_with_logits(torch.randn(3), torch.rand(3), weight=torch.rand(4)),
         "weight of shape"),
        (lambda: fg.functional.binary_cross_entropy_with_logits([0.1], torch.rand(1)), "must be a torch.Tensor"),
    ],
)
def test_bce_rejects_bad_input_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()
