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


#: the three whole kernel matrices (real x real, fake x fake, real x fake, float64) are built when they take at
#: most this many bytes and fewer multiply-adds than the subsets' own matrices
WHOLE_KERNELS_MAX_BYTES = 1 << 30


def _cubic_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    one = torch.ones((), dtype=a.dtype, device=a.device)
    return torch.addmm(one, a, b.T, alpha=1 / a.shape[1]).pow_(3)


def _mmd2_of_subsets_from_whole_kernels(x_all: torch.Tensor, y_all: torch.Tensor, ix: torch.Tensor,
                                        iy: torch.Tensor) -> torch.Tensor:
    """_polynomial_mmd2_unbiased(x_all[ix[s]], y_all[iy[s]]) for every subset s (rows of ix, iy: indices drawn
    without replacement), from the kernel matrices of the whole sets: a subset's sum over its pairs is
    s^T K s for its 0/1 indicator vector s, and its diagonal s . diag(K). 100 subsets of 1,000 from 2,000
    samples a side take 3 products of 2,000^2 instead of 300 of 1,000^2."""
    m = ix.shape[1]
    sx = torch.zeros(x_all.shape[0], ix.shape[0], dtype=x_all.dtype, device=x_all.device).scatter_(0, ix.T, 1.0)
    sy = torch.zeros(y_all.shape[0], iy.shape[0], dtype=y_all.dtype, device=y_all.device).scatter_(0, iy.T, 1.0)
    k_xx = _cubic_kernel(x_all, x_all)
    within = (k_xx @ sx).mul_(sx).sum(0) - sx.T @ k_xx.diagonal()
    del k_xx
    k_yy = _cubic_kernel(y_all, y_all)
    within += (k_yy @ sy).mul_(sy).sum(0) - sy.T @ k_yy.diagonal()
    del k_yy
    across = (_cubic_kernel(x_all, y_all) @ sy).mul_(sx).sum(0)
    return within / (m * (m - 1)) - 2 * across / (m * m)


def _whole_kernels_pay(n_real: int, n_fake: int, m: int, num_subsets: int, itemsize: int = 8) -> bool:
    whole = n_real * n_real + n_fake * n_fake + n_real * n_fake
    return whole < 3 * m * m * num_subsets and whole * itemsize <= WHOLE_KERNELS_MAX_BYTES


def kid(feats_real, feats_fake, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation (ddof=0) of the unbiased MMD^2 over random subsets.

    Each subset draws min(subset_size, N_real, N_fake) rows without replacement from each set, real
    first, with numpy.random.default_rng(seed).choice(N, m, replace=False); subsets are independent
    of each other. Computed in float64 on the features' device; where it takes less work (and at most
    WHOLE_KERNELS_MAX_BYTES), from the kernel matrices of the whole sets rather than of each subset, which
    gives the same values up to the order of float64 sums.
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
    draws = [(rng.choice(x_all.shape[0], m, replace=False), rng.choice(y_all.shape[0], m, replace=False))
             for _ in range(num_subsets)]
    ix = torch.from_numpy(np.stack([d[0] for d in draws])).to(x_all.device)
    iy = torch.from_numpy(np.stack([d[1] for d in draws])).to(x_all.device)
    if _whole_kernels_pay(x_all.shape[0], y_all.shape[0], m, num_subsets):
        values = _mmd2_of_subsets_from_whole_kernels(x_all, y_all, ix, iy).cpu()
    else:
        values = torch.stack([_polynomial_mmd2_unbiased(x_all[i], y_all[j]) for i, j in zip(ix, iy)]).cpu()
    return float(values.mean()), float(values.std(correction=0))
