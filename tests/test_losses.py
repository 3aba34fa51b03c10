"""GAN losses against their closed forms, and the gradient penalties."""
import math

import pytest
import torch

import fastgan as fg
from fastgan.losses import d_loss, g_loss, gradient_penalty, r1_penalty


def sig(x):
    return 1 / (1 + torch.exp(-x))


REAL = torch.tensor([2.0, -1.0, 0.5, 3.0], dtype=torch.float64)
FAKE = torch.tensor([-2.5, 0.2, 1.0, -0.1], dtype=torch.float64)

D_CLOSED = {
    "bce": lambda r, f: -torch.log(sig(r)).mean() - torch.log(1 - sig(f)).mean(),
    "hinge": lambda r, f: torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean(),
    "lsgan": lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean(),
    "wgan": lambda r, f: f.mean() - r.mean(),
    "rpgan": lambda r, f: torch.log(1 + torch.exp(-(r - f))).mean(),  # -log sigmoid(D(x) - D(G(z)))
}
G_CLOSED = {
    "ns": lambda f: -torch.log(sig(f)).mean(),
    "saturating": lambda f: torch.log(1 - sig(f)).mean(),
    "hinge": lambda f: -f.mean(),
    "lsgan": lambda f: 0.5 * ((f - 1) ** 2).mean(),
    "wgan": lambda f: -f.mean(),
    "rpgan": lambda f: torch.log(1 + torch.exp(-(f - REAL))).mean(),  # pairs with REAL
}


@pytest.mark.parametrize("kind", fg.losses.D_LOSS_KINDS)
def test_d_loss_equals_closed_form(kind):
    torch.testing.assert_close(d_loss(REAL, FAKE, kind).double(), D_CLOSED[kind](REAL, FAKE), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", fg.losses.G_LOSS_KINDS)
def test_g_loss_equals_closed_form(kind):
    torch.testing.assert_close(g_loss(FAKE, kind, REAL).double(), G_CLOSED[kind](FAKE), rtol=1e-6, atol=1e-7)


def test_rpgan_losses_are_each_others_with_the_roles_swapped_and_pair_elementwise():
    assert g_loss(FAKE, "rpgan", REAL) == d_loss(FAKE, REAL, "rpgan")
    # Pairs, not sets: permuting one side changes the loss.
    assert d_loss(REAL, FAKE.flip(0), "rpgan") != d_loss(REAL, FAKE, "rpgan")


def test_bce_label_smoothing_is_one_sided():
    s = 0.1
    expected = (-(1 - s) * torch.log(sig(REAL)) - s * torch.log(1 - sig(REAL))).mean() - torch.log(1 - sig(FAKE)).mean()
    torch.testing.assert_close(d_loss(REAL, FAKE, "bce", label_smoothing=s).double(), expected, rtol=1e-6, atol=1e-7)


def test_saturating_and_non_saturating_gradients_differ_where_d_is_confident():
    # At D(G(z)) ~ 0 the minimax loss has a vanishing gradient; the non-saturating one does not.
    f = torch.tensor([-8.0], requires_grad=True)
    (g_sat,) = torch.autograd.grad(g_loss(f, "saturating"), f)
    (g_ns,) = torch.autograd.grad(g_loss(f, "ns"), f)
    assert abs(g_sat.item()) < 1e-3 < abs(g_ns.item())
    assert g_sat.item() < 0 and g_ns.item() < 0  # both push the fake logit up


def test_losses_are_float32_for_half_logits():
    r, f = REAL.half(), FAKE.bfloat16()
    assert d_loss(r, r).dtype == torch.float32
    assert g_loss(f).dtype == torch.float32


def test_losses_are_stable_for_extreme_logits():
    r = torch.tensor([1e4, -1e4])
    assert torch.isfinite(d_loss(r, -r)) and torch.isfinite(g_loss(r, "ns")) and torch.isfinite(g_loss(r, "saturating"))
    # One confidently wrong logit in each half-batch of two: 1e4 / 2 per term.
    assert d_loss(r, -r).item() == pytest.approx(1e4, rel=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: d_loss(REAL, FAKE, "nope"), "d_loss: kind must be one of bce, hinge, lsgan, wgan, rpgan; got 'nope'"),
        (lambda: g_loss(FAKE, "rpgan"), "^g_loss: kind='rpgan' pairs each fake logit with a real one: pass real_logits$"),
        (lambda: g_loss(FAKE, "rpgan", REAL[:3]), r"g_loss: kind='rpgan' pairs real_logits \(3,\) with fake_logits \(4,\)"),
        (lambda: d_loss(REAL, FAKE.view(4, 1), "rpgan"), r"d_loss: kind='rpgan' pairs real_logits \(4,\) with fake_logits \(4, 1\)"),
        (lambda: g_loss(FAKE, "rpgan", REAL.long()), "real_logits must be a floating-point"),
        (lambda: g_loss(FAKE, "minimax"), "g_loss: kind must be one of"),
        (lambda: d_loss(REAL.view(2, 2), FAKE.view(4, 1)), "must agree in every dimension"),
        (lambda: d_loss(REAL.long(), FAKE), "real_logits must be a floating-point"),
        (lambda: g_loss(torch.ones(3, dtype=torch.int32)), "fake_logits must be a floating-point"),
        (lambda: d_loss(REAL, FAKE, "hinge", label_smoothing=0.1), "kind='bce' only"),
        (lambda: d_loss(REAL, FAKE, "bce", label_smoothing=1.5), r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_losses_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_r1_penalty_equals_analytic_gradient_norm():
    # D(x) = sum(w * x^2) has grad 2 w x, so R1 = mean over the batch of sum((2 w x)^2).
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    x = torch.randn(4, 3, dtype=torch.float32).requires_grad_(True)
    logits = (w * x**2).sum(1)
    penalty = r1_penalty(logits, x)
    expected = ((2 * w * x) ** 2).sum(1).mean()
    torch.testing.assert_close(penalty, expected)
    # Double backward: d penalty / d w = mean(sum(8 w x^2)).
    (grad_w,) = torch.autograd.grad(penalty, w)
    torch.testing.assert_close(grad_w, (8 * w * x**2).mean(0).detach())


def test_r1_penalty_needs_images_with_grad():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="require grad"):
        r1_penalty(x.sum(1), x)


def test_gradient_penalty_of_a_linear_critic():
    # A linear critic has gradient a everywhere, so GP = (|a| - 1)^2 for any interpolates.
    a = torch.tensor([3.0, 4.0])
    critic = lambda x: x @ a  # noqa: E731
    gp = gradient_penalty(critic, torch.randn(6, 2), torch.randn(6, 2), generator=torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="shapes differ"):
        gradient_penalty(lambda x: x.sum(1), torch.randn(4, 2), torch.randn(3, 2))


def test_log_sigmoid_identity_used_by_losses():
    x = torch.tensor([-3.0, 0.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(g_loss(x, "ns").double(), torch.log1p(torch.exp(-x)).mean())
    assert math.isclose(g_loss(torch.zeros(1), "ns").item(), math.log(2), rel_tol=1e-7)
