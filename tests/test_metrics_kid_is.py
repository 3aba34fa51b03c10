import numpy as np
import pytest
import torch

from fastgan.metrics import inception_score, kid


def _numpy_mmd2_unbiased(x, y):
    # Bińkowski et al. 2018, eq. 4, written out pair by pair with k(a, b) = (a.b / d + 1)^3.
    m, d = x.shape
    def k(a, b):
        return (a @ b / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_on_whole_sets_equals_the_unbiased_mmd_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 6)), rng.normal(loc=0.3, size=(30, 6))
    mean, std = kid(x, y, num_subsets=1, subset_size=30)
    assert mean == pytest.approx(_numpy_mmd2_unbiased(x, y), rel=1e-10)
    assert std == 0


def test_kid_subsets_follow_the_documented_sampling():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 5)), rng.normal(loc=0.5, size=(50, 5))
    draw = np.random.default_rng(7)
    values = []
    for _ in range(4):
        ix, iy = draw.choice(40, 12, replace=False), draw.choice(50, 12, replace=False)
        values.append(_numpy_mmd2_unbiased(x[ix], y[iy]))
    mean, std = kid(torch.from_numpy(x).float(), y, num_subsets=4, subset_size=12, seed=7)
    assert mean == pytest.approx(np.mean(values), rel=1e-5)
    assert std == pytest.approx(np.std(values), rel=1e-4)


@pytest.mark.parametrize("n_real, n_fake, m, subsets", [(60, 45, 20, 30), (40, 50, 12, 4), (25, 25, 25, 3)])
def test_kid_from_the_whole_sets_kernels_equals_the_subsets_own(monkeypatch, n_real, n_fake, m, subsets):
    """The same subsets through either path: the whole sets' kernel matrices with indicator vectors, and each
    subset's own matrices (the pair-by-pair formula for the first subsets)."""
    import sys

    module = sys.modules["fastgan.metrics.kid"]
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(n_real, 7)), rng.normal(loc=0.2, size=(n_fake, 7))
    real, took, results = module._mmd2_of_subsets_from_whole_kernels, [], {}

    def counted(*args):
        took.append(args)
        return real(*args)

    monkeypatch.setattr(module, "_mmd2_of_subsets_from_whole_kernels", counted)
    for path, limit in (("whole", 1 << 30), ("subsets", 0)):
        monkeypatch.setattr(module, "WHOLE_KERNELS_MAX_BYTES", limit)
        took.clear()
        results[path] = kid(x, y, num_subsets=subsets, subset_size=m, seed=5)
        assert bool(took) == (path == "whole" and module._whole_kernels_pay(n_real, n_fake, m, subsets))
    assert results["whole"][0] == pytest.approx(results["subsets"][0], rel=1e-12, abs=1e-15)
    assert results["whole"][1] == pytest.approx(results["subsets"][1], rel=1e-9, abs=1e-15)
    draw = np.random.default_rng(5)
    ix, iy = draw.choice(n_real, m, replace=False), draw.choice(n_fake, m, replace=False)
    first = real(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(ix)[None], torch.from_numpy(iy)[None])
    assert first.item() == pytest.approx(_numpy_mmd2_unbiased(x[ix], y[iy]), rel=1e-10)


def test_kid_is_near_zero_for_the_same_distribution():
    rng = np.random.default_rng(2)
    mean, _ = kid(rng.normal(size=(500, 8)), rng.normal(size=(500, 8)), num_subsets=20, subset_size=200)
    assert abs(mean) < 0.01


def test_kid_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="feature dimensions differ"):
        kid(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        kid(np.zeros(10), np.zeros((10, 4)))


def _numpy_inception_score(p, splits):
    scores = []
    n = len(p)
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        py = part.mean(0)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(py)), axis=1))))
    return np.mean(scores), np.std(scores)


def test_inception_score_equals_the_published_formula():
    logits = np.random.default_rng(3).normal(scale=3, size=(100, 10))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = _numpy_inception_score(p, 5)
    for data in (p, logits, torch.from_numpy(logits).float()):
        mean, std = inception_score(data, splits=5)
        assert mean == pytest.approx(expected[0], rel=1e-5)
        assert std == pytest.approx(expected[1], rel=1e-4, abs=1e-6)


def test_inception_score_bounds():
    one_hot = np.eye(10)[np.arange(100) % 10]
    assert inception_score(one_hot, splits=1)[0] == pytest.approx(10)
    assert inception_score(np.full((20, 10), 0.1), splits=2)[0] == pytest.approx(1)


def test_inception_score_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        inception_score(np.zeros(10))
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.full((5, 3), 1 / 3), splits=10)
