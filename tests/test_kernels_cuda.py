"""The Triton kernels on a GPU at training sizes, in float32, float16 and bfloat16 (skipped without CUDA).

Each test's fastgan calls are a function of the device (the *_calls functions, listed in CALLS): on a CPU,
tests/test_kernels_compile.py runs them with every launch caught and compiles those exact kernel
specialisations for sm_80/sm_90, so a kernel these tests would launch cannot fail to compile on the GPU.
"""
from __future__ import annotations

import pytest
import torch

from fastgan import backend, losses, ops, reference

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available() or backend() != "triton",
                                 reason="needs CUDA and the triton backend")]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2)}


def _close(a, b, dtype):
    torch.testing.assert_close(a.float(), b.float(), equal_nan=True, **TOL[dtype])


def _close_grad(a, b, dtype):
    """Gradients against the reference with an absolute tolerance scaled to the gradient's size: a loss over
    2^20 logits has gradients near 1e-6, which any fixed atol of 1e-5 would pass even if they were zero."""
    scale = b.float().abs().max().item()
    assert scale > 0, "the reference gradient is zero: the comparison would prove nothing"
    torch.testing.assert_close(a.float(), b.float(), rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["rtol"] * scale)


# ---------------------------------------------------------------- the calls, device-independent

def d_loss_calls(kind, dtype, device):
    real = (torch.randn(1 << 20, device=device) * 5).to(dtype).requires_grad_()
    fake = (torch.randn(1 << 20, device=device) * 5).to(dtype).requires_grad_()
    out = losses.d_loss(real, fake, kind)
    return (real, fake), out, torch.autograd.grad(out, (real, fake))


def bias_act_calls(act, dtype, device):
    x = torch.randn(32, 128, 32, 32, device=device, dtype=dtype, requires_grad=True)
    b = torch.randn(128, device=device, dtype=dtype, requires_grad=True)
    out = ops.bias_act(x, b, act, clamp=4.0)
    dy = torch.randn_like(out)
    return (x, b, dy), out, torch.autograd.grad(out, (x, b), dy)


def batch_norm_act_calls(dtype, device):
    x = (torch.randn(64, 64, 32, 32, device=device) + 100).to(dtype).requires_grad_()
    w = torch.rand(64, device=device, requires_grad=True)
    b = torch.randn(64, device=device, requires_grad=True)
    stats = [torch.zeros(64, device=device), torch.ones(64, device=device)]
    out = ops.batch_norm_act(x, w, b, *stats, True, 0.1, 1e-5, "relu")
    dy = torch.randn(out.shape, device=device)
    return (x, w, b, dy), out, torch.autograd.grad(out, (x, w, b), dy.to(dtype))


def odd_size_loss_calls(dtype, device):
    """[(loss name, inputs, output, gradients of 0.5 * output)] of d_loss and g_loss for 1, 17 and 1025 logits."""
    results = []
    for n in (1, 17, 1025):
        real = torch.randn(n, 1, device=device).to(dtype).requires_grad_()
        fake = torch.randn(n + 2, 1, device=device).to(dtype).requires_grad_()
        for name, out in (("d_loss", losses.d_loss(real, fake, "bce", 0.1)), ("g_loss", losses.g_loss(fake))):
            results.append((name, (real, fake), out, torch.autograd.grad(out * 0.5, (real, fake), allow_unused=True)))
    return results


def channels_last_calls(dtype, device):
    x = torch.randn(8, 64, 16, 16, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    b = torch.randn(64, device=device, dtype=dtype, requires_grad=True)
    out = ops.bias_act(x, b, "lrelu")
    (gx,) = torch.autograd.grad(out, x, torch.randn_like(out))
    return (x, b), out, gx


CALLS = ([(d_loss_calls, (kind, dtype)) for kind in reference.D_LOSS_KINDS for dtype in DTYPES]
         + [(bias_act_calls, (act, dtype)) for act in reference.ACTIVATIONS for dtype in DTYPES]
         + [(f, (dtype,)) for f in (batch_norm_act_calls, odd_size_loss_calls, channels_last_calls) for dtype in DTYPES])


# ---------------------------------------------------------------- the tests

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", reference.D_LOSS_KINDS)
def test_d_loss_on_gpu_matches_reference(kind, dtype):
    (real, fake), out, grads = d_loss_calls(kind, dtype, "cuda")
    ref = reference.d_loss(real, fake, kind)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads, torch.autograd.grad(ref, (real, fake))):
        _close_grad(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", list(reference.ACTIVATIONS))
def test_bias_act_on_gpu_matches_reference(act, dtype):
    (x, b, dy), out, (gx, gb) = bias_act_calls(act, dtype, "cuda")
    ref = reference.bias_act(x, b, act, clamp=4.0)
    _close(out, ref, dtype)
    rx, rb = torch.autograd.grad(ref, (x, b), dy)
    _close_grad(gx, rx, dtype)
    # db sums 32 * 32 * 32 terms of size ~1: rounding is relative to that, not to the (cancelling) result.
    torch.testing.assert_close(gb.float(), rb.float(), rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["rtol"] * 32 * 32 * 32 ** 0.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_act_on_gpu_matches_reference(dtype):
    (x, w, b, dy), out, grads = batch_norm_act_calls(dtype, "cuda")
    ref_stats = [torch.zeros(64, device="cuda"), torch.ones(64, device="cuda")]
    ref = reference.batch_norm_act(x.float(), w, b, *ref_stats, True, 0.1, 1e-5, "relu")
    _close(out, ref, dtype)
    for a, e in zip(grads, torch.autograd.grad(ref, (x, w, b), dy)):
        _close_grad(a, e, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_losses_on_gpu_match_reference_for_one_logit_and_odd_sizes(dtype):
    for name, (real, fake), out, grads in odd_size_loss_calls(dtype, "cuda"):
        ref = reference.d_loss(real, fake, "bce", 0.1) if name == "d_loss" else reference.g_loss(fake)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-6)
        for a, b in zip(grads, torch.autograd.grad(ref * 0.5, (real, fake), allow_unused=True)):
            if b is not None:
                _close_grad(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_last_stays_channels_last_on_gpu(dtype):
    (x, b), out, gx = channels_last_calls(dtype, "cuda")
    assert out.is_contiguous(memory_format=torch.channels_last)
    _close(out, reference.bias_act(x, b, "lrelu"), dtype)
    assert gx.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_bias_act_indexes_past_two_to_the_31_elements():
    free, _ = torch.cuda.mem_get_info()
    if free < 12 * 2**30:
        pytest.skip("needs 12 GiB of free GPU memory")
    x = torch.zeros(2**31 + 2**20, device="cuda", dtype=torch.float16).view(-1, 2)
    x[-1] = -1.0
    y = ops.bias_act(x, torch.ones(2, device="cuda", dtype=torch.float16), "relu", dim=1)
    assert y[-1].tolist() == [0.0, 0.0] and y[0].tolist() == [1.0, 1.0]
