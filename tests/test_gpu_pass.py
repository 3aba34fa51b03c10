"""bench.gpu_pass on the CPU: what can be checked without a GPU (the exit without one, arguments, the report,
the install and import checks, the dry run's steps, the time and file budgets)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import gpu_pass

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def installed(monkeypatch):
    """The install and import checks pass without starting a child (they are tested on their own below)."""
    monkeypatch.setattr(gpu_pass, "install", lambda env, say, extras: [])
    monkeypatch.setattr(gpu_pass, "_child_missing", lambda names, env: [])


@pytest.mark.skipif(gpu_pass.cuda_device() is not None, reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_and_exits_non_zero_in_seconds():
    start = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_pass.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and "--dry-run" in proc.stderr
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("argv, message", [(["--skip", "nope"], "unknown step nope"),
                                           (["--only", "train"], "unknown step train"),
                                           (["--budget-s", "0"], "must be positive")])
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        gpu_pass.main(argv, device="Fake GPU")
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_writes_each_step_with_device_date_and_versions(tmp_path, monkeypatch, installed):
    monkeypatch.setitem(gpu_pass.STEPS, "tests", [sys.executable, "-c", "print('3 passed')"])
    monkeypatch.setitem(gpu_pass.STEPS, "kernels", [sys.executable, "-c", "import sys; sys.exit(3)"])
    monkeypatch.setitem(gpu_pass.STEPS, "train_step", [sys.executable, "-c", "import time; time.sleep(30)"])
    code = gpu_pass.main(["--out", str(tmp_path), "--budget-s", "5"], device="Fake GPU 80GB")
    assert code == 1
    (report,) = tmp_path.glob("gpu-pass-Fake-GPU-80GB-*.md")
    text = report.read_text()
    assert "# fastgan GPU pass on Fake GPU 80GB" in text and "- date: " in text and "torch " in text
    assert "| tests | passed |" in text and "3 passed" in text
    assert "| kernels | failed (3) |" in text
    assert "| train_step | timed out |" in text


def test_all_steps_passing_exits_zero(tmp_path, monkeypatch, installed):
    for name in gpu_pass.STEPS:
        monkeypatch.setitem(gpu_pass.STEPS, name, [sys.executable, "-c", "pass"])
    assert gpu_pass.main(["--out", str(tmp_path), "--skip", "kernels"], device="Fake GPU") == 0
    assert "| kernels |" not in next(tmp_path.glob("*.md")).read_text()


def test_only_reruns_one_step_with_the_results_folder_passed_on(tmp_path, monkeypatch, installed):
    for name in gpu_pass.STEPS:
        monkeypatch.setitem(gpu_pass.STEPS, name, [sys.executable, "-c", "import sys; print(sys.argv[1:])", "OUT"])
    assert gpu_pass.main(["--out", str(tmp_path), "--only", "kernels"], device="Fake GPU") == 0
    text = next(tmp_path.glob("*.md")).read_text()
    assert "| kernels | passed |" in text and "| tests |" not in text and repr([str(tmp_path)]) in text


def test_a_missing_piece_is_one_line_each_and_nothing_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_pass, "install", lambda env, say, extras: [])
    monkeypatch.setattr(gpu_pass, "_child_missing", lambda names, env: ["fastgan._loader: ModuleNotFoundError: x",
                                                                        "PIL: ModuleNotFoundError: y"])
    monkeypatch.setattr(gpu_pass, "run_step", lambda *a, **k: pytest.fail("a step ran"))
    assert gpu_pass.main(["--out", str(tmp_path)], device="Fake GPU") == 1
    err = capsys.readouterr().err
    assert "missing: fastgan._loader: ModuleNotFoundError: x\n" in err and "missing: PIL:" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


def test_missing_pieces_names_each_one_on_its_own_line(tmp_path):
    lines = gpu_pass.missing_pieces(["json", "no_such_module_here", "tests/no_such_test.py", "fastgan.kernels._common"])
    assert len(lines) == 2, lines
    assert lines[0].startswith("no_such_module_here: ModuleNotFoundError")
    assert lines[1].startswith("tests/no_such_test.py: FileNotFoundError")


def test_the_import_check_sees_every_kernel_and_extension_of_this_checkout():
    assert gpu_pass._child_missing(gpu_pass.fastgan_pieces(), None) == []
    names = set(gpu_pass.fastgan_pieces())
    kernels = {p.stem for p in (ROOT / "kernels").glob("*.py") if p.stem != "__init__"}
    assert {f"fastgan.kernels.{k}" for k in kernels} <= names
    assert {"fastgan._loader", "fastgan.fused._cpu_losses"} <= names


def test_the_steps_fit_the_budget_with_time_to_rerun_one_and_write_few_files():
    assert set(gpu_pass.STEP_LIMITS_S) == set(gpu_pass.STEPS) == set(gpu_pass.STEP_RESULT_FILES)
    checks_s = 30.0  # install (~15 s, offline) and the import checks
    total = checks_s + sum(gpu_pass.STEP_LIMITS_S.values())
    assert total + max(gpu_pass.STEP_LIMITS_S.values()) <= 480.0
    # a pass, then a rerun of the step that writes the most
    files = 1 + sum(gpu_pass.STEP_RESULT_FILES.values())
    assert files + 1 + max(gpu_pass.STEP_RESULT_FILES.values()) <= gpu_pass.MAX_RESULT_FILES
    for name, command in gpu_pass.STEPS.items():
        assert ("OUT" in command) == (gpu_pass.STEP_RESULT_FILES[name] > 0), name


def test_the_dry_run_compiles_ahead_of_time_collects_the_tests_and_parses_the_benchmark_arguments():
    steps = gpu_pass.dry_run_steps(list(gpu_pass.STEPS), "results")
    assert set(steps) == {"aot_compile", "tests_collect", "kernels_arguments", "train_step_arguments"}
    assert "tests/test_kernels_compile.py" in steps["aot_compile"]
    proc = subprocess.run(steps["kernels_arguments"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "arguments parsed" in proc.stdout, proc.stderr[-2000:]
    bad = [*steps["kernels_arguments"], "--no-such-option"]
    proc = subprocess.run(bad, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unrecognized arguments: --no-such-option" in proc.stderr


def test_a_dry_run_runs_its_steps_and_writes_no_result_file(tmp_path, monkeypatch, installed, capsys):
    ran = []
    monkeypatch.setattr(gpu_pass, "cuda_device", lambda: pytest.fail("a dry run asked for a GPU"))
    monkeypatch.setattr(gpu_pass, "run_step", lambda name, *a: ran.append(name) or gpu_pass.StepResult(name, [], 0, 0.0, ""))
    assert gpu_pass.main(["--dry-run", "--out", str(tmp_path)]) == 0
    assert ran == list(gpu_pass.dry_run_steps(list(gpu_pass.STEPS), str(tmp_path)))
    assert "dry run passed" in capsys.readouterr().err and not list(tmp_path.iterdir())
