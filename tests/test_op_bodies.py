"""The fused ops' own bodies on the CPU: torch.ops.fastgan.* called directly, forward and backward ops and their
autograd formulas (a plain backward and a create_graph one), against autograd of the references in float64.

The public functions take their fast eager paths on the CPU, so the op bodies and the gradient functions the
Triton kernels are checked against (d_loss_grads, g_loss_grad, bce_with_logits_grad, bias_act_grad_from_output,
batch_norm_act_grad, the activation table's derivatives) run in the rest of the suite only under the Triton
interpreter. Here they are the thing under test, for every loss kind, activation, gain, clamp and dtype.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgan import ops as fastgan_ops
from fastgan import reference
from fastgan.fused.batch_norm_act import batch_norm_act_grad
from fastgan.fused.bce_with_logits import bce_with_logits_grad
from fastgan.fused.bias_act import bias_act_grad_from_output
from fastgan.fused.gan_loss import d_loss_grads, g_loss_grad

ops = torch.ops.fastgan
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
# Tolerances for a result in each dtype, against a float64 reference on the same (exactly widened) inputs:
# a few rounding errors of the dtype, and an absolute term for values that cancel (1 - y^2 near |y| = 1).
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float16: dict(rtol=2e-3, atol=4e-3),
       torch.bfloat16: dict(rtol=1.6e-2, atol=3e-2), torch.float64: dict(rtol=1e-12, atol=1e-13)}
# The losses' ops compute in float32 whatever their input's dtype.
F32 = TOL[torch.float32]
FEW = settings(max_examples=25, deadline=None)
# g_loss's rpgan runs as fastgan::d_loss with the roles swapped (tested there); fastgan::g_loss takes the others.
G_OP_KINDS = [k for k in reference.G_LOSS_KINDS if k != "rpgan"]


def _close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """actual within dtype's tolerance of expected, the absolute term scaled by expected's largest value (sums of
    terms, as second derivatives are, round relative to their largest term)."""
    tol = TOL[dtype]
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.double(), expected.double(), rtol=tol["rtol"], atol=tol["atol"] * scale)


def _f64(t: torch.Tensor) -> torch.Tensor:
    """t widened to float64 (exactly), a fresh leaf that requires grad."""
    return t.detach().double().requires_grad_(True)


def _grads(out: torch.Tensor, inputs, upstream=None, create_graph=False):
    """d out / d inputs, zeros where out does not depend on an input."""
    grads = torch.autograd.grad(out, inputs, upstream, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(i) if g is None else g for g, i in zip(grads, inputs)]


def _second(first, inputs):
    """d ||first||^2 / d inputs: the second-order term an R1 penalty differentiates."""
    norm = sum(g.square().sum() for g in first)
    if not norm.requires_grad:  # gradients that are constants (wgan, hinge, linear): no second derivative
        return [torch.zeros_like(i) for i in inputs]
    return _grads(norm, inputs)


def _logits(shape, dtype, seed, scale=2.0) -> torch.Tensor:
    """Random logits in dtype, none within 0.05 of a loss's kink (0, +-1), where a one-sided derivative is a choice."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale
    for kink in (-1.0, 0.0, 1.0):
        x = torch.where((x - kink).abs() < 0.05, x + 0.1, x)
    return x.to(dtype)


# ---------------------------------------------------------------- fastgan::d_loss, fastgan::g_loss

@pytest.mark.parametrize("kind", reference.D_LOSS_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_d_loss_op_returns_the_reference_loss_and_its_gradients(kind, dtype):
    real, fake = _logits((7, 3), dtype, 1), _logits((7 if kind == "rpgan" else 5, 3), dtype, 2)  # rpgan: pairs
    s = 0.1 if kind == "bce" else 0.0
    loss, grad = ops.d_loss(real, fake, kind, s)
    r, f = _f64(real), _f64(fake)
    ref = reference.d_loss(r, f, kind, s)
    gr, gf = _grads(ref, (r, f))
    assert loss.dtype == grad.dtype == torch.float32 and grad.shape == (real.numel() + fake.numel(),)
    torch.testing.assert_close(loss.double(), ref.detach(), **F32)
    torch.testing.assert_close(grad.double(), torch.cat([gr.flatten(), gf.flatten()]), **F32)


@pytest.mark.parametrize("kind", G_OP_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_g_loss_op_returns_the_reference_loss_and_its_gradient(kind, dtype):
    fake = _logits((6, 2), dtype, 3)
    loss, grad = ops.g_loss(fake, kind)
    f = _f64(fake)
    ref = reference.g_loss(f, kind)
    (gf,) = _grads(ref, (f,))
    assert loss.dtype == grad.dtype == torch.float32 and grad.shape == (fake.numel(),)
    torch.testing.assert_close(loss.double(), ref.detach(), **F32)
    torch.testing.assert_close(grad.double(), gf.flatten(), **F32)


@pytest.mark.parametrize("kind", reference.D_LOSS_KINDS)
@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float32), (torch.float16, torch.float16),
                                    (torch.bfloat16, torch.bfloat16), (torch.float32, torch.float16)],
                         ids=["float32", "float16", "bfloat16", "mixed"])
def test_d_loss_op_backward_scales_its_gradients_by_the_upstream_gradient(kind, dtypes):
    # A plain backward runs fastgan::loss_grad: one launch for both inputs when their dtypes agree, one each when not.
    real = _logits((4, 1), dtypes[0], 4).requires_grad_(True)
    fake = _logits((4 if kind == "rpgan" else 9, 1), dtypes[1], 5).requires_grad_(True)
    s = 0.2 if kind == "bce" else 0.0
    dr, df = torch.autograd.grad(ops.d_loss(real, fake, kind, s)[0], (real, fake), torch.tensor(-2.5))
    r, f = _f64(real), _f64(fake)
    gr, gf = _grads(reference.d_loss(r, f, kind, s), (r, f), torch.tensor(-2.5, dtype=torch.float64))
    assert (dr.dtype, df.dtype) == dtypes
    _close(dr, gr, dtypes[0])
    _close(df, gf, dtypes[1])


@pytest.mark.parametrize("kind", G_OP_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_g_loss_op_backward_scales_its_gradient_by_the_upstream_gradient(kind, dtype):
    fake = _logits((3, 4), dtype, 6).requires_grad_(True)
    (df,) = torch.autograd.grad(ops.g_loss(fake, kind)[0], fake, torch.tensor(1.75))
    f = _f64(fake)
    (gf,) = _grads(reference.g_loss(f, kind), (f,), torch.tensor(1.75, dtype=torch.float64))
    assert df.dtype == dtype
    _close(df, gf, dtype)


@pytest.mark.parametrize("kind", reference.D_LOSS_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_d_loss_op_create_graph_backward_has_the_reference_second_derivatives(kind, dtype):
    real = _logits((5, 2), dtype, 7).requires_grad_(True)
    fake = _logits((5 if kind == "rpgan" else 3, 2), dtype, 8).requires_grad_(True)
    s = 0.3 if kind == "bce" else 0.0
    first = _grads(ops.d_loss(real, fake, kind, s)[0], (real, fake), torch.tensor(0.5), create_graph=True)
    second = _second(first, (real, fake))
    r, f = _f64(real), _f64(fake)
    ref_first = _grads(reference.d_loss(r, f, kind, s), (r, f), torch.tensor(0.5, dtype=torch.float64),
                       create_graph=True)
    for actual, expected in zip([*first, *second], [*ref_first, *_second(ref_first, (r, f))]):
        assert actual.dtype == dtype
        _close(actual.detach(), expected, dtype)


@pytest.mark.parametrize("kind", G_OP_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_g_loss_op_create_graph_backward_has_the_reference_second_derivative(kind, dtype):
    fake = _logits((4, 2), dtype, 9).requires_grad_(True)
    first = _grads(ops.g_loss(fake, kind)[0], (fake,), torch.tensor(3.0), create_graph=True)
    f = _f64(fake)
    ref_first = _grads(reference.g_loss(f, kind), (f,), torch.tensor(3.0, dtype=torch.float64), create_graph=True)
    for actual, expected in zip([*first, *_second(first, (fake,))], [*ref_first, *_second(ref_first, (f,))]):
        _close(actual.detach(), expected, dtype)


@FEW
@given(real=st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=20),
       fake=st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=20),
       s=st.sampled_from([0.0, 0.1, 0.5]))
def test_loss_gradient_functions_equal_autograd_of_the_references_at_any_logit(real, fake, s):
    # The functions the kernels' gradients are checked against, over logits up to +-1e4 (float32 in, float32 out).
    r32, f32 = torch.tensor(real), torch.tensor(fake)
    f = _f64(f32)
    n = min(len(real), len(fake))
    for kind in reference.D_LOSS_KINDS:
        smoothing = s if kind == "bce" else 0.0
        # rpgan pairs the logits: as many fake ones as real ones.
        r32_, f32_ = (r32[:n], f32[:n]) if kind == "rpgan" else (r32, f32)
        r_, f_ = _f64(r32_), _f64(f32_)
        gr, gf = d_loss_grads(r32_, f32_, kind, smoothing)
        ref = _grads(reference.d_loss(r_, f_, kind, smoothing), (r_, f_))
        # The hinge's derivative at its kink is taken as relu's (0); away from it the two agree.
        at_kink = (r32 == 1).any() or (f32 == -1).any()
        if not (kind == "hinge" and at_kink):
            torch.testing.assert_close(gr.double(), ref[0], **F32)
            torch.testing.assert_close(gf.double(), ref[1], **F32)
    for kind in G_OP_KINDS:
        (ref,) = _grads(reference.g_loss(f, kind), (f,))
        torch.testing.assert_close(g_loss_grad(f32, kind).double(), ref, **F32)


def test_hinge_gradients_at_the_margins_are_relus_derivative_at_zero():
    # At D(x) = 1 and D(G(z)) = -1 the hinge terms are relu(0), whose derivative autograd takes as 0.
    r, f = torch.tensor([1.0, 0.5, 2.0]), torch.tensor([-1.0, -2.0, 0.0])
    gr, gf = d_loss_grads(r, f, "hinge", 0.0)
    r64, f64 = _f64(r), _f64(f)
    ref = _grads(reference.d_loss(r64, f64, "hinge"), (r64, f64))
    torch.testing.assert_close(gr.double(), ref[0], **F32)
    torch.testing.assert_close(gf.double(), ref[1], **F32)
    assert gr[0] == 0 and gf[0] == 0


# ---------------------------------------------------------------- fastgan::bce_with_logits, fastgan::loss_grad

WEIGHTS = {"none": (None, None), "weight": ((3,), None), "pos_weight": (None, (3,)), "both": ((5, 3), (3,))}


def _bce_args(dtype, weights, seed):
    g = torch.Generator().manual_seed(seed)
    x = _logits((5, 3), dtype, seed, scale=4.0)
    t = torch.rand(5, 3, generator=g).to(dtype)
    w, pw = (None if shape is None else (torch.rand(shape, generator=g) + 0.5).to(dtype) for shape in WEIGHTS[weights])
    return x, t, w, pw


def _bce_ref64(x, t, w, pw, reduction):
    x64 = _f64(x)
    wide = (None if a is None else a.double() for a in (t, w, pw))
    t64, w64, pw64 = wide
    return x64, reference.bce_with_logits(x64, t64, w64, reduction, pw64)


@pytest.mark.parametrize("reduction", reference.REDUCTIONS)
@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_op_returns_the_reference_loss_and_its_gradient(reduction, weights, dtype):
    x, t, w, pw = _bce_args(dtype, weights, 10)
    loss, grad = ops.bce_with_logits(x, t, w, pw, reduction)
    x64, ref = _bce_ref64(x, t, w, pw, reduction)
    (gx,) = _grads(ref.sum(), (x64,))
    assert loss.dtype == t.dtype and grad.dtype == torch.float32 and grad.shape == x.shape
    _close(loss, ref.detach(), dtype)
    torch.testing.assert_close(grad.double(), gx, **F32)
    torch.testing.assert_close(bce_with_logits_grad(x.float(), t.float(), w, pw).double(),
                               _grads(reference.bce_with_logits(x64, t.double(), None if w is None else w.double(),
                                                                "sum", None if pw is None else pw.double()),
                                      (x64,))[0], **F32)


@pytest.mark.parametrize("reduction", reference.REDUCTIONS)
@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_bce_op_backward_scales_its_gradient_by_the_upstream_gradient(reduction, weights, dtype):
    x, t, w, pw = _bce_args(dtype, weights, 11)
    x.requires_grad_(True)
    loss = ops.bce_with_logits(x, t, w, pw, reduction)[0]
    # reduction="none": one upstream value per element.
    upstream = torch.linspace(-2, 3, x.numel()).reshape(x.shape) if reduction == "none" else torch.tensor(-1.5)
    (dx,) = torch.autograd.grad(loss, x, upstream.to(loss.dtype))
    x64, ref = _bce_ref64(x, t, w, pw, reduction)
    (gx,) = _grads(ref, (x64,), upstream.double())
    assert dx.dtype == dtype
    _close(dx, gx, dtype)


@pytest.mark.parametrize("reduction", reference.REDUCTIONS)
@pytest.mark.parametrize("weights", ["none", "both"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bce_op_create_graph_backward_has_the_reference_second_derivative(reduction, weights, dtype):
    x, t, w, pw = _bce_args(dtype, weights, 12)
    x.requires_grad_(True)
    loss = ops.bce_with_logits(x, t, w, pw, reduction)[0]
    upstream = torch.full(loss.shape, 0.7, dtype=loss.dtype)
    first = _grads(loss, (x,), upstream, create_graph=True)
    x64, ref = _bce_ref64(x, t, w, pw, reduction)
    ref_first = _grads(ref, (x64,), upstream.double(), create_graph=True)
    for actual, expected in zip([*first, *_second(first, (x,))], [*ref_first, *_second(ref_first, (x64,))]):
        _close(actual.detach(), expected, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_loss_grad_op_is_the_stored_gradient_times_the_upstream_gradient_in_dtype(dtype):
    # The product is formed in float32 (the stored gradient's dtype), then rounded to dtype.
    grad = torch.randn(4, 5, generator=torch.Generator().manual_seed(13))
    for upstream in (torch.tensor(-0.75), torch.randn(4, 5, generator=torch.Generator().manual_seed(14))):
        out = ops.loss_grad(grad, upstream.to(dtype), dtype)
        assert out.dtype == dtype
        _close(out, grad.double() * upstream.to(dtype).double(), torch.float32 if dtype == torch.float64 else dtype)


# ---------------------------------------------------------------- fastgan::bias_act, fastgan::bias_act_backward

ACTS = list(reference.ACTIVATIONS)
# 0.625 is exact in every dtype, so the clamp falls at the same value whichever dtype compares with it.
CLAMPS = [None, 0.625]


def _bias_act_args(dtype, seed, shape=(3, 4, 5), dim=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    b = torch.randn(shape[dim], generator=g) * 0.5
    # Keep x + b off relu's and lrelu's kink at 0.
    z = x + b.reshape([-1 if i == dim else 1 for i in range(len(shape))])
    x = torch.where(z.abs() < 0.05, x + 0.1, x)
    dy = torch.randn(shape, generator=g)
    return x.to(dtype), b.to(dtype), dy.to(dtype)


def _bias_act_ref64(x, b, act, gain, clamp, dim=1):
    x64, b64 = _f64(x), _f64(b)
    alpha = reference.activation_spec(act).def_alpha
    return x64, b64, reference.bias_act(x64, b64, act, alpha, gain, clamp, dim)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("gain", [1.0, 1.7, 2.0])
@pytest.mark.parametrize("clamp", CLAMPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_act_ops_equal_the_reference_and_its_autograd(act, gain, clamp, dtype):
    x, b, dy = _bias_act_args(dtype, 20)
    alpha = reference.activation_spec(act).def_alpha
    y = ops.bias_act(x, b, act, alpha, gain, clamp, 1)
    dx, db = ops.bias_act_backward(dy, y, b, act, alpha, gain, clamp, 1)
    x64, b64, ref = _bias_act_ref64(x, b, act, gain, clamp)
    gx, gb = _grads(ref, (x64, b64), dy.double())
    assert y.dtype == dx.dtype == db.dtype == dtype
    _close(y, ref.detach(), dtype)
    _close(dx, gx, dtype)
    _close(db, gb, dtype)
    # The same from the gradient function the kernel is checked against.
    _close(bias_act_grad_from_output(dy, y, act, alpha, gain, clamp), gx, dtype)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("gain", [1.0, 1.7])
@pytest.mark.parametrize("clamp", CLAMPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bias_act_op_backward_plain_and_create_graph_equal_the_reference_to_second_order(act, gain, clamp, dtype):
    # The op's autograd formula, plain and with create_graph, whose result autograd differentiates again (R1
    # through a discriminator built from bias_act).
    x, b, dy = _bias_act_args(dtype, 21)
    x.requires_grad_(True)
    b.requires_grad_(True)
    alpha = reference.activation_spec(act).def_alpha
    y = ops.bias_act(x, b, act, alpha, gain, clamp, 1)
    plain = _grads(y, (x, b), dy)
    first = _grads(ops.bias_act(x, b, act, alpha, gain, clamp, 1), (x, b), dy, create_graph=True)
    second = _second(first, (x, b))
    x64, b64, ref = _bias_act_ref64(x, b, act, gain, clamp)
    ref_first = _grads(ref, (x64, b64), dy.double(), create_graph=True)
    ref_second = _second(ref_first, (x64, b64))
    for actual, expected in zip([*plain, *first, *second], [*ref_first, *ref_first, *ref_second]):
        assert actual.dtype == dtype
        _close(actual.detach(), expected, dtype)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("gain", [1.0, 1.7])
def test_bias_act_op_passes_gradcheck_and_gradgradcheck(act, gain):
    # Finite differences, independent of the reference; x + b is kept off the kinks.
    x, b, _ = _bias_act_args(torch.float64, 22, shape=(2, 3, 2))
    x.requires_grad_(True)
    b.requires_grad_(True)
    alpha = reference.activation_spec(act).def_alpha

    def f(x, b):
        return ops.bias_act(x, b, act, alpha, gain, None, 1)

    assert torch.autograd.gradcheck(f, (x, b))
    assert torch.autograd.gradgradcheck(f, (x, b))


@pytest.mark.parametrize("dim, shape", [(0, (4, 3)), (2, (2, 3, 4)), (1, (6, 4)), (0, (5,))])
@pytest.mark.parametrize("act", ["lrelu", "tanh"])
def test_bias_act_ops_broadcast_the_bias_along_dim(dim, shape, act):
    x, b, dy = _bias_act_args(torch.float32, 23, shape, dim)
    y = ops.bias_act(x, b, act, 0.3, 1.3, None, dim)
    dx, db = ops.bias_act_backward(dy, y, b, act, 0.3, 1.3, None, dim)
    x64, b64 = _f64(x), _f64(b)
    ref = reference.bias_act(x64, b64, act, 0.3, 1.3, None, dim)
    gx, gb = _grads(ref, (x64, b64), dy.double())
    for actual, expected in ((y, ref.detach()), (dx, gx), (db, gb)):
        _close(actual, expected, torch.float32)


def test_bias_act_backward_op_without_bias_returns_an_empty_bias_gradient():
    x, _, dy = _bias_act_args(torch.float32, 24)
    y = ops.bias_act(x, None, "lrelu", 0.2, 1.0, None, 1)
    dx, db = ops.bias_act_backward(dy, y, None, "lrelu", 0.2, 1.0, None, 1)
    x64 = _f64(x)
    (gx,) = _grads(reference.bias_act(x64, None, "lrelu", 0.2), (x64,), dy.double())
    assert db.numel() == 0
    _close(dx, gx, torch.float32)
    # Through the op's autograd formula, plain and create_graph: a gradient for x only.
    x.requires_grad_(True)
    for create_graph in (False, True):
        (dx,) = torch.autograd.grad(ops.bias_act(x, None, "lrelu", 0.2, 1.0, None, 1), x, dy, create_graph=create_graph)
        _close(dx.detach(), gx, torch.float32)


@pytest.mark.parametrize("act", ACTS)
def test_activation_derivatives_equal_autograd_of_the_activation(act):
    # Every row of the table, from its output and from its input, at non-default alphas too.
    spec = reference.activation_spec(act)
    z = _logits((50,), torch.float64, 25, scale=3.0).requires_grad_(True)
    dy = torch.randn(50, generator=torch.Generator().manual_seed(26), dtype=torch.float64)
    for alpha in (spec.def_alpha, 0.05, 0.3):
        a = spec.func(z, alpha)
        (expected,) = torch.autograd.grad(a, z, dy)
        torch.testing.assert_close(spec.grad_from_output(dy, a.detach(), alpha), expected, **TOL[torch.float64])
        torch.testing.assert_close(spec.grad_from_input(dy, z.detach(), alpha), expected, **TOL[torch.float64])


# ---------------------------------------------------------------- fastgan::batch_norm_act, fastgan::batch_norm_act_backward

# Not F.batch_norm's defaults (momentum 0.1, eps 1e-5), so an argument that goes missing shows.
EPS, MOMENTUM = 1e-3, 0.3
AFFINE = {"none": (None, None), "channel": ((4,), (4,)), "sample": ((3, 4), (3, 4)),
          "sample weight": ((3, 4), (4,)), "sample bias": ((4,), (3, 4)), "weight only": ((4,), None)}


def _bn_args(dtype, affine, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(3, 4, 2, 3, generator=g) * 2 + 0.5).to(dtype)
    w, b = (None if shape is None else (torch.rand(shape, generator=g) + 0.5).to(dtype) for shape in AFFINE[affine])
    mean, var = torch.randn(4, generator=g) * 0.3, torch.rand(4, generator=g) + 0.5
    dy = torch.randn(3, 4, 2, 3, generator=g).to(dtype)
    return x, w, b, mean, var, dy


def _bn_ref64(x, w, b, mean, var, training, act, alpha):
    """(leaves, reference output) in float64; leaves holds x, then w and b where given."""
    leaves = [_f64(t) for t in (x, w, b) if t is not None]
    it = iter(leaves[1:])
    w64, b64 = (None if t is None else next(it) for t in (w, b))
    stats = (None, None) if training else (mean.double(), var.double())
    return leaves, reference.batch_norm_act(leaves[0], w64, b64, *stats, training, MOMENTUM, EPS, act, alpha)


def _as_param_grad(grad, param):
    """A per-sample (N, C) sum as the gradient of a per-channel parameter, as the op's autograd formula does."""
    return grad.sum(0) if grad.ndim > param.ndim else grad


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", list(AFFINE))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_norm_act_ops_equal_the_reference_and_its_autograd(act, training, affine, dtype):
    x, w, b, mean, var, dy = _bn_args(dtype, affine, 30)
    alpha = reference.activation_spec(act).def_alpha
    y, m, rstd, v = ops.batch_norm_act(x, w, b, mean, var, training, EPS, act, alpha)
    stat = torch.float64 if dtype == torch.float64 else torch.float32
    x64 = x.double()
    if training:
        expected_m, expected_v = x64.mean((0, 2, 3)), x64.var((0, 2, 3), unbiased=False)
    else:
        expected_m, expected_v = mean.double(), var.double()
    for actual, expected in ((m, expected_m), (v, expected_v), (rstd, (expected_v + EPS).rsqrt())):
        assert actual.dtype == stat
        _close(actual, expected, dtype)
    dx, dw, db = ops.batch_norm_act_backward(dy, x, w, b, m, rstd, training, EPS, act, alpha)
    leaves, ref = _bn_ref64(x, w, b, mean, var, training, act, alpha)
    grads = iter(_grads(ref, leaves, dy.double()))
    _close(y, ref.detach(), dtype)
    _close(dx, next(grads), dtype)
    for actual, param in ((dw, w), (db, b)):
        if param is not None:
            _close(_as_param_grad(actual, param), next(grads), dtype)
    # The same from the gradient function the kernels are checked against.
    for actual, expected in zip(batch_norm_act_grad(dy, x, w, b, m, rstd, training, act, alpha), (dx, dw, db)):
        _close(actual, expected, dtype)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", ["none", "channel", "sample weight"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_norm_act_op_backward_plain_and_create_graph_equal_the_reference_to_second_order(
        act, training, affine, dtype):
    x, w, b, mean, var, dy = _bn_args(dtype, affine, 31)
    inputs = [t.requires_grad_(True) for t in (x, w, b) if t is not None]
    alpha = reference.activation_spec(act).def_alpha
    plain = _grads(ops.batch_norm_act(x, w, b, mean, var, training, EPS, act, alpha)[0], inputs, dy)
    first = _grads(ops.batch_norm_act(x, w, b, mean, var, training, EPS, act, alpha)[0], inputs, dy,
                   create_graph=True)
    second = _second(first, inputs)
    leaves, ref = _bn_ref64(x, w, b, mean, var, training, act, alpha)
    ref_first = _grads(ref, leaves, dy.double(), create_graph=True)
    ref_second = _second(ref_first, leaves)
    for actual, expected in zip([*plain, *first, *second], [*ref_first, *ref_first, *ref_second]):
        assert actual.dtype == dtype
        _close(actual.detach(), expected, dtype)


def test_batch_norm_act_op_forward_in_half_precision_matches_the_reference():
    x, w, b, mean, var, dy = _bn_args(torch.float16, "channel", 32)
    y, m, rstd, v = ops.batch_norm_act(x, w, b, mean, var, True, EPS, "lrelu", 0.2)
    dx, dw, db = ops.batch_norm_act_backward(dy, x, w, b, m, rstd, True, EPS, "lrelu", 0.2)
    leaves, ref = _bn_ref64(x, w, b, mean, var, True, "lrelu", 0.2)
    assert y.dtype == dx.dtype == torch.float16 and m.dtype == dw.dtype == torch.float32
    _close(y, ref.detach(), torch.float16)
    for actual, expected in zip((dx, dw, db), _grads(ref, leaves, dy.double())):
        _close(actual, expected, torch.float16)


@pytest.mark.parametrize("affine", ["channel", "sample"])
def test_batch_norm_act_updates_running_statistics_on_the_op_path_as_batchnorm(affine):
    # float64 running statistics for float32 x take the op path (the eager one needs matching dtypes), whose
    # update runs apart from the op: lerp towards the batch mean and the unbiased batch variance by momentum.
    x, w, b, mean, var, _ = _bn_args(torch.float32, affine, 33)
    rm, rv = mean.double(), var.double()
    ref_m, ref_v = mean.double(), var.double()
    y = fastgan_ops.batch_norm_act(x, w, b, rm, rv, True, MOMENTUM, EPS, "lrelu")
    ref = reference.batch_norm_act(x.double(), None if w is None else w.double(), None if b is None else b.double(),
                                   ref_m, ref_v, True, MOMENTUM, EPS, "lrelu")
    x64 = x.double()
    torch.testing.assert_close(rm, (1 - MOMENTUM) * mean.double() + MOMENTUM * x64.mean((0, 2, 3)))
    torch.testing.assert_close(rv, (1 - MOMENTUM) * var.double() + MOMENTUM * x64.var((0, 2, 3)))  # unbiased
    torch.testing.assert_close(ref_m, rm)
    torch.testing.assert_close(ref_v, rv)
    _close(y, ref, torch.float32)
