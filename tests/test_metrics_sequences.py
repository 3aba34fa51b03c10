"""sine_fit and sequence_metrics: distances between sequence distributions."""
import numpy as np
import torch

from fastgan.data import sines
from fastgan.metrics import sequence_metrics, sine_fit


def test_sine_fit_recovers_frequency_amplitude_of_exact_sines():
    t = np.arange(1, 31)
    f, a, phi = np.array([1.0, 2.37, 4.99]), np.array([0.2, 0.5, 0.9]), np.array([0.3, -2.0, 3.0])
    x = a[:, None] * np.sin(2 * np.pi * f[:, None] * t / 30 + phi[:, None])
    fit = sine_fit(x)
    np.testing.assert_allclose(fit["frequency"], f, atol=1e-9)
    np.testing.assert_allclose(fit["amplitude"], a, rtol=1e-9)
    np.testing.assert_allclose(fit["r2"], 1.0, rtol=1e-9)
    noise = sine_fit(np.random.default_rng(0).normal(size=(200, 30)))
    assert np.median(noise["r2"]) < 0.3


def test_sequence_metrics_tell_real_sines_from_noise():
    real, other = torch.from_numpy(sines(500, 30, seed=0)), torch.from_numpy(sines(500, 30, seed=1))
    noise = 0.5 * torch.randn(500, 30, 1, generator=torch.Generator().manual_seed(0))
    same = sequence_metrics(real, other, sine_data=True)
    far = sequence_metrics(real, noise, sine_data=True)
    assert same["freq_w1"] < 0.2 and same["amp_w1"] < 0.05 and same["sine_r2"] > 0.99
    assert far["freq_w1"] > 0.5 and far["sine_r2"] < 0.3 and far["fid"] > 10 * same["fid"]
