"""Mode coverage of samples from a 2D Gaussian mixture."""
from __future__ import annotations

import math

import torch

# PacGAN's paper (Lin et al. 2018, sec. 5.1) speaks of modes with at least 20 of 2,500 high-quality samples;
# its code and VEEGAN's count every mode with one. The stricter count, as a share of the sample count.
PACGAN_MIN_SHARE = 20 / 2500


def mode_coverage(samples, centers, std: float, min_share: float | None = None) -> dict[str, float]:
    """Modes captured, share of high-quality samples, and KL of the mode histogram to uniform.

    As in the VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018) code, a sample is high quality when
    it lies within 3 std of its nearest centre (Euclidean distance < 3 * std) and counts toward that mode, and
    a mode is captured when it holds at least one high-quality sample (PacGAN's MetricLogger counts the
    nonzero bins of this histogram). "kl" is KL(p || uniform) = sum_k p_k log(K p_k) of the high-quality
    samples' histogram over the K modes (0 when they spread evenly, log K when they sit on one mode); NaN
    when no sample is high quality, as the histogram is then undefined.

    min_share: when given, "modes_min_share" also counts the modes holding at least max(1, ceil(min_share * N))
    high-quality samples (PACGAN_MIN_SHARE: the 20 of 2,500 in PacGAN's sec. 5.1), a stricter count that
    ignores modes a generator only grazes.

    Returns {"modes": int captured, "num_modes": K, "high_quality": share in [0, 1], "kl": float}, plus
    "modes_min_share" when min_share is given.
    """
    x = torch.as_tensor(samples).to(torch.float64)
    c = torch.as_tensor(centers).to(torch.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"mode_coverage: samples must have shape (N, 2); got {tuple(x.shape)}")
    if c.ndim != 2 or c.shape[1] != 2 or c.shape[0] < 1:
        raise ValueError(f"mode_coverage: centers must have shape (K, 2) with K >= 1; got {tuple(c.shape)}")
    if x.shape[0] == 0:
        raise ValueError("mode_coverage: no samples")
    if not std > 0:
        raise ValueError(f"mode_coverage: std must be positive; got {std}")
    if min_share is not None and not 0 <= min_share <= 1:
        raise ValueError(f"mode_coverage: min_share must be in [0, 1]; got {min_share}")
    n, k = x.shape[0], c.shape[0]
    dist, nearest = torch.cdist(x, c).min(dim=1)
    good = dist < 3 * std
    counts = torch.bincount(nearest[good], minlength=k)
    hq = int(good.sum())
    if hq == 0:
        kl = float("nan")
    else:
        p = counts.double() / hq
        kl = float(torch.where(p > 0, p * (p * k).log(), torch.zeros_like(p)).sum())
    result = {"modes": int((counts > 0).sum()), "num_modes": k, "high_quality": hq / n, "kl": kl}
    if min_share is not None:
        result["modes_min_share"] = int((counts >= max(1, math.ceil(min_share * n))).sum())
    return result
