"""What a benchmark ran on, for the header of its results file, and where that file goes."""
from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

from fastgan.atomic import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, text: str, out_dir: str | os.PathLike | None = None) -> Path:
    """Write a results file (default folder bench/results, wherever the benchmark runs from) with
    fastgan.atomic, so an interrupted benchmark never leaves half a table; print and return its path. A file of
    that name is never replaced: the new one takes the first free name NAME-2.md, NAME-3.md, ..."""
    out = Path(out_dir) if out_dir is not None else RESULTS
    target, stem, n = out / name, Path(name).stem, 2
    while target.exists():
        target, n = out / f"{stem}-{n}{Path(name).suffix}", n + 1
    path = atomic_write_bytes(target, text.encode("utf-8"))  # creates the folder if missing
    print(f"wrote {path}")
    return path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def step_cells(ms: list[float], baseline_ms: list[float]) -> str:
    """A step-time table's cells for one side: median ms, the range over rounds, and the speed against the
    baseline (baseline ms / this side's ms per round: above 1, faster) as median and range."""
    ratios = [b / m for b, m in zip(baseline_ms, ms)]
    return (f"{statistics.median(ms):.1f} | {min(ms):.1f}-{max(ms):.1f} | "
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
