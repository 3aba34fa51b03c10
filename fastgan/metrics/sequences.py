"""Distances between generated and real continuous sequences (N, T, F), and the sine fit behind them."""
from __future__ import annotations

import numpy as np
import torch

from .fid import fid
from .kid import kid
from .stats import FeatureStats

# Frequencies (cycles per sequence) tried by sine_fit: beyond the sines' 1..5 on both sides, so that a
# generator that drifts out of the range is measured as drifting, not clipped.
FIT_FREQUENCIES = np.arange(0.5, 6.0 + 1e-9, 0.01)


def sine_fit(x: np.ndarray) -> dict[str, np.ndarray]:
    """The best-fitting sine A * sin(2 pi f t / T + phi), t = 1..T, of each row of x (N, T), by least squares.

    For every f in FIT_FREQUENCIES the amplitude and phase have a closed form (regression on sin and cos);
    the f that explains most of sum(x^2) wins. Returns frequency f, amplitude A and r2, the share of
    sum(x^2) the fit explains (1 for a pure sine, near 0 for noise).
    """
    x = np.asarray(x, dtype=np.float64)
    length = x.shape[1]
    angle = 2 * np.pi * FIT_FREQUENCIES[:, None] * np.arange(1, length + 1)[None, :] / length
    s, c = np.sin(angle), np.cos(angle)  # (K, T)
    ss, cc, sc = (s * s).sum(1), (c * c).sum(1), (s * c).sum(1)
    xs, xc = x @ s.T, x @ c.T  # (N, K)
    det = ss * cc - sc * sc
    a, b = (cc * xs - sc * xc) / det, (ss * xc - sc * xs) / det
    explained = a * xs + b * xc  # the fitted sine's share of sum(x^2): x's projection on span(sin, cos)
    best = explained.argmax(axis=1)
    rows = np.arange(len(x))
    total = np.maximum((x * x).sum(1), 1e-300)
    return {"frequency": FIT_FREQUENCIES[best], "amplitude": np.hypot(a[rows, best], b[rows, best]),
            "r2": explained[rows, best] / total}


def sequence_metrics(real: torch.Tensor, fake: torch.Tensor, sine_data: bool, seed: int = 0) -> dict[str, float]:
    """How far generated sequences are from real ones, as distributions; both (N, T, F).

    fid, kid: of the flattened values (T * F numbers per sequence), as fastgan.metrics computes them for
    points. On sines also freq_w1 and amp_w1, the 1-Wasserstein distances between the real and generated
    distributions of sine_fit's frequency (cycles per sequence) and amplitude, and sine_r2, the median
    share of a generated sequence that its best sine explains (about 1 for real sines).
    """
    from scipy.stats import wasserstein_distance  # scipy.stats takes most of a second to import

    real_flat, fake_flat = real.flatten(1).double().cpu(), fake.flatten(1).double().cpu()
    result = {"fid": fid(FeatureStats.from_features(real_flat), FeatureStats.from_features(fake_flat))}
    result["kid"], result["kid_std"] = kid(real_flat, fake_flat, seed=seed)
    if sine_data:
        # Each feature of a sines sequence is its own sine wave: fit them one by one.
        fit_real = sine_fit(real.transpose(1, 2).flatten(0, 1).double().cpu().numpy())
        fit_fake = sine_fit(fake.transpose(1, 2).flatten(0, 1).double().cpu().numpy())
        result["freq_w1"] = float(wasserstein_distance(fit_real["frequency"], fit_fake["frequency"]))
        result["amp_w1"] = float(wasserstein_distance(fit_real["amplitude"], fit_fake["amplitude"]))
        result["sine_r2"] = float(np.median(fit_fake["r2"]))
    return result
