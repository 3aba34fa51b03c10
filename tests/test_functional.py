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
    """(fastgan loss, grad), (torch loss, grad) for the same inputs. torch's side is computed in float64 and
    rounded to the inputs' dtype: the oracle is the exact value, not torch's float32 rounding of it (which,
    summed over a thousand terms or where its formula cancels, strays beyond float32's tolerance)."""
    def cast(v, dtype):
        return v.to(dtype) if isinstance(v, torch.Tensor) and dtype is not None else v

    out = []
    for fn, dtype in ((fg.functional.binary_cross_entropy_with_logits, None),
                      (F.binary_cross_entropy_with_logits, torch.float64)):
        xi = cast(x.detach().clone(), dtype).requires_grad_(True)
        loss = fn(xi, cast(t, dtype), **{k: cast(v, dtype) for k, v in kw.items()})
        (grad,) = torch.autograd.grad(loss.sum(), xi) if loss.numel() else (torch.zeros_like(xi),)
        out.append((loss.detach().to(x.dtype), grad.to(x.dtype)))
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


# ---------------------------------------------------------------- where a drop-in could differ from torch

def _paths(x, t, weight=None, reduction="mean", pos_weight=None):
    """The loss on each CPU path: public function (fast eager path), reference, fastgan::bce_with_logits."""
    from fastgan.fused import bce_with_logits as bce

    return {"public": fg.functional.binary_cross_entropy_with_logits(x, t, weight, reduction, pos_weight),
            "reference": fg.reference.bce_with_logits(x, t, weight, reduction, pos_weight),
            "op": bce._bce_op(x, t, weight, pos_weight, reduction)[0]}


@pytest.mark.parametrize("input_dtype, target_dtype", [
    (torch.float16, torch.float32), (torch.float32, torch.float64), (torch.float32, torch.float16),
    (torch.bfloat16, torch.float16), (torch.float64, torch.float32), (torch.bfloat16, torch.bfloat16),
])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("extra", ["none", "weight", "pos_weight"])
def test_bce_result_dtype_is_targets_dtype_as_torchs(input_dtype, target_dtype, reduction, extra):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 3, generator=g) * 4).to(input_dtype)
    t = torch.rand(4, 3, generator=g).to(target_dtype)
    other = torch.rand(3, generator=g, dtype=torch.float64)  # a weight's dtype never changes the result's
    kw = {} if extra == "none" else {extra: other}
    ref = F.binary_cross_entropy_with_logits(x, t, reduction=reduction, **kw)
    exact = F.binary_cross_entropy_with_logits(x.double(), t.double(), reduction=reduction, **kw)
    for path, out in _paths(x, t, reduction=reduction, **kw).items():
        assert out.dtype == ref.dtype == target_dtype, path
        # fastgan rounds a float32 (or float64) result once; torch may compute in the narrower dtype.
        eps = torch.finfo(target_dtype).eps
        tol = TOL[torch.float64] if target_dtype == torch.float64 else dict(rtol=eps, atol=eps)
        torch.testing.assert_close(out.double(), exact, **tol, msg=path)
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(fg.functional.binary_cross_entropy_with_logits(xg, t, **kw).sum(), xg)
    assert grad.dtype == input_dtype


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
@pytest.mark.parametrize("which", ["weight", "pos_weight"])
def test_bce_takes_integer_and_bool_weights_as_their_values(dtype, which):
    x, t = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64)
    w = torch.tensor([0, 1, 2]).to(dtype)
    # torch as well, but for a bool pos_weight (it raises) and a uint8 pos_weight of 0 (its pos_weight - 1 wraps).
    torch_agrees = which == "weight" or dtype in (torch.int64, torch.int32)
    for reduction in ("mean", "none"):
        ref = F.binary_cross_entropy_with_logits(x, t, reduction=reduction, **{which: w.double()})
        if torch_agrees:
            torch.testing.assert_close(F.binary_cross_entropy_with_logits(x, t, reduction=reduction, **{which: w}), ref)
        for path, out in _paths(x, t, reduction=reduction, **{which: w}).items():
            assert out.dtype == ref.dtype, path
            torch.testing.assert_close(out, ref, **TOL[torch.float64], msg=path)


def test_bce_infinite_logit_against_its_target_costs_inf_where_torch_gives_nan():
    inf = math.inf
    x = torch.tensor([-inf, -inf, inf, inf, inf, -inf, 3.0])
    t = torch.tensor([1.0, 0.5, 0.0, 0.5, 1.0, 0.0, 1.0])
    torchs = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    # The documented difference: the limit, +inf, where the target disagrees; torch's (1 - t) x - logsigmoid(x)
    # is -inf + inf at x = -inf.
    assert torch.isnan(torchs[[0, 1]]).all()
    want = torch.tensor([inf, inf, inf, inf, math.nan, math.nan, torchs[6].item()])
    for path, out in _paths(x, t, reduction="none").items():
        torch.testing.assert_close(out, want, equal_nan=True, msg=path)
    for path, out in _paths(x[:4], t[:4], reduction="mean").items():
        assert out.item() == inf, path
    # Where the target agrees exactly the loss is NaN (0 * inf), as torch's; the gradient is finite, as torch's.
    assert torch.isnan(torchs[[4, 5]]).all()
    grads = [torch.autograd.grad(fn(xi, t, reduction="sum"), xi)[0] for fn, xi in
             ((fg.functional.binary_cross_entropy_with_logits, x.clone().requires_grad_()),
              (F.binary_cross_entropy_with_logits, x.clone().requires_grad_()))]
    torch.testing.assert_close(grads[0], grads[1])


def _raises(call, exc, message=None):
    with pytest.raises(exc, match=message) as info:
        call()
    return info


BAD_CALLS = [  # (keyword arguments, the exception torch and fastgan raise, fastgan's message)
    (lambda: dict(input=torch.randn(3), target=torch.rand(3, 1)), ValueError, "target shape .3, 1. must equal input shape .3,."),
    (lambda: dict(input=torch.randn(3), target=torch.rand(1)), ValueError, "target shape"),
    (lambda: dict(input=torch.randn(3), target=torch.rand(3), reduction="avg"), ValueError, "reduction must be one of mean, sum, none; got 'avg'"),
    (lambda: dict(input=torch.arange(3), target=torch.rand(3)), RuntimeError, "input must be a floating-point tensor; got torch.int64"),
    (lambda: dict(input=torch.randn(3), target=torch.ones(3, dtype=torch.long)), RuntimeError, "target must be a floating-point"),
    (lambda: dict(input=torch.randn(3), target=torch.ones(3, dtype=torch.bool)), RuntimeError, "target must be a floating-point"),
    (lambda: dict(input=torch.randn(3), target=torch.rand(3), weight=torch.rand(4)), RuntimeError, "weight of shape .4,. does not broadcast"),
    (lambda: dict(input=torch.randn(3), target=torch.rand(3), weight=torch.rand(2, 3)), RuntimeError, "weight of shape .2, 3. does not broadcast"),
    (lambda: dict(input=torch.randn(3), target=torch.rand(3), pos_weight=torch.rand(4)), RuntimeError, "pos_weight of shape"),
    (lambda: dict(input=torch.randn(3), target=torch.rand(3), weight=torch.ones(3, dtype=torch.cfloat)), RuntimeError, "weight must be a real"),
    (lambda: dict(input=torch.randn(3), target=torch.rand(3), weight=[1.0, 2.0, 3.0]), TypeError, "weight must be a torch.Tensor; got list"),
    (lambda: dict(input=torch.randn(3), target=torch.rand(3), pos_weight=2.0), TypeError, "pos_weight must be a torch.Tensor"),
]


@pytest.mark.parametrize("kwargs, exc, message", BAD_CALLS)
def test_bce_raises_torchs_exception_type_with_a_message_naming_the_problem(kwargs, exc, message):
    _raises(lambda: fg.functional.binary_cross_entropy_with_logits(**kwargs()), exc, message)
    _raises(lambda: F.binary_cross_entropy_with_logits(**kwargs()), exc)


@pytest.mark.parametrize("args", [([0.1], torch.rand(1)), (torch.rand(1), [1.0])])
def test_bce_raises_type_error_for_a_non_tensor_input_or_target_where_torch_raises_attribute_error(args):
    _raises(lambda: fg.functional.binary_cross_entropy_with_logits(*args), TypeError, "must be a torch.Tensor; got list")
    _raises(lambda: F.binary_cross_entropy_with_logits(*args), AttributeError)
