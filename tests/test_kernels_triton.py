"""The Triton kernels against the PyTorch reference, run on CPU tensors under the Triton interpreter.

The backend is chosen once per process, so these tests run in a child pytest process started with
FASTGAN_BACKEND=triton TRITON_INTERPRET=1 (test_kernels_pass_under_the_interpreter); in the parent
process the rest of the module is skipped.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import fastgan
from fastgan import functional, losses, ops, reference
from fastgan.nn import BatchNormAct, ConvBlock

IN_INTERPRETER = os.environ.get("FASTGAN_BACKEND") == "triton" and os.environ.get("TRITON_INTERPRET") == "1"
kernel_test = pytest.mark.skipif(not IN_INTERPRETER, reason="runs in the interpreter child process")
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float16: dict(rtol=2e-3, atol=2e-3)}
# Rounding of a sum relative to the sum of its terms' sizes: about 8 float32 epsilons for terms computed
# in float32 in different orders; one float16 ulp for terms that were rounded to float16 before summing.
SUM_RTOL = {torch.float32: 1e-6, torch.float16: 1e-3}
FEW = settings(max_examples=12, deadline=None)


@pytest.mark.skipif(IN_INTERPRETER, reason="this is the child process")
def test_kernels_pass_under_the_interpreter():
    env = dict(os.environ, FASTGAN_BACKEND="triton", TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " skipped" in proc.stdout


@kernel_test
def test_the_child_process_runs_the_triton_backend():
    assert fastgan.backend() == "triton"
    assert fastgan.backend.__module__ == "fastgan.fused.backend"


class Launches(TorchDispatchMode):
    """Counts kernel launches: Triton kernels (every launch goes through InterpretedFunction.run under the
    interpreter) and the aten ops that run a kernel (not allocations, not views) dispatched outside the fused
    ops, such as casts or sums in an autograd formula or a public function. What runs inside a fused op's
    implementation is not seen by the mode: on the Triton path those implementations launch Triton
    kernels only."""

    def __init__(self):
        super().__init__()
        self.triton: list[str] = []
        self.aten: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name()
        aliases = any(r.alias_info is not None for r in func._schema.returns)
        if not (name.startswith("fastgan::") or aliases or "empty" in name or name == "aten::lift_fresh"):
            self.aten.append(name)
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return len(self.triton) + len(self.aten)


@contextlib.contextmanager
def _launches():
    from triton.runtime.interpreter import InterpretedFunction

    launches = Launches()
    run = InterpretedFunction.run

    def counting_run(fn, *args, **kwargs):
        launches.triton.append(fn.__name__ if hasattr(fn, "__name__") else fn.fn.__name__)
        return run(fn, *args, **kwargs)
    with mock.patch.object(InterpretedFunction, "run", counting_run), launches:
        yield launches


@pytest.fixture(autouse=True)
def _the_triton_path_runs(request):
    """Every kernel test runs at least one Triton kernel: none of them passes on the reference alone."""
    if not IN_INTERPRETER or request.node.name == "test_the_child_process_runs_the_triton_backend":
        yield
        return
    from triton.runtime.interpreter import InterpretedFunction

    calls = []
    run = InterpretedFunction.run

    def counting_run(fn, *args, **kwargs):
        calls.append(1)
        return run(fn, *args, **kwargs)
    with mock.patch.object(InterpretedFunction, "run", counting_run):
        yield
    assert calls, "no Triton kernel ran: the test exercised the reference only"


def _count(fn):
    with _launches() as launches:
        out = fn()
    return out, launches


# ---------------------------------------------------------------- launch budgets

def _budget(forward, inputs, fwd_budget, bwd_budget, upstream=0.5):
    out, fwd = _count(forward)
    loss = out if out.ndim == 0 else out
    grad_out = torch.full_like(loss, upstream)
    _, bwd = _count(lambda: torch.autograd.grad(loss, inputs, grad_out))
    assert fwd.triton, "the forward ran no Triton kernel"
    assert fwd.total <= fwd_budget, f"forward: {fwd.triton} + {fwd.aten}"
    assert bwd.total <= bwd_budget, f"backward: {bwd.triton} + {bwd.aten}"
    return fwd, bwd


@kernel_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", reference.D_LOSS_KINDS)
def test_d_loss_takes_one_launch_forward_and_one_backward(kind, dtype):
    n_fake = 3000 if kind == "rpgan" else 2500  # rpgan pairs the logits
    real, fake = torch.randn(3000, 1).to(dtype).requires_grad_(), torch.randn(n_fake, 1).to(dtype).requires_grad_()
    _budget(lambda: losses.d_loss(real, fake, kind), (real, fake), 1, 1)


@kernel_test
@pytest.mark.parametrize("kind", reference.G_LOSS_KINDS)
def test_g_loss_takes_one_launch_forward_and_one_backward(kind):
    fake = torch.randn(3000, 1, dtype=torch.float16).requires_grad_()
    real = torch.randn(3000, 1, dtype=torch.float16).requires_grad_()  # read by rpgan alone
    _budget(lambda: losses.g_loss(fake, kind, real), (fake, real) if kind == "rpgan" else (fake,), 1, 1)


@kernel_test
@pytest.mark.parametrize("reduction", reference.REDUCTIONS)
def test_bce_takes_one_launch_forward_and_one_backward(reduction):
    x, t = torch.randn(40, 70).requires_grad_(), torch.rand(40, 70)
    _budget(lambda: functional.binary_cross_entropy_with_logits(x, t, reduction=reduction), (x,), 1, 1)


@kernel_test
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bias_act_takes_one_launch_forward_and_one_backward(dtype, channels_last):
    x = torch.randn(4, 6, 7, 7).to(dtype)
    x = (x.contiguous(memory_format=torch.channels_last) if channels_last else x).requires_grad_()
    b = torch.randn(6, dtype=dtype, requires_grad=True)
    _budget(lambda: ops.bias_act(x, b, "lrelu", clamp=3.0), (x, b), 1, 1)


@kernel_test
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_batch_norm_act_training_takes_three_launches_forward_and_two_backward(dtype, channels_last):
    x = torch.randn(4, 6, 7, 7).to(dtype)
    x = (x.contiguous(memory_format=torch.channels_last) if channels_last else x).requires_grad_()
    w, b = torch.rand(6, requires_grad=True), torch.randn(6, requires_grad=True)
    stats = torch.zeros(6), torch.ones(6)
    _budget(lambda: ops.batch_norm_act(x, w, b, *stats, True, 0.1, 1e-5, "relu"), (x, w, b), 3, 2)


# ---------------------------------------------------------------- NaN in, NaN out
# These run in both processes: the reference path here, the Triton path in the child.

@pytest.mark.parametrize("act", list(reference.ACTIVATIONS))
def test_nan_propagates_through_every_activation(act):
    x = torch.randn(2, 3, 4, 4)
    x[1, 2, 3, 0] = float("nan")
    y = ops.bias_act(x, torch.zeros(3), act, clamp=0.5)
    assert torch.isnan(y[1, 2, 3, 0]) and torch.isfinite(y).sum() == y.numel() - 1
    z = ops.batch_norm_act(x, None, None, None, None, True, 0.1, 1e-5, act)
    assert torch.isnan(z[:, 2]).all() and torch.isfinite(z[:, :2]).all()


def test_nan_propagates_through_every_loss():
    fake = torch.tensor([0.5, float("nan"), -2.0])
    for kind in reference.G_LOSS_KINDS:
        assert torch.isnan(losses.g_loss(fake, kind, torch.ones(3))), kind
    assert torch.isnan(losses.g_loss(torch.ones(3), "rpgan", fake))
    for kind in reference.D_LOSS_KINDS:
        assert torch.isnan(losses.d_loss(torch.ones(3), fake, kind)), kind
        assert torch.isnan(losses.d_loss(fake, torch.ones(3), kind)), kind
    for reduction in reference.REDUCTIONS:
        assert torch.isnan(functional.binary_cross_entropy_with_logits(fake, torch.rand(3), reduction=reduction)).any()


def _close(actual, expected, dtype):
    torch.testing.assert_close(actual.float(), expected.float(), equal_nan=True, **TOL[dtype])


def _close_to_scale(actual, expected, scale, terms_dtype=torch.float32):
    """|actual - expected| <= atol + rtol * |expected| + SUM_RTOL[terms_dtype] * scale, elementwise.

    For results that are sums of larger terms of both signs (a bias gradient summed over the batch, batch
    norm's dx after subtracting the mean terms): rounding in any order of summation is relative to the
    terms, whose total size `scale` bounds, not to the result, which may have cancelled to near zero.
    atol and rtol are those of actual's dtype.
    """
    a, e = actual.float(), expected.float()
    tol = TOL[actual.dtype]
    bound = tol["atol"] + tol["rtol"] * e.abs() + SUM_RTOL[terms_dtype] * scale.float()
    bad = ~((a - e).abs() <= bound)
    assert not bad.any(), (f"{int(bad.sum())} of {bad.numel()} elements differ: actual {a[bad].tolist()}, "
                           f"expected {e[bad].tolist()}, allowed {bound[bad].tolist()}")


def _sum_except(t, dim):
    dims = [i for i in range(t.ndim) if i != dim]
    return t.float().sum(dims) if dims else t.float()


def _bias_grad_scale(dy, gain, dim):
    """Bounds the terms summed into bias_act's db: |dx| <= gain * |dy| (|act'| <= 1 for every activation here)."""
    return _sum_except(dy.abs(), dim) * (1.0 if gain is None else gain)


def _batch_norm_grad_scales(x, weight, dy, mean, rstd):
    """Bounds on the size of the terms summed into batch norm's (dx, dweight, dbias), per element / channel.

    dz = dy * act'(z) with |act'| <= 1 for every activation here; dbias = sum dz, dweight = sum dz * xhat,
    dx = (dz - dbias / n - xhat * dweight / n) * weight * rstd (training mode).
    """
    shape = [1, -1] + [1] * (x.ndim - 2)
    xhat = (x.detach().float() - mean.reshape(shape)) * rstd.reshape(shape)
    ady = dy.float().abs()
    db, dw = _sum_except(ady, 1), _sum_except(ady * xhat.abs(), 1)
    n = x.numel() // x.shape[1]
    w = torch.ones_like(rstd) if weight is None else weight.detach().float().abs()
    dx = (ady + db.reshape(shape) / n + xhat.abs() * dw.reshape(shape) / n) * (w * rstd).reshape(shape)
    return dx, dw, db


def _batch_stats(x, eps=1e-5):
    """(mean, rstd) of x over every dimension but 1, in float32."""
    xf = x.detach().float()
    dims = [0] + list(range(2, x.ndim))
    return xf.mean(dims), torch.rsqrt(xf.var(dims, unbiased=False) + eps)


def _check_batch_norm_grads(actual, expected, x, weight, dy, mean, rstd):
    """(dx[, dweight, dbias]) against the reference's, each within the size of the terms summed into it
    (computed in float32 from x and dy)."""
    for a, e, scale in zip(actual, expected, _batch_norm_grad_scales(x, weight, dy, mean, rstd)):
        _close_to_scale(a, e, scale)


@contextlib.contextmanager
def _kernel_calls(module: str, function: str):
    """Counts the calls of fastgan.kernels.<module>.<function>, to show a test reached the Triton path."""
    from fastgan.kernels import batch_norm_act, bias_act  # here: the parent process may lack triton

    target = {"bias_act": bias_act, "batch_norm_act": batch_norm_act}[module]
    with mock.patch.object(target, function, wraps=getattr(target, function)) as spy:
        yield spy


def _channels_last(shape, generator, dtype):
    x = torch.randn(shape, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous()
    return x


def _grads(out, inputs, grad_out=None):
    return torch.autograd.grad(out, inputs, grad_out if grad_out is not None else torch.ones_like(out),
                               allow_unused=True)


# ---------------------------------------------------------------- bce_with_logits

@kernel_test
@FEW
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3), reduction=st.sampled_from(["mean", "sum", "none"]),
       layout=st.sampled_from(["none", "full", "trailing", "scalar"]), use_pos=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float16]), scale=st.sampled_from([1.0, 20.0]), seed=st.integers(0, 99))
def test_bce_with_logits_kernel_matches_reference(shape, reduction, layout, use_pos, dtype, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * scale).to(dtype).requires_grad_()
    t = torch.rand(shape, generator=g).to(dtype)
    wshape = {"none": None, "full": shape, "trailing": shape[-1:], "scalar": [1]}[layout]
    w = None if wshape is None else torch.rand(wshape, generator=g).to(dtype)
    pw = torch.rand(shape[-1:], generator=g).to(dtype) * 3 if use_pos else None
    out = functional.binary_cross_entropy_with_logits(x, t, w, reduction, pw)
    ref = reference.bce_with_logits(x, t, w, reduction, pw)
    _close(out, ref, dtype)
    _close(_grads(out, x)[0], _grads(ref, x)[0], dtype)


@kernel_test
def test_bce_with_logits_kernel_is_finite_and_exact_for_extreme_logits():
    x = torch.tensor([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], requires_grad=True)
    t = torch.tensor([1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.3])
    out = functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    ref = reference.bce_with_logits(x, t, reduction="none")
    assert torch.isfinite(out).all()
    _close(out, ref, torch.float32)
    _close(_grads(out, x)[0], _grads(ref, x)[0], torch.float32)


@kernel_test
def test_bce_with_logits_kernel_propagates_nan_and_handles_non_contiguous_and_empty():
    x = torch.randn(6, 5).t()
    x[1, 2] = float("nan")
    t = torch.rand(5, 6)
    assert torch.isnan(functional.binary_cross_entropy_with_logits(x, t))
    out = functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert torch.isnan(out[1, 2]) and torch.isfinite(out).sum() == 29
    x[1, 2] = 0.0
    _close(functional.binary_cross_entropy_with_logits(x, t), reference.bce_with_logits(x, t), torch.float32)
    empty = torch.empty(0, 3)
    assert torch.isnan(functional.binary_cross_entropy_with_logits(empty, empty))


# ---------------------------------------------------------------- gan_loss

@kernel_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", reference.D_LOSS_KINDS)
def test_gan_loss_kernel_d_loss_matches_reference(kind, dtype):
    g = torch.Generator().manual_seed(1)
    real = (torch.randn(1030 if kind == "rpgan" else 37, 1, generator=g) * 4).to(dtype).requires_grad_()
    fake = (torch.randn(1030, 1, generator=g) * 4).to(dtype).requires_grad_()
    s = 0.1 if kind == "bce" else 0.0
    out, ref = losses.d_loss(real, fake, kind, s), reference.d_loss(real, fake, kind, s)
    assert out.dtype == torch.float32
    _close(out, ref, torch.float32)
    for a, b in zip(_grads(out, (real, fake)), _grads(ref, (real, fake))):
        _close(a, b, dtype)


@kernel_test
@pytest.mark.parametrize("kind", reference.G_LOSS_KINDS)
def test_gan_loss_kernel_g_loss_matches_reference_including_extremes(kind):
    fake = torch.cat([torch.randn(50) * 3, torch.tensor([-1e4, 1e4, 0.0])]).requires_grad_()
    real = torch.cat([torch.randn(50) * 3, torch.tensor([1e4, -1e4, 0.0])]).requires_grad_()  # rpgan's pairs
    wrt = (fake, real) if kind == "rpgan" else (fake,)
    out, ref = losses.g_loss(fake, kind, real), reference.g_loss(fake, kind, real)
    # +-1e4 terms cancel in the mean: both orders of summation are right to float32 eps times mean |term|.
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6 * fake.detach().abs().mean().item())
    for a, b in zip(_grads(out, wrt), _grads(ref, wrt)):
        _close(a, b, torch.float32)


@kernel_test
def test_gan_loss_kernel_propagates_nan():
    fake = torch.tensor([0.5, float("nan")])
    for kind in reference.G_LOSS_KINDS:
        assert torch.isnan(losses.g_loss(fake, kind, torch.ones(2))), kind
    for kind in reference.D_LOSS_KINDS:
        assert torch.isnan(losses.d_loss(torch.ones(2 if kind == "rpgan" else 3), fake, kind)), kind


@kernel_test
def test_gan_loss_double_backward_falls_back_to_the_reference():
    real = torch.randn(8, requires_grad=True)
    fake = torch.randn(5, requires_grad=True)
    for fn, ref_fn in ((losses.d_loss, reference.d_loss), (lambda r, f: losses.g_loss(f), lambda r, f: reference.g_loss(f))):
        gr = torch.autograd.grad(fn(real, fake), (real, fake), create_graph=True, allow_unused=True)
        gr_ref = torch.autograd.grad(ref_fn(real, fake), (real, fake), create_graph=True, allow_unused=True)
        for a, b in zip(gr, gr_ref):
            if b is None:
                continue
            _close(a, b, torch.float32)
            _close(torch.autograd.grad(a.square().sum(), fake if a.shape == fake.shape else real)[0],
                   torch.autograd.grad(b.square().sum(), fake if b.shape == fake.shape else real)[0], torch.float32)


@kernel_test
@pytest.mark.parametrize("loss", ["d_loss", "g_loss"])
def test_rpgan_kernel_equals_the_float64_reference_to_second_order(loss):
    """The pair kernel's value and both logit gradients, and under create_graph (R1/R2 sit on top of it) the
    derivatives of a function of those gradients, against the reference in float64."""
    g = torch.Generator().manual_seed(11)
    real = (torch.randn(1500, 1, generator=g) * 4).requires_grad_()
    fake = (torch.randn(1500, 1, generator=g) * 4).requires_grad_()
    r64, f64 = real.detach().double().requires_grad_(), fake.detach().double().requires_grad_()
    if loss == "d_loss":
        out, launches = _count(lambda: losses.d_loss(real, fake, "rpgan"))
        ref = reference.d_loss(r64, f64, "rpgan")
    else:
        out, launches = _count(lambda: losses.g_loss(fake, "rpgan", real))
        ref = reference.g_loss(f64, "rpgan", r64)
    assert launches.triton == ["_pair_kernel"] and not launches.aten
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-7)
    ga = torch.autograd.grad(out, (real, fake), create_graph=True)
    gb = torch.autograd.grad(ref, (r64, f64), create_graph=True)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-9)
    weights = torch.linspace(-1, 2, 1500).view(1500, 1)  # an asymmetric function of the gradients
    second_a = torch.autograd.grad((ga[0] * weights).sum() + ga[1].square().sum() * 1e3, (real, fake))
    second_b = torch.autograd.grad((gb[0] * weights.double()).sum() + gb[1].square().sum() * 1e3, (r64, f64))
    for a, b in zip(second_a, second_b):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------- bias_act

@kernel_test
@FEW
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), data=st.data(),
       act=st.sampled_from(list(reference.ACTIVATIONS)), gain=st.sampled_from([None, 1.4]),
       clamp=st.sampled_from([None, 0.7]), use_bias=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float16]),
       transpose=st.booleans(), seed=st.integers(0, 2**16))
def test_bias_act_kernel_matches_reference(shape, data, act, gain, clamp, use_bias, dtype, transpose, seed):
    dim = data.draw(st.integers(0, len(shape) - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(dtype)
    if transpose and x.ndim > 1:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    x.requires_grad_()
    b = torch.randn(shape[dim], generator=g).to(dtype).requires_grad_() if use_bias else None
    out = ops.bias_act(x, b, act, None, gain, clamp, dim)
    ref = reference.bias_act(x, b, act, None, gain, clamp, dim)
    _close(out, ref, dtype)
    dy = torch.randn(shape, generator=g).to(dtype)
    inputs = (x, b) if use_bias else (x,)
    dx, *db = _grads(out, inputs, dy)
    ref_dx, *ref_db = _grads(ref, inputs, dy)
    if clamp is not None:
        # The backward sees only the output, rounded to dtype, so an output at the clamp (where torch.clamp
        # passes the gradient) or just below it and rounding up to it counts as clamped: no gradient.
        y32 = reference.bias_act(x.float(), None if b is None else b.float(), act, None, gain, clamp, dim)
        ref_dx = torch.where((y32.abs() <= clamp) & (y32.to(dtype).abs() >= clamp), 0.0, ref_dx)
    # act' is recomputed from the rounded output (tanh' = 1 - a^2 loses digits near saturation), so dx is
    # exact relative to gain * |dy|, not to dx.
    _close_to_scale(dx, ref_dx, dy.abs() * (1.0 if gain is None else gain), dtype)
    if use_bias:
        _close_to_scale(db[0], ref_db[0], _bias_grad_scale(dy, gain, dim), dtype)


@kernel_test
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("act, gain, clamp, use_bias", [("lrelu", None, None, True), ("relu", 1.5, 0.8, True),
                                                        ("linear", None, None, False), ("tanh", 1.4, 0.9, True),
                                                        ("sigmoid", 2.0, 1.5, False)])
def test_bias_act_double_backward_is_one_launch_and_equals_the_float64_reference(act, gain, clamp, use_bias,
                                                                                 channels_last):
    """R1/R2 through a bias_act layer: the create_graph backward's own backward is one launch of the double
    backward kernel, with no aten activation backward beside it, and equals autograd of the reference in float64."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 6, 5, 7, generator=g) * 2
    x = (x.contiguous(memory_format=torch.channels_last) if channels_last else x).requires_grad_()
    b = torch.randn(6, generator=g).requires_grad_() if use_bias else None
    dy = torch.randn(2, 6, 5, 7, generator=g).requires_grad_()
    w = torch.randn(2, 6, 5, 7, generator=g)

    def second(x, b, dy, fn):
        wrt = [t for t in (x, b) if t is not None]
        first = torch.autograd.grad(fn(x, b, act, None, gain, clamp), wrt, dy, create_graph=True)
        objective = (first[0] * w.to(x.dtype)).sum() + (first[1].square().sum() if b is not None else 0)
        return lambda: torch.autograd.grad(objective, [*wrt, dy], allow_unused=True)

    grads, launches = _count(second(x, b, dy, ops.bias_act))
    assert launches.triton.count("_double_backward_kernel") == 1, launches.triton
    assert not [n for n in launches.aten if n.endswith("_backward")], launches.aten
    leaves = [None if t is None else t.detach().double().requires_grad_() for t in (x, b, dy)]
    expected = second(*leaves, reference.bias_act)()
    for a, e in zip(grads, expected):
        if a is None or e is None:  # piecewise-linear activations: no second derivative for x and b
            for t in (a, e):
                assert t is None or not t.abs().max() > 0
            continue
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-5 * max(e.abs().max().item(), 1.0))


@kernel_test
def test_r1_r2_penalty_on_the_kernel_path_equals_the_float64_two_pass_form():
    """R3GAN's D step through bias_act layers on the Triton path, one forward over real and fake together: the
    pair kernel serves the loss, each layer's double backward is one launch, and loss, R1, R2 and the gradient
    of loss + gamma / 2 (R1 + R2) w.r.t. D's parameters equal R3GAN's two-pass form on the references in float64."""
    g = torch.Generator().manual_seed(13)
    weights = [(torch.randn(8, 3, 3, 3, generator=g) * 0.3).requires_grad_(),
               (torch.randn(4, 8, 3, 3, generator=g) * 0.3).requires_grad_()]
    biases = [(torch.randn(8, generator=g) * 0.1).requires_grad_(), (torch.randn(4, generator=g) * 0.1).requires_grad_()]
    head = (torch.randn(1, 64, generator=g) * 0.1).requires_grad_()
    params = [*weights, *biases, head]

    def d(x, bias_act=ops.bias_act):
        for w, b, act, stride in zip(weights, biases, ("lrelu", "tanh"), (1, 2)):
            x = bias_act(torch.nn.functional.conv2d(x, w.to(x.dtype), stride=stride, padding=1), b.to(x.dtype), act)
        return x.flatten(1) @ head.to(x.dtype).T

    real, fake = torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 3, 8, 8, generator=g)
    result, forward = _count(lambda: losses.r1_r2_penalty(d, real, fake))
    assert result.one_pass and forward.triton.count("_pair_kernel") == 1, forward.triton
    objective = result.loss + 0.5 * (result.r1 + result.r2)
    grads, launches = _count(lambda: torch.autograd.grad(objective, params))
    assert launches.triton.count("_double_backward_kernel") == 2, launches.triton

    r64, f64 = real.double().requires_grad_(), fake.double().requires_grad_()
    real_logits, fake_logits = d(r64, reference.bias_act), d(f64, reference.bias_act)
    (g_real,) = torch.autograd.grad(real_logits.sum(), r64, create_graph=True)
    (g_fake,) = torch.autograd.grad(fake_logits.sum(), f64, create_graph=True)
    expected = (reference.d_loss(real_logits, fake_logits, "rpgan"), g_real.square().sum([1, 2, 3]).mean(),
                g_fake.square().sum([1, 2, 3]).mean())
    for a, e in zip(result[:3], expected):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-6)
    for a, e in zip(grads, torch.autograd.grad(expected[0] + 0.5 * (expected[1] + expected[2]), params)):
        torch.testing.assert_close(a, e.float(), rtol=1e-4, atol=1e-5 * e.abs().max().item())


@kernel_test
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_bias_act_kernel_passes_no_gradient_through_clamped_half_precision_outputs(dtype):
    # 0.9 rounds down in float16 and bfloat16, so a clamped output stored in them is below float32 0.9.
    assert torch.tensor(0.9, dtype=dtype).item() < torch.tensor(0.9).item()
    x = torch.tensor([[-3.0, -0.5, 0.1, 0.85, 2.0, 5.0]], dtype=dtype, requires_grad=True)
    out = ops.bias_act(x, None, "linear", clamp=0.9)
    (dx,) = _grads(out, x)
    assert dx.tolist() == [[0.0, 1.0, 1.0, 1.0, 0.0, 0.0]]


@kernel_test
@pytest.mark.parametrize("act, gain, clamp", [("lrelu", None, None), ("tanh", 1.4, 0.9), ("sigmoid", 2.0, 1.5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bias_act_kernel_matches_reference_on_channels_last(act, gain, clamp, dtype):
    g = torch.Generator().manual_seed(5)
    # (2, 5, 3, 7): channel stride 1, so dim=1 is the fastest-moving dimension in memory.
    x = _channels_last((2, 5, 3, 7), g, dtype).requires_grad_()
    b = torch.randn(5, generator=g).to(dtype).requires_grad_()
    dy = _channels_last((2, 5, 3, 7), g, dtype)
    with _kernel_calls("bias_act", "forward") as forward, _kernel_calls("bias_act", "backward") as backward:
        out = ops.bias_act(x, b, act, None, gain, clamp, 1)
        grads = _grads(out, (x, b), dy)
    assert forward.call_count == 1 and backward.call_count == 1
    ref = reference.bias_act(x, b, act, None, gain, clamp, 1)
    _close(out, ref, dtype)
    ref_dx, ref_db = _grads(ref, (x, b), dy)
    _close(grads[0], ref_dx, dtype)
    _close_to_scale(grads[1], ref_db, _bias_grad_scale(dy, gain, 1), dtype)


# ---------------------------------------------------------------- batch_norm_act

@kernel_test
@pytest.mark.parametrize("act", list(reference.ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_batch_norm_act_training_matches_reference(act, dtype):
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(3, 4, 5, 7, generator=g) * 2 + 1).to(dtype).requires_grad_()
    w = (torch.rand(4, generator=g) + 0.5).requires_grad_()
    b = torch.randn(4, generator=g).requires_grad_()
    stats = [torch.randn(4, generator=g), torch.rand(4, generator=g) + 0.5]
    ref_stats = [s.clone() for s in stats]
    out = ops.batch_norm_act(x, w, b, *stats, True, 0.1, 1e-5, act)
    ref = reference.batch_norm_act(x, w, b, *ref_stats, True, 0.1, 1e-5, act)
    _close(out, ref, dtype)
    for s, r in zip(stats, ref_stats):
        _close(s, r, torch.float32)
    dy = torch.randn(x.shape, generator=g).to(dtype)
    _check_batch_norm_grads(_grads(out, (x, w, b), dy), _grads(ref, (x, w, b), dy), x, w, dy, *_batch_stats(x))


@kernel_test
def test_batch_norm_act_variance_survives_a_large_mean_offset():
    g = torch.Generator().manual_seed(3)
    x64 = torch.randn(8, 2, 33, 31, generator=g, dtype=torch.float64) + 1e4
    x = x64.float()
    rm, rv = torch.zeros(2), torch.ones(2)
    out = ops.batch_norm_act(x, None, None, rm, rv, True, 1.0, 1e-5, "linear")
    exact = torch.nn.functional.batch_norm(x.double(), None, None, training=True, eps=1e-5)
    torch.testing.assert_close(out.double(), exact, rtol=0, atol=2e-3)
    torch.testing.assert_close(rv.double(), x.double().var((0, 2, 3)), rtol=1e-4, atol=0)


@kernel_test
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_act_eval_mode_matches_reference(affine):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, 5, generator=g, requires_grad=True)
    w = (torch.rand(3, generator=g) + 0.5).requires_grad_() if affine else None
    b = torch.randn(3, generator=g).requires_grad_() if affine else None
    rm, rv = torch.randn(3, generator=g), torch.rand(3, generator=g) + 0.5
    out = ops.batch_norm_act(x, w, b, rm, rv, False, 0.1, 1e-5, "lrelu", 0.2)
    ref = reference.batch_norm_act(x, w, b, rm, rv, False, 0.1, 1e-5, "lrelu", 0.2)
    _close(out, ref, torch.float32)
    inputs = (x, w, b) if affine else (x,)
    dy = torch.randn(x.shape, generator=g)
    _check_batch_norm_grads(_grads(out, inputs, dy), _grads(ref, inputs, dy), x, w, dy, rm, torch.rsqrt(rv + 1e-5))


@kernel_test
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_batch_norm_act_kernel_matches_reference_on_channels_last(training, dtype):
    g = torch.Generator().manual_seed(6)
    x = (_channels_last((3, 4, 5, 6), g, dtype) * 2 + 1).requires_grad_()
    w = (torch.rand(4, generator=g) + 0.5).requires_grad_()
    b = torch.randn(4, generator=g).requires_grad_()
    dy = _channels_last((3, 4, 5, 6), g, dtype)
    stats = [torch.randn(4, generator=g), torch.rand(4, generator=g) + 0.5]
    ref_stats = [s.clone() for s in stats]
    # Training mode runs the batch-norm kernels; eval mode folds into the bias_act kernel.
    module, function = ("batch_norm_act", "forward_train") if training else ("bias_act", "forward")
    with _kernel_calls(module, function) as forward, _kernel_calls("batch_norm_act", "backward") as backward:
        out = ops.batch_norm_act(x, w, b, *stats, training, 0.1, 1e-5, "lrelu", 0.2)
        grads = _grads(out, (x, w, b), dy)
    assert forward.call_count == 1 and backward.call_count == 1
    mean, rstd = _batch_stats(x) if training else (stats[0].clone(), torch.rsqrt(stats[1] + 1e-5))
    ref = reference.batch_norm_act(x, w, b, *ref_stats, training, 0.1, 1e-5, "lrelu", 0.2)
    _close(out, ref, dtype)
    for s, r in zip(stats, ref_stats):
        _close(s, r, torch.float32)
    _check_batch_norm_grads(grads, _grads(ref, (x, w, b), dy), x, w, dy, mean, rstd)


# ---------------------------------------------------------------- batch_norm_act with per-sample weight and bias

def _per_sample_grad_scales(x, weight, dy, mean, rstd):
    """Bounds on the terms summed into (dx, dweight, dbias) of batch norm with per-sample (N, C) or per-channel
    weight: dxhat = dz * w, dx = (dxhat - sum dxhat / n - xhat * sum dxhat * xhat / n) * rstd; dweight and dbias
    are sums over each sample's positions (the per-channel one's also over the samples)."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    xhat = (x.detach().float() - mean.reshape(shape)) * rstd.reshape(shape)
    ady = dy.float().abs()
    w = torch.ones(x.shape[1]) if weight is None else weight.detach().float().abs()
    aw = w.reshape(([1] if w.ndim == 1 else [x.shape[0]]) + [x.shape[1]] + [1] * (x.ndim - 2))
    n = x.numel() // x.shape[1]
    dxhat = ady * aw
    dx = (dxhat + _sum_except(dxhat, 1).reshape(shape) / n
          + xhat.abs() * _sum_except(dxhat * xhat.abs(), 1).reshape(shape) / n) * rstd.reshape(shape)
    spatial = list(range(2, x.ndim))

    def per(t, like):
        sums = t.sum(spatial) if spatial else t
        return sums if like is None or like.ndim == 2 else sums.sum(0)
    return dx, per(ady * xhat.abs(), weight), per(ady, None)


def _per_sample_inputs(shape, g, dtype, weight_rows=True, bias_rows=True, channels_last=False):
    n, c = shape[:2]
    x = (_channels_last(shape, g, dtype) if channels_last else torch.randn(shape, generator=g).to(dtype)) * 2 + 1
    w = torch.rand((n, c) if weight_rows else (c,), generator=g) + 0.5
    b = torch.randn((n, c) if bias_rows else (c,), generator=g)
    return x.detach().requires_grad_(), w.requires_grad_(), b.requires_grad_()


@kernel_test
@pytest.mark.parametrize("act", list(reference.ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape, channels_last", [((3, 4, 5, 7), False), ((3, 4, 5, 6), True), ((9, 5), False)])
def test_per_sample_batch_norm_act_kernels_match_reference(act, dtype, training, shape, channels_last):
    g = torch.Generator().manual_seed(7)
    x, w, b = _per_sample_inputs(shape, g, dtype, channels_last=channels_last)
    c = shape[1]
    stats = [torch.randn(c, generator=g), torch.rand(c, generator=g) + 0.5]
    ref_stats = [s.clone() for s in stats]
    dy = torch.randn(shape, generator=g).to(dtype)
    if channels_last:
        dy = dy.contiguous(memory_format=torch.channels_last)
    function = "forward_train_per_sample" if training else "affine_act"
    with _kernel_calls("batch_norm_act", function) as forward, \
            _kernel_calls("batch_norm_act", "backward_per_sample") as backward:
        out = ops.batch_norm_act(x, w, b, *stats, training, 0.1, 1e-5, act, 0.2)
        grads = _grads(out, (x, w, b), dy)
    assert forward.call_count == 1 and backward.call_count == 1
    assert out.shape == x.shape and out.dtype == dtype and out.is_contiguous() == x.is_contiguous()
    ref = reference.batch_norm_act(x, w, b, *ref_stats, training, 0.1, 1e-5, act, 0.2)
    _close(out, ref, dtype)
    for s, r in zip(stats, ref_stats):
        _close(s, r, torch.float32)
    mean, rstd = _batch_stats(x) if training else (stats[0].clone(), torch.rsqrt(stats[1] + 1e-5))
    for a, e, scale in zip(grads, _grads(ref, (x, w, b), dy), _per_sample_grad_scales(x, w, dy, mean, rstd)):
        assert a.shape == e.shape and a.dtype == e.dtype
        _close_to_scale(a, e, scale)


@kernel_test
@pytest.mark.parametrize("weight_rows, bias_rows, absent", [(True, False, None), (True, False, "bias"),
                                                             (False, True, None), (False, True, "weight")])
def test_per_sample_kernels_take_per_channel_or_absent_partners(weight_rows, bias_rows, absent):
    g = torch.Generator().manual_seed(8)
    x, w, b = _per_sample_inputs((4, 3, 6, 5), g, torch.float32, weight_rows, bias_rows)
    w, b = (None if absent == "weight" else w), (None if absent == "bias" else b)
    inputs = [t for t in (x, w, b) if t is not None]
    with _kernel_calls("batch_norm_act", "backward_per_sample") as backward:
        out = ops.batch_norm_act(x, w, b, None, None, True, act="lrelu", alpha=0.2)
        grads = _grads(out, inputs, torch.ones_like(out))
    assert backward.call_count == 1
    ref = reference.batch_norm_act(x, w, b, None, None, True, act="lrelu", alpha=0.2)
    _close(out, ref, torch.float32)
    scales = _per_sample_grad_scales(x, w, torch.ones_like(out), *_batch_stats(x))
    scales = [scales[0]] + [sc for t, sc in zip((w, b), scales[1:]) if t is not None]
    for a, e, scale in zip(grads, _grads(ref, inputs, torch.ones_like(out)), scales):
        assert a.shape == e.shape
        _close_to_scale(a, e, scale)


@kernel_test
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_per_sample_batch_norm_act_takes_three_launches_forward_and_two_backward(dtype, channels_last):
    g = torch.Generator().manual_seed(9)
    x, w, b = _per_sample_inputs((4, 6, 7, 7), g, dtype, channels_last=channels_last)
    stats = torch.zeros(6), torch.ones(6)
    fwd, bwd = _budget(lambda: ops.batch_norm_act(x, w, b, *stats, True, 0.1, 1e-5, "relu"), (x, w, b), 3, 2)
    assert len(fwd.triton) == 3 and len(bwd.triton) == 2


@kernel_test
def test_per_sample_kernels_over_many_channel_blocks_and_positions():
    # 70 channels: two channel blocks of 64; 33 x 35 positions: several position blocks per sample.
    g = torch.Generator().manual_seed(10)
    x, w, b = _per_sample_inputs((3, 70, 33, 35), g, torch.float32)
    out = ops.batch_norm_act(x, w, b, None, None, True, act="tanh")
    dy = torch.randn(x.shape, generator=g)
    ref = reference.batch_norm_act(x, w, b, None, None, True, act="tanh")
    _close(out, ref, torch.float32)
    for a, e, scale in zip(_grads(out, (x, w, b), dy), _grads(ref, (x, w, b), dy),
                           _per_sample_grad_scales(x, w, dy, *_batch_stats(x))):
        _close_to_scale(a, e, scale)


# ---------------------------------------------------------------- many blocks, groups and loop iterations
# At their real sizes (1024-element blocks and tiles, 512 programs, 1024 partials per step of the ordered
# sum) the small tensors above fit in one or two blocks: the loops that add partials (the last program's
# ordered sum, batch norm's merge over groups and over channel blocks) and the tile loops over rows and
# inner elements run once. These tests shrink the sizes the launchers read at call time, so tensors of a
# few hundred to a few thousand elements span many of each, and check what those loops compute.

@contextlib.contextmanager
def _small_blocks(tile: int = 1024, programs: int = 8, block: int = 64, sum_block: int = 4):
    """The launchers' sizes shrunk: TILE and REDUCE_PROGRAMS of the reducing tile kernels, every elementwise
    BLOCK (and the loss backward's SCALE_BLOCK), and SUM_BLOCK, the partials the last program adds per step
    (a constexpr global the interpreter looks up when the kernel runs)."""
    import triton.language as tl

    from fastgan.kernels import _common, batch_norm_act, bce_with_logits, bias_act, gan_loss

    patches = [(_common, "TILE", tile), (_common, "REDUCE_PROGRAMS", programs), (_common, "SCALE_BLOCK", block),
               (batch_norm_act, "BLOCK", block), (bias_act, "BLOCK", block), (gan_loss, "BLOCK", block),
               (bce_with_logits, "BLOCK", block), (gan_loss, "SUM_BLOCK", tl.constexpr(sum_block)),
               (bce_with_logits, "SUM_BLOCK", tl.constexpr(sum_block))]
    with contextlib.ExitStack() as stack:
        for module, name, value in patches:
            stack.enter_context(mock.patch.object(module, name, value))
        yield


# (shape, TILE): contiguous, inner = 17 * 19 = 323 elements per channel row, so BLOCK_I = 256 takes two
# steps (the second masked) and TILE = 512 gives BLOCK_C = 2 of 3 channels; channels_last, inner = 1 and
# TILE = 2 gives BLOCK_C = 2 of 3 channels over 5 * 3 * 5 = 75 rows.
MANY_TILES = {"contiguous": ((5, 3, 17, 19), 512), "channels_last": ((5, 3, 3, 5), 2)}


def _assert_many_tiles(x: torch.Tensor, layout: str) -> None:
    """x spans several channel blocks (the last one masked), several row groups of several rows (the last
    one shorter) and, when contiguous, several inner steps (the last one masked)."""
    import triton

    from fastgan.kernels._common import channel_layout, tiles

    outer, channels, inner = channel_layout(x, 1)
    block_c, block_i, n_cblocks, rows = tiles(outer, channels, inner)
    groups = triton.cdiv(outer, rows)
    assert n_cblocks > 1 and channels % block_c, (channels, block_c)
    assert groups > 2 and rows > 1 and outer % rows, (outer, rows)
    if layout == "contiguous":
        assert inner > block_i and inner % block_i, (inner, block_i)


@kernel_test
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", list(MANY_TILES))
def test_batch_norm_act_kernels_match_reference_over_many_groups_and_tiles(layout, training):
    shape, tile = MANY_TILES[layout]
    g = torch.Generator().manual_seed(7)
    x = torch.randn(shape, generator=g) * 2 + 1
    dy = torch.randn(shape, generator=g)
    if layout == "channels_last":
        x, dy = x.contiguous(memory_format=torch.channels_last), dy.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    c = shape[1]
    w = (torch.rand(c, generator=g) + 0.5).requires_grad_()
    b = torch.randn(c, generator=g).requires_grad_()
    stats = [torch.randn(c, generator=g), torch.rand(c, generator=g) + 0.5]
    ref_stats = [s.clone() for s in stats]
    with _small_blocks(tile=tile), _kernel_calls("batch_norm_act", "backward") as backward:
        _assert_many_tiles(x, layout)
        out = ops.batch_norm_act(x, w, b, *stats, training, 0.1, 1e-5, "lrelu", 0.2)
        grads = _grads(out, (x, w, b), dy)
    assert backward.call_count == 1
    mean, rstd = _batch_stats(x) if training else (stats[0].clone(), torch.rsqrt(stats[1] + 1e-5))
    ref = reference.batch_norm_act(x, w, b, *ref_stats, training, 0.1, 1e-5, "lrelu", 0.2)
    _close(out, ref, torch.float32)
    for s, r in zip(stats, ref_stats):
        _close(s, r, torch.float32)
    _check_batch_norm_grads(grads, _grads(ref, (x, w, b), dy), x, w, dy, mean, rstd)


@kernel_test
@pytest.mark.parametrize("layout", list(MANY_TILES))
def test_bias_act_kernel_bias_gradient_over_many_groups_and_tiles(layout):
    shape, tile = MANY_TILES[layout]
    g = torch.Generator().manual_seed(8)
    x, dy = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    if layout == "channels_last":
        x, dy = x.contiguous(memory_format=torch.channels_last), dy.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    b = torch.randn(shape[1], generator=g).requires_grad_()
    with _small_blocks(tile=tile), _kernel_calls("bias_act", "backward") as backward:
        _assert_many_tiles(x, layout)
        out = ops.bias_act(x, b, "lrelu", None, 1.4)
        dx, db = _grads(out, (x, b), dy)
    assert backward.call_count == 1
    ref = reference.bias_act(x, b, "lrelu", None, 1.4)
    ref_dx, ref_db = _grads(ref, (x, b), dy)
    _close(out, ref, torch.float32)
    _close(dx, ref_dx, torch.float32)
    _close_to_scale(db, ref_db, _bias_grad_scale(dy, 1.4, 1))


LOSS_BLOCKS = dict(block=8, sum_block=4)  # elements per block, partials per step of the ordered sum


def _many_partials(*sizes: int) -> None:
    """Logit sets of these sizes take several steps of the last program's ordered sum, the last one masked,
    and each set's last block is masked."""
    block, sum_block = LOSS_BLOCKS["block"], LOSS_BLOCKS["sum_block"]
    n_blocks = sum(-(-n // block) for n in sizes)
    assert n_blocks > 2 * sum_block and n_blocks % sum_block and all(n % block for n in sizes)


@kernel_test
@pytest.mark.parametrize("kind", reference.D_LOSS_KINDS)
def test_gan_loss_kernel_adds_many_partials_in_order(kind):
    g = torch.Generator().manual_seed(9)
    real = (torch.randn(70 if kind == "rpgan" else 45, 1, generator=g) * 4).requires_grad_()  # rpgan: pairs
    fake = (torch.randn(70, 1, generator=g) * 4).requires_grad_()
    paired = torch.randn(70, 1, generator=g) * 4  # g_loss's rpgan pairs these with fake
    _many_partials(45, 70)
    _many_partials(70)
    upstream = torch.tensor(0.5)  # not 1: the backward's scale kernel runs over several blocks too
    s = 0.1 if kind == "bce" else 0.0
    with _small_blocks(**LOSS_BLOCKS):
        out = losses.d_loss(real, fake, kind, s)
        grads = _grads(out, (real, fake), upstream)
        g_outs = {k: losses.g_loss(fake, k, paired) for k in reference.G_LOSS_KINDS}
        g_grads = {k: _grads(v, (fake,), upstream)[0] for k, v in g_outs.items()}
    ref = reference.d_loss(real, fake, kind, s)
    _close(out, ref, torch.float32)
    for a, e in zip(grads, _grads(ref, (real, fake), upstream)):
        _close(a, e, torch.float32)
    for k in reference.G_LOSS_KINDS:
        ref = reference.g_loss(fake, k, paired)
        _close(g_outs[k], ref, torch.float32)
        _close(g_grads[k], _grads(ref, (fake,), upstream)[0], torch.float32)


@kernel_test
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_with_logits_kernel_adds_many_partials_in_order(reduction):
    g = torch.Generator().manual_seed(10)
    x = (torch.randn(7, 11, generator=g) * 3).requires_grad_()
    t, w, pw = torch.rand(7, 11, generator=g), torch.rand(7, 11, generator=g), torch.rand(11, generator=g) * 3
    _many_partials(x.numel())
    upstream = torch.tensor(0.5)
    with _small_blocks(**LOSS_BLOCKS):
        out = functional.binary_cross_entropy_with_logits(x, t, w, reduction, pw)
        (dx,) = _grads(out, (x,), upstream)
    ref = reference.bce_with_logits(x, t, w, reduction, pw)
    _close(out, ref, torch.float32)
    _close(dx, _grads(ref, (x,), upstream)[0], torch.float32)


# ---------------------------------------------------------------- R1 through fastgan.nn layers

def _reference_d(d: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The same discriminator with every fused epilogue replaced by its reference."""
    for layer in d:
        if isinstance(layer, ConvBlock):
            x, post = layer.conv(x), layer.post
            if isinstance(post, BatchNormAct):
                x = reference.batch_norm_act(x, post.weight, post.bias, None, None, True, 0.1, post.eps, post.act,
                                             post.alpha)
            else:
                x = reference.bias_act(x, post.bias, post.act, post.alpha)
        else:
            x = layer(x)
    return x


@kernel_test
def test_r1_penalty_through_fused_layers_matches_reference():
    torch.manual_seed(0)
    d = torch.nn.Sequential(ConvBlock(3, 4, norm="none"), ConvBlock(4, 8, norm="batch"), torch.nn.Flatten(),
                            torch.nn.Linear(8 * 2 * 2, 1))
    with torch.no_grad():
        d[0].post.bias.normal_()
    params = list(d.parameters())
    images = torch.randn(4, 3, 8, 8, requires_grad=True)
    penalty = losses.r1_penalty(d(images), images)
    ref_penalty = losses.r1_penalty(_reference_d(d, images), images)
    _close(penalty, ref_penalty, torch.float32)
    grads = torch.autograd.grad(penalty, params, allow_unused=True)
    ref_grads = torch.autograd.grad(ref_penalty, params, allow_unused=True)
    for a, e in zip(grads, ref_grads):
        assert (a is None) == (e is None)
        if a is not None:
            torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)
