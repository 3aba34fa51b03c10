"""One command for a machine with a CUDA GPU: the CUDA tests, the kernel and training-step benchmarks.

    python -m bench.gpu_pass [--out bench/results] [--budget-s 480] [--skip tests,kernels,train_step]
    bash bench/gpu_pass.sh            (the same)

Runs, each as a child process with a time limit taken from what is left of --budget-s (8 minutes by
default): `pytest tests/test_kernels_cuda.py tests/test_kernels_compile.py`, `python -m bench.kernels`,
`python -m bench.train_step --device cuda --compile`. Every step's command, exit status, duration and
output tail go to bench/results/gpu-pass-<device>-<date>.md with the device, date and versions; the
benchmarks write their own tables there too. It installs nothing: the GPU machine brings torch and triton.
Without a CUDA device it says so and exits with status 2 in seconds. The exit status is 1 when a step
failed or ran out of time, 0 when all passed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.system import RESULTS, write_result

ROOT = Path(__file__).resolve().parent.parent
STEPS = {
    "tests": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow or gpu",
              "tests/test_kernels_cuda.py", "tests/test_kernels_compile.py"],
    "kernels": [sys.executable, "-m", "bench.kernels"],
    "train_step": [sys.executable, "-m", "bench.train_step", "--device", "cuda", "--compile"],
}


@dataclass
class StepResult:
    name: str
    command: list[str]
    returncode: int | None  # None: ran out of time
    seconds: float
    tail: str


def cuda_device() -> str | None:
    """The name of CUDA device 0, or None when there is none (torch without CUDA, no driver, no GPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def versions() -> str:
    import torch

    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    cuda = torch.version.cuda or "none"
    return (f"torch {torch.__version__} (CUDA {cuda}), triton {version('triton')}, fastgan {version('fastgan')}, "
            f"python {platform.python_version()}")


def run_step(name: str, command: list[str], timeout_s: float, env=None) -> StepResult:
    start = time.monotonic()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(timeout_s, 1), env=env)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        code = None
        out = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")) + \
            f"\n(stopped after {timeout_s:.0f} s)"
    return StepResult(name, command, code, time.monotonic() - start, out[-3000:])


def report(device: str, results: list[StepResult], date: str, command: str) -> str:
    lines = [f"# fastgan GPU pass on {device}", "", f"- date: {date}", f"- {versions()}", f"- command: `{command}`", "",
             "| step | status | seconds | command |", "|---|---|---:|---|"]
    for r in results:
        status = "timed out" if r.returncode is None else ("passed" if r.returncode == 0 else f"failed ({r.returncode})")
        lines.append(f"| {r.name} | {status} | {r.seconds:.0f} | `{' '.join(Path(c).name if c == sys.executable else c for c in r.command)}` |")
    for r in results:
        lines += ["", f"## {r.name}", "", "```", r.tail.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None, device: str | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RESULTS), help="results folder (default: bench/results)")
    p.add_argument("--budget-s", type=float, default=480.0, help="time for all steps together (default: 480)")
    p.add_argument("--skip", default="", help=f"comma-separated steps to leave out, from {','.join(STEPS)}")
    args = p.parse_args(argv)
    skip = [s for s in args.skip.split(",") if s]
    unknown = [s for s in skip if s not in STEPS]
    if unknown:
        p.error(f"--skip: unknown step {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if args.budget_s <= 0:
        p.error(f"--budget-s must be positive; got {args.budget_s}")
    device = device or cuda_device()
    if device is None:
        print("gpu_pass: no CUDA device (torch.cuda.is_available() is False): run this on a machine with a GPU",
              file=sys.stderr)
        return 2
    env = dict(os.environ, FASTGAN_BACKEND="triton", PYTHONPATH=str(ROOT))
    env.pop("TRITON_INTERPRET", None)
    deadline = time.monotonic() + args.budget_s
    results = []
    for name, command in STEPS.items():
        if name in skip:
            continue
        left = deadline - time.monotonic()
        results.append(run_step(name, command, left, env) if left > 1 else StepResult(name, command, None, 0.0, "no time left"))
        print(f"gpu_pass: {name}: {'ok' if results[-1].returncode == 0 else 'FAILED'} ({results[-1].seconds:.0f} s)",
              file=sys.stderr, flush=True)
    date = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    command = " ".join(["python -m bench.gpu_pass", *(sys.argv[1:] if argv is None else argv)])
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-")
    path = write_result(f"gpu-pass-{slug}-{date}.md", report(device, results, date, command), args.out)
    print(f"gpu_pass: wrote {path}", file=sys.stderr)
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
