"""Loader throughput: fastgan's C++ loader vs its NumPy path vs a per-sample torch DataLoader.

python -m bench.loader [--resolutions 32 64] [--dataset-mib 60] [--batch-size 256] [--rounds 7] [--threads N]

Every contender does the same job on the same data: shuffled batches of 256 float32 images in [-1, 1]
(x * float32(2/255) - 1, checked bit for bit against fastgan's table at start-up) with random horizontal
flips, from a uint8 (N, 3, R, R) dataset of about --dataset-mib MiB (larger than a typical L3 cache, as
real datasets are). The torch baseline flips and normalises whole batches after collation, its fastest
form, once with torch's default intra-op threads and once with one; the fastest torch row is the
baseline. Contenders take turns, one timed stretch of whole epochs (at least --min-seconds) each per
round, so load from other processes falls on all of them alike; the table gives the best and the
median round. Two reference rows bound what the loader can reach: its single-thread rate and its
copy-only path (uint8 out, no flips). Prints the tables and writes bench/results/loader-cpu-<date>-<time>.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.system import cpu_model, write_result
from fastgan.data import Loader, PackedDataset
from fastgan.data.format import write_fgd
from fastgan.data.loader import FLOAT32_LUT


def _torch_normalise(x: torch.Tensor) -> torch.Tensor:
    return x.float().mul_(2 / 255).sub_(1)


def _torch_flip_and_normalise(x: torch.Tensor) -> torch.Tensor:
    """The baseline's share of the job, done on whole batches: each sample mirrored with probability 1/2."""
    flip = torch.rand(len(x)) < 0.5
    return _torch_normalise(torch.where(flip[:, None, None, None], x.flip(-1), x))


def _check_same_job() -> None:
    """Fails loudly if the baseline's normalisation ever stops matching the loader's, value for value."""
    out = _torch_normalise(torch.arange(256, dtype=torch.uint8))
    if out.dtype != torch.float32 or not torch.equal(out, torch.from_numpy(FLOAT32_LUT)):
        raise AssertionError("bench.loader: the torch baseline's normalisation differs from fastgan's FLOAT32_LUT")


class _PerSampleDataset(torch.utils.data.Dataset):
    """One image per __getitem__, the way most image datasets are written (TensorDataset fetches whole
    batches through __getitems__, which is not what a typical per-sample dataset does)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def _fastgan_epochs(loader: Loader):
    epoch = [0]

    def run() -> int:
        loader.set_epoch(epoch[0])
        epoch[0] += 1
        count = 0
        for x, _ in loader:
            count += len(x)
        return count
    return run


def _torch_epochs(images: torch.Tensor, labels: torch.Tensor, batch_size: int, num_workers: int,
                  intra_op_threads: int):
    loader = torch.utils.data.DataLoader(_PerSampleDataset(images, labels), batch_size=batch_size, shuffle=True,
                                         drop_last=True, num_workers=num_workers,
                                         persistent_workers=num_workers > 0)

    def run() -> int:
        # torch's default uses every core for the batch transform, which is fastest on an idle machine
        # but stalls when other processes hold the cores; the table has both, the best is the baseline.
        default_threads = torch.get_num_threads()
        torch.set_num_threads(intra_op_threads)
        try:
            count = 0
            for x, _ in loader:
                count += len(_torch_flip_and_normalise(x))
            return count
        finally:
            torch.set_num_threads(default_threads)
    return run


def _timed(run_epoch, min_seconds: float) -> float:
    """Images per second over whole epochs lasting at least min_seconds together."""
    count, start = 0, time.perf_counter()
    while True:
        count += run_epoch()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count / elapsed


def _contenders(dataset: PackedDataset, images: np.ndarray, labels: np.ndarray, batch_size: int, threads: int):
    """(name, kind, epoch function) in table order; kind is fastgan, torch or reference (not the same job)."""
    same_job = dict(batch_size=batch_size, hflip=True, dtype=torch.float32)
    probe = next(iter(Loader(dataset, backend="native", num_threads=threads, **same_job)))[0]
    if probe.dtype != torch.float32 or probe.min() < -1 or probe.max() > 1:
        raise AssertionError(f"bench.loader: fastgan's batches are {probe.dtype} in "
                             f"[{probe.min()}, {probe.max()}], not float32 in [-1, 1]")
    as_torch = torch.from_numpy(images), torch.from_numpy(labels)
    torch_threads = sorted({torch.get_num_threads(), 1}, reverse=True)
    return [
        (f"fastgan C++ ({threads} threads)", "fastgan",
         _fastgan_epochs(Loader(dataset, backend="native", num_threads=threads, **same_job))),
        ("fastgan NumPy path", "fastgan", _fastgan_epochs(Loader(dataset, backend="python", **same_job))),
        *[(f"torch DataLoader(per-sample Dataset), {workers} workers, {t} torch thread{'s' * (t > 1)}", "torch",
           _torch_epochs(*as_torch, batch_size, workers, t)) for workers in (2, 0) for t in torch_threads],
        ("reference: fastgan C++ (1 thread)", "reference",
         _fastgan_epochs(Loader(dataset, backend="native", num_threads=1, **same_job))),
        (f"reference: fastgan C++ copy only (uint8, no flips, {threads} threads)", "reference",
         _fastgan_epochs(Loader(dataset, backend="native", num_threads=threads, batch_size=batch_size,
                                dtype=torch.uint8))),
    ]


def _take_turns(contenders, rounds: int, min_seconds: float):
    """Names, kinds, and per contender the images/s of each round."""
    for _, _, run in contenders:
        run()  # warm-up: page cache, DataLoader workers, first buffers
    rates = [[] for _ in contenders]
    for _ in range(rounds):
        for (_, _, run), samples in zip(contenders, rates):
            samples.append(_timed(run, min_seconds))
    return [c[0] for c in contenders], [c[1] for c in contenders], rates


def _measure(resolution: int, args) -> tuple[str, float]:
    """The markdown table for one resolution and the C++ loader's ratio to the best torch DataLoader."""
    count = args.dataset_mib * 2**20 // (3 * resolution * resolution)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, 3, resolution, resolution), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = PackedDataset(write_fgd(Path(tmp) / "bench.fgd", images, labels))
        # The contenders (and their DataLoader workers) live only inside _take_turns.
        names, kinds, rates = _take_turns(_contenders(dataset, images, labels, args.batch_size, args.threads),
                                          args.rounds, args.min_seconds)
    best = [max(r) for r in rates]
    baseline = max(b for b, kind in zip(best, kinds) if kind == "torch")
    lines = [
        f"### 3x{resolution}x{resolution}: {count} images ({count * 3 * resolution * resolution / 2**20:.0f} MiB)",
        "",
        "| loader | images/s, best | images/s, median | best vs best torch DataLoader |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {max(r):,.0f} | {np.median(r):,.0f} | {max(r) / baseline:.2f}x |"
          for name, r in zip(names, rates)],
    ]
    return "\n".join(lines), best[0] / baseline


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bench.loader", description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--dataset-mib", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    _check_same_job()
    load_before = os.getloadavg()[0]

    tables, ratios = [], []
    for resolution in args.resolutions:
        table, ratio = _measure(resolution, args)
        tables.append(table)
        ratios.append(f"{ratio:.1f}x at {resolution} px")
    now = datetime.datetime.now()
    from fastgan import _loader

    report = "\n".join([
        f"# Loader throughput, {now:%Y-%m-%d %H:%M}",
        "",
        f"- command: `{' '.join(['python -m bench.loader', *(sys.argv[1:] if argv is None else argv)])}`",
        f"- device: {cpu_model()}, {os.cpu_count()} logical CPUs; 1-minute load average {load_before:.1f} "
        f"before the run, {os.getloadavg()[0]:.1f} after (other processes share the machine)",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"fastgan._loader {_loader.__version__}",
        f"- workload: batch {args.batch_size}, shuffle, random hflip, float32 in [-1, 1]; .fgd memory-mapped "
        f"for fastgan, the same array in memory for torch; {args.rounds} rounds of at least "
        f"{args.min_seconds} s per contender, taking turns, after one warm-up epoch each",
        f"- fastgan C++ vs the best torch DataLoader: {', '.join(ratios)}",
        "",
        *[part for table in tables for part in (table, "")],
    ])
    print(report)
    write_result(f"loader-cpu-{now:%Y-%m-%d-%H%M%S}.md", report, args.out)
    return report


if __name__ == "__main__":
    main()
