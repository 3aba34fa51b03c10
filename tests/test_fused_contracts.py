"""What the fused ops promise besides their values: references that refuse unknown options by name, closed forms
independent of the references (lrelu's slope, clamp 0, the WGAN-GP interpolates), errors that name the function,
outputs in the input's layout that never alias an input, and gradient and statistics outputs without a gradient."""
from __future__ import annotations

import pytest
import torch

from fastgan import losses, reference

ops = torch.ops.fastgan


def test_references_refuse_an_unknown_loss_kind_naming_the_choices():
    x = torch.randn(4)
    d_kinds, g_kinds = ", ".join(reference.D_LOSS_KINDS), ", ".join(reference.G_LOSS_KINDS)
    with pytest.raises(ValueError, match=rf"^d_loss: kind must be one of {d_kinds}; got 'nope'$"):
        reference.d_loss(x, x, "nope")
    with pytest.raises(ValueError, match=rf"^g_loss: kind must be one of {g_kinds}; got 'x'$"):
        reference.g_loss(x, "x")


@pytest.mark.parametrize("alpha", [None, 0.05, 0.3])
def test_bias_act_reference_lrelu_has_the_given_slope(alpha):
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    slope = 0.2 if alpha is None else alpha
    torch.testing.assert_close(reference.bias_act(x, None, "lrelu", alpha), torch.where(x > 0, x, slope * x))


def test_bias_act_reference_clamp_zero_clamps_everything_and_a_negative_clamp_nothing():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    assert torch.equal(reference.bias_act(x, None, "linear", clamp=0.0), torch.zeros_like(x))
    assert torch.equal(reference.bias_act(x, None, "linear", clamp=-1.0), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_penalty_interpolates_each_sample_with_its_own_seeded_fraction(dtype):
    # D(x) = ||x||^2 / 2 has gradient x, so the penalty is a closed form of the interpolates x_hat.
    g = torch.Generator().manual_seed(0)
    real, fake = (torch.randn(5, 2, 3, 4, generator=g, dtype=dtype) for _ in range(2))
    penalty = losses.gradient_penalty(lambda x: 0.5 * x.square().flatten(1).sum(1), real, fake,
                                      generator=torch.Generator().manual_seed(7), target=0.5)
    eps = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(7), dtype=dtype)
    x_hat = torch.lerp(real, fake, eps).flatten(1).double()
    # The input gradient is taken in float32 whatever the images' dtype.
    torch.testing.assert_close(penalty.double(), (x_hat.norm(dim=1) - 0.5).square().mean(), rtol=1e-6, atol=1e-6)


def test_r1_penalty_is_the_mean_squared_input_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.tensor([1.0, -2.0, 0.5])
    penalty = losses.r1_penalty((x * w).sum(1) + 0.5 * x.square().sum(1), x)
    torch.testing.assert_close(penalty, (w + x.detach()).square().sum(1).mean())


def test_penalties_name_themselves_in_their_errors():
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"^r1_penalty: the images must require grad before D is applied"):
        losses.r1_penalty(x.sum(1), x)
    with pytest.raises(ValueError, match=r"^r1_penalty: real_logits must be a floating-point tensor"):
        losses.r1_penalty(torch.ones(3, dtype=torch.int64), x)
    with pytest.raises(ValueError, match=r"^gradient_penalty: real \(3, 2\) and fake \(3, 3\) shapes differ"):
        losses.gradient_penalty(lambda y: y.sum(1), x, torch.randn(3, 3))


@pytest.mark.parametrize("shape, fused", [(None, True), ((3,), True), ((1, 3), True), ((2, 3), True),
                                          ((1, 1, 2, 3), True), ((2, 1), False), ((4, 2, 3), False), ((3, 2), False)])
def test_weights_the_kernels_read_as_a_trailing_block(shape, fused):
    # The bce kernel reads weight[offset % weight.numel()]: right only for a weight that is a trailing block of
    # input's shape (leading 1s allowed); other broadcasts take the reference.
    from fastgan.fused.bce_with_logits import _suffix_broadcast

    assert _suffix_broadcast(None if shape is None else torch.ones(shape), torch.Size((2, 3))) is fused


# ---------------------------------------------------------------- outputs of the ops

@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
def test_bias_act_ops_keep_a_dense_layout_and_make_others_contiguous(layout):
    x = torch.randn(2, 3, 4, 5)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = x.transpose(2, 3)
    b, dy = torch.randn(3), torch.randn(x.shape)
    y = ops.bias_act(x, b, "tanh", 0.0, 1.5, None, 1)
    dx, _ = ops.bias_act_backward(dy, y, b, "tanh", 0.0, 1.5, None, 1)
    expected = x.stride() if layout != "transposed" else x.contiguous().stride()
    assert y.stride() == expected and dx.stride() == expected
    torch.testing.assert_close(y, reference.bias_act(x, b, "tanh", None, 1.5))


def test_ops_never_return_an_input():
    # The identity configuration computes y = x: the op still returns a new tensor (a custom op may not alias).
    x = torch.randn(2, 3, 4)
    y = ops.bias_act(x, None, "linear", 0.0, 1.0, None, 1)
    dx, _ = ops.bias_act_backward(x, y, None, "linear", 0.0, 1.0, None, 1)
    for out in (y, dx):
        assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    grad = torch.randn(6)
    out = ops.loss_grad(grad, torch.tensor(1.0), torch.float32)
    assert torch.equal(out, grad) and out.data_ptr() != grad.data_ptr()


def test_gradient_and_statistics_outputs_carry_no_gradient():
    x = torch.randn(4, 3, 2, requires_grad=True)
    w, b = torch.rand(3, requires_grad=True), torch.randn(3, requires_grad=True)
    _, mean, rstd, var = ops.batch_norm_act(x, w, b, None, None, True, 1e-5, "relu", 0.0)
    assert not (mean.requires_grad or rstd.requires_grad or var.requires_grad)
    t = torch.rand(4, 3, 2)
    outputs = (ops.bce_with_logits(x, t, None, None, "mean"), ops.d_loss(x, x * 2, "hinge", 0.0),
               ops.g_loss(x, "ns"))
    for loss, grad in outputs:
        assert loss.requires_grad and not grad.requires_grad
