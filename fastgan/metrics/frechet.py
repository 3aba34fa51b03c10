"""Fréchet distance between two Gaussians, through symmetric eigendecompositions."""
from __future__ import annotations

import torch


def _as_float64(x, name: str, device) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"frechet_distance: {name} must be real; got dtype {t.dtype}")
    return t.to(device=device, dtype=torch.float64)


def _psd_sqrt(w: torch.Tensor) -> torch.Tensor:
    """Square roots of a symmetric PSD matrix's eigenvalues, with those at round-off level set to 0."""
    tol = w.abs().max() * w.shape[0] * torch.finfo(w.dtype).eps
    return torch.where(w > tol, w, torch.zeros_like(w)).sqrt()


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) (Heusel et al. 2017, eq. 6).

    Accepts numpy arrays or torch tensors; computes in float64 on the device of the first torch
    argument; returns a Python float.

    The classic code takes scipy.linalg.sqrtm(S1 @ S2), a general (Schur-based, complex) matrix square
    root. Here the trace term uses tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i), the lambda_i being the
    eigenvalues of S1 S2, read from a symmetric positive semi-definite matrix similar to it: L^T S2 L
    with S1 = L L^T (Cholesky) when S1 is positive definite, else A S2 A with A = S1^(1/2) from eigh of
    S1. One symmetric eigenvalue solve (eigvalsh) replaces the Schur factorisation: several times
    faster, and real throughout.

    Singular or rank-deficient covariances (fewer samples than dimensions, dead features) are valid.
    Round-off leaves the zero eigenvalues of such matrices at about +-eps * d * lambda_max, and the
    square root would turn each into ~1e-7 * sqrt(lambda_max) of spurious trace; so eigenvalues below
    that level (numpy's matrix_rank tolerance) count as exactly 0, and negative ones are clamped to 0,
    which is exact for positive semi-definite inputs. NaN or inf in any input gives NaN.
    """
    device = next((x.device for x in (mu1, sigma1, mu2, sigma2) if isinstance(x, torch.Tensor)), torch.device("cpu"))
    mu1, mu2 = _as_float64(mu1, "mu1", device), _as_float64(mu2, "mu2", device)
    s1, s2 = _as_float64(sigma1, "sigma1", device), _as_float64(sigma2, "sigma2", device)
    if mu1.ndim != 1 or mu2.ndim != 1:
        raise ValueError(f"frechet_distance: means must be vectors (D,); got shapes {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    d = mu1.shape[0]
    if mu2.shape[0] != d:
        raise ValueError(f"frechet_distance: means differ in dimension: {d} vs {mu2.shape[0]}")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"frechet_distance: {name} must be ({d}, {d}) to match the means; got {tuple(s.shape)}")
    if not all(bool(torch.isfinite(t).all()) for t in (mu1, mu2, s1, s2)):
        return float("nan")
    # Symmetrise: covariances accumulated in floating point are symmetric only up to round-off,
    # and eigh reads one triangle.
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    chol, info = torch.linalg.cholesky_ex(s1)
    if int(info) == 0:
        m = chol.T @ s2 @ chol
    else:
        # Singular S1 has no Cholesky factor; its symmetric square root always exists.
        w1, v1 = torch.linalg.eigh(s1)
        sqrt_s1 = (v1 * _psd_sqrt(w1)) @ v1.T
        m = sqrt_s1 @ s2 @ sqrt_s1
    tr_covmean = _psd_sqrt(torch.linalg.eigvalsh(0.5 * (m + m.T))).sum()
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean)
