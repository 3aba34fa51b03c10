"""bench.gpu_pass on the CPU: what can be checked without a GPU (the exit without one, arguments, the report)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import gpu_pass

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(gpu_pass.cuda_device() is not None, reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_and_exits_non_zero_in_seconds():
    start = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_pass.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("argv, message", [(["--skip", "nope"], "unknown step nope"),
                                           (["--budget-s", "0"], "must be positive")])
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        gpu_pass.main(argv, device="Fake GPU")
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_writes_each_step_with_device_date_and_versions(tmp_path, monkeypatch):
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


def test_all_steps_passing_exits_zero(tmp_path, monkeypatch):
    for name in gpu_pass.STEPS:
        monkeypatch.setitem(gpu_pass.STEPS, name, [sys.executable, "-c", "pass"])
    assert gpu_pass.main(["--out", str(tmp_path), "--skip", "kernels"], device="Fake GPU") == 0
    assert "| kernels |" not in next(tmp_path.glob("*.md")).read_text()
