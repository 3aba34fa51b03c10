import math

import numpy as np
import pytest
import torch

from fastgan.data.toy import grid25, ring8
from fastgan.metrics import mode_coverage


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
    off = torch.zeros(80, 2)  # the ring's centre, 2 units (100 std) from every mode
    result = mode_coverage(torch.cat([on, off]), mix.centers, mix.std)
    assert result["high_quality"] == pytest.approx(0.5)
    assert result["modes"] == 8 and result["kl"] == pytest.approx(0, abs=1e-12)
    none = mode_coverage(off, mix.centers, mix.std)
    assert none["modes"] == 0 and none["high_quality"] == 0 and math.isnan(none["kl"])


def test_modes_below_the_pacgan_threshold_are_not_captured():
    mix = grid25()
    # 2,500 samples: the threshold is 20; mode 0 gets 19, mode 1 gets 20, the rest sit off-mode.
    samples = torch.cat([mix.centers[0].repeat(19, 1), mix.centers[1].repeat(20, 1), torch.full((2461, 2), 1.0)])
    assert mode_coverage(samples, mix.centers, mix.std)["modes"] == 1
    assert mode_coverage(samples, mix.centers, mix.std, min_share=0)["modes"] == 2


def test_bad_input():
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 2\)"):
        mode_coverage(np.zeros((5, 3)), np.zeros((2, 2)), 0.1)
    with pytest.raises(ValueError, match="std must be positive"):
        mode_coverage(np.zeros((5, 2)), np.zeros((2, 2)), 0)
