"""Fréchet distance between two Gaussians, from the eigenvalues of the product of their covariances."""
from __future__ import annotations

import numpy as np
import torch

EPS = float(np.finfo(np.float64).eps)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) (Heusel et al. 2017, eq. 6).

    Accepts numpy arrays or torch tensors; computes in float64 on the device of the first torch
    argument (the CPU when all are numpy arrays); returns a Python float.

    The classic code takes scipy.linalg.sqrtm(S1 @ S2), a general (Schur-based, complex) matrix square
    root. Here the trace term is tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i), the lambda_i being the
    eigenvalues of S1 S2, which are those of the symmetric positive semi-definite L^T S2 L, S1 = L L^T
    (Cholesky). On the CPU, LAPACK computes exactly that: dpotrf factors S1, dsygst (the reduction of
    the generalized problem S2 S1 v = lambda v, itype=2) forms L^T S2 L in about d^3 flops, where two
    matrix products would take 4 d^3, and a symmetric eigenvalue solve without eigenvectors (the
    tridiagonal reduction, about 4/3 d^3 flops, is most of the time) finishes. No Schur factorisation,
    no complex arithmetic: 10-12x faster than sqrtm at d = 2048 on one CPU thread (bench/fid.py).
    CUDA tensors stay on their device: Cholesky, L^T S2 L by matrix products, and eigvalsh in torch.

    The eigenvalues of S1 S2 and S2 S1 are the same, so when S1 is not positive definite (Cholesky
    fails) the roles swap. When neither is, S1 = V diag(w) V^T (eigh) and the nonzero eigenvalues of
    S1 S2 are those of B^T S2 B, B = V diag(sqrt w) over the eigenvalues above round-off. Singular or
    rank-deficient covariances (fewer samples than dimensions, dead features) are thus valid.
    Round-off leaves the zero eigenvalues of such matrices at about +-eps * d * lambda_max, and the
    square root would turn each into ~1e-7 * sqrt(lambda_max) of spurious trace; so eigenvalues below
    that level (numpy's matrix_rank tolerance) count as exactly 0, and negative ones are clamped to 0,
    which is exact for positive semi-definite inputs. NaN or inf in any input gives NaN.
    """
    device = next((x.device for x in (mu1, sigma1, mu2, sigma2) if isinstance(x, torch.Tensor)), torch.device("cpu"))
    on_cpu = device.type == "cpu"
    mu1, mu2 = _as_float64(mu1, "mu1", device), _as_float64(mu2, "mu2", device)
    s1, s2 = _as_float64(sigma1, "sigma1", device), _as_float64(sigma2, "sigma2", device)
    if mu1.ndim != 1 or mu2.ndim != 1:
        raise ValueError(f"frechet_distance: means must be vectors (D,); got shapes {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    d = mu1.shape[0]
    if mu2.shape[0] != d:
        raise ValueError(f"frechet_distance: means differ in dimension: {d} vs {mu2.shape[0]}")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if tuple(s.shape) != (d, d):
            raise ValueError(f"frechet_distance: {name} must be ({d}, {d}) to match the means; got {tuple(s.shape)}")
    xp = np if on_cpu else torch
    if not all(bool(xp.isfinite(t).all()) for t in (mu1, mu2, s1, s2)):
        return float("nan")
    # Symmetrise: covariances accumulated in floating point are symmetric only up to round-off, and
    # the solvers read one triangle; the average is the nearest symmetric matrix.
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    eigenvalues = _product_eigenvalues_lapack(s1, s2) if on_cpu else _product_eigenvalues_torch(s1, s2)
    if eigenvalues is None:
        eigenvalues = _product_eigenvalues_eigh(s1, s2, xp)
    diff = mu1 - mu2
    tr_covmean = _sum_sqrt_nonnegative(eigenvalues, d, xp)
    return float(diff @ diff + xp.trace(s1) + xp.trace(s2) - 2 * tr_covmean)


def _as_float64(x, name: str, device: torch.device):
    """x as a float64 numpy array (CPU) or torch tensor on device."""
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"frechet_distance: {name} must be real; got dtype {x.dtype}")
        t = x.detach().to(device=device, dtype=torch.float64)
        return t.numpy() if device.type == "cpu" else t
    a = np.asarray(x)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"frechet_distance: {name} must be real numbers; got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    return a if device.type == "cpu" else torch.as_tensor(a, device=device)


def _product_eigenvalues_lapack(s1: np.ndarray, s2: np.ndarray) -> np.ndarray | None:
    """Eigenvalues of S1 S2 (exactly symmetric float64 inputs) by LAPACK; None when neither is positive definite."""
    from scipy.linalg import eigvalsh, lapack

    # The transpose of an exactly symmetric C-ordered array is the same matrix in Fortran order,
    # which LAPACK takes without the copy a C-ordered argument would cost.
    for a, b in ((s2, s1), (s1, s2)):
        chol, info = lapack.dpotrf(b.T, lower=1, clean=0)
        if info > 0:
            continue
        if info < 0:
            raise RuntimeError(f"frechet_distance: LAPACK dpotrf rejected argument {-info}")
        # itype=2 forms L^T A L in place of A (no inverse of L, so a nearly singular S1 is harmless).
        m, info = lapack.dsygst(a.T, chol, itype=2, lower=1)
        if info != 0:
            raise RuntimeError(f"frechet_distance: LAPACK dsygst rejected argument {-info}")
        return eigvalsh(m, lower=True, overwrite_a=True, check_finite=False)
    return None


def _product_eigenvalues_torch(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor | None:
    """Eigenvalues of S1 S2 on the tensors' device; None when neither is positive definite."""
    for a, b in ((s2, s1), (s1, s2)):
        chol, info = torch.linalg.cholesky_ex(b)
        if int(info) == 0:
            m = chol.T @ a @ chol
            return torch.linalg.eigvalsh(0.5 * (m + m.T))
    return None


def _product_eigenvalues_eigh(s1, s2, xp):
    """Nonzero eigenvalues of S1 S2 for any positive semi-definite S1 (numpy or torch, by xp)."""
    w, v = xp.linalg.eigh(s1)
    keep = w > _roundoff_level(w, s1.shape[0])
    # B^T S2 B has the nonzero eigenvalues of S1 S2 = (V diag(w) V^T) S2, and only rank(S1) rows.
    b = v[:, keep] * xp.sqrt(w[keep])
    m = b.T @ s2 @ b
    return xp.linalg.eigvalsh(0.5 * (m + m.T))


def _roundoff_level(w, d: int) -> float:
    """Eigenvalues of a d x d PSD matrix below this are round-off of zero (numpy matrix_rank's tolerance)."""
    return float(abs(w).max()) * d * EPS if w.shape[0] else 0.0


def _sum_sqrt_nonnegative(w, d: int, xp) -> float:
    """sum sqrt(w_i) over the eigenvalues of a PSD product, those at round-off level counted as 0."""
    kept = w[w > _roundoff_level(w, d)]
    return float(xp.sqrt(kept).sum())
