"""Training that survives faults: kill -9, non-finite values, damaged checkpoints, full disks."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from state_compare import assert_same

import fastgan.atomic as atomic_module
import fastgan.train.checkpoint as checkpoint_module
import fastgan.train.loop as loop_module
from fastgan.train import CheckpointError, NonFiniteError, TrainConfig, Trainer, load_checkpoint, train
from fastgan.train.checkpoint import CheckpointFallbackWarning, CheckpointWriteError

SMALL = dict(dataset="digits", resolution=8, model="mlp", mlp_hidden=(32, 32), z_dim=8, batch_size=16,
             progress=False, log_every=2, sample_every=1000, ckpt_every=2, threads=1)
CLI_SMALL = ["--dataset", "digits", "--resolution", "8", "--model", "mlp", "--mlp-hidden", "32,32", "--z-dim", "8",
             "--batch-size", "16", "--log-every", "2", "--sample-every", "1000", "--threads", "1", "--no-progress"]


def small(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(out_dir=str(tmp_path), **{**SMALL, **overrides})


def _same_training_state(run_a, run_b) -> None:
    a, b = load_checkpoint(run_a), load_checkpoint(run_b)
    assert a["step"] == b["step"]
    for kind in ("networks", "optimizers"):
        for name in a[kind]:
            assert_same(a[kind][name], b[kind][name], f"{kind}/{name}")
    assert torch.equal(a["rng"]["loop"], b["rng"]["loop"])


# -- kill -9 -------------------------------------------------------------------------------------


def _launch(args, nproc: int) -> subprocess.Popen:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                if nproc > 1 else [sys.executable])
    return subprocess.Popen([*launcher, "-m", "fastgan", "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            start_new_session=True)


def _kill_after_checkpoint(proc: subprocess.Popen, run, min_step: int) -> None:
    """SIGKILL the whole process group once a checkpoint of at least min_step exists (mid-run, unannounced)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if load_checkpoint(run / "checkpoint.pt")["step"] >= min_step:
                break
        except CheckpointError:
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2])
def test_kill_9_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, nproc):
    steps = ["--steps", "40", "--ckpt-every", "2", "--batch-size", str(16 // nproc)]
    args = [*CLI_SMALL, *steps, "--out-dir", str(tmp_path)]
    whole = _launch([*args, "--name", "whole"], nproc)
    assert whole.wait(timeout=240) == 0, whole.stderr.read().decode()[-3000:]
    killed = _launch([*args, "--name", "killed"], nproc)
    _kill_after_checkpoint(killed, tmp_path / "killed", min_step=6)
    resumed = _launch([*args, "--name", "killed", "--resume"], nproc)
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read().decode()[-3000:]
    _same_training_state(tmp_path / "whole", tmp_path / "killed")
    assert _log_without_timings(tmp_path / "killed") == _log_without_timings(tmp_path / "whole")


def _log_without_timings(run) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "img_per_s"} for row in rows]


# -- damaged checkpoints --------------------------------------------------------------------------


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one_and_resumes_exactly(tmp_path):
    whole = train(small(tmp_path, steps=8, name="whole"))
    part = train(small(tmp_path, steps=6, name="part"))
    latest = part / "checkpoint.pt"
    data = bytearray(latest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the file length is still right
    latest.write_bytes(bytes(data))
    with pytest.warns(CheckpointFallbackWarning, match="checksum mismatch.*step 4"):
        resumed = train(small(tmp_path, steps=8, name="part", resume=True))
    _same_training_state(whole, resumed)
    # The damaged file is set aside rather than rotated into checkpoint.prev.pt over a good checkpoint.
    assert (part / "checkpoint.damaged.pt").read_bytes() == bytes(data)
    assert load_checkpoint(part / "checkpoint.prev.pt")["step"] == 6


def test_crash_between_the_two_renames_of_a_save_loses_nothing(tmp_path, monkeypatch):
    run = train(small(tmp_path, steps=4, name="r"))
    real_replace = os.replace

    def crash_on_second_rename(src, dst):
        if str(dst).endswith("checkpoint.pt") and not str(src).endswith("checkpoint.pt"):
            raise KeyboardInterrupt  # stands for the process dying after checkpoint.pt became .prev
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "replace", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        train(small(tmp_path, steps=6, name="r", resume=True))
    monkeypatch.undo()
    assert not (run / "checkpoint.pt").exists()
    with pytest.warns(CheckpointFallbackWarning):
        assert load_checkpoint(run)["step"] == 4


# -- full disks -----------------------------------------------------------------------------------


def test_a_full_disk_at_a_save_raises_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    saves = []
    real_open = atomic_module.os.open

    def disk_full_on_second_save(path, flags, *args, **kwargs):
        # fastgan.atomic creates the temporary file of checkpoint.pt as .checkpoint.pt.<random>.tmp
        if os.path.basename(path).startswith(".checkpoint.pt."):
            saves.append(path)
            if len(saves) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(atomic_module.os, "open", disk_full_on_second_save)
    with pytest.raises(CheckpointWriteError, match="No space left.*previous checkpoint .*intact") as info:
        train(small(tmp_path, steps=6, name="full"))
    assert info.value.errno == errno.ENOSPC
    assert load_checkpoint(tmp_path / "full" / "checkpoint.pt")["step"] == 2


def test_too_little_free_space_is_an_error_before_training(tmp_path, monkeypatch):
    class Usage:
        total, used, free = 10**9, 10**9 - 1000, 1000

    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: Usage)
    monkeypatch.setattr(loop_module, "_train_loop", lambda *a: pytest.fail("training started"))
    with pytest.raises(OSError, match="not enough free space for checkpoints: 1,000 bytes free") as info:
        train(small(tmp_path, steps=2, name="tiny"))
    assert info.value.errno == errno.ENOSPC


# -- non-finite values ----------------------------------------------------------------------------


def _poisoned(batches, bad_steps):
    for i, batch in enumerate(batches):
        yield torch.full_like(batch, float("nan")) if i in bad_steps else batch


def test_a_nan_batch_skips_the_update_with_a_warning_naming_the_step_and_network(tmp_path):
    trainer = Trainer(small(tmp_path))
    batches = _poisoned(trainer.real_batches(), bad_steps={1})
    trainer.train_step(batches)
    before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    with pytest.warns(UserWarning, match="step 2: discriminator: non-finite loss or gradients; update skipped"):
        trainer.train_step(batches)
    after = trainer.discriminator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "weight" in k or "bias" in k)
    assert trainer.skipped_updates >= 1
    stats = trainer.train_step(batches)  # the next good step trains normally
    assert trainer.nonfinite_in_a_row["discriminator"] == 0 and torch.isfinite(stats["d_loss"])
    assert all(torch.isfinite(p).all() for p in trainer.discriminator.parameters())


def test_consecutive_nan_steps_stop_training_with_the_step_and_network(tmp_path):
    trainer = Trainer(small(tmp_path, max_nonfinite=2))
    batches = _poisoned(trainer.real_batches(), bad_steps=set(range(3, 100)))
    for _ in range(3):
        trainer.train_step(batches)
    with pytest.warns(UserWarning, match="step 4: discriminator"):
        trainer.train_step(batches)
    with pytest.raises(NonFiniteError, match="step 5: discriminator: non-finite loss or gradients in 2 updates"):
        trainer.train_step(batches)


def test_nan_in_the_generator_is_caught_too(tmp_path):
    trainer = Trainer(small(tmp_path, max_nonfinite=1))
    with torch.no_grad():
        trainer.generator.net[0].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="step 1: (discriminator|generator)"):
        trainer.train_step(trainer.real_batches())
