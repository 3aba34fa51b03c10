import math

import numpy as np
import pytest
import torch

from fastgan.data.toy import grid25, ring8
from fastgan.metrics import mode_coverage
from fastgan.metrics.modes import PACGAN_MIN_SHARE


def test_samples_from_the_mixture_capture_every_mode():
    mix = grid25()
    result = mode_coverage(mix.sample(2500, generator=torch.Generator().manual_seed(0)), mix.centers, mix.std)
    assert result["modes"] == 25 and result["num_modes"] == 25
    assert result["high_quality"] > 0.98
    assert 0 <= result["kl"] < 0.05


def test_a_collapsed_generator_captures_one_mode():
    mix = ring8()
    samples = mix.centers[3] + mix.std * torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    result = mode_coverage(samples, mix.centers, mix.std)
    assert result["modes"] == 1
    assert result["kl"] == pytest.approx(math.log(8))


def test_off_mode_samples_are_not_high_quality():
    mix = ring8()
    on = mix.centers.repeat(10, 1)  # 10 exact hits per mode
    off = torch.zeros(80, 2)  # the ring's centre, 1 unit (100 std) from every mode
    result = mode_coverage(torch.cat([on, off]), mix.centers, mix.std)
    assert result["high_quality"] == pytest.approx(0.5)
    assert result["modes"] == 8 and result["kl"] == pytest.approx(0, abs=1e-12)
    none = mode_coverage(off, mix.centers, mix.std)
    assert none["modes"] == 0 and none["high_quality"] == 0 and math.isnan(none["kl"])


def test_a_mode_counts_with_one_high_quality_sample_as_in_the_veegan_and_pacgan_code():
    mix = grid25()
    # 2,500 samples: mode 0 gets 1, mode 1 gets 19, mode 2 gets 20, the rest sit off-mode.
    samples = torch.cat([mix.centers[0].repeat(1, 1), mix.centers[1].repeat(19, 1), mix.centers[2].repeat(20, 1),
                         torch.full((2460, 2), 1.0)])
    result = mode_coverage(samples, mix.centers, mix.std)
    assert result["modes"] == 3 and "modes_min_share" not in result
    # The stricter count of PacGAN's sec. 5.1 (20 of 2,500), on request.
    strict = mode_coverage(samples, mix.centers, mix.std, min_share=PACGAN_MIN_SHARE)
    assert strict["modes"] == 3 and strict["modes_min_share"] == 1
    assert mode_coverage(samples, mix.centers, mix.std, min_share=0)["modes_min_share"] == 3


def test_high_quality_means_closer_than_three_std():
    mix = ring8()
    inside = mix.centers[0] + torch.tensor([2.99 * mix.std, 0.0])
    outside = mix.centers[1] + torch.tensor([0.0, 3.01 * mix.std])
    result = mode_coverage(torch.stack([inside, outside]), mix.centers, mix.std)
    assert result["modes"] == 1 and result["high_quality"] == 0.5


def test_ring8_has_the_papers_radius_and_std():
    mix = ring8()
    assert mix.std == 0.01
    assert torch.allclose(mix.centers.norm(dim=1), torch.ones(8))
    assert torch.allclose(mix.centers[2], torch.tensor([0.0, 1.0]), atol=1e-6)
    wide = ring8(radius=2.0, std=0.02)  # fastgan's scale before issue 17
    assert torch.allclose(wide.centers, 2 * mix.centers) and wide.std == 0.02


def test_bad_input():
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 2\)"):
        mode_coverage(np.zeros((5, 3)), np.zeros((2, 2)), 0.1)
    with pytest.raises(ValueError, match="std must be positive"):
        mode_coverage(np.zeros((5, 2)), np.zeros((2, 2)), 0)
    with pytest.raises(ValueError, match=r"min_share must be in \[0, 1\]"):
        mode_coverage(np.zeros((5, 2)), np.zeros((2, 2)), 0.1, min_share=2)
