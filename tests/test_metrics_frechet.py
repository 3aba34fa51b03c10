import numpy as np
import pytest
import scipy.linalg
import torch

import fastgan.metrics.frechet as frechet
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


# tr((S1 S2)^(1/2)) for S1 = X X^T and S2 = Y Y^T is the nuclear norm of Y^T X: (S1 S2) has the nonzero
# eigenvalues of (Y^T X)(Y^T X)^T. An oracle that never forms S1, S2 or a matrix square root.
def _factor_frechet(mu1, x, mu2, y):
    nuclear = np.linalg.svd(y.T @ x, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + (x * x).sum() + (y * y).sum() - 2 * nuclear)


def _factor(rng, d, rank, dead=()):
    # dead: rows of zeros, i.e. features that never fire; their rows and columns of X X^T are exactly 0,
    # so Cholesky meets an exact zero pivot and fails.
    x = rng.normal(size=(d, rank)) / np.sqrt(rank)
    x[list(dead)] = 0
    return x


def _is_positive_definite(s):
    try:
        np.linalg.cholesky(s)
        return True
    except np.linalg.LinAlgError:
        return False


SINGULAR_CASES = {
    # name: (rank of X, dead rows of X, rank of Y, dead rows of Y)
    "sigma1 singular": (30, (0, 5, 17), 120, ()),
    "sigma2 singular": (120, (), 30, (3, 4)),
    "both singular": (30, (1, 2), 20, (9,)),
    "both singular, few samples": (4, (0,), 4, (0,)),
}


@pytest.mark.parametrize("case", SINGULAR_CASES)
def test_singular_covariances_match_the_factor_formula(case):
    rank1, dead1, rank2, dead2 = SINGULAR_CASES[case]
    d = 60
    rng = np.random.default_rng(len(case))
    x, y = _factor(rng, d, rank1, dead1), _factor(rng, d, rank2, dead2)
    s1, s2 = x @ x.T, y @ y.T
    assert _is_positive_definite(s1) == (rank1 >= d and not dead1)
    assert _is_positive_definite(s2) == (rank2 >= d and not dead2)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = _factor_frechet(mu1, x, mu2, y)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(torch.from_numpy(mu1), torch.from_numpy(s1), mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_zero_covariances_leave_the_mean_term():
    mu1, mu2 = np.arange(5.0), np.ones(5)
    assert frechet_distance(mu1, np.zeros((5, 5)), mu2, np.zeros((5, 5))) == float((mu1 - mu2) @ (mu1 - mu2))


# The solvers behind frechet_distance, each on the same inputs: the LAPACK one (CPU), the torch one
# (what CUDA tensors take, run here on CPU tensors) and the eigh fallback in numpy and in torch.
def _lapack(s1, s2):
    return frechet._product_eigenvalues_lapack(s1, s2)


def _torch(s1, s2):
    w = frechet._product_eigenvalues_torch(torch.from_numpy(s1), torch.from_numpy(s2))
    return None if w is None else w.numpy()


def _eigh_numpy(s1, s2):
    return frechet._product_eigenvalues_eigh(s1, s2, np)


def _eigh_torch(s1, s2):
    return frechet._product_eigenvalues_eigh(torch.from_numpy(s1), torch.from_numpy(s2), torch).numpy()


@pytest.mark.parametrize("solver", [_lapack, _torch, _eigh_numpy, _eigh_torch])
@pytest.mark.parametrize("case", ["both definite", *SINGULAR_CASES])
def test_every_solver_gives_the_trace_of_the_square_root(solver, case):
    rank1, dead1, rank2, dead2 = SINGULAR_CASES.get(case, (90, (), 90, ()))
    d = 60
    rng = np.random.default_rng(len(case))
    x, y = _factor(rng, d, rank1, dead1), _factor(rng, d, rank2, dead2)
    s1, s2 = x @ x.T, y @ y.T
    s1, s2 = 0.5 * (s1 + s1.T), 0.5 * (s2 + s2.T)
    w = solver(s1, s2)
    if w is None:
        # The Cholesky-based solvers decline only when neither matrix is positive definite.
        assert solver in (_lapack, _torch) and case.startswith("both singular")
        return
    expected = np.linalg.svd(y.T @ x, compute_uv=False).sum()
    assert frechet._sum_sqrt_nonnegative(w, d, np) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["mu2", "sigma1", "sigma2"])
def test_non_finite_anywhere_gives_nan(bad, where):
    args = {"mu1": np.zeros(3), "sigma1": np.eye(3), "mu2": np.ones(3), "sigma2": 2 * np.eye(3)}
    args[where] = args[where].copy()
    args[where].flat[-1] = bad
    assert np.isnan(frechet_distance(**args))


def test_complex_input_is_refused():
    with pytest.raises(TypeError, match="sigma1 must be real"):
        frechet_distance(np.zeros(2), np.eye(2, dtype=complex), np.zeros(2), np.eye(2))
    with pytest.raises(TypeError, match="mu2 must be real"):
        frechet_distance(np.zeros(2), np.eye(2), torch.zeros(2, dtype=torch.complex64), np.eye(2))


def test_inputs_are_left_unchanged():
    rng = np.random.default_rng(3)
    s1, s2 = _random_spd(rng, 20), _random_spd(rng, 20)
    s1[0, 1] += 1e-13  # asymmetric by round-off, as accumulated covariances are
    copies = s1.copy(), s2.copy()
    frechet_distance(np.zeros(20), s1, np.zeros(20), s2)
    assert np.array_equal(s1, copies[0]) and np.array_equal(s2, copies[1])
