"""Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel, averaged over subsets."""
from __future__ import annotations

import numpy as np
import torch


def _features(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"kid: {name} must have shape (N, D); got shape {tuple(t.shape)}")
    return t.to(torch.float64)


def _polynomial_mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Bińkowski et al. 2018, eq. 4 with k(a, b) = (a.b / d + 1)^3: the diagonal terms k(x_i, x_i) are
    # left out of the within-set sums (m(m-1) pairs) so the estimate is unbiased; the cross term has
    # m^2 pairs.
    m, d = x.shape
    one = torch.ones((), dtype=x.dtype, device=x.device)
    k_xx = torch.addmm(one, x, x.T, alpha=1 / d).pow_(3)
    k_yy = torch.addmm(one, y, y.T, alpha=1 / d).pow_(3)
    k_xy = torch.addmm(one, x, y.T, alpha=1 / d).pow_(3)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / (m * m)


def kid(feats_real, feats_fake, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation (ddof=0) of the unbiased MMD^2 over random subsets.

    Each subset draws min(subset_size, N_real, N_fake) rows without replacement from each set, real
    first, with numpy.random.default_rng(seed).choice(N, m, replace=False); subsets are independent
    of each other. Computed in float64 on the features' device.
    """
    x_all = _features(feats_real, "feats_real")
    y_all = _features(feats_fake, "feats_fake").to(x_all.device)
    if x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"kid: feature dimensions differ: real {x_all.shape[1]}, fake {y_all.shape[1]}")
    if num_subsets < 1:
        raise ValueError(f"kid: num_subsets must be at least 1; got {num_subsets}")
    m = min(subset_size, x_all.shape[0], y_all.shape[0])
    if m < 2:
        raise ValueError(f"kid: needs at least 2 samples per set; got {x_all.shape[0]} real and {y_all.shape[0]} fake")
    rng = np.random.default_rng(seed)
    values = torch.empty(num_subsets, dtype=torch.float64)
    for i in range(num_subsets):
        ix = torch.from_numpy(rng.choice(x_all.shape[0], m, replace=False)).to(x_all.device)
        iy = torch.from_numpy(rng.choice(y_all.shape[0], m, replace=False)).to(x_all.device)
        values[i] = _polynomial_mmd2_unbiased(x_all[ix], y_all[iy]).cpu()
    return float(values.mean()), float(values.std(correction=0))
