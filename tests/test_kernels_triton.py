"""The Triton kernels against the PyTorch reference, run on CPU tensors under the Triton interpreter.

The backend is chosen once per process, so these tests run in a child pytest process started with
FASTGAN_BACKEND=triton TRITON_INTERPRET=1 (test_kernels_pass_under_the_interpreter); in the parent
process the rest of the module is skipped.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgan
from fastgan import functional, losses, ops, reference
from fastgan.nn import BatchNormAct, ConvBlock

IN_INTERPRETER = os.environ.get("FASTGAN_BACKEND") == "triton" and os.environ.get("TRITON_INTERPRET") == "1"
kernel_test = pytest.mark.skipif(not IN_INTERPRETER, reason="runs in the interpreter child process")
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float16: dict(rtol=2e-3, atol=2e-3)}
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
    assert fastgan.backend.__module__ == "fastgan.backend"


def _close(actual, expected, dtype):
    torch.testing.assert_close(actual.float(), expected.float(), equal_nan=True, **TOL[dtype])


def _grads(out, inputs, grad_out=None):
    return torch.autograd.grad(out, inputs, grad_out if grad_out is not None else torch.ones_like(out),
                               allow_unused=True)


# ---------------------------------------------------------------- losses

@kernel_test
@FEW
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3), reduction=st.sampled_from(["mean", "sum", "none"]),
       layout=st.sampled_from(["none", "full", "trailing", "scalar"]), use_pos=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float16]), scale=st.sampled_from([1.0, 20.0]), seed=st.integers(0, 99))
def test_bce_kernel_matches_reference(shape, reduction, layout, use_pos, dtype, scale, seed):
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
def test_bce_kernel_is_finite_and_exact_for_extreme_logits():
    x = torch.tensor([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], requires_grad=True)
    t = torch.tensor([1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.3])
    out = functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    ref = reference.bce_with_logits(x, t, reduction="none")
    assert torch.isfinite(out).all()
    _close(out, ref, torch.float32)
    _close(_grads(out, x)[0], _grads(ref, x)[0], torch.float32)


@kernel_test
def test_bce_kernel_propagates_nan_and_handles_non_contiguous_and_empty():
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


@kernel_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", reference.D_LOSS_KINDS)
def test_d_loss_kernel_matches_reference(kind, dtype):
    g = torch.Generator().manual_seed(1)
    real = (torch.randn(37, 1, generator=g) * 4).to(dtype).requires_grad_()
    fake = (torch.randn(1030, 1, generator=g) * 4).to(dtype).requires_grad_()
    s = 0.1 if kind == "bce" else 0.0
    out, ref = losses.d_loss(real, fake, kind, s), reference.d_loss(real, fake, kind, s)
    assert out.dtype == torch.float32
    _close(out, ref, torch.float32)
    for a, b in zip(_grads(out, (real, fake)), _grads(ref, (real, fake))):
        _close(a, b, dtype)


@kernel_test
@pytest.mark.parametrize("kind", reference.G_LOSS_KINDS)
def test_g_loss_kernel_matches_reference_including_extremes(kind):
    fake = torch.cat([torch.randn(50) * 3, torch.tensor([-1e4, 1e4, 0.0])]).requires_grad_()
    out, ref = losses.g_loss(fake, kind), reference.g_loss(fake, kind)
    # +-1e4 terms cancel in the mean: both orders of summation are right to float32 eps times mean |term|.
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6 * fake.detach().abs().mean().item())
    _close(_grads(out, fake)[0], _grads(ref, fake)[0], torch.float32)


@kernel_test
def test_gan_loss_kernel_propagates_nan():
    fake = torch.tensor([0.5, float("nan")])
    for kind in reference.G_LOSS_KINDS:
        assert torch.isnan(losses.g_loss(fake, kind)), kind
    for kind in reference.D_LOSS_KINDS:
        assert torch.isnan(losses.d_loss(torch.ones(3), fake, kind)), kind


@kernel_test
def test_loss_double_backward_falls_back_to_the_reference():
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


# ---------------------------------------------------------------- bias_act

@kernel_test
@FEW
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), data=st.data(),
       act=st.sampled_from(list(reference.ACTIVATIONS)), gain=st.sampled_from([None, 1.4]),
       clamp=st.sampled_from([None, 0.7]), use_bias=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float16]),
       transpose=st.booleans())
def test_bias_act_kernel_matches_reference(shape, data, act, gain, clamp, use_bias, dtype, transpose):
    dim = data.draw(st.integers(0, len(shape) - 1))
    x = torch.randn(shape).to(dtype)
    if transpose and x.ndim > 1:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    x.requires_grad_()
    b = torch.randn(shape[dim]).to(dtype).requires_grad_() if use_bias else None
    out = ops.bias_act(x, b, act, None, gain, clamp, dim)
    ref = reference.bias_act(x, b, act, None, gain, clamp, dim)
    _close(out, ref, dtype)
    dy = torch.randn_like(ref)
    inputs = (x, b) if use_bias else (x,)
    for a, e in zip(_grads(out, inputs, dy), _grads(ref, inputs, dy)):
        _close(a, e, dtype)


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
    dy = torch.randn_like(ref)
    for a, e in zip(_grads(out, (x, w, b), dy), _grads(ref, (x, w, b), dy)):
        _close(a, e, dtype)


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
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    w = (torch.rand(3) + 0.5).requires_grad_() if affine else None
    b = torch.randn(3).requires_grad_() if affine else None
    rm, rv = torch.randn(3), torch.rand(3) + 0.5
    out = ops.batch_norm_act(x, w, b, rm, rv, False, 0.1, 1e-5, "lrelu", 0.2)
    ref = reference.batch_norm_act(x, w, b, rm, rv, False, 0.1, 1e-5, "lrelu", 0.2)
    _close(out, ref, torch.float32)
    inputs = (x, w, b) if affine else (x,)
    for a, e in zip(_grads(out, inputs), _grads(ref, inputs)):
        _close(a, e, torch.float32)


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
