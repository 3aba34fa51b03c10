"""SNGAN's residual G and D (fastgan.models.resnet) and the resnet family (--model resnet)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from fastgan.data.format import write_fgd
from fastgan.models import ResNetDiscriminator, ResNetGenerator
from fastgan.models.resnet import GBlock
from fastgan.nn import BatchNormAct, BiasAct
from fastgan.train import TrainConfig, load_generator, train
from fastgan.train.loop import read_log

TINY = dict(model="resnet", g_width=8, d_width=8, z_dim=16, batch_size=8, n_critic=1, progress=False, log_every=1,
            sample_every=1000, ckpt_every=1000, n_samples=4)


@pytest.mark.parametrize("resolution, channels", [(16, 1), (32, 3), (64, 3)])
def test_shapes_at_every_resolution(resolution, channels):
    g = ResNetGenerator(16, resolution, channels, width=8)
    d = ResNetDiscriminator(resolution, channels, width=8)
    x = g(torch.randn(6, 16))
    assert x.shape == (6, channels, resolution, resolution)
    assert x.abs().max() <= 1
    assert d(x).shape == (6,)


@pytest.mark.parametrize("resolution", [16, 32])
def test_pac_and_mbstd_change_what_d_sees_not_its_output_shape(resolution):
    x = torch.randn(8, 3, resolution, resolution)
    assert ResNetDiscriminator(resolution, 3, 8, pac=2)(x).shape == (4,)
    assert ResNetDiscriminator(resolution, 3, 8, mbstd=True)(x).shape == (8,)


def test_unsupported_resolution_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match=r"resolution must be one of \(16, 32, 64\); got 48"):
        ResNetGenerator(16, 48)
    with pytest.raises(ValueError, match="resolution must be one of"):
        ResNetDiscriminator(8)


def test_gradients_reach_every_parameter_of_g_and_d():
    g, d = ResNetGenerator(16, 32, 3, 8), ResNetDiscriminator(32, 3, 8, spectral_norm=True)
    d(g(torch.randn(4, 16))).sum().backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_parameter_counts_match_sngans_cifar10_networks():
    # SNGAN at 32 px (G width 256, z 128; D width 128): 4.3M and 1.1M parameters, as mimicry's sngan_32.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ResNetGenerator(128, 32, 3, 256)) == 4_275_971
    assert count(ResNetDiscriminator(32, 3, 128)) == 1_053_825


def test_blocks_use_the_fused_epilogues_and_spectral_norm_covers_every_weight():
    g, d = ResNetGenerator(16, 16, 1, 8), ResNetDiscriminator(16, 1, 8, spectral_norm=True)
    assert sum(isinstance(m, BatchNormAct) for m in g.modules()) == 2 * 2 + 1  # two per block, one before the output
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and not isinstance(m, BatchNormAct) for m in g.modules())
    assert any(isinstance(m, BiasAct) for m in d.modules())
    weights = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert weights and all(parametrize.is_parametrized(m, "weight") for m in weights)


def test_g_block_batch_norm_before_upsampling_equals_the_papers_order():
    torch.manual_seed(0)
    block, x = GBlock(4, 6), torch.randn(5, 4, 3, 3)
    up = F.interpolate(x, scale_factor=2, mode="nearest")
    bn = torch.nn.BatchNorm2d(4)
    h = F.relu(bn(up))  # the paper's order: upsample, then BN + ReLU
    h = block.conv2(block.bn2(block.conv1(h)))
    torch.testing.assert_close(block(x), h + block.shortcut(up), rtol=1e-5, atol=1e-5)


def test_family_takes_sngans_settings_unless_given(tmp_path):
    config = TrainConfig(model="resnet", out_dir=str(tmp_path))
    assert (config.spectral_norm, config.d_loss, config.g_loss, config.beta1, config.beta2, config.n_critic) == (
        True, "hinge", "hinge", 0.0, 0.9, 5)
    config = TrainConfig(model="resnet", spectral_norm=False, d_loss="bce", g_loss="ns", out_dir=str(tmp_path))
    assert (config.spectral_norm, config.d_loss, config.g_loss) == (False, "bce", "ns")
    assert TrainConfig(model="dcgan", out_dir=str(tmp_path)).spectral_norm is False


def test_short_run_on_digits_with_r1_and_ema(tmp_path):
    run = train(TrainConfig(out_dir=str(tmp_path), name="digits", dataset="digits", resolution=16, steps=3,
                            r1_gamma=1.0, r1_every=2, ema_decay=0.9, **TINY))
    rows = read_log(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in rows)
    assert ["r1" in r for r in rows] == [True, False, True]  # lazy R1 at steps 0 and 2
    g, config, step = load_generator(run)
    assert isinstance(g, ResNetGenerator) and step == 3 and config.spectral_norm
    assert g(torch.randn(2, 16)).shape == (2, 1, 16, 16)


def test_short_run_on_cifar_shaped_data_with_bf16(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (32, 3, 32, 32), dtype=np.uint8)
    data = write_fgd(tmp_path / "cifar-like.fgd", images, np.arange(32) % 10)
    run = train(TrainConfig(out_dir=str(tmp_path), name="cifar", dataset=str(data), steps=2, amp="bf16", **TINY))
    assert [r["step"] for r in read_log(run / "metrics.jsonl")] == [1, 2]
    g, _, _ = load_generator(run)
    assert g(torch.randn(2, 16)).shape == (2, 3, 32, 32)


def test_sample_and_bench_commands_take_the_resnet_family(tmp_path, capsys):
    from fastgan.cli import main

    run = train(TrainConfig(out_dir=str(tmp_path), name="r", dataset="digits", resolution=16, steps=1, **TINY))
    assert main(["sample", "--ckpt", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["bench", "--model", "resnet", "--g-width", "8", "--d-width", "8", "--batch-size", "8",
                 "--no-progress", "--iters", "1", "--warmup", "0"]) == 0
    assert "model=resnet" in capsys.readouterr().out
