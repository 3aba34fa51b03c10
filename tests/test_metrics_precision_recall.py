import numpy as np
import pytest
import torch

from fastgan.metrics import density_coverage, precision_recall
from fastgan.metrics.precision_recall import knn_radii


def test_knn_radii_match_brute_force_with_small_chunks():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(57, 4)))
    d = torch.cdist(x, x) ** 2
    expected = d.sort(dim=1).values[:, 3]
    torch.testing.assert_close(knn_radii(x, 3, chunk_size=10), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("chunk_size", [7, 4096])
def test_identical_sets_have_precision_and_recall_one(chunk_size):
    x = np.random.default_rng(1).normal(size=(200, 16)).astype(np.float32)
    assert precision_recall(x, x.copy(), k=3, chunk_size=chunk_size) == {"precision": 1.0, "recall": 1.0}
    dc = density_coverage(x, x.copy(), k=5, chunk_size=chunk_size)
    assert dc["coverage"] == 1.0 and dc["density"] >= 1.0


def test_shifting_one_set_lowers_precision_and_recall():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    near = precision_recall(real, fake)
    far = precision_recall(real, fake + 1.5)
    assert near["precision"] > 0.7 and near["recall"] > 0.7
    assert far["precision"] < near["precision"] / 2 and far["recall"] < near["recall"] / 2
    assert precision_recall(real, fake + 100) == {"precision": 0.0, "recall": 0.0}
    assert density_coverage(real, fake + 100) == {"density": 0.0, "coverage": 0.0}


def test_collapsed_fakes_keep_precision_and_lose_recall():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(500, 2))
    fake = 0.05 * rng.normal(size=(500, 2))
    pr = precision_recall(real, fake)
    assert pr["precision"] > 0.95 and pr["recall"] < 0.1


def test_density_coverage_match_their_definitions():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(60, 3)), rng.normal(loc=0.3, size=(80, 3))
    k = 5
    d_rr = ((real[:, None] - real[None]) ** 2).sum(-1)
    radii = np.sort(d_rr, axis=1)[:, k]
    inside = ((fake[:, None] - real[None]) ** 2).sum(-1) <= radii[None]
    got = density_coverage(real, fake, k=k, chunk_size=16)
    assert got["density"] == pytest.approx(inside.sum() / (k * len(fake)))
    assert got["coverage"] == pytest.approx(inside.any(0).mean())


def test_bad_input():
    with pytest.raises(ValueError, match="feature dimensions differ"):
        precision_recall(np.zeros((10, 3)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))
