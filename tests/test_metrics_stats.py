import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastgan.metrics import FeatureStats


def _chunks(x, sizes):
    start = 0
    for s in sizes:
        yield x[start : start + s]
        start += s


@pytest.mark.parametrize("as_torch", [False, True])
def test_chunked_updates_equal_numpy_mean_and_cov(as_torch):
    x = np.random.default_rng(0).normal(size=(1000, 7)) @ np.random.default_rng(1).normal(size=(7, 7))
    stats = FeatureStats()
    for chunk in _chunks(x, [1, 0, 250, 333, 416]):
        stats.update(torch.from_numpy(chunk) if as_torch else chunk)
    assert stats.n == 1000
    np.testing.assert_allclose(stats.mean.numpy(), x.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.cov.numpy(), np.cov(x, rowvar=False), rtol=1e-11, atol=1e-12)


def test_merge_equals_one_shot():
    x = np.random.default_rng(2).normal(size=(600, 5))
    one_shot = FeatureStats.from_features(x)
    a, b, c = FeatureStats.from_features(x[:100]), FeatureStats.from_features(x[100:450]), FeatureStats.from_features(x[450:])
    merged = a.merge(b.merge(c))
    assert merged.n == 600
    np.testing.assert_allclose(merged.mean.numpy(), one_shot.mean.numpy(), rtol=1e-13)
    np.testing.assert_allclose(merged.cov.numpy(), one_shot.cov.numpy(), rtol=1e-12)
    assert FeatureStats().merge(one_shot).n == 600


def test_float32_features_with_large_offset_stay_accurate():
    rng = np.random.default_rng(3)
    x = (1e4 + rng.normal(size=(20000, 4))).astype(np.float32)
    stats = FeatureStats()
    for chunk in np.array_split(x, 37):
        stats.update(torch.from_numpy(chunk))
    exact = x.astype(np.float64)
    np.testing.assert_allclose(stats.mean.numpy(), exact.mean(0), rtol=1e-14)
    np.testing.assert_allclose(stats.cov.numpy(), np.cov(exact, rowvar=False), rtol=1e-9, atol=1e-9)


def test_save_load_roundtrip(tmp_path):
    stats = FeatureStats.from_features(np.random.default_rng(4).normal(size=(50, 3)))
    stats.save(tmp_path / "s.npz")
    loaded = FeatureStats.load(tmp_path / "s.npz")
    assert loaded.n == 50
    assert torch.equal(loaded.mean, stats.mean) and torch.equal(loaded.cov, stats.cov)
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]


def test_bad_input_names_the_problem(tmp_path):
    stats = FeatureStats.from_features(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="dimension 5 does not match"):
        stats.update(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        stats.update(np.zeros(4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        _ = FeatureStats.from_features(np.zeros((1, 4))).cov
    with pytest.raises(ValueError, match="no samples"):
        _ = FeatureStats().mean
    np.savez(tmp_path / "bad.npz", n=3, mean=np.zeros(2))
    with pytest.raises(ValueError, match="missing array"):
        FeatureStats.load(tmp_path / "bad.npz")


def _ddp_worker(rank, world, init_file, x, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        part = x[:70] if rank == 0 else x[70:]
        stats = FeatureStats.from_features(part).all_reduce_()
        out[rank] = torch.cat([torch.tensor([float(stats.n)]), stats.mean, stats.cov.flatten()])
    finally:
        dist.destroy_process_group()


def test_all_reduce_merges_ranks_with_gloo(tmp_path):
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(100, 3)))
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), x, out), nprocs=2, join=True)
    expected = FeatureStats.from_features(x)
    for rank in (0, 1):
        assert out[rank][0] == 100
        torch.testing.assert_close(out[rank][1:4], expected.mean, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(out[rank][4:].view(3, 3), expected.cov, rtol=1e-12, atol=1e-13)
    assert torch.equal(out[0], out[1])


def test_all_reduce_without_process_group_is_a_no_op():
    stats = FeatureStats.from_features(np.ones((2, 2)))
    assert stats.all_reduce_().n == 2
