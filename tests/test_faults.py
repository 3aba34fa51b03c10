"""Training that survives faults: kill -9, non-finite values, damaged checkpoints, full disks."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
from small_runs import CLI_SMALL, SMALL, one_line_error, small
from state_compare import assert_same

import numpy as np

import fastgan.atomic as atomic_module
import fastgan.train.checkpoint as checkpoint_module
import fastgan.train.loop as loop_module
import fastgan.train.run_folder as run_folder_module
from fastgan.cli import main
from fastgan.data.format import write_fgd
from fastgan.train import (BaseTrainer, CheckpointError, NonFiniteError, TrainConfig, Trainer, load_checkpoint,
                           make_trainer, save_checkpoint, train)
from fastgan.train.base import DivergenceWarning
from fastgan.train.checkpoint import CheckpointFallbackWarning, CheckpointWriteError, checkpoint_nbytes

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
    # torchrun starts its workers in sessions of their own: kill every descendant, not only the group.
    family = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _descendants(pid: int) -> list[int]:
    """The processes below pid, from each process's parent in /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    # the command name may hold spaces: the parent id is the second field after its ')'
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


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


# -- issue 18: each numbered fault, reproduced, with its clean outcome -------------------------------


# 1. A torn last line of metrics.jsonl


def test_a_torn_last_log_line_is_dropped_with_a_warning_and_resume_stays_exact(tmp_path):
    whole = train(small(tmp_path, steps=8, name="whole"))
    part = train(small(tmp_path, steps=6, name="part"))
    with open(part / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "d_loss": 1.27')  # a crash or a full disk in the middle of a line
    with pytest.warns(UserWarning, match=r"part/metrics.jsonl: dropped its last line, torn"):
        train(small(tmp_path, steps=8, name="part", resume=True))
    _same_training_state(whole, part)
    assert _log_without_timings(part) == _log_without_timings(whole)


def test_a_damaged_log_line_before_the_last_is_an_error_naming_file_and_line(tmp_path, capsys):
    part = train(small(tmp_path, steps=4, name="part"))
    lines = (part / "metrics.jsonl").read_text().splitlines()
    (part / "metrics.jsonl").write_text("\n".join([lines[0][:10], *lines[1:]]) + "\n")
    line = one_line_error(capsys, 2, ["train", *CLI_SMALL, "--out-dir", str(tmp_path), "--name", "part",
                                      "--resume", "--steps", "6"])
    assert f"{part / 'metrics.jsonl'}: line 1 is damaged" in line


def test_an_append_to_a_log_with_a_torn_line_cuts_it_off_and_keeps_the_others(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2, "d_lo')
    with pytest.warns(UserWarning, match="dropped a torn last line"):
        atomic_module.append_line(log, '{"step": 3}')
    assert log.read_text() == '{"step": 1}\n{"step": 3}\n'
    assert loop_module.read_log(log) == [{"step": 1}, {"step": 3}]


# 2. The disk pre-flight: a real checkpoint, three of them


def test_the_pre_flight_measures_a_checkpoint_with_adam_moments_without_touching_the_trainer(tmp_path):
    written = (train(small(tmp_path, steps=2, name="r")) / "checkpoint.pt").stat().st_size
    trainer = Trainer(small(tmp_path, name="r"))
    before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    measured = loop_module.checkpoint_size(trainer)
    assert abs(measured - written) <= 0.01 * written
    assert checkpoint_nbytes(trainer.state_dict()) < 0.6 * written  # what the old pre-flight measured
    assert all(not opt.state for opt in trainer.optimizers.values())
    assert all(torch.equal(before[k], v) for k, v in trainer.discriminator.state_dict().items())


def test_a_disk_with_room_for_two_checkpoints_is_refused_before_the_first_step(tmp_path, monkeypatch):
    size = loop_module.checkpoint_size(Trainer(small(tmp_path, name="tiny")))
    free = {"bytes": 2 * size + run_folder_module.OUTPUT_MARGIN_BYTES}

    class Usage:
        total = used = 10**12

        @property
        def free(self):
            return free["bytes"]

    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: Usage())
    with pytest.raises(OSError, match="not enough free space for checkpoints.*room for three") as info:
        train(small(tmp_path, steps=2, name="tiny"))
    assert info.value.errno == errno.ENOSPC
    assert not (tmp_path / "tiny").exists()
    free["bytes"] = 3 * size + run_folder_module.OUTPUT_MARGIN_BYTES
    assert load_checkpoint(train(small(tmp_path, steps=2, name="tiny")))["step"] == 2


def test_a_full_disk_at_a_later_save_is_one_line_and_resume_loses_nothing(tmp_path, monkeypatch, capsys):
    whole = train(small(tmp_path, steps=6, name="whole"))
    saves, real_open = [], atomic_module.os.open

    def disk_full_on_second_save(path, flags, *args, **kwargs):
        if os.path.basename(path).startswith(".checkpoint.pt."):
            saves.append(path)
            if len(saves) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(atomic_module.os, "open", disk_full_on_second_save)
    args = ["train", *CLI_SMALL, "--ckpt-every", "2", "--out-dir", str(tmp_path), "--name", "full"]
    line = one_line_error(capsys, 2, [*args, "--steps", "6"])
    assert "No space left on device" in line and "is intact" in line and "disk is full" in line
    monkeypatch.undo()
    assert main([*args, "--steps", "6", "--resume"]) == 0
    _same_training_state(whole, tmp_path / "full")


# 3. A 4-channel dataset


def test_a_4_channel_dataset_is_refused_before_a_run_directory_exists(tmp_path, capsys):
    data = tmp_path / "rgba.fgd"
    write_fgd(data, np.zeros((40, 4, 8, 8), np.uint8))
    line = one_line_error(capsys, 2, ["train", *CLI_SMALL, "--dataset", str(data), "--steps", "2",
                                      "--out-dir", str(tmp_path / "runs")])
    assert "images have 4 channels" in line and "fastgan prepare" in line
    assert not (tmp_path / "runs").exists()


# 4. TOML values of the wrong type


@pytest.mark.parametrize("toml, message", [
    ('steps = "abc"', "TrainConfig.steps: must be a whole number; got 'abc'"),
    ("steps = 1.5", "TrainConfig.steps: must be a whole number; got 1.5"),
    ('model = "mlp"\nmlp_hidden = 5', "TrainConfig.mlp_hidden: must be a list of whole numbers; got 5"),
    ('lr_g = "fast"', "TrainConfig.lr_g: must be a number; got 'fast'"),
    ("dataset = 5", "TrainConfig.dataset: must be a string; got 5"),
    ("r1_gamma = nan", "TrainConfig.r1_gamma: must be a finite number; got nan"),
    ("seed = 1e20", "TrainConfig.seed: must be a whole number; got 1e+20"),
])
def test_wrongly_typed_toml_values_are_one_line_errors_and_nothing_is_written(tmp_path, capsys, toml, message):
    config = tmp_path / "run.toml"
    config.write_text(toml + "\n")
    line = one_line_error(capsys, 2, ["train", "--config", str(config), "--out-dir", str(tmp_path / "runs")])
    assert line == f"fastgan train: error: {message}"
    assert not (tmp_path / "runs").exists()


# 7. Temporary files left by kill -9


_WRITER = """
import sys, time
from fastgan import atomic
out = atomic.AtomicFile(sys.argv[1])
out.file.write(b"x" * 100000)
out.file.flush()
print(out.temp, flush=True)
time.sleep(600)
"""


def _writer(target) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def _age(path, seconds=3600):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_temp_files_of_a_killed_save_are_removed_by_the_next_run_and_a_live_writers_are_kept(tmp_path):
    run = train(small(tmp_path, steps=2, name="r"))
    dead, dead_temp = _writer(run / "checkpoint.pt")
    dead.kill()
    dead.wait()
    live, live_temp = _writer(run / "samples.png")
    try:
        for temp in (dead_temp, live_temp):
            _age(temp)
        train(small(tmp_path, steps=4, name="r", resume=True))
        assert not os.path.exists(dead_temp)
        assert os.path.exists(live_temp), "the temporary file of a live writer was removed"
    finally:
        live.kill()
        live.wait()
    assert load_checkpoint(run)["step"] == 4


def test_temp_files_of_a_killed_prepare_are_removed_by_the_next_prepare(tmp_path):
    from fastgan.data import prepare

    dead, dead_temp = _writer(tmp_path / "digits.fgd")
    dead.kill()
    dead.wait()
    _age(dead_temp)
    other = tmp_path / ".other.fgd.0123abcd.tmp"  # another target's: not this prepare's to remove
    other.write_bytes(b"")
    _age(other)
    prepare("digits", tmp_path / "digits.fgd", resolution=8, progress=False)
    assert sorted(os.listdir(tmp_path)) == sorted(["digits.fgd", other.name])


# 8. The non-finite stop


def _nan_from_step(monkeypatch, first_bad: int) -> None:
    """Real batches turn to NaN from update first_bad on, the same in a resumed run as in a whole one."""
    real = BaseTrainer.real_batches

    def poisoned(self):
        for batch in real(self):
            yield torch.full_like(batch, float("nan")) if self.step + 1 >= first_bad else batch

    monkeypatch.setattr(BaseTrainer, "real_batches", poisoned)


def test_the_non_finite_stop_is_one_line_with_status_1_and_says_no_checkpoint_exists(tmp_path, monkeypatch, capsys):
    _nan_from_step(monkeypatch, 1)
    args = ["train", *CLI_SMALL, "--steps", "6", "--out-dir", str(tmp_path), "--name", "nan"]
    line = one_line_error(capsys, 1, args)
    assert "step 3: discriminator: non-finite loss or gradients in 3 updates in a row" in line
    assert "no checkpoint was written" in line and "intact" not in line
    monkeypatch.undo()
    assert main(args) == 0  # the folder of the failed run is taken again
    assert load_checkpoint(tmp_path / "nan")["step"] == 6


def test_the_non_finite_stop_names_the_intact_checkpoint(tmp_path, monkeypatch, capsys):
    _nan_from_step(monkeypatch, 5)
    line = one_line_error(capsys, 1, ["train", *CLI_SMALL, "--steps", "10", "--ckpt-every", "2",
                                      "--out-dir", str(tmp_path), "--name", "nan"])
    assert f"the last checkpoint, {tmp_path / 'nan' / 'checkpoint.pt'}, is intact" in line
    assert load_checkpoint(tmp_path / "nan")["step"] == 6  # D skipped 5 and 6, and stopped at 7


def test_the_non_finite_counter_is_checkpointed_so_a_resumed_run_stops_where_a_whole_one_does(tmp_path, monkeypatch):
    _nan_from_step(monkeypatch, 6)  # D skips at 6 (checkpoint), 7, and stops at 8
    with pytest.raises(NonFiniteError, match="step 8: discriminator"):
        with pytest.warns(UserWarning):
            train(small(tmp_path, steps=20, name="whole"))
    with pytest.warns(UserWarning, match="step 6: discriminator"):
        train(small(tmp_path, steps=6, name="part"))
    assert load_checkpoint(tmp_path / "part")["nonfinite"]["in_a_row"]["discriminator"] == 1
    with pytest.raises(NonFiniteError, match="step 8: discriminator"):
        with pytest.warns(UserWarning):
            train(small(tmp_path, steps=20, name="part", resume=True))


def test_a_finite_but_absurd_loss_warns_once_per_network(tmp_path):
    trainer = Trainer(small(tmp_path, lr_d=1e6))
    batches = trainer.real_batches()
    with pytest.warns(DivergenceWarning, match="discriminator: loss .* is finite but above 1e\\+06") as caught:
        for _ in range(5):
            trainer.train_step(batches)
    names = [str(w.message).split(": ")[1] for w in caught if w.category is DivergenceWarning]
    assert sorted(names) == sorted(set(names))


# 9. User errors, each one line with status 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    return train(TrainConfig(out_dir=str(out), steps=2, name="r", **SMALL))


@pytest.mark.parametrize("argv, message", [
    (["train", "--device", "bogus"], "device 'bogus' is not a torch device; use cpu, cuda or cuda:N"),
    (["train", "--device", "tpu"], "device 'tpu' is not a torch device"),
    (["train", "--device", "meta"], "device 'meta': fastgan trains on cpu or cuda devices"),
    (["train", "--r1-gamma", "nan"], "TrainConfig.r1_gamma: must be a finite number; got nan"),
    (["train", "--lr-d", "inf"], "TrainConfig.lr_d: must be a finite number; got inf"),
    (["train", "--seed", str(10**20)], "TrainConfig.seed: must be between 0 and 2**63 - 1"),
])
def test_bad_train_settings_are_one_line_errors(tmp_path, capsys, argv, message):
    assert message in one_line_error(capsys, 2, [*argv, "--out-dir", str(tmp_path)])
    assert not os.listdir(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_a_missing_gpu_is_named_not_blamed_on_the_checkpoint(trained, tmp_path, capsys, command):
    line = one_line_error(capsys, 2, [command, "--ckpt", str(trained), "--device", "cuda"])
    assert "device 'cuda': CUDA is not available" in line and "--device cpu" in line
    assert "corrupt" not in line


@pytest.mark.parametrize("argv, message", [
    (["eval", "--batch-size", "0"], "batch_size must be a whole number >= 1; got 0"),
    (["eval", "--n", "0"], "n must be a whole number >= 1; got 0"),
    (["sample", "--seed", str(10**20)], "--seed must be between 0 and 2**63 - 1"),
])
def test_bad_sample_and_eval_options_are_one_line_errors(trained, capsys, argv, message):
    assert message in one_line_error(capsys, 2, [argv[0], "--ckpt", str(trained), *argv[1:]])


def test_a_checkpoint_with_fastgans_marker_but_missing_keys_is_a_clear_error(trained, tmp_path, capsys):
    state = load_checkpoint(trained)
    del state["config"]
    save_checkpoint(state, tmp_path)
    line = one_line_error(capsys, 2, ["sample", "--ckpt", str(tmp_path), "--out", str(tmp_path / "s.png")])
    assert "not a complete fastgan training checkpoint: it has no 'config'" in line


def test_fastgan_debug_1_shows_the_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTGAN_DEBUG", "1")
    assert main(["train", "--device", "bogus", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("use cpu, cuda or cuda:N")


def test_an_unexpected_error_is_one_line_with_status_1(tmp_path, monkeypatch, capsys):
    def broken(*args):
        raise KeyError("oops")

    monkeypatch.setattr(loop_module, "_train_loop", broken)
    line = one_line_error(capsys, 1, ["train", *CLI_SMALL, "--steps", "2", "--out-dir", str(tmp_path)])
    assert "KeyError: 'oops'" in line and "FASTGAN_DEBUG=1" in line


# 10. Failed runs leave no run directory


def test_a_run_that_fails_its_checks_leaves_no_folder_and_the_numbering_does_not_move_on(tmp_path, monkeypatch):
    class Usage:
        total, used, free = 10**9, 10**9 - 1000, 1000

    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(OSError, match="not enough free space"):
        train(small(tmp_path, steps=2))
    assert not os.listdir(tmp_path)
    monkeypatch.undo()
    assert train(small(tmp_path, steps=2)).name == "digits-mlp"


# 11. --resume with other options


def test_resume_with_changed_options_names_them(tmp_path, capsys):
    train(small(tmp_path, steps=2, name="r"))
    with pytest.raises(ValueError, match=r"these differ: batch_size \(saved 16, given 32\), lr_g \(saved 0.0002, "
                                         r"given 0.001\)\. A resume may change only steps"):
        train(small(tmp_path, steps=4, name="r", resume=True, lr_g=1e-3, batch_size=32))
    line = one_line_error(capsys, 2, ["train", *CLI_SMALL, "--out-dir", str(tmp_path), "--name", "r", "--resume",
                                      "--steps", "4", "--z-dim", "4"])
    assert "z_dim (saved 8, given 4)" in line
    assert load_checkpoint(tmp_path / "r")["step"] == 2
    train(small(tmp_path, steps=4, name="r", resume=True, ckpt_every=4, log_every=1))  # what a resume may change
    assert load_checkpoint(tmp_path / "r")["step"] == 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("bad", [None, float("inf"), -float("inf"), float("nan")])
def test_the_gradient_check_agrees_with_isfinite_even_for_huge_finite_values(dtype, bad):
    from fastgan.train.base import all_finite

    huge = torch.full((1000,), torch.finfo(dtype).max, dtype=dtype)  # finite values whose sum overflows dtype
    grads = [torch.randn(7, 3).to(dtype), huge, -huge[:10]]
    if bad is not None:
        grads[0][2, 1] = bad
    assert bool(all_finite(grads)) == all(bool(torch.isfinite(g).all()) for g in grads) == (bad is None)


@pytest.mark.parametrize("bad", [None, float("inf"), float("nan")])
def test_an_update_with_huge_finite_gradients_is_taken_and_a_non_finite_one_skipped(tmp_path, bad):
    # The step's fast float32 check overflows on these finite gradients; the exact check must then decide.
    from fastgan.train.base import finite_sum

    trainer = make_trainer(small(tmp_path))
    params = [p for group in trainer.optimizers["discriminator"].param_groups for p in group["params"]]
    for p in params:
        p.grad = torch.full_like(p, torch.finfo(torch.float32).max)
    if bad is not None:
        params[0].grad[0] = bad
    assert not torch.isfinite(finite_sum([p.grad for p in params]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        taken = trainer.apply_gradients("discriminator", torch.tensor(0.5))
    assert taken == (bad is None)
    assert bool(trainer.optimizers["discriminator"].state) == (bad is None)  # Adam stepped, or not
