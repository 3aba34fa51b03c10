"""Every call path of the drop-in binary_cross_entropy_with_logits and of the GAN losses on the CPU: which
implementation runs (the one-pass extension, torch's own op, _BCEEager, torch's ops) and that each gives the
reference's values and the gradients of every argument that requires grad."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fastgan import functional, losses, reference
from fastgan.fused import bce_with_logits as bce_module

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}
WEIGHT_SHAPES = {"full": (4, 6), "row": (4, 1), "column": (6,), "scalar": ()}


def _leaf(t, requires_grad):
    return None if t is None else t.detach().clone().requires_grad_(requires_grad)


def _bce_and_grads(fn, x, t, w, pw, reduction, needs, dy, create_graph=False):
    args = [_leaf(a, need) for a, need in zip((x, t, w, pw), needs)]
    out = fn(args[0], args[1], args[2], reduction, args[3])
    wrt = [a for a, need in zip(args, needs) if need]
    return out, torch.autograd.grad(out, wrt, dy, create_graph=create_graph), args


def _case(dtype, weight, pos_weight, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64).mul(5).to(dtype)
    t = torch.rand(4, 6, generator=g, dtype=torch.float64).to(dtype)
    w = None if weight is None else torch.rand(WEIGHT_SHAPES[weight], generator=g, dtype=torch.float64).mul(2).to(dtype)
    pw = None if pos_weight is None else torch.rand(6, generator=g, dtype=torch.float64).mul(3).to(dtype)
    return x, t, w, pw


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weight", [None, "full", "row", "column", "scalar"])
@pytest.mark.parametrize("pos_weight", [None, "column"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("grads", ["input", "input, target", "all"])
def test_bce_every_path_matches_the_reference_in_value_and_every_gradient(dtype, weight, pos_weight, reduction,
                                                                          grads):
    x, t, w, pw = _case(dtype, weight, pos_weight)
    needs = (True, grads != "input", grads == "all" and w is not None, grads == "all" and pw is not None)
    dy = None if reduction != "none" else torch.randn(4, 6, dtype=dtype)
    out, got, _ = _bce_and_grads(functional.binary_cross_entropy_with_logits, x, t, w, pw, reduction, needs, dy)
    ref, want, _ = _bce_and_grads(reference.bce_with_logits, x, t, w, pw, reduction, needs, dy)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    torch.testing.assert_close(out, ref, **TOL[dtype])
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("weight", [None, "row"])
@pytest.mark.parametrize("pos_weight", [None, "column"])
def test_bce_create_graph_backward_of_every_path_has_the_reference_second_derivative(weight, pos_weight):
    x, t, w, pw = _case(torch.float64, weight, pos_weight, seed=1)
    needs = (True, True, w is not None, pw is not None)
    grads = {}
    for name, fn in (("ours", functional.binary_cross_entropy_with_logits), ("ref", reference.bce_with_logits)):
        _, first, args = _bce_and_grads(fn, x, t, w, pw, "mean", needs, None, create_graph=True)
        norm = sum(g.square().sum() for g in first)
        grads[name] = torch.autograd.grad(norm, [a for a, need in zip(args, needs) if need], allow_unused=True)
    for a, b in zip(grads["ours"], grads["ref"]):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


class _Counting:
    def __init__(self):
        self.calls = 0

    def bce_with_logits(self, *args):
        self.calls += 1
        return _CPU_LOSSES.bce_with_logits(*args)


_CPU_LOSSES = bce_module._cpu_losses


def test_bce_paths_take_the_implementation_they_are_documented_to(monkeypatch):
    counting = _Counting()
    monkeypatch.setattr(bce_module, "_cpu_losses", counting)
    torchs = []
    real_op = torch.binary_cross_entropy_with_logits
    monkeypatch.setattr(torch, "binary_cross_entropy_with_logits", lambda *a: torchs.append(1) or real_op(*a))
    x = torch.randn(4, 6, requires_grad=True)
    t = torch.rand(4, 6, requires_grad=True)
    # float32 without weights, the target requiring grad or not: the one pass, one call, none in the backward
    for target in (t, t.detach()):
        loss = functional.binary_cross_entropy_with_logits(x, target)
        assert type(loss.grad_fn).__name__ == "_BCEOnePassBackward"
        torch.autograd.grad(loss, [a for a in (x, target) if a.requires_grad])
    assert counting.calls == 2 and not torchs
    # float16 / bfloat16: the one pass on float32 copies, rounded once
    for dtype in (torch.float16, torch.bfloat16):
        out = functional.binary_cross_entropy_with_logits(x.detach().to(dtype), t.detach().to(dtype))
        assert out.dtype == dtype
    assert counting.calls == 4 and not torchs
    # weight, pos_weight (no grad), float64, a weight that requires grad: torch's op, once each
    w, pw = torch.rand(6), torch.rand(6)
    for args, kw in (((x, t), dict(weight=w)), ((x, t), dict(pos_weight=pw)), ((x.double(), t.double()), {}),
                     ((x, t), dict(weight=w.clone().requires_grad_()))):
        functional.binary_cross_entropy_with_logits(*args, **kw)
    assert len(torchs) == 4 and counting.calls == 4
    # a pos_weight that requires grad (torch's op has no d / d pos_weight): _BCEEager
    loss = functional.binary_cross_entropy_with_logits(x, t, pos_weight=pw.clone().requires_grad_())
    assert type(loss.grad_fn).__name__ == "_BCEEagerBackward" and len(torchs) == 4


def test_bce_soft_target_backward_refuses_inputs_modified_in_place():
    x = torch.randn(5, requires_grad=True)
    t = torch.rand(5, requires_grad=True)
    target = t * 1.0
    loss = functional.binary_cross_entropy_with_logits(x * 2, target)
    with torch.no_grad():
        target.add_(0.1)  # d / d target reads x only, but a modified target is refused as torch's saved tensors are
    with pytest.raises(RuntimeError, match="modified in place"):
        torch.autograd.grad(loss, t)


def test_bce_weighted_paths_give_torchs_nan_for_an_infinite_logit_against_its_target():
    # The documented difference holds where fastgan's formula runs; torch's op gives its own values.
    x = torch.tensor([-math.inf, 3.0])
    t = torch.tensor([1.0, 0.0])
    w = torch.ones(2)
    assert functional.binary_cross_entropy_with_logits(x, t, reduction="none")[0].item() == math.inf
    out = functional.binary_cross_entropy_with_logits(x, t, w, reduction="none")
    torch.testing.assert_close(out, F.binary_cross_entropy_with_logits(x, t, w, reduction="none"), equal_nan=True)


def test_rpgan_one_pass_backward_refuses_logits_modified_in_place():
    r, f = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    real = r * 1.0
    loss = losses.d_loss(real, f, "rpgan")
    assert type(loss.grad_fn).__name__ == "_RpGANOnePassBackward"
    torch.autograd.grad(loss, (r, f), create_graph=True, retain_graph=True)  # unmodified: fine
    with torch.no_grad():
        real.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        torch.autograd.grad(loss, (r, f), create_graph=True)


@pytest.mark.parametrize("n", [1, 8, 1 << 14])
@pytest.mark.parametrize("kind", ["bce", "rpgan"])
def test_gan_losses_take_the_one_pass_at_every_size_and_match_the_reference(n, kind):
    g = torch.Generator().manual_seed(n)
    r = (torch.randn(n, generator=g) * 4).requires_grad_()
    f = (torch.randn(n, generator=g) * 4).requires_grad_()
    ours = losses.d_loss(r, f, kind)
    assert type(ours.grad_fn).__name__ in ("_BCEMeansOnePassBackward", "_RpGANOnePassBackward")
    ref = reference.d_loss(r.double(), f.double(), kind)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-6, atol=1e-7)
    got = torch.autograd.grad(ours, (r, f))
    want = torch.autograd.grad(reference.d_loss(r, f, kind), (r, f))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_half_precision_takes_the_one_pass_on_float32_copies_with_every_gradient(dtype, reduction):
    x, t, _, _ = _case(dtype, None, None, seed=2)
    needs = (True, True, False, False)
    dy = None if reduction != "none" else torch.randn(4, 6, dtype=torch.float64).to(dtype)
    out, got, _ = _bce_and_grads(functional.binary_cross_entropy_with_logits, x, t, None, None, reduction, needs, dy)
    ref, want, _ = _bce_and_grads(reference.bce_with_logits, x, t, None, None, reduction, needs, dy)
    assert type(out.grad_fn).__name__ == "_BCEOnePassBackward"
    eps = torch.finfo(dtype).eps  # one rounding of the same float32 values
    assert out.dtype == ref.dtype == dtype
    torch.testing.assert_close(out, ref, rtol=eps, atol=eps)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == dtype
        torch.testing.assert_close(a, b, rtol=eps, atol=eps)


def test_fast_apply_gives_functorch_transforms_the_full_apply():
    from fastgan.fused.eager import fast_apply

    class Double(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            return x * 2

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return g * 2

    apply = fast_apply(Double)
    x = torch.randn(3, requires_grad=True)
    assert type(apply(x).grad_fn).__name__ == "DoubleBackward"
    torch.testing.assert_close(torch.autograd.grad(apply(x).sum(), x)[0], torch.full((3,), 2.0))
    # under a transform (the C apply alone would not see it) and on a tensor one wrapped
    torch.testing.assert_close(torch.func.grad(lambda x: apply(x).sum())(torch.randn(3)), torch.full((3,), 2.0))
    torch.testing.assert_close(torch.func.vmap(apply)(torch.ones(2, 3)), torch.full((2, 3), 2.0))
