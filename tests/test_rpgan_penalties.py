"""R1 + R2 in one pass (fastgan.losses.r1_r2_penalty) against R3GAN's two-pass form, in float64."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastgan import losses, ops

GAMMA = 0.5


class BiasActConv(nn.Module):
    """A convolution and fastgan's bias_act epilogue: per-sample, like R3GAN's D."""

    def __init__(self, cin, cout, act="lrelu"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bias = nn.Parameter(torch.randn(cout) * 0.1)
        self.act = act

    def forward(self, x):
        return ops.bias_act(self.conv(x), self.bias, self.act)


def small_d(norm=None, act="lrelu"):
    torch.manual_seed(0)
    layers = [BiasActConv(3, 6, act)]
    if norm is not None:
        layers.append(norm(6))
    layers += [BiasActConv(6, 4, "tanh"), nn.Flatten(), nn.Linear(4 * 6 * 6, 1)]
    return nn.Sequential(*layers).double()


def images(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 3, 6, 6, generator=g, dtype=torch.float64), torch.randn(5, 3, 6, 6, generator=g,
                                                                                  dtype=torch.float64)


def two_pass(d, real, fake):
    """R3GAN's AccumulateDiscriminatorGradients: two forwards, one gradient penalty each."""
    real, fake = real.detach().requires_grad_(True), fake.detach().requires_grad_(True)
    real_logits, fake_logits = d(real), d(fake)
    (g_real,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    (g_fake,) = torch.autograd.grad(fake_logits.sum(), fake, create_graph=True)
    loss = F.softplus(-(real_logits - fake_logits)).mean()
    return loss, g_real.square().sum([1, 2, 3]).mean(), g_fake.square().sum([1, 2, 3]).mean()


def total(loss, r1, r2):
    return loss + GAMMA / 2 * (r1 + r2)


def assert_same_step(d, ours, theirs):
    """Same loss, R1, R2, and the same gradient of R3GAN's D objective w.r.t. every parameter of D."""
    for a, b in zip(ours[:3], theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    params = list(d.parameters())
    for a, b in zip(torch.autograd.grad(total(*ours[:3]), params), torch.autograd.grad(total(*theirs), params)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("act", ["lrelu", "sigmoid"])
def test_one_pass_equals_the_two_pass_form_to_second_order(act):
    d = small_d(act=act)
    real, fake = images()
    result = losses.r1_r2_penalty(d, real, fake)
    assert result.one_pass and not losses.mixes_samples(d)
    assert result.r1 > 0 and result.r2 > 0 and result.r1 != result.r2
    assert_same_step(d, result, two_pass(d, real, fake))


def test_one_pass_runs_one_forward_over_both_batches_and_one_double_backward():
    d = small_d()
    batches = []
    d.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    real, fake = images()
    calls = []
    grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls.append(kwargs.get("create_graph"))
        return grad(*args, **kwargs)
    torch.autograd.grad = counting_grad
    try:
        losses.r1_r2_penalty(d, real, fake)
    finally:
        torch.autograd.grad = grad
    assert batches == [10] and calls == [True]


def test_batch_norm_in_training_falls_back_to_the_exact_two_pass_form():
    d = small_d(nn.BatchNorm2d)
    real, fake = images()
    assert losses.mixes_samples(d)
    result = losses.r1_r2_penalty(d, real, fake)
    assert not result.one_pass
    assert_same_step(d, result, two_pass(d, real, fake))
    # The fallback matters: one pass over the joint batch normalises with the wrong statistics.
    forced = losses.r1_r2_penalty(d, real, fake, one_pass=True)
    assert forced.one_pass and not torch.allclose(forced.r1, result.r1)


def test_batch_norm_in_eval_mode_keeps_the_one_pass_form():
    d = small_d(nn.BatchNorm2d).eval()
    real, fake = images()
    result = losses.r1_r2_penalty(d, real, fake)
    assert result.one_pass
    assert_same_step(d, result, two_pass(d, real, fake))


def test_a_module_that_declares_cross_sample_takes_two_passes():
    class BatchMean(nn.Module):
        cross_sample = True

        def forward(self, x):
            return x - x.mean(0, keepdim=True)
    d = nn.Sequential(small_d(), BatchMean())
    real, fake = images()
    result = losses.r1_r2_penalty(d, real, fake)
    assert not result.one_pass
    assert_same_step(d, result, two_pass(d, real, fake))


def test_r1_and_r2_in_closed_form():
    # D(x) = sum(w * x^2) has gradient 2 w x: R1 = mean over the batch of sum((2 w x)^2), R2 the same on fakes.
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    real, fake = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    result = losses.r1_r2_penalty(lambda x: (w * x**2).sum(1), real, fake)
    torch.testing.assert_close(result.r1, ((2 * w * real) ** 2).sum(1).mean())
    torch.testing.assert_close(result.r2, ((2 * w * fake) ** 2).sum(1).mean())
    rl, fl = (w * real**2).sum(1), (w * fake**2).sum(1)
    torch.testing.assert_close(result.loss, F.softplus(fl - rl).mean())


def test_the_loss_kind_is_served_from_the_same_logits():
    d = small_d()
    real, fake = images()
    result = losses.r1_r2_penalty(d, real, fake, kind="hinge")
    torch.testing.assert_close(result.loss, losses.d_loss(d(real), d(fake), "hinge"), rtol=1e-12, atol=1e-14)


def test_mismatched_batches_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^r1_r2_penalty: real \(4, 3\) and fake \(5, 3\) shapes differ"):
        losses.r1_r2_penalty(lambda x: x.sum(1), torch.randn(4, 3), torch.randn(5, 3))


def test_a_d_with_minibatch_std_takes_the_two_pass_form():
    from fastgan.nn import MinibatchStd

    d = torch.nn.Sequential(MinibatchStd(group_size=2), torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 1),
                            torch.nn.Flatten(0)).double()
    assert losses.mixes_samples(d)
    real, fake = torch.randn(4, 1, 4, 4, dtype=torch.float64), torch.randn(4, 1, 4, 4, dtype=torch.float64)
    assert not losses.r1_r2_penalty(d, real, fake).one_pass
