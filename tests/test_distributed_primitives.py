"""Distributed building blocks: two CPU processes on gloo, checked against single-process answers.

The two processes are spawned once per module (start-up dominates the cost); each runs every
scenario and saves what it got, and the tests below compare that with values computed here from the
same seeds.
"""
import copy
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from fastgan.metrics import FeatureStats
from fastgan.nn.layers import BatchNormAct, ConvBlock
from fastgan.train.distributed import (
    Distributed,
    SyncBatchNormAct,
    all_reduce_gradients,
    broadcast_parameters,
    convert_sync_batchnorm,
    merge_feature_stats,
)

WORLD = 2
FEATURE_DIM = 6
FLAG_CASES = [(True, True), (True, False), (False, True), (False, False)]  # (rank 0's flag, rank 1's flag)


def _module(seed: int) -> nn.Module:
    """Float32 and float64 parameters, float, int64 and bool buffers: three buckets to broadcast."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(5, 4), BatchNormAct(4, act="lrelu"), nn.Linear(4, 3).double())
    m[1].running_mean.normal_()
    m[1].num_batches_tracked.fill_(seed + 7)
    m.register_buffer("mask", torch.rand(9) > 0.5)
    return m


def _params_with_grads(rank: int) -> list[nn.Parameter]:
    """p0: grads on both ranks (non-contiguous on rank 1); p1: a grad on rank 0 only; p2: float64;
    p3: no grad anywhere."""
    torch.manual_seed(100)
    params = [nn.Parameter(torch.randn(3, 4)), nn.Parameter(torch.randn(5)),
              nn.Parameter(torch.randn(2, 2, dtype=torch.float64)), nn.Parameter(torch.randn(4))]
    g = torch.Generator().manual_seed(200 + rank)
    params[0].grad = torch.randn(4, 3, generator=g).T if rank == 1 else torch.randn(3, 4, generator=g)
    if rank == 0:
        params[1].grad = torch.randn(5, generator=g)
    params[2].grad = torch.randn(2, 2, generator=g, dtype=torch.float64)
    return params


def _features(rank: int, empty_rank: int | None = None) -> torch.Tensor:
    if rank == empty_rank:
        return torch.empty(0, FEATURE_DIM)
    g = torch.Generator().manual_seed(300 + rank)
    # Different counts per rank and a large common offset: the merge must weight and centre correctly.
    return 1e3 + torch.randn(7 + 5 * rank, FEATURE_DIM, generator=g, dtype=torch.float64)


def _bn_input(rank: int) -> torch.Tensor:
    return torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(400 + rank))


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    got = {}
    with Distributed.from_env("cpu") as dist:
        got["dist"] = (dist.rank, dist.world_size, dist.local_rank, dist.backend, str(dist.device), dist.is_main,
                       dist.enabled)

        module = _module(seed=rank)
        broadcast_parameters(module, dist)
        got["broadcast"] = module.state_dict()
        try:
            broadcast_parameters(nn.Linear(3, 3 + rank), dist)
        except ValueError as e:
            got["broadcast_mismatch"] = str(e)

        params = _params_with_grads(rank)
        got["grads_verdict"] = all_reduce_gradients(params, dist)
        got["grads"] = [p.grad for p in params]
        got["verdicts"] = [all_reduce_gradients(_params_with_grads(rank), dist, torch.tensor(case[rank]))
                           for case in FLAG_CASES]
        half = [nn.Parameter(torch.zeros(3, dtype=torch.float16))]
        half[0].grad = torch.full((3,), 1.0 + rank, dtype=torch.float16)
        got["half_verdict"] = all_reduce_gradients(half, dist, torch.tensor(rank == 0))
        got["half_grad"] = half[0].grad
        got["no_params_verdict"] = all_reduce_gradients([], dist, torch.tensor(True))

        for name, empty_rank in (("stats", None), ("stats_empty_rank", 1)):
            stats = FeatureStats(dim=FEATURE_DIM).update(_features(rank, empty_rank))
            merged = merge_feature_stats(stats, dist)
            got[name] = merged.to_arrays()
            got[name + "_input_n"] = stats.n

        bn = convert_sync_batchnorm(nn.Sequential(BatchNormAct(4, act="lrelu", alpha=0.1)))
        bn[0].running_mean.copy_(torch.linspace(-1, 1, 4))
        bn.eval()
        got["sync_bn_eval"] = bn(_bn_input(rank))
        bn.train()
        try:
            bn(_bn_input(rank))
        except ValueError as e:
            got["sync_bn_train_cpu_error"] = str(e)
        dist.barrier()
    torch.save(got, os.path.join(out_dir, f"rank{rank}.pt"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of the two processes got, indexed by rank."""
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True, start_method="spawn")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_from_env_describes_each_process(ranks):
    assert ranks[0]["dist"] == (0, 2, 0, "gloo", "cpu", True, True)
    assert ranks[1]["dist"] == (1, 2, 1, "gloo", "cpu", False, True)


def test_broadcast_gives_every_rank_rank0s_parameters_and_buffers(ranks):
    expected = _module(seed=0).state_dict()
    assert not torch.equal(_module(seed=1).state_dict()["0.weight"], expected["0.weight"])
    for got in ranks:
        assert got["broadcast"].keys() == expected.keys()
        for name, value in expected.items():
            assert got["broadcast"][name].dtype == value.dtype
            assert torch.equal(got["broadcast"][name], value), name


def test_broadcast_of_different_models_is_refused_on_every_rank(ranks):
    for got in ranks:
        assert "rank 1 has 2 tensors (16 elements), rank 0 has 2 (12 elements)" in got["broadcast_mismatch"]


def test_all_reduce_gradients_averages_and_treats_a_missing_grad_as_zero(ranks):
    r0, r1 = _params_with_grads(0), _params_with_grads(1)
    expected = [(r0[0].grad + r1[0].grad) / 2, r0[1].grad / 2, (r0[2].grad + r1[2].grad) / 2, None]
    for got in ranks:
        for i in range(3):
            assert got["grads"][i].dtype == expected[i].dtype
            torch.testing.assert_close(got["grads"][i], expected[i], rtol=0, atol=0)
        assert got["grads"][3] is None
    for a, b in zip(ranks[0]["grads"][:3], ranks[1]["grads"][:3]):
        assert torch.equal(a, b)


def test_all_reduce_gradients_returns_the_verdicts_anded_over_ranks(ranks):
    for got in ranks:
        assert got["grads_verdict"].dtype == torch.bool and got["grads_verdict"].item() is True
        assert [v.item() for v in got["verdicts"]] == [a and b for a, b in FLAG_CASES]
        # A float16-only parameter list: the verdict travels in a float32 collective of its own.
        assert got["half_verdict"].item() is False
        assert got["half_grad"].dtype == torch.float16 and got["half_grad"].tolist() == [1.5, 1.5, 1.5]
        assert got["no_params_verdict"].item() is True


@pytest.mark.parametrize("name, empty_rank", [("stats", None), ("stats_empty_rank", 1)])
def test_merged_feature_stats_equal_those_of_all_features(ranks, name, empty_rank):
    everything = torch.cat([_features(r, empty_rank) for r in range(WORLD)])
    expected = FeatureStats.from_features(everything)
    got = FeatureStats.from_arrays(ranks[0][name])
    assert got.n == len(everything)
    torch.testing.assert_close(got.mean, expected.mean, rtol=1e-14, atol=0)
    torch.testing.assert_close(got.cov, expected.cov, rtol=1e-12, atol=1e-13)
    for key in ("n", "mean", "m2"):  # bit-identical on every rank
        np.testing.assert_array_equal(ranks[0][name][key], ranks[1][name][key])
    assert [got_r[name + "_input_n"] for got_r in ranks] == [len(_features(r, empty_rank)) for r in range(WORLD)]


def test_converted_batchnorm_in_eval_mode_matches_batchnorm_act(ranks):
    reference = BatchNormAct(4, act="lrelu", alpha=0.1).eval()
    reference.running_mean.copy_(torch.linspace(-1, 1, 4))
    for rank, got in enumerate(ranks):
        torch.testing.assert_close(got["sync_bn_eval"], reference(_bn_input(rank)), rtol=1e-6, atol=1e-6)


def test_sync_batchnorm_training_needs_cuda_under_a_process_group(ranks):
    # torch's SyncBatchNorm only synchronises CUDA tensors; on CPU it refuses rather than
    # normalising each rank on its own statistics.
    for got in ranks:
        assert "SyncBatchNorm expected input tensor to be on GPU" in got["sync_bn_train_cpu_error"]


# ------------------------------------------------------------------- one process, no process group

def _clear_torchrun_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_without_torchrun_everything_is_a_single_process_no_op(monkeypatch):
    _clear_torchrun_env(monkeypatch)
    with Distributed.from_env("cpu") as dist:
        assert (dist.rank, dist.world_size, dist.backend, dist.is_main, dist.enabled) == (0, 1, None, True, False)
        assert not torch.distributed.is_initialized()
        module = _module(seed=3)
        before = copy.deepcopy(module.state_dict())
        broadcast_parameters(module, dist)
        assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
        params = _params_with_grads(1)
        grads = [p.grad for p in params]
        assert all_reduce_gradients(params, dist).item() is True
        assert all(p.grad is g for p, g in zip(params, grads))
        assert all_reduce_gradients(params, dist, torch.tensor(False)).item() is False
        stats = FeatureStats.from_features(_features(0))
        assert merge_feature_stats(stats, dist) is stats
        dist.barrier()


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two': must be an integer"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "need WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE"),
    ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_PORT": "1234"}, "MASTER_ADDR not set: launch with torchrun"),
])
def test_bad_torchrun_environment_is_named(monkeypatch, env, message):
    _clear_torchrun_env(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises((ValueError, RuntimeError), match=message):
        Distributed.from_env("cpu")
    assert not torch.distributed.is_initialized()


def _net_with_batch_norms() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(ConvBlock(3, 4, act="lrelu"), ConvBlock(4, 5, act="relu"), nn.BatchNorm2d(5),
                         nn.Sequential(BatchNormAct(5, act="tanh")))


def test_conversion_replaces_every_batch_norm_and_shares_its_tensors():
    net = _net_with_batch_norms()
    original_layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    keys = list(net.state_dict())
    converted = convert_sync_batchnorm(net)
    layers = [m for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert [type(m) for m in layers] == [SyncBatchNormAct, SyncBatchNormAct, nn.SyncBatchNorm, SyncBatchNormAct]
    assert [m.act for m in layers if isinstance(m, SyncBatchNormAct)] == ["lrelu", "relu", "tanh"]
    for old, new in zip(original_layers, layers):
        assert new.weight is old.weight and new.running_var is old.running_var
    assert list(converted.state_dict()) == keys
    assert convert_sync_batchnorm(converted) is converted
    assert isinstance(convert_sync_batchnorm(BatchNormAct(3)), SyncBatchNormAct)


@pytest.mark.parametrize("act, alpha", [("relu", None), ("lrelu", 0.1), ("tanh", None), ("sigmoid", None),
                                        ("linear", None)])
def test_converted_layer_matches_batch_norm_act_without_a_process_group(act, alpha):
    # With no process group SyncBatchNorm normalises with the local batch, so the converted layer
    # must then compute exactly what BatchNormAct computes: output, gradients and running statistics.
    torch.manual_seed(1)
    reference = BatchNormAct(4, act=act, alpha=alpha)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    converted = convert_sync_batchnorm(copy.deepcopy(reference))
    x = torch.randn(6, 4, 5, 3) * 2 + 0.5
    for _ in range(2):  # the second step starts from updated running statistics
        x_ref, x_new = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_ref, y_new = reference(x_ref), converted(x_new)
        torch.testing.assert_close(y_new, y_ref, rtol=1e-5, atol=1e-6)
        dy = torch.randn_like(y_ref)
        y_ref.backward(dy)
        y_new.backward(dy)
        torch.testing.assert_close(x_new.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
        for name in ("weight", "bias"):
            torch.testing.assert_close(getattr(converted, name).grad, getattr(reference, name).grad, rtol=1e-5,
                                       atol=1e-5)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(converted, name), getattr(reference, name), rtol=1e-6, atol=1e-7)
        x = x * 0.5 - 1
    reference.eval()
    converted.eval()
    torch.testing.assert_close(converted(x), reference(x), rtol=1e-5, atol=1e-6)
