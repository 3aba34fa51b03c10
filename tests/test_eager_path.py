"""The fast eager path of every public fused op: taken on the CPU (traced by torch.compile too), equal to the reference
(values, gradients, second derivatives, errors), as accurate as torch against float64; compiled graphs hold the fastgan
ops where a Triton kernel runs."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fastgan import functional, losses, ops, reference
from fastgan.fused import batch_norm_act as bn_module
from fastgan.fused import bce_with_logits as bce_module
from fastgan.fused import bias_act as bias_act_module
from fastgan.fused import gan_loss as gan_loss_module
from fastgan.fused.activations import ACTIVATIONS
from fastgan.fused.eager import ACT_IN_PLACE

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6),
       torch.float16: dict(rtol=1e-3, atol=1e-3), torch.bfloat16: dict(rtol=1e-2, atol=1e-2)}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _grads(out, inputs, dy=None, create_graph=False):
    wrt = [t for t in inputs if t is not None and t.requires_grad]
    return torch.autograd.grad(out, wrt, dy, create_graph=create_graph)


def _leaves(*tensors):
    return [None if t is None else t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]


def _assert_same(fast_fn, ref_fn, inputs, dtype, dy=None, second_order=False):
    """fast_fn and ref_fn agree on the value, the gradient and (second_order) d ||grad||^2 / d inputs."""
    a, b = _leaves(*inputs), _leaves(*inputs)
    out, ref = fast_fn(*a), ref_fn(*b)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    torch.testing.assert_close(out, ref, **TOL[dtype], equal_nan=True)
    ga = _grads(out, a, dy, create_graph=second_order)
    gb = _grads(ref, b, dy, create_graph=second_order)
    for x, y in zip(ga, gb):
        assert x.dtype == y.dtype
        torch.testing.assert_close(x, y, **TOL[dtype], equal_nan=True)
    if second_order:
        na, nb = sum(g.float().square().sum() for g in ga), sum(g.float().square().sum() for g in gb)
        if not (na.requires_grad or nb.requires_grad):  # a linear loss: no second derivative on either side
            return
        wrt_a = [t for t in a if t is not None and t.requires_grad]
        wrt_b = [t for t in b if t is not None and t.requires_grad]
        for x, y in zip(torch.autograd.grad(na, wrt_a, allow_unused=True),
                        torch.autograd.grad(nb, wrt_b, allow_unused=True)):
            if x is None or y is None:
                assert x is None or not x.abs().max() > 0
                assert y is None or not y.abs().max() > 0
                continue
            torch.testing.assert_close(x, y, **TOL[dtype], equal_nan=True)


# ---------------------------------------------------------------- the path taken

@pytest.fixture
def no_custom_ops(monkeypatch):
    """The torch.library ops raise if called: the eager path must not reach them."""
    def refuse(*args, **kwargs):
        raise AssertionError("a fastgan torch.library op ran on the CPU eager path")

    for module, name in [(bce_module, "_bce_op"), (gan_loss_module, "_d_loss_op"), (gan_loss_module, "_g_loss_op"),
                         (bias_act_module, "_bias_act_op"), (bn_module, "_batch_norm_act_op")]:
        monkeypatch.setattr(module, name, refuse)


def test_cpu_eager_calls_take_the_fast_path_not_the_custom_ops(no_custom_ops):
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    b, w = torch.randn(3, requires_grad=True), torch.rand(3, requires_grad=True)
    logits = torch.randn(8, requires_grad=True)
    outs = [functional.binary_cross_entropy_with_logits(logits, torch.rand(8)),
            losses.d_loss(logits[:4], logits[4:]), losses.g_loss(logits),
            ops.bias_act(x, b).sum(), ops.batch_norm_act(x, w, b, torch.zeros(3), torch.ones(3), True).sum()]
    torch.autograd.grad(sum(outs), (x, b, w, logits))


@pytest.mark.parametrize("kernel", [False, True], ids=["no kernel", "kernel"])
def test_compiled_graphs_trace_the_eager_paths_without_a_kernel_and_the_ops_with_one(kernel, monkeypatch):
    if kernel:  # what a CUDA tensor sees: every op has its Triton kernel
        for module in (bias_act_module, bn_module, bce_module, gan_loss_module):
            monkeypatch.setattr(module, "runs_eager", lambda t, min_numel: False)
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    def step(x, b, w, logits, t):
        y = ops.batch_norm_act(ops.bias_act(x, b), w, b, None, None, True)
        return (functional.binary_cross_entropy_with_logits(logits, t) + losses.d_loss(logits, logits)
                + losses.g_loss(logits) + y.sum())

    args = (torch.randn(4, 3, 2, 2), torch.randn(3), torch.rand(3), torch.randn(6), torch.rand(6))
    explanation = torch._dynamo.explain(step)(*args)
    assert explanation.graph_break_count == 0
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(step, backend=backend, fullgraph=True)(*args), step(*args))
    fused = [op for op in ("fastgan.bias_act", "fastgan.batch_norm_act", "fastgan.bce_with_logits", "fastgan.d_loss",
                           "fastgan.g_loss") if any(op in target for target in seen)]
    assert len(fused) == (5 if kernel else 0), f"fastgan ops in the compiled graph: {fused}; graph: {seen}"


def test_every_activation_has_an_in_place_form():
    assert set(ACT_IN_PLACE) == set(ACTIVATIONS)
    for name, spec in ACTIVATIONS.items():
        x = torch.randn(50, dtype=torch.float64) * 3
        torch.testing.assert_close(ACT_IN_PLACE[name](x.clone(), 0.2), spec.func(x, 0.2))


# ---------------------------------------------------------------- bce_with_logits

BCE_SHAPES = [(7,), (3, 5), (2, 3, 4, 5)]  # 0, 1 and 15 blocks of AVX2's 8 lanes, and a tail


_CPU_LOSSES = bce_module._cpu_losses


class _OneLane:
    """fastgan.fused._cpu_losses computing one lane at a time (the loop of CPUs without AVX2, and every tail)."""

    @staticmethod
    def bce_with_logits(x, t, grad, loss, n, scale, vectorised, threads, target_value):
        return _CPU_LOSSES.bce_with_logits(x, t, grad, loss, n, scale, False, threads, target_value)


@pytest.fixture(params=["one pass", "one pass, one lane", "few ops", "few passes"])
def bce_formula(request, monkeypatch):
    """Each of the eager path's ways: fastgan.fused._cpu_losses (float32, no weight; its AVX2 and its one-lane loop),
    and, without it, _BCEEager's two formulas (chosen by input size), on the small inputs of these tests."""
    assert bce_module._cpu_losses is not None, "fastgan.fused._cpu_losses is not built"
    if request.param == "one pass, one lane":
        monkeypatch.setattr(bce_module, "_cpu_losses", _OneLane)
    elif request.param != "one pass":
        monkeypatch.setattr(bce_module, "_cpu_losses", None)
        monkeypatch.setattr(bce_module, "FEW_PASSES_NUMEL", 0 if request.param == "few passes" else 1 << 62)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BCE_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_eager_path_matches_reference(dtype, shape, reduction, weighted, bce_formula):
    g = torch.Generator().manual_seed(len(shape))
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 6).to(dtype)
    t = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
    w = (torch.rand(shape[-1:], generator=g, dtype=torch.float64) * 2).to(dtype) if weighted else None
    dy = None if reduction != "none" else torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    # The target as a constant, as GAN losses pass it: a target that requires grad takes the reference. The
    # first-order gradient alone (what a backward without create_graph computes) and with the second order.
    for second_order in (False, True) if dtype in (torch.float32, torch.float64) else (False,):
        _assert_same(lambda x: functional.binary_cross_entropy_with_logits(x, t, w, reduction),
                     lambda x: reference.bce_with_logits(x, t, w, reduction), (x,), dtype, dy, second_order)
    _assert_same(lambda x, t: functional.binary_cross_entropy_with_logits(x, t, w, reduction),
                 lambda x, t: reference.bce_with_logits(x, t, w, reduction), (x, t), dtype, dy)


@pytest.mark.parametrize("magnitude", [20.0, 100.0, 1e4])
def test_bce_eager_path_at_extreme_logits_is_finite_and_as_accurate_as_torch(magnitude, bce_formula):
    x = torch.tensor([-magnitude, magnitude, -magnitude, magnitude, 0.0, -magnitude, magnitude])
    t = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5, 0.1, 0.9])
    exact = reference.bce_with_logits(x.double(), t.double(), reduction="none")
    ours = functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    theirs = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert torch.isfinite(ours).all()
    assert ((ours.double() - exact).abs() <= (theirs.double() - exact).abs() + 1e-30).all()
    _assert_same(lambda x: functional.binary_cross_entropy_with_logits(x, t, reduction="none"),
                 lambda x: reference.bce_with_logits(x, t, reduction="none"), (x,), torch.float32,
                 torch.ones(7))


def test_bce_eager_path_is_exact_where_torch_cancels(bce_formula):
    # x << 0 with target 0: the loss is softplus(x) ~ exp(x), which torch's (1 - t) x - logsigmoid(x) loses.
    x, t = torch.full((4,), -30.0), torch.zeros(4)
    exact = math.log1p(math.exp(-30.0))
    assert functional.binary_cross_entropy_with_logits(x, t).item() == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_eager_path_gives_infinite_logits_their_documented_loss(reduction, bce_formula):
    # +inf where the target disagrees with the logit, NaN where it agrees exactly (0 * inf), as the reference.
    x = torch.tensor([-math.inf, -math.inf, math.inf, math.inf, math.inf, -math.inf, 3.0])
    t = torch.tensor([1.0, 0.5, 0.0, 0.5, 1.0, 0.0, 1.0])
    for keep in ([0, 1, 2, 3, 6], list(range(7))):
        want = reference.bce_with_logits(x[keep], t[keep], reduction=reduction)
        out = functional.binary_cross_entropy_with_logits(x[keep], t[keep], reduction=reduction)
        torch.testing.assert_close(out, want, equal_nan=True)


def test_bce_eager_path_propagates_nan_and_handles_empty_and_strided_inputs(bce_formula):
    x = torch.tensor([0.3, math.nan, -2.0], requires_grad=True)
    out = functional.binary_cross_entropy_with_logits(x, torch.tensor([1.0, 0.0, 0.0]), reduction="none")
    assert out[1].isnan() and out[[0, 2]].isfinite().all()
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad[1].isnan() and grad[[0, 2]].isfinite().all()
    for reduction in ("mean", "sum", "none"):
        e = torch.empty(0, 3)
        torch.testing.assert_close(functional.binary_cross_entropy_with_logits(e, e, reduction=reduction),
                                   F.binary_cross_entropy_with_logits(e, e, reduction=reduction), equal_nan=True)
    base = torch.randn(8, 6)
    x, t = base.t()[::2], torch.rand(6, 8)[::2]
    assert not x.is_contiguous()
    _assert_same(lambda x: functional.binary_cross_entropy_with_logits(x, t, reduction="sum"),
                 lambda x: reference.bce_with_logits(x, t, reduction="sum"), (x,), torch.float32)


class _Counting:
    """fastgan.fused._cpu_losses, counting its calls."""

    def __init__(self):
        self.calls = 0

    def bce_with_logits(self, *args, **kwargs):
        self.calls += 1
        return _CPU_LOSSES.bce_with_logits(*args, **kwargs)


def test_float32_cpu_bce_takes_the_one_pass_extension_once_per_forward_and_not_in_backward(monkeypatch):
    counting = _Counting()
    monkeypatch.setattr(bce_module, "_cpu_losses", counting)
    x = torch.randn(1000, requires_grad=True)
    for reduction in ("mean", "sum", "none"):
        out = functional.binary_cross_entropy_with_logits(x, torch.rand(1000), reduction=reduction)
        assert type(out.grad_fn).__name__ == "_BCEOnePassBackward"
        assert counting.calls == 1
        torch.autograd.grad(out.sum(), x)
        assert counting.calls == 1
        counting.calls = 0
    with torch.no_grad():  # no graph: the extension computes the loss alone, without the Function
        out = functional.binary_cross_entropy_with_logits(x, torch.zeros(1000))
    assert out.grad_fn is None and counting.calls == 1
    torch.testing.assert_close(out, F.binary_cross_entropy_with_logits(x.detach(), torch.zeros(1000)))
    counting.calls = 0
    # Weighted and float64 calls take torch's op; bfloat16 ones the extension, on their float32 copies.
    for args in ((x, torch.rand(1000), torch.rand(1000)), (x.double(), torch.rand(1000).double())):
        functional.binary_cross_entropy_with_logits(*args)
    assert counting.calls == 0
    functional.binary_cross_entropy_with_logits(x.bfloat16(), torch.rand(1000).bfloat16())
    assert counting.calls == 1


@pytest.mark.parametrize("n", [1, 8, 9, 4095, 65537, 1 << 20])
@pytest.mark.parametrize("vectorised", [True, False])
def test_bce_one_pass_is_within_float32_rounding_of_float64_at_every_size(n, vectorised):
    # Mixed magnitudes, hard and soft targets: every loss within a few ulps of the exact one (torch's formula
    # cancels on confident fakes, tested above), the sum within float32 rounding, the gradient too.
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g) * torch.tensor([1.0, 10.0, 100.0, 1e4])[torch.randint(4, (n,), generator=g)]
    t = torch.where(torch.rand(n, generator=g) < 0.8, torch.randint(2, (n,), generator=g).float(),
                    torch.rand(n, generator=g))
    exact = reference.bce_with_logits(x.double(), t.double(), reduction="none")
    grad = torch.empty(n)
    loss = torch.empty(n)
    total = _CPU_LOSSES.bce_with_logits(x.data_ptr(), t.data_ptr(), grad.data_ptr(), loss.data_ptr(), n, 1.0,
                                        vectorised=vectorised)
    # libmvec's expf and log1pf are within 4 ulp; the terms add two roundings.
    assert ((loss.double() - exact).abs() <= 8 * torch.finfo(torch.float32).eps * exact.abs() + 1e-30).all()
    assert abs(total - exact.sum().item()) <= 1e-6 * exact.abs().sum().item()
    exact_grad = torch.sigmoid(x.double()) - t.double()
    torch.testing.assert_close(grad.double(), exact_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n", [(1 << 15) * 2 + 5, (1 << 15) * 3 + 8, 1 << 20])
def test_bce_one_pass_on_several_threads_writes_what_one_thread_writes(n):
    g = torch.Generator().manual_seed(n)
    x, t = torch.randn(n, generator=g) * 8, torch.rand(n, generator=g)
    outputs = {}
    for threads in (1, 2, 3):
        grad, loss = torch.full((n,), math.nan), torch.full((n,), math.nan)
        total = _CPU_LOSSES.bce_with_logits(x.data_ptr(), t.data_ptr(), grad.data_ptr(), loss.data_ptr(), n, 0.5,
                                            threads=threads)
        outputs[threads] = total, grad, loss
    for threads in (2, 3):  # every element written, the same bits; the sum to double's rounding
        assert outputs[threads][0] == pytest.approx(outputs[1][0], rel=1e-12)
        assert torch.equal(outputs[threads][1], outputs[1][1]) and torch.equal(outputs[threads][2], outputs[1][2])


def test_bce_one_pass_create_graph_backward_refuses_inputs_modified_in_place():
    x = torch.randn(5, requires_grad=True)
    logits = x * 2
    loss = functional.binary_cross_entropy_with_logits(logits, torch.rand(5))
    torch.autograd.grad(loss, x, create_graph=True, retain_graph=True)  # unmodified: fine
    with torch.no_grad():
        logits.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_one_pass_losses_are_float32_whatever_the_default_dtype():
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x = torch.randn(9, dtype=torch.float32, requires_grad=True)
        for out in (functional.binary_cross_entropy_with_logits(x, torch.rand(9, dtype=torch.float32)),
                    losses.d_loss(x, x), losses.g_loss(x)):
            assert out.dtype == torch.float32
    finally:
        torch.set_default_dtype(default)


def test_bce_eager_path_errors_are_the_public_ones():
    with pytest.raises(ValueError, match="target shape"):
        functional.binary_cross_entropy_with_logits(torch.randn(3), torch.rand(3, 1))
    with pytest.raises(ValueError, match="reduction must be one of"):
        functional.binary_cross_entropy_with_logits(torch.randn(3), torch.rand(3), reduction="avg")


# ---------------------------------------------------------------- d_loss, g_loss

_ORDERS = {torch.float32: (False, True), torch.float64: (False, True), torch.float16: (False,),
           torch.bfloat16: (False,)}  # first-order gradient alone, then with the second order


@pytest.fixture(params=["one pass", "one pass, one lane", "torch ops"])
def gan_loss_path(request, monkeypatch):
    """d_loss('bce'), d_loss('rpgan') and g_loss('ns') through fastgan.fused._cpu_losses (its AVX2 and one-lane
    loops), and without it."""
    if request.param == "one pass, one lane":
        monkeypatch.setattr(bce_module, "_cpu_losses", _OneLane)
    elif request.param == "torch ops":
        monkeypatch.setattr(gan_loss_module, "_one_pass", lambda *logits: 0)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind, smoothing", [("bce", 0.0), ("bce", 0.1), ("hinge", 0.0), ("lsgan", 0.0),
                                             ("wgan", 0.0), ("rpgan", 0.0)])
def test_d_loss_eager_path_matches_reference_to_second_order(dtype, kind, smoothing, gan_loss_path):
    g = torch.Generator().manual_seed(3)
    r = (torch.randn(6, 1, generator=g, dtype=torch.float64) * 4).to(dtype)
    f = (torch.randn(6 if kind == "rpgan" else 10, 1, generator=g, dtype=torch.float64) * 4).to(dtype)  # rpgan: pairs
    for second_order in _ORDERS[dtype]:
        _assert_same(lambda r, f: losses.d_loss(r, f, kind, smoothing),
                     lambda r, f: reference.d_loss(r, f, kind, smoothing), (r, f), dtype, second_order=second_order)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(losses.G_LOSS_KINDS))
def test_g_loss_eager_path_matches_reference_to_second_order(dtype, kind, gan_loss_path):
    # 17 logits: two blocks of AVX2's 8 lanes and a tail.
    f = (torch.randn(17, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 4).to(dtype)
    r = (torch.randn(17, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 4).to(dtype)
    for second_order in _ORDERS[dtype]:
        if kind == "rpgan":  # pairs each fake logit with a real one; both get gradients
            _assert_same(lambda f, r: losses.g_loss(f, kind, r), lambda f, r: reference.g_loss(f, kind, r), (f, r),
                         dtype, second_order=second_order)
            continue
        _assert_same(lambda f: losses.g_loss(f, kind), lambda f: reference.g_loss(f, kind), (f,), dtype,
                     second_order=second_order)


def test_bce_type_gan_losses_take_the_one_pass_extension_once_per_logits(monkeypatch):
    counting = _Counting()
    monkeypatch.setattr(bce_module, "_cpu_losses", counting)
    r, f = torch.randn(64, 1, requires_grad=True), torch.randn(64, 1, requires_grad=True)
    for loss_fn, calls, wrt, node in ((lambda: losses.d_loss(r, f), 2, (r, f), "_BCEMeansOnePassBackward"),
                                      (lambda: losses.d_loss(r, f, label_smoothing=0.1), 2, (r, f),
                                       "_BCEMeansOnePassBackward"),
                                      (lambda: losses.g_loss(f), 1, f, "_BCEMeansOnePassBackward"),
                                      (lambda: losses.g_loss(f[:1]), 1, f, "_BCEMeansOnePassBackward"),
                                      # rpgan: one pass over the pairs' differences
                                      (lambda: losses.d_loss(r, f, "rpgan"), 1, (r, f), "_RpGANOnePassBackward"),
                                      (lambda: losses.g_loss(f, "rpgan", r), 1, (r, f), "_RpGANOnePassBackward")):
        loss = loss_fn()
        assert type(loss.grad_fn).__name__ == node and counting.calls == calls
        torch.autograd.grad(loss, wrt)
        assert counting.calls == calls
        counting.calls = 0
    # Without a graph, the extension alone at any size.
    with torch.no_grad():
        assert losses.g_loss(f[:8]).grad_fn is None and counting.calls == 1
        assert losses.d_loss(r[:8], f[:8], "rpgan").grad_fn is None and counting.calls == 2
    counting.calls = 0
    losses.d_loss(r, f, "hinge"), losses.g_loss(f, "saturating"), losses.g_loss(f.double())
    assert counting.calls == 0


@pytest.mark.parametrize("magnitude", [20.0, 100.0, 1e4])
def test_gan_losses_at_extreme_logits_are_as_accurate_as_torch(magnitude, gan_loss_path):
    r = torch.tensor([magnitude, -magnitude, 0.0, 3.0])
    f = torch.tensor([-magnitude, magnitude, 0.0, -3.0])
    cases = [(losses.d_loss(r, f), reference.d_loss(r.double(), f.double()),
              F.softplus(-r).mean() + F.softplus(f).mean()),
             (losses.g_loss(f), reference.g_loss(f.double()), F.softplus(-f).mean()),
             (losses.g_loss(r, "saturating"), reference.g_loss(r.double(), "saturating"), -F.softplus(r).mean())]
    for ours, exact, theirs in cases:
        assert torch.isfinite(ours)
        assert abs(ours.double() - exact) <= abs(theirs.double() - exact)
    # Confidently right logits: each loss is softplus(-magnitude), far below float32's resolution of 1.
    tiny = losses.g_loss(torch.full((3,), magnitude))
    # (to float32's relative precision above its smallest normal number, 1.2e-38)
    exact = math.log1p(math.exp(-magnitude))
    assert tiny.item() == pytest.approx(exact, rel=1e-6, abs=torch.finfo(torch.float32).tiny)


def test_gan_losses_eager_path_propagates_nan_and_accepts_strided_logits(gan_loss_path):
    r = torch.tensor([0.3, math.nan])
    for kind in losses.D_LOSS_KINDS:
        assert losses.d_loss(r, torch.zeros(2), kind).isnan()
    for kind in losses.G_LOSS_KINDS:
        assert losses.g_loss(r, kind, real_logits=torch.zeros(2)).isnan()
        assert losses.g_loss(torch.zeros(2), kind, real_logits=r).isnan() or kind != "rpgan"
    f = torch.randn(6, 4)[:, ::2]
    assert not f.is_contiguous()
    _assert_same(lambda f: losses.g_loss(f), lambda f: reference.g_loss(f), (f,), torch.float32)
    _assert_same(lambda f: losses.d_loss(f, f.flip(0)), lambda f: reference.d_loss(f, f.flip(0)), (f,), torch.float32)


def test_r1_penalty_through_the_eager_path_has_the_reference_double_backward():
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(5, 3, requires_grad=True)
    results = []
    for loss in (losses.g_loss, reference.g_loss):
        logits = torch.tanh(x @ w)
        penalty = losses.r1_penalty(logits, x) + loss(logits)
        results.append(torch.autograd.grad(penalty, w)[0])
    torch.testing.assert_close(*results)


# ---------------------------------------------------------------- bias_act

BIAS_ACT_CASES = [("linear", None, None), ("relu", 1.5, None), ("lrelu", None, 0.8), ("tanh", 1.4, 0.9),
                  ("sigmoid", 2.0, None), ("lrelu", None, None)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act, gain, clamp", BIAS_ACT_CASES)
@pytest.mark.parametrize("shape, dim", [((2, 4, 3, 5), 1), ((6, 4), 1), ((4,), 0), ((3, 2, 4), 2)])
def test_bias_act_eager_path_matches_reference_to_second_order(dtype, act, gain, clamp, shape, dim):
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).to(dtype)
    b = torch.randn(shape[dim], generator=g, dtype=torch.float64).to(dtype)
    dy = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    _assert_same(lambda x, b: ops.bias_act(x, b, act, None, gain, clamp, dim),
                 lambda x, b: reference.bias_act(x, b, act, None, gain, clamp, dim), (x, b), dtype, dy,
                 second_order=dtype in (torch.float32, torch.float64))


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_bias_act_eager_path_without_bias_leaves_x_alone(act):
    x = torch.randn(3, 4, requires_grad=True)
    before = x.detach().clone()
    y = ops.bias_act(x, None, act)
    assert y.data_ptr() != x.data_ptr()
    torch.testing.assert_close(x.detach(), before)
    torch.testing.assert_close(y, reference.bias_act(before, None, act))


def test_bias_act_eager_path_keeps_layouts_extremes_nan_and_empty():
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    b = torch.randn(3)
    y = ops.bias_act(x, b)
    assert y.is_contiguous(memory_format=torch.channels_last)
    _assert_same(lambda x, b: ops.bias_act(x, b), lambda x, b: reference.bias_act(x, b), (x, b), torch.float32,
                 torch.randn(2, 3, 4, 5))
    strided = torch.randn(2, 6, 4)[:, ::2]
    _assert_same(lambda x, b: ops.bias_act(x, b, "tanh"), lambda x, b: reference.bias_act(x, b, "tanh"),
                 (strided, b), torch.float32, torch.randn(2, 3, 4))
    big = torch.tensor([[1e4, -1e4, math.nan]])
    torch.testing.assert_close(ops.bias_act(big, None, "sigmoid"), reference.bias_act(big, None, "sigmoid"),
                               equal_nan=True)
    assert ops.bias_act(big, None, "lrelu")[0, 2].isnan()
    assert ops.bias_act(torch.empty(0, 3), b).shape == (0, 3)


# ---------------------------------------------------------------- batch_norm_act

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_norm_act_eager_path_matches_reference_to_second_order(dtype, act, training, channels_last):
    g = torch.Generator().manual_seed(6)
    x = (torch.randn(3, 4, 2, 5, generator=g, dtype=dtype) * 2 + 1)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w, b = torch.rand(4, generator=g, dtype=dtype) + 0.5, torch.randn(4, generator=g, dtype=dtype)
    stats = [torch.randn(4, generator=g, dtype=dtype), torch.rand(4, generator=g, dtype=dtype) + 0.5]
    fast_stats, ref_stats = [s.clone() for s in stats], [s.clone() for s in stats]
    dy = torch.randn(3, 4, 2, 5, generator=g, dtype=dtype)
    _assert_same(lambda x, w, b: ops.batch_norm_act(x, w, b, *fast_stats, training, 0.1, 1e-5, act, 0.2),
                 lambda x, w, b: reference.batch_norm_act(x, w, b, *ref_stats, training, 0.1, 1e-5, act, 0.2),
                 (x, w, b), dtype, dy, second_order=True)
    for s, r in zip(fast_stats, ref_stats):
        torch.testing.assert_close(s, r, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_batch_norm_act_eager_path_computes_reduced_precision_in_float32(dtype):
    x = torch.randn(4, 3, 5, 5).to(dtype)
    w, b = torch.rand(3) + 0.5, torch.randn(3)
    _assert_same(lambda x, w, b: ops.batch_norm_act(x, w, b, None, None, True, act="lrelu", alpha=0.2),
                 lambda x, w, b: reference.batch_norm_act(x, w, b, None, None, True, act="lrelu", alpha=0.2),
                 (x, w, b), dtype, torch.randn(4, 3, 5, 5).to(dtype))


def test_batch_norm_act_eager_path_updates_running_stats_as_batchnorm2d():
    torch.manual_seed(0)
    ref = torch.nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.normal_()
    w, b = ref.weight.detach().clone(), ref.bias.detach().clone()
    mean, var = torch.zeros(3), torch.ones(3)
    for step in range(3):
        x = torch.randn(8, 3, 4, 4) * (step + 1) + step
        out = ops.batch_norm_act(x, w, b, mean, var, True, 0.3, ref.eps, "relu")
        torch.testing.assert_close(out, F.relu(ref(x)))
        torch.testing.assert_close(mean, ref.running_mean)
        torch.testing.assert_close(var, ref.running_var)
    ref.eval()
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(ops.batch_norm_act(x, w, b, mean, var, False, 0.3, ref.eps, "relu"), F.relu(ref(x)))


def test_batch_norm_act_eager_path_propagates_nan_and_checks_arguments():
    x = torch.randn(4, 2, 3)
    x[0, 0, 0] = math.nan
    y = ops.batch_norm_act(x, None, None, None, None, True, act="linear")
    assert y[:, 0].isnan().all() and y[:, 1].isfinite().all()
    with pytest.raises(ValueError, match="more than one value per channel"):
        ops.batch_norm_act(torch.randn(1, 3), None, None, None, None, True)
    with pytest.raises(ValueError, match="weight must have shape"):
        ops.batch_norm_act(torch.randn(2, 3), torch.ones(2), None, None, None, True)
