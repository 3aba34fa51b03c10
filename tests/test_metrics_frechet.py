import numpy as np
import pytest
import scipy.linalg
import torch

from fastgan.metrics import frechet_distance


def _random_spd(rng, d):
    a = rng.normal(size=(d, 2 * d))
    return a @ a.T / (2 * d) + 0.1 * np.eye(d)


def _scipy_frechet(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [2, 3, 10, 64, 512])
def test_matches_scipy_sqrtm_formula(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) * 0.1
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    expected = _scipy_frechet(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    if d > 64:
        return
    # Equal means leave only the covariance term, the part the eigendecompositions compute.
    expected_cov_only = _scipy_frechet(mu1, s1, mu1, s2)
    assert frechet_distance(mu1, s1, mu1, s2) == pytest.approx(expected_cov_only, rel=1e-6)


def test_accepts_torch_and_numpy_and_returns_float():
    rng = np.random.default_rng(0)
    mu, s = rng.normal(size=4), _random_spd(rng, 4)
    mu2, s2 = rng.normal(size=4), _random_spd(rng, 4)
    a = frechet_distance(mu, s, mu2, s2)
    b = frechet_distance(torch.from_numpy(mu).float(), torch.from_numpy(s), mu2, torch.from_numpy(s2))
    assert isinstance(a, float) and isinstance(b, float)
    assert b == pytest.approx(a, rel=1e-6)


@pytest.mark.parametrize("d", [2, 64, 512])
def test_identical_statistics_give_zero(d):
    rng = np.random.default_rng(d)
    mu, s = rng.normal(size=d), _random_spd(rng, d)
    assert abs(frechet_distance(mu, s, mu, s)) <= 1e-9 * np.trace(s)


def test_rank_deficient_covariances_match_closed_form():
    # Commuting covariances Q diag(a) Q^T and Q diag(b) Q^T have FD = |mu1-mu2|^2 + sum (sqrt a - sqrt b)^2;
    # half the eigenvalues are zero, so sqrt(S1) and the product are singular.
    rng = np.random.default_rng(7)
    d = 40
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.5, 2, size=d), rng.uniform(0.5, 2, size=d)
    a[: d // 2] = 0
    b[d // 4 : 3 * d // 4] = 0
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = float((mu1 - mu2) @ (mu1 - mu2) + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-9)


def test_fewer_samples_than_dimensions_is_finite_and_zero_on_itself():
    x = np.random.default_rng(8).normal(size=(5, 64))
    mu, s = x.mean(0), np.cov(x, rowvar=False)
    assert np.linalg.matrix_rank(s) == 4
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9 * np.trace(s)
    y = np.random.default_rng(9).normal(size=(5, 64))
    assert 0 < frechet_distance(mu, s, y.mean(0), np.cov(y, rowvar=False)) < np.inf


def test_nan_in_gives_nan_out():
    s = np.eye(3)
    assert np.isnan(frechet_distance(np.array([np.nan, 0, 0]), s, np.zeros(3), s))


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="differ in dimension"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"sigma2 must be \(3, 3\)"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="vectors"):
        frechet_distance(np.zeros((3, 1)), np.eye(3), np.zeros(3), np.eye(3))
