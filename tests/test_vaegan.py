"""VAE-GAN training rules from Larsen et al.'s code: the equilibrium rule, one decoder pass for both codes, where
Dis_l is read and how D sees its three batches."""

import pytest
import torch
from state_compare import assert_same, logged_rows, resumable_state

from fastgan.models.vaegan import EQUILIBRIUM, VAEGAN, VAEGANDiscriminator, equilibrium_gates, vaegan_losses
from fastgan.train import TrainConfig, make_trainer, train
from fastgan.train.families import vaegan as vaegan_family

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(model="vaegan", dataset="digits", resolution=16, vae_width=8, z_dim=8, progress=False, log_every=2,
             sample_every=1000, ckpt_every=1000, n_samples=9, batch_size=16, eval_n=64)
BELOW, ABOVE = EQUILIBRIUM - 0.35 - 0.01, EQUILIBRIUM + 0.35 + 0.01


@pytest.mark.parametrize("d_real, d_fake, margin, expected", [
    (EQUILIBRIUM, EQUILIBRIUM, 0.35, (True, True)),
    (BELOW, EQUILIBRIUM, 0.35, (False, True)),     # D too far ahead on real images: it waits
    (EQUILIBRIUM, BELOW, 0.35, (False, True)),     # ... or on generated ones
    (ABOVE, EQUILIBRIUM, 0.35, (True, False)),     # D too weak: the decoder learns from reconstruction alone
    (EQUILIBRIUM, ABOVE, 0.35, (True, False)),
    (BELOW, ABOVE, 0.35, (True, True)),            # both rules fire: both go on, as in their code
    (BELOW, ABOVE, 0.0, (True, True)),             # margin 0: the rule is off
    (EQUILIBRIUM - 0.35, EQUILIBRIUM + 0.35, 0.35, (True, True)),  # the bounds themselves are inside
])
def test_equilibrium_gates_follow_larsen_et_al_s_rule(d_real, d_fake, margin, expected):
    assert equilibrium_gates(d_real, d_fake, margin) == expected


def _losses(train_mode: bool, **kwargs):
    torch.manual_seed(0)
    model = VAEGAN(z_dim=6, resolution=16, channels=1, width=4).train(train_mode)
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    g = torch.Generator().manual_seed(2)
    eps, z_prior = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    return vaegan_losses(model, x, eps=eps, z_prior=z_prior, **kwargs)


@pytest.mark.parametrize("option", [dict(joint_decode=True), dict(d_batches="separate")])
def test_batching_options_change_only_batch_norm_statistics(option):
    # In training, batch norm normalises by the batch it sees, so the batching changes the losses; with running
    # statistics (eval mode) every sample is treated alone and the losses are the same: the same codes reach
    # the same decoder and images the same discriminator, in the same order.
    plain, batched = _losses(True), _losses(True, **option)
    assert not torch.allclose(plain.llike, batched.llike) and not torch.allclose(plain.gan, batched.gan)
    plain, batched = _losses(False), _losses(False, **option)
    for name in ("encoder", "decoder", "discriminator", "llike", "gan", "d_real", "d_fake"):
        torch.testing.assert_close(getattr(batched, name), getattr(plain, name), rtol=1e-5, atol=1e-5)


def test_without_gan_on_recon_d_and_the_decoder_play_on_prior_samples_only():
    torch.manual_seed(0)
    model = VAEGAN(z_dim=6, resolution=16, channels=1, width=4).eval()
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    g = torch.Generator().manual_seed(2)
    eps, z_prior = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    both = vaegan_losses(model, x, eps=eps, z_prior=z_prior, gamma=0.0)
    prior_only = vaegan_losses(model, x, eps=eps, z_prior=z_prior, gamma=0.0, gan_on_recon=False)
    mu, logvar = model.encoder(x)
    l_real, l_recon, l_prior = model.discriminator(
        torch.cat([x, model.decoder(mu + (0.5 * logvar).exp() * eps), model.decoder(z_prior)])).split(4)
    softplus = torch.nn.functional.softplus
    torch.testing.assert_close(prior_only.discriminator, softplus(-l_real).mean() + softplus(l_prior).mean())
    torch.testing.assert_close(prior_only.decoder, softplus(-l_prior).mean())
    torch.testing.assert_close(prior_only.d_fake, softplus(l_prior).mean())
    torch.testing.assert_close(both.discriminator, prior_only.discriminator + softplus(l_recon).mean())
    torch.testing.assert_close(both.decoder, prior_only.decoder + softplus(-l_recon).mean())
    # The reconstruction is still measured in Dis_l.
    torch.testing.assert_close(prior_only.llike, both.llike)


def test_dis_l_conv_is_the_last_convolution_before_batch_norm():
    d = VAEGANDiscriminator(resolution=16, channels=1, width=4)
    x = torch.randn(3, 1, 16, 16)
    conv, logits = d.features_and_logits(x, "conv")
    expected = d.body[-1].conv(d.body[0](x)).flatten(1)
    torch.testing.assert_close(conv, expected)
    torch.testing.assert_close(logits, d(x))
    last, _ = d.features_and_logits(x)
    assert conv.shape == last.shape and not torch.allclose(conv, last)
    with pytest.raises(ValueError, match="layer must be one of last, conv"):
        d.features(x, "head")


def test_vaegan_losses_reject_unknown_batching_and_layer():
    with pytest.raises(ValueError, match="d_batches must be one of joint, separate"):
        _losses(True, d_batches="mixed")
    with pytest.raises(ValueError, match="dis_layer must be one of last, conv"):
        _losses(True, dis_layer="first")


def _stepped(tmp_path, name, gates=None, monkeypatch=None, **options):
    if gates is not None:
        monkeypatch.setattr(vaegan_family, "equilibrium_gates", lambda d_real, d_fake, margin: gates)
    trainer = make_trainer(TrainConfig(out_dir=str(tmp_path), name=name, **{**SMALL, **options}))
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in trainer.networks.items()}
    stats = trainer.train_step(trainer.real_batches())
    after = {n: [p.detach().clone() for p in net.parameters()] for n, net in trainer.networks.items()}
    return before, after, stats


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_equilibrium_rule_skips_d_s_update_when_d_is_ahead(tmp_path, monkeypatch):
    _, free, _ = _stepped(tmp_path, "free")
    before, held, stats = _stepped(tmp_path, "held", (False, True), monkeypatch, vaegan_margin=0.35)
    assert _same(before["discriminator"], held["discriminator"])
    assert not _same(before["discriminator"], free["discriminator"])
    # Encoder and decoder take the same steps as without the rule.
    for name in ("encoder", "decoder"):
        assert _same(held[name], free[name]), name
    assert stats["d_updated"] == 0 and stats["dec_gan"] == 1


def test_equilibrium_rule_drops_the_decoder_s_gan_term_when_d_is_weak(tmp_path, monkeypatch):
    _, free, _ = _stepped(tmp_path, "free")
    _, weak, stats = _stepped(tmp_path, "weak", (True, False), monkeypatch, vaegan_margin=0.35)
    # Without its GAN term the decoder's loss is gamma * L_llike: with gamma 0 it has no gradient at all.
    before, no_recon, _ = _stepped(tmp_path, "g0", (True, False), monkeypatch, vaegan_margin=0.35, vaegan_gamma=0.0)
    assert not _same(weak["decoder"], free["decoder"])
    assert _same(before["decoder"], no_recon["decoder"])
    for name in ("encoder", "discriminator"):
        assert _same(weak[name], free[name]), name
    assert stats["d_updated"] == 1 and stats["dec_gan"] == 0


def test_margin_zero_leaves_every_update_on(tmp_path, monkeypatch):
    _, free, stats = _stepped(tmp_path, "free")
    _, off, _ = _stepped(tmp_path, "off", (False, False), monkeypatch, vaegan_margin=0.0)
    for name in free:
        assert _same(off[name], free[name]), name
    assert "d_updated" not in stats


@pytest.mark.parametrize("field, value, message", [
    ("vaegan_margin", -0.1, r"vaegan_margin: must be in \[0, 0.68\)"),
    ("vaegan_margin", 0.68, r"vaegan_margin: must be in \[0, 0.68\)"),
    ("vaegan_dis_layer", "pixels", "vaegan_dis_layer: must be one of last, conv"),
    ("vaegan_d_batches", "mixed", "vaegan_d_batches: must be one of joint, separate"),
])
def test_bad_vaegan_options_are_rejected_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**SMALL, field: value})


def test_vaegan_defaults_are_the_measured_best():
    # docs/results.md: D's batches apart, prior samples alone in L_GAN and beta 4, each measured over three seeds.
    config = TrainConfig(**SMALL)
    assert (config.vaegan_d_batches, config.vaegan_gan_on_recon, config.vae_beta) == ("separate", False, 4.0)
    assert TrainConfig(**{**SMALL, "vae_beta": 1.0}).vae_beta == 1.0
    assert TrainConfig(**{**SMALL, "model": "vae"}).vae_beta == 1.0


def test_resume_with_larsen_rules_is_bit_identical(tmp_path):
    # A small margin makes the rule fire both ways within a few steps (logged as d_updated and dec_gan).
    options = dict(vaegan_margin=0.05, vaegan_joint_decode=True, vaegan_dis_layer="conv",
                   vaegan_d_batches="separate", vaegan_gan_on_recon=False, log_every=1)
    full = train(TrainConfig(out_dir=str(tmp_path), name="full", steps=6, **{**SMALL, **options}))
    part = train(TrainConfig(out_dir=str(tmp_path), name="part", steps=3, **{**SMALL, **options}))
    resumed = train(TrainConfig(out_dir=str(tmp_path), name="part", steps=6, resume=True, **{**SMALL, **options}))
    assert resumed == part
    assert_same(resumable_state(full), resumable_state(resumed))
    rows = logged_rows(full)
    assert logged_rows(resumed) == rows
    assert {r["d_updated"] for r in rows} | {r["dec_gan"] for r in rows} == {0.0, 1.0}
