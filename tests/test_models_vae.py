"""VAE and VAE-GAN: shapes, the ELBO's pieces against closed forms, training signal, gradient routing."""
import math

import pytest
import torch

import fastgan as fg
from fastgan.models.vae import VAE, gaussian_kl, gaussian_nll, reparameterize
from fastgan.models.vaegan import VAEGAN, VAEGANDiscriminator, vaegan_backward, vaegan_losses


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_shapes_and_one_step(resolution, likelihood):
    torch.manual_seed(0)
    vae = VAE(z_dim=6, resolution=resolution, channels=1, width=4, likelihood=likelihood)
    x = torch.rand(3, 1, resolution, resolution) * 2 - 1
    out, mu, logvar = vae(x)
    assert out.shape == x.shape and mu.shape == logvar.shape == (3, 6)
    terms = vae.elbo_terms(x)
    assert set(terms) == {"recon", "kl", "loss"} and all(t.dim() == 0 and t.isfinite() for t in terms.values())
    opt = torch.optim.Adam(vae.parameters(), 1e-3)
    terms["loss"].backward()
    before = [p.detach().clone() for p in vae.parameters()]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, vae.parameters()))
    images = vae.sample(5, torch.Generator().manual_seed(1))
    assert images.shape == (5, 1, resolution, resolution) and images.abs().max() <= 1


def test_vae_rejects_bad_options_and_shapes():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAE(likelihood="poisson")
    with pytest.raises(ValueError, match="resolution must be one of"):
        VAE(resolution=24)
    with pytest.raises(ValueError, match=r"expected images \(N, 1, 16, 16\)"):
        VAE(resolution=16, width=4).elbo_terms(torch.zeros(2, 1, 32, 32))


def test_loss_is_recon_plus_beta_kl():
    vae = VAE(z_dim=4, resolution=16, width=4, beta=4.0)
    terms = vae.elbo_terms(torch.zeros(2, 1, 16, 16), torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms["loss"], terms["recon"] + 4.0 * terms["kl"])


def test_bernoulli_recon_is_bce_on_pixels_in_0_1():
    vae = VAE(z_dim=4, resolution=16, width=4, likelihood="bernoulli")
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    logits = torch.randn(2, 1, 16, 16)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="none")
    torch.testing.assert_close(vae.reconstruction_nll(x, logits), expected.sum(dim=(1, 2, 3)))


def test_gaussian_nll_matches_torch_distributions():
    x, mean = torch.randn(3, 2, 4, 4, dtype=torch.float64), torch.randn(3, 2, 4, 4, dtype=torch.float64)
    log_sigma = torch.tensor(-0.7, dtype=torch.float64)
    expected = -torch.distributions.Normal(mean, log_sigma.exp()).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(gaussian_nll(x, mean, log_sigma), expected)


def test_learned_sigma_is_a_parameter_and_fixed_sigma_is_not():
    learned = VAE(resolution=16, width=4, likelihood="gaussian", learn_sigma=True)
    fixed = VAE(resolution=16, width=4, likelihood="gaussian", sigma=0.3)
    assert any(p is learned.log_sigma for p in learned.parameters())
    assert all(p is not fixed.log_sigma for p in fixed.parameters())
    assert math.isclose(fixed.log_sigma.exp().item(), 0.3, rel_tol=1e-6)


def test_reparameterisation_gradients_are_exact_for_a_fixed_eps():
    # f(z) = z^2 with z = mu + exp(logvar/2) eps: df/dmu = 2z, df/dlogvar = z * exp(logvar/2) * eps.
    mu = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([0.5, -0.4], dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(3)
    z = reparameterize(mu, logvar, gen)
    eps = torch.randn(2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(z.detach(), (mu + torch.exp(logvar / 2) * eps).detach())
    d_mu, d_logvar = torch.autograd.grad(z.square().sum(), (mu, logvar))
    torch.testing.assert_close(d_mu, 2 * z.detach())
    torch.testing.assert_close(d_logvar, (z * torch.exp(logvar / 2) * eps).detach())


def test_given_noise_is_used_as_drawn_and_checked():
    mu, logvar = torch.tensor([[0.3, -1.2]]), torch.tensor([[0.5, -0.4]])
    eps = torch.tensor([[1.5, -0.25]])
    torch.testing.assert_close(reparameterize(mu, logvar, eps=eps), mu + torch.exp(logvar / 2) * eps, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"eps has shape \(2,\), mu \(1, 2\)"):
        reparameterize(mu, logvar, eps=torch.zeros(2))
    # Noise passed in equals the same noise drawn inside from a generator in the same order.
    vae = VAE(z_dim=4, resolution=16, channels=1, width=4)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    drawn = vae.elbo_terms(x, torch.Generator().manual_seed(5))
    given = vae.elbo_terms(x, eps=torch.randn(3, 4, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(drawn["loss"], given["loss"])
    model = VAEGAN(z_dim=4, resolution=16, channels=1, width=4)
    g = torch.Generator().manual_seed(6)
    torch.manual_seed(0)
    drawn = vaegan_losses(model, x, torch.Generator().manual_seed(6))
    torch.manual_seed(0)
    given = vaegan_losses(model, x, eps=torch.randn(3, 4, generator=g), z_prior=torch.randn(3, 4, generator=g))
    assert torch.equal(drawn.discriminator, given.discriminator) and torch.equal(drawn.decoder, given.decoder)
    with pytest.raises(ValueError, match=r"z_prior has shape \(2, 4\), expected \(3, 4\)"):
        vaegan_losses(model, x, z_prior=torch.zeros(2, 4))


def test_reparameterisation_gradients_match_the_closed_form_in_expectation():
    # E[z^2] = mu^2 + exp(logvar): d/dmu = 2 mu, d/dlogvar = exp(logvar).
    n = 200_000
    mu = torch.full((n,), 0.7, dtype=torch.float64, requires_grad=True)
    logvar = torch.full((n,), -0.3, dtype=torch.float64, requires_grad=True)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    d_mu, d_logvar = torch.autograd.grad(z.square().mean(), (mu, logvar))
    assert abs(d_mu.sum().item() - 2 * 0.7) < 0.02
    assert abs(d_logvar.sum().item() - math.exp(-0.3)) < 0.02


def test_closed_form_kl_equals_a_monte_carlo_estimate():
    gen = torch.Generator().manual_seed(0)
    mu = torch.tensor([[0.5, -1.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.3, -0.8, 1.1]], dtype=torch.float64)
    q = torch.distributions.Normal(mu, torch.exp(logvar / 2))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    z = reparameterize(mu.expand(400_000, 3), logvar.expand(400_000, 3), gen)
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(dim=1).mean()
    closed = gaussian_kl(mu, logvar)
    assert closed.shape == (1,)
    assert abs(closed.item() - monte_carlo.item()) < 0.02
    torch.testing.assert_close(closed, torch.distributions.kl_divergence(q, p).sum(dim=1))


def test_vae_elbo_decreases_on_digits():
    torch.manual_seed(0)
    images, _ = fg.data.digits(16)
    x_all = torch.from_numpy(images[:512]).float() * (2 / 255) - 1
    vae = VAE(z_dim=8, resolution=16, channels=1, width=8, likelihood="bernoulli")
    opt = torch.optim.Adam(vae.parameters(), 2e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        x = x_all[torch.randint(len(x_all), (64,), generator=gen)]
        loss = vae.elbo_terms(x, gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.85 * first, (first, last)  # about 0.73 on three seeds


def test_vaegan_discriminator_exposes_features_and_logits():
    d = VAEGANDiscriminator(resolution=32, channels=1, width=4)
    x = torch.randn(3, 1, 32, 32)
    feats, logits = d.features_and_logits(x)
    assert feats.shape == (3, 16 * 4 * 4) and logits.shape == (3,)
    torch.testing.assert_close(d.features(x), feats)
    torch.testing.assert_close(d(x), logits)


def _vaegan_and_losses(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = VAEGAN(z_dim=6, resolution=16, channels=1, width=4)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    return model, x, vaegan_losses(model, x, torch.Generator().manual_seed(seed), **kwargs)


def test_vaegan_losses_are_finite_and_combine_as_in_larsen_et_al():
    _, _, losses = _vaegan_and_losses(gamma=0.5)
    for t in (losses.encoder, losses.decoder, losses.discriminator, losses.prior, losses.llike, losses.gan):
        assert t.dim() == 0 and t.isfinite()
    torch.testing.assert_close(losses.encoder, losses.prior + losses.llike)
    assert losses.gan > 0 and losses.llike > 0


def test_vaegan_saturating_decoder_loss_is_minus_the_gan_fake_terms():
    model, x, losses = _vaegan_and_losses(gamma=0.0, decoder_gan_kind="saturating")
    # With gamma = 0 the decoder's loss is -L_GAN up to its real term, which the decoder cannot move.
    gen = torch.Generator().manual_seed(0)
    mu, logvar = model.encoder(x)
    x_recon = model.decoder(reparameterize(mu, logvar, gen))
    real_term = torch.nn.functional.softplus(-model.discriminator(torch.cat([x, x_recon, x_recon]))[:4]).mean()
    torch.testing.assert_close(losses.decoder, -(losses.gan - real_term), rtol=1e-4, atol=1e-4)


def test_vaegan_beta_weighs_only_the_encoders_prior_term():
    _, _, plain = _vaegan_and_losses(gamma=0.5)
    _, _, weighted = _vaegan_and_losses(gamma=0.5, beta=16.0)
    torch.testing.assert_close(weighted.prior, plain.prior)
    torch.testing.assert_close(weighted.encoder, 16.0 * plain.prior + plain.llike)
    torch.testing.assert_close(weighted.decoder, plain.decoder)
    torch.testing.assert_close(weighted.discriminator, plain.discriminator)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        _vaegan_and_losses(beta=-1.0)


def test_vaegan_rejects_unknown_decoder_gan_kind():
    with pytest.raises(ValueError, match="decoder_gan_kind must be one of"):
        _vaegan_and_losses(decoder_gan_kind="wgan")


def test_each_vaegan_loss_only_moves_its_own_network():
    model, _, losses = _vaegan_and_losses(gamma=0.3)
    nets = {"encoder": model.encoder, "decoder": model.decoder, "discriminator": model.discriminator}
    expected = {name: torch.autograd.grad(loss, list(nets[name].parameters()), retain_graph=True, allow_unused=True)
                for name, loss in losses.per_network().items()}
    # The encoder's loss depends on the decoder and discriminator too (Dis_l(x_recon)); plain backward()
    # on the sum would leak it into their gradients.
    leak = torch.autograd.grad(losses.encoder, list(model.decoder.parameters()), retain_graph=True)
    assert any(g.abs().sum() > 0 for g in leak)
    vaegan_backward(model, losses)
    for name, net in nets.items():
        for p, g in zip(net.parameters(), expected[name]):
            if g is None:
                assert p.grad is None
            else:
                torch.testing.assert_close(p.grad, g)
    # One optimiser per network, stepping on those gradients, changes that network alone.
    snapshot = {name: [p.detach().clone() for p in net.parameters()] for name, net in nets.items()}
    torch.optim.SGD(model.discriminator.parameters(), lr=0.1).step()
    for name, net in nets.items():
        changed = any(not torch.equal(a, b) for a, b in zip(snapshot[name], net.parameters()))
        assert changed == (name == "discriminator")


def test_vaegan_sample_shape_and_range():
    model = VAEGAN(z_dim=6, resolution=32, channels=3, width=4)
    images = model.sample(2, torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 32, 32) and images.abs().max() <= 1
