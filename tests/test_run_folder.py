"""The run folder: one owner at a time, its files opened without following symlinks, checkpoints at any interval,
and a diverged run that keeps its last healthy checkpoint."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
from small_runs import CLI_SMALL, one_line_error, small
from state_compare import assert_same, logged_rows, resumable_state

from fastgan.cli import main
from fastgan.train import BaseTrainer, load_checkpoint, train
from fastgan.train.base import DivergedError
from fastgan.train.run_folder import HEALTHY, LOCK, Divergence, RunBusyError, RunFolder

def _steps(run) -> list[int]:
    return [row["step"] for row in logged_rows(run) if "eval" not in row]


# -- one owner -------------------------------------------------------------------------------------


def _owner(tmp_path, name: str) -> RunFolder:
    """This process owning OUT/name, as a running `fastgan train` would."""
    folder = RunFolder(tmp_path / name)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.lock("fastgan train")
    return folder


@pytest.mark.parametrize("resume", [False, True])
def test_a_second_train_of_an_owned_run_is_refused_with_one_line_naming_the_owner(tmp_path, capsys, resume):
    if resume:
        train(small(tmp_path, steps=2, name="dup"))
    owner = _owner(tmp_path, "dup")
    try:
        line = one_line_error(capsys, 2, ["train", *CLI_SMALL, "--steps", "4", "--out-dir", str(tmp_path),
                                          "--name", "dup", *(["--resume"] if resume else [])])
    finally:
        owner.release()
    assert f"{tmp_path / 'dup'}: in use by pid {os.getpid()} on " in line and "fastgan train started 20" in line
    if resume:
        assert load_checkpoint(tmp_path / "dup")["step"] == 2
    else:
        assert os.listdir(tmp_path / "dup") == []  # the refused run wrote nothing
    train(small(tmp_path, steps=4, name="dup", resume=resume))  # the owner is gone: the folder is free


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_lock_dies_with_its_owner_even_by_kill_9(tmp_path):
    (tmp_path / "run").mkdir()
    proc = _python(f"from fastgan.train.run_folder import RunFolder; import time\n"
                   f"RunFolder({str(tmp_path / 'run')!r}).lock('fastgan train'); print('locked', flush=True)\n"
                   f"time.sleep(60)")
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(RunBusyError, match=f"in use by pid {proc.pid} "):
        RunFolder(tmp_path / "run").lock("fastgan train")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run" / LOCK).exists()  # left behind, but nobody holds it
    train(small(tmp_path, steps=2, name="run"))
    assert not (tmp_path / "run" / LOCK).exists()


def _interruptible():
    """In the child before exec: SIGINT at its default, so that the child's Python turns it into
    KeyboardInterrupt even where the test runner was started with SIGINT ignored (nohup, a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler for the test, whatever the runner inherited (SIG_IGN under nohup)."""
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, saved)


def test_a_second_train_of_a_run_in_progress_is_refused_and_the_log_holds_one_run(tmp_path):
    """The second processes start once the first is training past its first checkpoint, whatever the machine's
    speed (the first trains for far more steps than the test waits, and is interrupted at the end): a new run of
    the name is told to resume, a resume is refused naming the owner."""
    args = [sys.executable, "-m", "fastgan", "train", *CLI_SMALL, "--steps", "10000000", "--ckpt-every", "10",
            "--out-dir", str(tmp_path), "--name", "dup"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=_interruptible)
    try:
        log = tmp_path / "dup" / "metrics.jsonl"
        deadline = time.monotonic() + 300
        while not (log.exists() and log.read_text().count("\n") >= 6):  # past its first checkpoint (step 10)
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        again = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert again.returncode == 2 and "exists: pass --resume" in again.stderr, again.stderr
        resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 2 and "in use by pid" in resumed.stderr, resumed.stderr
        assert "Traceback" not in again.stderr + resumed.stderr
        assert first.poll() is None  # the owner trained on meanwhile
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130 and err.strip().endswith("fastgan: interrupted"), err
    steps = _steps(tmp_path / "dup")
    assert steps == list(range(2, 2 * len(steps) + 1, 2))  # one run, in order


def test_ctrl_c_stops_the_run_after_the_step_it_lands_in_even_inside_a_weakref_callback(tmp_path, monkeypatch,
                                                                                           capsys,
                                                                                           python_sigint_handler):
    """Python drops a KeyboardInterrupt raised in a weakref callback ("Exception ignored in ..."): a Ctrl-C that
    landed there once left a run training. The signal is a flag the loop checks between steps."""
    import weakref

    from fastgan.train.families.gan import GANTrainer

    real, done = GANTrainer.train_step, []

    def interrupted_in_a_callback(self, batches):
        stats = real(self, batches)
        if self.step == 3:
            thing = type("Thing", (), {})()
            weakref.finalize(thing, os.kill, os.getpid(), signal.SIGINT)
            del thing  # the signal arrives while the callback runs
        done.append(self.step)
        return stats

    monkeypatch.setattr(GANTrainer, "train_step", interrupted_in_a_callback)
    assert main(["train", *CLI_SMALL, "--steps", "8", "--ckpt-every", "2", "--out-dir", str(tmp_path),
                 "--name", "stop"]) == 130
    assert capsys.readouterr().err.strip().endswith("fastgan: interrupted")
    assert done == [1, 2, 3] and _steps(tmp_path / "stop") == [2]
    assert load_checkpoint(tmp_path / "stop")["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back
    monkeypatch.undo()
    train(small(tmp_path, steps=6, name="stop", resume=True))  # and the folder is free
    assert _steps(tmp_path / "stop") == [2, 4, 6]


@pytest.mark.parametrize("handler", [signal.SIG_IGN, "own"])
def test_a_sigint_that_is_ignored_or_handled_by_the_caller_is_left_so(tmp_path, handler):
    """`nohup fastgan train &` ignores Ctrl-C, and a program calling train() may handle SIGINT itself: the loop
    installs its stop flag only in place of Python's default handler."""
    own = handler if handler is signal.SIG_IGN else (lambda signum, frame: None)
    saved = signal.signal(signal.SIGINT, own)
    try:
        seen = []
        real = BaseTrainer.end_step

        def record(self):
            seen.append(signal.getsignal(signal.SIGINT))
            real(self)

        BaseTrainer.end_step = record
        try:
            train(small(tmp_path, steps=2, name="ignored"))
        finally:
            BaseTrainer.end_step = real
        assert seen and all(h is own for h in seen)
        assert signal.getsignal(signal.SIGINT) is own
    finally:
        signal.signal(signal.SIGINT, saved)


def test_an_unnamed_run_that_starts_while_another_is_starting_takes_the_next_number(tmp_path, monkeypatch):
    real = BaseTrainer.open_data
    started = []

    def second_run_meanwhile(self):  # while the first run builds its trainer, after it has chosen its folder
        if not started:
            started.append(None)
            started[0] = train(small(tmp_path, steps=4))
        return real(self)

    monkeypatch.setattr(BaseTrainer, "open_data", second_run_meanwhile)
    first = train(small(tmp_path, steps=6))
    assert (first.name, started[0].name) == ("digits-mlp", "digits-mlp-1")
    assert _steps(first) == [2, 4, 6] and _steps(started[0]) == [2, 4]
    assert load_checkpoint(first)["step"] == 6 and load_checkpoint(started[0])["step"] == 4


def test_numbered_runs_take_the_next_folder_that_mkdir_creates(tmp_path, monkeypatch):
    (tmp_path / "digits-mlp").mkdir()  # taken by a run that is starting: empty, and not yet locked
    assert train(small(tmp_path, steps=2)).name == "digits-mlp-1"
    assert os.listdir(tmp_path / "digits-mlp") == []


# -- symlinks --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train(small(out, steps=4, name="base"))


def _copy_run(run, tmp_path):
    import shutil

    return shutil.copytree(run, tmp_path / run.name)


def test_a_symlinked_log_is_refused_by_eval_and_the_file_it_points_to_is_untouched(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("line one\nline two, no newline")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victim)
    line = one_line_error(capsys, 2, ["eval", "--ckpt", str(run), "--n", "100", "--metrics", "fid"])
    assert line == (f"fastgan eval: error: {run / 'metrics.jsonl'}: is a symlink; fastgan does not follow symlinks "
                    f"in a run folder: replace it with the file itself")
    assert victim.read_text() == "line one\nline two, no newline"
    line = one_line_error(capsys, 2, ["train", *CLI_SMALL, "--steps", "6", "--out-dir", str(tmp_path), "--name",
                                      run.name, "--resume"])
    assert "metrics.jsonl: is a symlink" in line
    assert victim.read_text() == "line one\nline two, no newline"


def test_a_symlinked_checkpoint_in_a_run_folder_is_refused(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    (run / "checkpoint.pt").rename(tmp_path / "elsewhere.pt")
    (run / "checkpoint.pt").symlink_to(tmp_path / "elsewhere.pt")
    line = one_line_error(capsys, 2, ["sample", "--ckpt", str(run), "--out", str(tmp_path / "s.png")])
    assert f"{run / 'checkpoint.pt'}: is a symlink" in line


def test_eval_on_a_read_only_run_says_so_before_computing(trained, tmp_path, capsys, monkeypatch):
    import fastgan.train.evaluate as evaluate_module

    run = _copy_run(trained, tmp_path)
    computed = []
    monkeypatch.setattr(evaluate_module, "load_generator", lambda *a, **k: computed.append(1))
    real_open = os.open

    def read_only(path, flags, *args):  # simulated: the tests may run as root, which chmod does not stop
        if str(path).startswith(str(run)) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(30, "Read-only file system")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    line = one_line_error(capsys, 2, ["eval", "--ckpt", str(run), "--n", "100"])
    assert line == (f"fastgan eval: error: {run}: the run folder is not writable (Read-only file system); "
                    f"fastgan eval writes there")
    assert computed == []
    monkeypatch.setattr(os, "open", real_open)
    os.chmod(run / "metrics.jsonl", 0o444)
    monkeypatch.setattr(os, "open", lambda path, flags, *args: read_only(path, flags, *args)
                        if str(path).endswith("metrics.jsonl") else real_open(path, flags, *args))
    line = one_line_error(capsys, 2, ["eval", "--ckpt", str(run), "--n", "100"])
    assert line.endswith("metrics.jsonl: cannot be written (Read-only file system): the run is read-only")
    assert computed == []


def test_eval_while_the_run_trains_is_refused_naming_the_trainer(trained, tmp_path, capsys):
    run = _copy_run(trained, tmp_path)
    owner = _owner(tmp_path, run.name)
    try:
        line = one_line_error(capsys, 2, ["eval", "--ckpt", str(run), "--n", "100"])
    finally:
        owner.release()
    assert f"in use by pid {os.getpid()}" in line


# -- checkpoints at any interval, and old run folders ------------------------------------------------


def test_a_checkpoint_due_before_the_first_log_line_works(tmp_path, capsys):
    args = ["train", *CLI_SMALL, "--log-every", "50", "--ckpt-every", "3", "--steps", "7", "--out-dir",
            str(tmp_path), "--name", "early"]
    assert main(args) == 0, capsys.readouterr().err
    assert load_checkpoint(tmp_path / "early")["step"] == 7
    assert _steps(tmp_path / "early") == [7]


def test_a_run_folder_without_the_new_files_resumes_bit_identically(tmp_path):
    """A run folder as the code before the run-folder lock wrote it (no lock file, no healthy copy) resumes."""
    whole = train(small(tmp_path, steps=8, name="whole"))
    part = train(small(tmp_path, steps=4, name="part"))
    before = {"config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt", "samples.png", "samples",
              "curves.png"}
    assert set(os.listdir(part)) <= before
    assert "diverged" not in load_checkpoint(part)  # a healthy checkpoint holds what it held before
    train(small(tmp_path, steps=8, name="part", resume=True))
    assert_same(resumable_state(whole), resumable_state(part))
    assert logged_rows(whole) == logged_rows(part)


# -- divergence ------------------------------------------------------------------------------------


def _blow_up_from(monkeypatch, first_bad: int, factor: float = 1e4) -> None:
    """Real batches scaled by `factor` from update first_bad on: finite, but the logits leave their range."""
    real = BaseTrainer.real_batches

    def scaled(self):
        for batch in real(self):
            yield batch * factor if self.step + 1 >= first_bad else batch

    monkeypatch.setattr(BaseTrainer, "real_batches", scaled)


def test_a_diverged_run_stops_with_one_line_naming_the_last_healthy_step_and_keeps_it(tmp_path, monkeypatch,
                                                                                       capsys):
    _blow_up_from(monkeypatch, 7)
    line = one_line_error(capsys, 1, ["train", *CLI_SMALL, "--steps", "20", "--ckpt-every", "2", "--out-dir",
                                      str(tmp_path), "--name", "div"])
    run = tmp_path / "div"
    assert line.startswith("fastgan train: error: step 8: the run diverged (real_logit ")
    assert f"the last healthy checkpoint, {run / 'checkpoint.pt'} (step 6), is kept" in line
    assert load_checkpoint(run)["step"] == 6 and load_checkpoint(run / "checkpoint.prev.pt")["step"] == 4
    assert not (run / HEALTHY).exists()


def test_a_run_diverging_from_its_first_steps_stops_before_writing_a_checkpoint(tmp_path, capsys):
    line = one_line_error(capsys, 1, ["train", *CLI_SMALL, "--steps", "20", "--lr-g", "1e3", "--lr-d", "1e3",
                                      "--out-dir", str(tmp_path), "--name", "lr"])
    assert "step 2: the run diverged (d_loss " in line and "is above 1e+06 in size" in line
    assert "no healthy checkpoint was written" in line
    assert not (tmp_path / "lr" / "checkpoint.pt").exists()


def test_a_resumed_run_stops_where_the_whole_run_does(tmp_path, monkeypatch):
    _blow_up_from(monkeypatch, 11)
    with pytest.raises(DivergedError, match="step 12: "):
        train(small(tmp_path, steps=20, name="whole"))
    train(small(tmp_path, steps=6, name="part"))
    with pytest.raises(DivergedError, match="step 12: "):
        train(small(tmp_path, steps=20, name="part", resume=True))


def test_on_divergence_continue_goes_on_and_keeps_the_last_healthy_checkpoint(tmp_path, monkeypatch):
    _blow_up_from(monkeypatch, 7)
    with pytest.raises(DivergedError):
        train(small(tmp_path, steps=14, name="div"))
    run = train(small(tmp_path, steps=14, name="div", resume=True, on_divergence="continue"))
    assert load_checkpoint(run)["step"] == 14 and load_checkpoint(run)["diverged"]
    assert load_checkpoint(run / "checkpoint.prev.pt")["diverged"]
    assert load_checkpoint(run / HEALTHY)["step"] == 6 and "diverged" not in load_checkpoint(run / HEALTHY)


def test_a_checkpoint_with_nan_weights_is_never_saved_over_the_healthy_one(tmp_path, monkeypatch):
    real_step = BaseTrainer.end_step

    def poison(self):
        real_step(self)
        if self.step == 5:
            with torch.no_grad():
                next(self.networks["generator"].parameters()).fill_(float("nan"))

    monkeypatch.setattr(BaseTrainer, "end_step", poison)
    with pytest.raises(DivergedError, match="step 6: the run diverged \\(the generator's weights are NaN or "
                                            "infinite\\).*\\(step 4\\), is kept"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(small(tmp_path, steps=10, name="nan", log_every=100))
    assert load_checkpoint(tmp_path / "nan")["step"] == 4


def test_divergence_is_judged_from_the_runs_own_range():
    judge = Divergence(absolute=1e6)
    assert judge.check({"d_loss": 1.4, "real_logit": 0.1, "r1": 5.0}, logged=True) is None
    assert judge.check({"d_loss": 0.3, "real_logit": -0.2, "r1": 9e9}, logged=True) is None  # r1 is not watched
    # d_loss kept [0.3, 1.4]: its scale is 1.4, so it may reach 1.4 + 140 and no further
    assert judge.check({"d_loss": 141.0}, logged=False) is None
    assert "d_loss 141.5 is far outside the range [0.3, 1.4]" in judge.check({"d_loss": 141.5}, logged=False)
    assert judge.check({"real_logit": -100.1}, logged=False) is None  # scale 1: -0.2 - 100 = -100.2
    assert judge.check({"real_logit": -100.3}, logged=False) is not None
    assert judge.check({"d_loss": float("nan")}, logged=True) is None  # a skipped update: apply_gradients' business
    assert "above 1e+06" in Divergence(absolute=1e6).check({"g_loss": 5e9}, logged=True)
    replayed = Divergence(absolute=1e6)
    replayed.replay([{"step": 2, "d_loss": 1.4, "real_logit": 0.1, "img_per_s": 1e9},
                     {"step": 2, "eval": {"fid": 1e9}}, {"step": 4, "d_loss": 0.3, "real_logit": -0.2}])
    assert replayed.ranges == judge.ranges


def test_resume_with_steps_at_or_below_the_checkpoint_says_so(tmp_path, capsys):
    train(small(tmp_path, steps=4, name="r"))
    for steps in ("4", "2"):
        line = one_line_error(capsys, 2, ["train", *CLI_SMALL, "--steps", steps, "--out-dir", str(tmp_path),
                                          "--name", "r", "--resume"])
        assert line == (f"fastgan train: error: {tmp_path / 'r'}: the run is at step 4, so --steps {steps} leaves "
                        f"nothing to train: pass --steps above 4")
    assert json.loads((tmp_path / "r" / "config.json").read_text())["steps"] == 4


def test_a_failing_sample_write_comes_after_the_steps_checkpoint(tmp_path, monkeypatch):
    def full_disk(self, run_dir):
        raise OSError(28, "No space left on device", str(run_dir / "samples.png"))

    monkeypatch.setattr(BaseTrainer, "write_samples", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train(small(tmp_path, steps=4, name="s", sample_every=4, ckpt_every=4))
    assert load_checkpoint(tmp_path / "s")["step"] == 4


def test_a_lock_is_taken_only_after_the_folder_is_known_to_be_a_run(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a run")
    with pytest.raises(FileExistsError, match="is not a fastgan run"):
        train(small(tmp_path, steps=2, name="mine"))
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_ownership_is_held_for_the_whole_run(tmp_path, monkeypatch):
    seen = []
    real = BaseTrainer.end_step

    def probe(self):
        real(self)
        if self.step == 2:
            try:
                RunFolder(tmp_path / "held").lock("probe")
            except RunBusyError as e:
                seen.append(str(e))

    monkeypatch.setattr(BaseTrainer, "end_step", probe)
    train(small(tmp_path, steps=3, name="held"))
    assert len(seen) == 1 and f"pid {os.getpid()}" in seen[0]
