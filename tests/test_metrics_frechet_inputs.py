"""frechet_distance on covariances as they arrive: not exactly symmetric, in either triangle, on every solver path."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from fastgan.metrics import frechet_distance


def _stats(d: int, rank: int, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, rank))
    return rng.standard_normal(d), a @ a.T / rank


def _sqrtm_formula(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _skew(d: int, seed: int, size: float) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((d, d)) * size
    return a - a.T


# Both positive definite (Cholesky of either), one singular (the roles swap), both singular (eigh).
RANKS = {"definite": (12, 12), "sigma1 singular": (3, 12), "both singular": (3, 4)}


@pytest.mark.parametrize("ranks", list(RANKS))
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_a_covariance_counts_as_its_symmetric_part(ranks, kind):
    # The solvers read one triangle; the distance must not depend on which, nor on an antisymmetric part
    # (here far above round-off, so that reading one triangle of the raw matrix shows).
    d = 8
    (mu1, s1), (mu2, s2) = _stats(d, RANKS[ranks][0], 1), _stats(d, RANKS[ranks][1], 2)
    expected = frechet_distance(mu1, s1, mu2, s2)
    if ranks == "definite":
        assert expected == pytest.approx(_sqrtm_formula(mu1, s1, mu2, s2), rel=1e-9)
    n1, n2 = s1 + _skew(d, 3, 0.3), s2 + _skew(d, 4, 0.3)
    convert = torch.from_numpy if kind == "torch" else np.asarray
    for a, b in ((n1, n2), (n1.T, n2.T), (n1, s2), (s1, n2.T)):
        got = frechet_distance(convert(mu1), convert(np.ascontiguousarray(a)), convert(mu2),
                               convert(np.ascontiguousarray(b)))
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("bad", ["mu1", "sigma1", "mu2", "sigma2"])
def test_a_complex_argument_is_refused_by_name(bad):
    (mu1, s1), (mu2, s2) = _stats(3, 3, 5), _stats(3, 3, 6)
    args = dict(mu1=torch.from_numpy(mu1), sigma1=torch.from_numpy(s1), mu2=mu2, sigma2=s2)
    args[bad] = torch.as_tensor(np.asarray(args[bad]), dtype=torch.complex128)
    with pytest.raises(TypeError, match=rf"^frechet_distance: {bad} must be real; got dtype torch.complex128$"):
        frechet_distance(**args)


@pytest.mark.parametrize("bad", ["sigma1", "sigma2"])
def test_a_covariance_of_the_wrong_shape_is_named(bad):
    (mu1, s1), (mu2, s2) = _stats(3, 3, 5), _stats(3, 3, 6)
    args = dict(mu1=mu1, sigma1=s1, mu2=mu2, sigma2=s2)
    args[bad] = np.eye(4)
    with pytest.raises(ValueError, match=rf"^frechet_distance: {bad} must be \(3, 3\) to match the means; got \(4, 4\)$"):
        frechet_distance(**args)


def test_float32_tensors_are_computed_in_float64():
    # Widened first: the result is that of the float64 values, not of float32 arithmetic.
    (mu1, s1), (mu2, s2) = _stats(16, 16, 7), _stats(16, 16, 8)
    f32 = [torch.from_numpy(a).float() for a in (mu1, s1, mu2, s2)]
    expected = frechet_distance(*(t.double().numpy() for t in f32))
    assert frechet_distance(*f32) == pytest.approx(expected, rel=1e-13)
