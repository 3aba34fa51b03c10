"""Shapes and wiring of the MLP GAN and DCGAN."""
import pytest
import torch

import fastgan as fg
from fastgan.models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator


def test_mlp_gan_has_the_classic_sizes():
    g, d = MLPGenerator(), MLPDiscriminator()
    widths = [m.out_features for m in g.net if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 256, 784]
    x = g(torch.randn(5, 100))
    assert x.shape == (5, 1, 28, 28) and x.abs().max() <= 1
    assert d(x).shape == (5,)


def test_mlp_sizes_are_configurable():
    g = MLPGenerator(z_dim=8, hidden=(32,), out_shape=(2,), out_act="linear")
    d = MLPDiscriminator(in_shape=(2,), hidden=(16, 16))
    assert d(g(torch.randn(3, 8))).shape == (3,)
    with pytest.raises(ValueError, match="out_act"):
        MLPGenerator(out_act="relu")


@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes_for_each_resolution(resolution, channels):
    g = DCGANGenerator(z_dim=16, resolution=resolution, channels=channels, width=8)
    d = DCGANDiscriminator(resolution=resolution, channels=channels, width=8)
    x = g(torch.randn(2, 16))
    assert x.shape == (2, channels, resolution, resolution)
    assert x.abs().max() <= 1  # tanh output
    logits = d(x)
    assert logits.shape == (2,)
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in d.modules())


def test_dcgan_generator_uses_fastgan_epilogue_blocks():
    g = DCGANGenerator(resolution=32, channels=1, width=8)
    blocks = [m for m in g.modules() if isinstance(m, fg.nn.ConvTransposeBlock)]
    assert len(blocks) == 4
    assert all(isinstance(b.conv, torch.nn.ConvTranspose2d) for b in blocks)
    assert [type(b.post).__name__ for b in blocks] == ["BatchNormAct"] * 3 + ["BiasAct"]


def test_dcgan_weight_init_follows_radford_et_al():
    torch.manual_seed(0)
    g = DCGANGenerator(resolution=64, channels=3, width=64)
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert w.mean().abs() < 1e-3 and abs(w.std().item() - 0.02) < 1e-3
    bn = [m for m in g.modules() if isinstance(m, fg.nn.BatchNormAct)]
    assert all(abs(m.weight.mean().item() - 1) < 0.01 for m in bn)


def test_dcgan_rejects_unsupported_resolution():
    with pytest.raises(ValueError, match="resolution must be one of"):
        DCGANGenerator(resolution=48)


def test_batch_norm_act_state_dict_matches_batchnorm2d():
    ours, theirs = fg.nn.BatchNormAct(6, act="relu"), torch.nn.BatchNorm2d(6)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 6, 3, 3)
    torch.testing.assert_close(ours(x), torch.relu(theirs(x)))
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
