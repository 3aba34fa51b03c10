"""The Triton kernels on a GPU at training sizes, in float32, float16 and bfloat16 (skipped without CUDA)."""
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", reference.D_LOSS_KINDS)
def test_d_loss_on_gpu_matches_reference(kind, dtype):
    real = (torch.randn(1 << 20, device="cuda") * 5).to(dtype).requires_grad_()
    fake = (torch.randn(1 << 20, device="cuda") * 5).to(dtype).requires_grad_()
    out, ref = losses.d_loss(real, fake, kind), reference.d_loss(real, fake, kind)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(torch.autograd.grad(out, (real, fake)), torch.autograd.grad(ref, (real, fake))):
        _close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", list(reference.ACTIVATIONS))
def test_bias_act_on_gpu_matches_reference(act, dtype):
    x = torch.randn(32, 128, 32, 32, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(128, device="cuda", dtype=dtype, requires_grad=True)
    out, ref = ops.bias_act(x, b, act, clamp=4.0), reference.bias_act(x, b, act, clamp=4.0)
    _close(out, ref, dtype)
    dy = torch.randn_like(out)
    gx, gb = torch.autograd.grad(out, (x, b), dy)
    rx, rb = torch.autograd.grad(ref, (x, b), dy)
    _close(gx, rx, dtype)
    torch.testing.assert_close(gb.float(), rb.float(), rtol=1e-3, atol=1e-2 * x.shape[0] ** 0.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_act_on_gpu_matches_reference(dtype):
    x = (torch.randn(64, 64, 32, 32, device="cuda") + 100).to(dtype).requires_grad_()
    w = torch.rand(64, device="cuda", requires_grad=True)
    b = torch.randn(64, device="cuda", requires_grad=True)
    stats = [torch.zeros(64, device="cuda"), torch.ones(64, device="cuda")]
    ref_stats = [s.clone() for s in stats]
    out = ops.batch_norm_act(x, w, b, *stats, True, 0.1, 1e-5, "relu")
    ref = reference.batch_norm_act(x.float(), w, b, *ref_stats, True, 0.1, 1e-5, "relu")
    _close(out, ref, dtype)
    dy = torch.randn_like(ref)
    for a, e in zip(torch.autograd.grad(out, (x, w, b), dy.to(dtype)), torch.autograd.grad(ref, (x, w, b), dy)):
        torch.testing.assert_close(a.float(), e.float(), rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * 10)
