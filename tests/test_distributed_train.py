"""Data-parallel training on the CPU: two gloo processes, in-process (spawn) and through torchrun."""
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from fastgan.train import TrainConfig, load_checkpoint, make_trainer

# MLP on 8 px digits: no batch norm, so a batch split over processes is the same batch; lazy R1 every
# other step exercises the updates in which D's loss gains a term.
SMALL = dict(dataset="digits", resolution=8, model="mlp", mlp_hidden=(32, 32), z_dim=8, progress=False,
             r1_gamma=1.0, r1_every=2, n_critic=2, log_every=2, sample_every=1000, ckpt_every=1000, threads=1)
# The recurrent VAE (no batch norm either): its reparameterisation noise is the global batch's, sliced.
RVAE = dict(dataset="sines", model="rvae", seq_len=12, seq_n=256, seq_hidden=16, z_dim=4, progress=False,
            log_every=2, sample_every=1000, ckpt_every=1000, threads=1)
# Class-conditional: each process's fake samples take its shard's labels, paired with its slice of the noise.
CONDITIONAL = dict(SMALL, conditional=True)
FAMILIES = {"gan": SMALL, "rvae": RVAE, "conditional-gan": CONDITIONAL}
STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out: str, batch_size: int, family: str) -> None:
    from fastgan.train.distributed import Distributed

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with Distributed.from_env("cpu") as dist:
        config = TrainConfig(out_dir=out, batch_size=batch_size, **FAMILIES[family])
        trainer = make_trainer(config, dist)
        batches = trainer.real_batches()
        for _ in range(STEPS):
            trainer.train_step(batches)
        result = {name: net.state_dict() for name, net in trainer.networks.items()}
        # rank_rng: independent per process, a function of (seed, step, rank) alone.
        result["rank_draws"] = [torch.randn(3, generator=trainer.rank_rng) for _ in range(2)]
        fresh = make_trainer(config, dist)
        fresh.step = trainer.step
        result["fresh_rank_draw"] = torch.randn(3, generator=fresh.rank_rng)
        torch.save(result, f"{out}/rank{rank}.pt")


def _train_in_processes(tmp_path, world_size: int, batch_size: int, family: str) -> list[dict]:
    out = tmp_path / f"w{world_size}"
    out.mkdir()
    if world_size == 1:
        trainer = make_trainer(TrainConfig(out_dir=str(out), batch_size=batch_size, **FAMILIES[family]))
        batches = trainer.real_batches()
        for _ in range(STEPS):
            trainer.train_step(batches)
        return [{name: net.state_dict() for name, net in trainer.networks.items()}]
    mp.spawn(_worker, args=(world_size, _free_port(), str(out), batch_size, family), nprocs=world_size)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(world_size)]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_two_processes_stay_identical_and_equal_one_process_with_the_global_batch(tmp_path, family):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _train_in_processes(tmp_path, 1, batch_size=16, family=family)[0]
        rank0, rank1 = _train_in_processes(tmp_path, 2, batch_size=8, family=family)
    finally:
        torch.set_num_threads(threads)
    for name in one:
        for key in one[name]:
            # Replicas are bit-identical; against one process only the order of the batch sums differs.
            assert torch.equal(rank0[name][key], rank1[name][key]), (name, key)
            torch.testing.assert_close(rank0[name][key], one[name][key], rtol=1e-5, atol=1e-6)
    for ranks_draw in (rank0, rank1):
        first, second = ranks_draw["rank_draws"]
        assert not torch.equal(first, second)  # one stream per step, not reseeded per call
        assert torch.equal(ranks_draw["fresh_rank_draw"], first)  # what a resumed run draws at that step
    assert not torch.equal(rank0["rank_draws"][0], rank1["rank_draws"][0])


def _fastgan(*args, nproc: int = 1, **kwargs) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                if nproc > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, "-m", "fastgan", *args], capture_output=True, text=True, env=env,
                          timeout=240, **kwargs)


@pytest.mark.slow
def test_torchrun_launch_writes_one_run_directory(tmp_path):
    args = ["train", "--model", "mlp", "--dataset", "digits", "--resolution", "8", "--mlp-hidden", "32,32",
            "--steps", "4", "--batch-size", "8", "--log-every", "2", "--threads", "1", "--no-progress",
            "--out-dir", str(tmp_path)]
    result = _fastgan(*args, nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run written to") == 1  # process 0 alone reports and writes
    (run,) = tmp_path.iterdir()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    state = load_checkpoint(run)
    assert state["step"] == 4 and state["config"]["batch_size"] == 8
