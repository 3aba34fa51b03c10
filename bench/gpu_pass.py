"""One command for a machine with a CUDA GPU: the CUDA tests, the kernel and training-step benchmarks.

    bash bench/gpu_pass.sh [--dry-run] [--only STEP] [--skip STEPS] [--budget-s 480] [--out bench/results]
    python -m bench.gpu_pass --fetch-wheels      (on a machine with a network, before the pass: see below)

Works offline on the GPU machines' image (Python 3.12, torch, triton, numpy, pytest, hypothesis, pybind11,
setuptools, wheel; no network). Before any timed step it
1. installs fastgan in place when this checkout's fastgan.kernels and C++ extensions do not import
   (`pip install --no-build-isolation --no-deps --no-index -e .`, 13-35 s idle), and pillow, scikit-learn and
   tqdm (bench.train_step's images and built-in digits, `fastgan train`'s progress bar) from bench/wheels/
   when they are missing (`--fetch-wheels` downloads them there, for Python 3.12 on x86-64 Linux, 16 MB);
2. checks that every module, extension and test file the steps use imports: one line per missing piece.
Then it runs each step as a child process, stopped at its own time limit (STEP_LIMITS_S) or at what is
left of --budget-s (8 minutes): `pytest tests/test_kernels_cuda.py`, `python -m bench.kernels`,
`python -m bench.train_step --device cuda --compile` on two DCGAN sizes. The limits leave time in the
budget to rerun the longest step (`--only NAME`). Every step's command, exit status, duration and output
tail go to bench/results/gpu-pass-<device>-<date>.md with the device, date and versions; the benchmarks
write their own tables there: at most 3 files a pass (MAX_RESULT_FILES is the cap a test holds it to).

--dry-run does everything up to where a GPU is needed, on any machine: the install, the import checks, the
ahead-of-time compile for sm_80/sm_90 of every kernel specialisation the CUDA tests launch
(tests/test_kernels_compile.py), and each benchmark's parsing of its arguments. It writes no result file.

Without a CUDA device (and without --dry-run) it says so and exits with status 2 in seconds. The exit status
is 1 when a step failed, ran out of time or something it needs is missing, 0 when all passed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import importlib.util
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
WHEELS = ROOT / "bench" / "wheels"
# Packages bench.train_step and `fastgan train` need beyond the GPU image: (import name, distribution name,
# what needs it).
EXTRAS = (("PIL", "pillow", "fastgan.data and the sample grids"),
          ("sklearn", "scikit-learn", "the built-in digits data bench.train_step trains on"),
          ("tqdm", "tqdm", "fastgan train's progress bar"))
GPU_IMAGE_PYTHON = "3.12"
KERNEL_MODULES = ("_common", "bce_with_logits", "gan_loss", "bias_act", "batch_norm_act")
EXTENSIONS = ("fastgan._loader", "fastgan.fused._cpu_losses")

# name -> (command after the interpreter, files it writes into --out). OUT stands for the results folder.
STEPS = {
    "tests": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow or gpu",
              "tests/test_kernels_cuda.py"],
    "kernels": [sys.executable, "-m", "bench.kernels", "--out", "OUT"],
    "train_step": [sys.executable, "-m", "bench.train_step", "--device", "cuda", "--compile",
                   "--models", "dcgan32,dcgan64", "--rounds", "3", "--out", "OUT"],
}
# Seconds each step may take on the GPU. Together with the install and import checks (~30 s) they take at
# most 330 s of the 480 s budget, leaving 150 s: enough to rerun any one step.
STEP_LIMITS_S = {"tests": 120.0, "kernels": 90.0, "train_step": 120.0}
STEP_RESULT_FILES = {"tests": 0, "kernels": 1, "train_step": 1}
MAX_RESULT_FILES = 8
# Modules and test files each step imports, checked before the first timed step.
STEP_IMPORTS = {"tests": ("pytest", "tests/test_kernels_cuda.py"), "kernels": ("bench.kernels",),
                "train_step": ("bench.train_step", "sklearn")}
# Packages that need only be present: fastgan.data reads the digits file inside scikit-learn, never imports it.
PRESENT_ONLY = ("sklearn",)
DRY_RUN_IMPORTS = ("pytest", "tests/test_kernels_compile.py")
DRY_RUN_LIMIT_S = 1800.0


@dataclass
class StepResult:
    name: str
    command: list[str]
    returncode: int | None  # None: ran out of time
    seconds: float
    tail: str

    @property
    def passed(self) -> bool:
        return self.returncode == 0


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
            f"numpy {version('numpy')}, python {platform.python_version()}")


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


# ---------------------------------------------------------------- what the steps need

def missing_pieces(names) -> list[str]:
    """One line per module, extension or test file of `names` that does not import in this process, and per
    fastgan module that imports from somewhere other than this checkout. Names ending in .py are test files."""
    lines = []
    for name in names:
        if name in PRESENT_ONLY:
            if importlib.util.find_spec(name) is None:
                lines.append(f"{name}: not installed")
            continue
        try:
            if name.endswith(".py"):
                spec = importlib.util.spec_from_file_location(Path(name).stem, ROOT / name)
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
                continue
            module = importlib.import_module(name)
        except BaseException as e:  # noqa: BLE001 - pytest.importorskip raises outside Exception
            first = (str(e).strip().splitlines() or [""])[0]
            lines.append(f"{name}: {type(e).__name__}: {first}")
            continue
        origin = getattr(module, "__file__", None)
        if name.startswith("fastgan") and origin and not Path(origin).resolve().is_relative_to(ROOT):
            lines.append(f"{name}: imports from {origin}, not from this checkout {ROOT}")
    return lines


def fastgan_pieces() -> tuple[str, ...]:
    return ("torch", "triton", "numpy", "fastgan", *(f"fastgan.kernels.{m}" for m in KERNEL_MODULES), *EXTENSIONS)


def _child_missing(names, env) -> list[str]:
    """missing_pieces(names) as a fresh interpreter with the steps' environment sees them (after an install)."""
    code = "import sys; from bench.gpu_pass import missing_pieces; print('\\n'.join(missing_pieces(sys.argv[1:])))"
    proc = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return [f"the import check itself failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"]
    return [line for line in proc.stdout.splitlines() if line.strip()]


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], cwd=ROOT,
                          capture_output=True, text=True)


def install(env, say, extras: bool) -> list[str]:
    """Installs what is missing, offline (with `extras`, the EXTRAS too, from bench/wheels);
    returns one line per thing that could not be installed."""
    problems = []
    if _child_missing(("fastgan", *(f"fastgan.kernels.{m}" for m in KERNEL_MODULES), *EXTENSIONS), env):
        say("installing fastgan in place, offline (pip install --no-build-isolation --no-deps --no-index -e .)")
        start = time.monotonic()
        proc = _pip("install", "--no-build-isolation", "--no-deps", "--no-index", "-e", str(ROOT))
        if proc.returncode != 0:
            problems.append("pip install -e . failed: " + (proc.stdout + proc.stderr).strip().splitlines()[-1])
        else:
            say(f"installed fastgan in {time.monotonic() - start:.0f} s")
    absent = [(dist, why) for module, dist, why in EXTRAS if extras and importlib.util.find_spec(module) is None]
    wheels = sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []
    if absent and wheels:
        dists = [dist for dist, _ in absent]
        say(f"installing {', '.join(dists)} from {WHEELS.relative_to(ROOT)}, offline")
        proc = _pip("install", "--no-index", "--no-deps", "--find-links", str(WHEELS), *dists)
        if proc.returncode != 0:
            problems.append(f"pip install {' '.join(dists)} from {WHEELS} failed: "
                            + (proc.stdout + proc.stderr).strip().splitlines()[-1])
    return problems


def fetch_wheels(python: str, say) -> int:
    """Downloads the EXTRAS' wheels for CPython `python` on x86-64 Linux into bench/wheels."""
    tag = python.replace(".", "")
    dists = [dist for _, dist, _ in EXTRAS]
    proc = _pip("download", "--no-deps", "--only-binary", ":all:", "--python-version", python, "--abi", f"cp{tag}",
                "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                "--platform", "manylinux_2_17_x86_64", "-d", str(WHEELS), *dists)
    if proc.returncode != 0:
        say(f"--fetch-wheels: pip download failed: {(proc.stdout + proc.stderr).strip().splitlines()[-1]}")
        return 1
    size = sum(p.stat().st_size for p in WHEELS.glob("*.whl")) / 1e6
    say(f"wheels for Python {python} in {WHEELS.relative_to(ROOT)} ({size:.0f} MB): copy the folder with the tree")
    return 0


# ---------------------------------------------------------------- dry run

# Runs a benchmark module's argument parser on the pass's arguments and stops: the module imports and the
# arguments parse, nothing is measured.
_PARSE_ONLY = """
import argparse, runpy, sys
parse = argparse.ArgumentParser.parse_args
def parse_and_stop(self, args=None, namespace=None):
    parse(self, args, namespace)
    print("arguments parsed"); sys.exit(0)
argparse.ArgumentParser.parse_args = parse_and_stop
module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
sys.exit("the module never parsed its arguments")
"""


def dry_run_steps(names, out: str) -> dict[str, list[str]]:
    steps = {"aot_compile": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_kernels_compile.py"]}
    for name in names:
        command = _command(name, out)
        if command[1:3] == ["-m", "pytest"]:
            steps[f"{name}_collect"] = [*command, "--collect-only"]
        else:
            steps[f"{name}_arguments"] = [sys.executable, "-c", _PARSE_ONLY, command[2], *command[3:]]
    return steps


# ---------------------------------------------------------------- the pass

def _command(name: str, out: str) -> list[str]:
    return [out if c == "OUT" else c for c in STEPS[name]]


def report(device: str, results: list[StepResult], date: str, command: str) -> str:
    lines = [f"# fastgan GPU pass on {device}", "", f"- date: {date}", f"- {versions()}", f"- command: `{command}`", "",
             "| step | status | seconds | command |", "|---|---|---:|---|"]
    for r in results:
        status = "timed out" if r.returncode is None else ("passed" if r.passed else f"failed ({r.returncode})")
        lines.append(f"| {r.name} | {status} | {r.seconds:.0f} | `{' '.join(Path(c).name if c == sys.executable else c for c in r.command)}` |")
    for r in results:
        lines += ["", f"## {r.name}", "", "```", r.tail.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _run_all(steps: dict[str, list[str]], limits: dict[str, float], deadline: float, env, say) -> list[StepResult]:
    results = []
    for name, command in steps.items():
        left = min(deadline - time.monotonic(), limits.get(name, float("inf")))
        results.append(run_step(name, command, left, env) if left > 1 else StepResult(name, command, None, 0.0, "no time left"))
        r = results[-1]
        say(f"{name}: {'ok' if r.passed else ('timed out' if r.returncode is None else 'FAILED')} ({r.seconds:.0f} s)")
        if not r.passed:
            for line in r.tail.rstrip().splitlines()[-15:]:
                print(f"    {line}", file=sys.stderr)
    return results


def main(argv=None, device: str | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RESULTS), help="results folder (default: bench/results)")
    p.add_argument("--budget-s", type=float, default=480.0, help="time for everything together (default: 480)")
    p.add_argument("--skip", default="", help=f"comma-separated steps to leave out, from {','.join(STEPS)}")
    p.add_argument("--only", default="", help="run this one step (to rerun it)")
    p.add_argument("--dry-run", action="store_true", help="every step up to where a GPU is needed; no result file")
    p.add_argument("--fetch-wheels", action="store_true",
                   help=f"download pillow, scikit-learn and tqdm wheels for Python {GPU_IMAGE_PYTHON} into bench/wheels")
    args = p.parse_args(argv)
    skip = [s for s in args.skip.split(",") if s]
    unknown = [s for s in [*skip, *([args.only] if args.only else [])] if s not in STEPS]
    if unknown:
        p.error(f"unknown step {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if args.budget_s <= 0:
        p.error(f"--budget-s must be positive; got {args.budget_s}")

    def say(line: str) -> None:
        print(f"gpu_pass: {line}", file=sys.stderr, flush=True)
    if args.fetch_wheels:
        return fetch_wheels(GPU_IMAGE_PYTHON, say)
    names = [args.only] if args.only else [s for s in STEPS if s not in skip]
    if not args.dry_run:
        device = device or cuda_device()
        if device is None:
            say("no CUDA device (torch.cuda.is_available() is False): run this on a machine with a GPU, "
                "or --dry-run for the steps that need none")
            return 2
    # The budget is the GPU's time; a dry run, on any machine, is stopped only after DRY_RUN_LIMIT_S.
    deadline = time.monotonic() + (DRY_RUN_LIMIT_S if args.dry_run else args.budget_s)
    env = dict(os.environ, FASTGAN_BACKEND="triton", PYTHONPATH=str(ROOT))
    env.pop("TRITON_INTERPRET", None)

    problems = install(env, say, extras="train_step" in names)
    needs = [*fastgan_pieces(), *(n for s in names for n in STEP_IMPORTS[s]), *(DRY_RUN_IMPORTS if args.dry_run else ())]
    problems += _child_missing(list(dict.fromkeys(needs)), env)
    for line in problems:
        print(f"gpu_pass: missing: {line}", file=sys.stderr)
    if problems:
        say(f"{len(problems)} missing piece(s): nothing was run")
        return 1
    say(f"imports: ok ({versions()})")

    if args.dry_run:
        results = _run_all(dry_run_steps(names, args.out), {}, deadline, env, say)
        passed = all(r.passed for r in results)
        say(f"dry run {'passed' if passed else 'FAILED'}: the GPU would run {', '.join(names)}")
        return 0 if passed else 1

    results = _run_all({name: _command(name, args.out) for name in names}, STEP_LIMITS_S, deadline, env, say)
    date = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    command = " ".join(["python -m bench.gpu_pass", *(sys.argv[1:] if argv is None else argv)])
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-")
    path = write_result(f"gpu-pass-{slug}-{date}.md", report(device, results, date, command), args.out)
    say(f"wrote {path}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
