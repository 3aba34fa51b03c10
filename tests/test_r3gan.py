"""R3GAN: its networks as its code builds them, its schedules, the one-pass RpGAN + R1 + R2 step against the
two-pass form of its code, and bit-identical resume with the schedules."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastgan import losses
from fastgan.models import R3GANDiscriminator
from fastgan.models.r3gan import ResidualBlock, Resample, lowpass_kernel
from fastgan.train import TrainConfig, make_trainer, train
from fastgan.train.families.r3gan import build_r3gan, cosine_decay_with_warmup, r3gan_d_loss
from state_compare import assert_same, logged_rows, resumable_state

SMALL = dict(model="r3gan", dataset="digits", resolution=8, batch_size=8, progress=False, log_every=2,
             sample_every=1000, ckpt_every=1000, n_samples=4, threads=1, z_dim=8, r3gan_decay_kimg=0.04)


def r3gan_schedule(cur_nimg, base_value, total_nimg, final_value=0.0, warmup_value=0.0, warmup_nimg=0):
    """R3GAN's training_loop.cosine_decay_with_warmup (numpy), the oracle of fastgan's."""
    decay = 0.5 * (1 + np.cos(np.pi * (cur_nimg - warmup_nimg) / float(total_nimg - warmup_nimg)))
    cur_value = base_value + (1 - decay) * (final_value - base_value)
    if warmup_nimg > 0:
        slope = (base_value - warmup_value) / warmup_nimg
        cur_value = np.where(cur_nimg < warmup_nimg, slope * cur_nimg + warmup_value, cur_value)
    return float(np.where(cur_nimg > total_nimg, final_value, cur_value))


@pytest.mark.parametrize("warmup", [0, 3000])
@pytest.mark.parametrize("nimg", [0, 1, 2999, 3000, 10_000, 19_999, 20_000, 25_000])
def test_schedule_is_r3gans(nimg, warmup):
    ours = cosine_decay_with_warmup(nimg, 2e-4, 5e-5, 20_000, warmup)
    assert ours == pytest.approx(r3gan_schedule(nimg, 2e-4, 20_000, 5e-5, 0.0, warmup), rel=1e-12, abs=1e-18)


def test_lowpass_kernel_is_the_normalised_outer_product_of_1_3_3_1():
    row = torch.tensor([1.0, 3.0, 3.0, 1.0])
    torch.testing.assert_close(lowpass_kernel(), torch.outer(row, row) / 64)


def test_resampling_keeps_a_constant_image_constant_inside():
    x = torch.ones(2, 3, 8, 8)
    up, down = Resample(3, 3, up=True)(x), Resample(3, 3, up=False)(x)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones_like(up[..., 2:-2, 2:-2]))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.ones_like(down[..., 1:-1, 1:-1]))


def test_each_block_starts_as_the_identity_and_others_follow_the_fixup_scaling():
    torch.manual_seed(0)
    block = ResidualBlock(64, 8, 2, total_blocks=16)
    x = torch.randn(4, 64, 8, 8)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    gain = math.sqrt(2 / (1 + 0.2 ** 2)) * 16 ** (-1 / 4)
    std = block.expand.weight.std().item() * math.sqrt(64)
    assert std == pytest.approx(gain, rel=0.05)


@pytest.mark.parametrize("resolution", [8, 16, 32])
@pytest.mark.parametrize("classes", [0, 10])
def test_networks_map_noise_to_images_and_images_to_one_logit(resolution, classes):
    config = TrainConfig(**{**SMALL, "resolution": resolution, "conditional": bool(classes)})
    config.num_classes = classes
    g, d = build_r3gan(config, (1, resolution, resolution))
    labels = torch.arange(3) % 10 if classes else None
    images = g(torch.randn(3, 8), labels)
    assert images.shape == (3, 1, resolution, resolution)
    assert d(images, labels).shape == (3,)


def test_one_pass_loss_and_penalties_equal_r3gans_two_passes():
    """r3gan_d_loss's single D forward over real and generated samples and single double backward give R3GAN's
    loss and D gradients as its code computes them (two forwards, two autograd.grad calls), in float64: D mixes
    no samples."""
    torch.manual_seed(0)
    d = R3GANDiscriminator(1, (16, 16), (4, 4), (1, 1)).double()
    for p in d.parameters():  # away from the zero-initialised start, so every layer matters
        p.data.add_(0.1 * torch.randn_like(p))
    real, fake, gamma = torch.randn(5, 1, 8, 8, dtype=torch.float64), torch.randn(5, 1, 8, 8, dtype=torch.float64), 0.7

    def r3gan_code():
        r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
        rl, fl = d(r), d(f)
        (gr,) = torch.autograd.grad(rl.sum(), r, create_graph=True)
        (gf,) = torch.autograd.grad(fl.sum(), f, create_graph=True)
        loss = F.softplus(-(rl - fl)) + gamma / 2 * (gr.square().sum([1, 2, 3]) + gf.square().sum([1, 2, 3]))
        return loss.mean()

    expected = r3gan_code()
    want = torch.autograd.grad(expected, list(d.parameters()))
    got_loss, stats = r3gan_d_loss(d, real, fake, gamma)
    got = torch.autograd.grad(got_loss, list(d.parameters()))
    torch.testing.assert_close(got_loss, expected, rtol=1e-12, atol=0)
    assert stats["r1"] > 0 and stats["r2"] > 0
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_a_step_updates_both_networks_and_logs_the_penalties(tmp_path):
    trainer = make_trainer(TrainConfig(out_dir=str(tmp_path), **SMALL))
    before = {k: [p.clone() for p in net.parameters()] for k, net in trainer.networks.items()}
    stats = trainer.train_step(trainer.real_batches())
    assert {"d_loss", "g_loss", "r1", "r2", "gamma", "real_logit", "fake_logit"} <= set(stats)
    assert all(torch.isfinite(v) for v in stats.values())
    for name, net in trainer.networks.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name
    group = trainer.optimizers["discriminator"].param_groups[0]
    assert group["betas"][0] == 0.0 and group["lr"] == pytest.approx(2e-4)


def test_resume_is_bit_identical_with_the_schedules(tmp_path):
    full = train(TrainConfig(out_dir=str(tmp_path), name="full", steps=6, **SMALL))
    train(TrainConfig(out_dir=str(tmp_path), name="part", steps=3, **SMALL))
    resumed = train(TrainConfig(out_dir=str(tmp_path), name="part", steps=6, resume=True, **SMALL))
    assert_same(resumable_state(full), resumable_state(resumed))
    # The part run also logged its last step, 3.
    assert [row for row in logged_rows(resumed) if row["step"] != 3] == logged_rows(full)


def test_r3gans_fixed_settings_are_errors_naming_why():
    with pytest.raises(ValueError, match="beta1: must be 0.0 for model r3gan: R3GAN's Adam has beta1 0"):
        TrainConfig(**{**SMALL, "beta1": 0.5})
    with pytest.raises(ValueError, match="r3gan_gamma: is a setting of r3gan, not of model dcgan"):
        TrainConfig(r3gan_gamma=1.0)
    with pytest.raises(ValueError, match="model r3gan needs square images of 4, 8, 16"):
        build_r3gan(TrainConfig(**SMALL), (1, 12, 12))


def test_a_conditional_d_takes_each_pairs_label_in_both_forms_of_the_penalties():
    torch.manual_seed(0)
    d = R3GANDiscriminator(1, (16, 16), (4, 4), (1, 1), num_classes=3, embed_dim=16).double()
    for p in d.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    real, fake = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randn(4, 1, 8, 8, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 2])
    one = losses.r1_r2_penalty(d, real, fake, labels=labels)
    two = losses.r1_r2_penalty(d, real, fake, labels=labels, one_pass=False)
    assert one.one_pass and not two.one_pass
    for a, b in ((one.loss, two.loss), (one.r1, two.r1), (one.r2, two.r2)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    other = losses.r1_r2_penalty(d, real, fake, labels=torch.tensor([1, 1, 1, 1]))
    assert not torch.allclose(other.loss, one.loss)  # the labels reach D


def test_gamma_zero_skips_the_penalties_and_keeps_rpgan():
    torch.manual_seed(0)
    d = R3GANDiscriminator(1, (16, 16), (4, 4), (1, 1))
    real, fake = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    loss, stats = r3gan_d_loss(d, real, fake, 0.0)
    assert set(stats) == {"d_loss"}
    torch.testing.assert_close(loss, F.softplus(-(d(real) - d(fake))).mean())
