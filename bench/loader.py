"""Loader throughput: fastgan's C++ loader vs its NumPy path vs a per-sample torch DataLoader, and vs copy bandwidth.

python -m bench.loader [--resolutions 32 64] [--dataset-mib 60] [--batch-size 256] [--rounds 7] [--threads N]

Every contender does the same job on the same data: shuffled batches of 256 float32 images in [-1, 1]
(x * float32(2/255) - 1, checked bit for bit against fastgan's table at start-up) with random horizontal
flips, from a uint8 (N, 3, R, R) dataset of about --dataset-mib MiB (larger than a typical L2 cache, as
real datasets are). The torch baseline flips and normalises whole batches after collation, its fastest
form, once with torch's default intra-op threads and once with one; the fastest torch row is the
baseline. Contenders take turns, one timed stretch of whole epochs (at least --min-seconds) each per
round, so load from other processes falls on all of them alike; the table gives each contender's median
round and its spread (min-max).

Reference rows bound what the loader can reach, in bytes moved (read + written: 1 + 4 bytes a pixel for
float32 batches, 1 + 1 for a copy): the loader's single-thread rate, an in-order torch convert pass
(x.float().mul_(2/255).sub_(1) over the data in batch slices, no shuffle or flips), and copy bandwidth:
memcpy (numpy.copyto) of a buffer the size of the dataset and of one the size of an epoch's float32 output
(4x; glibc's memcpy takes streaming stores above a size set by the cache, as the loader always does), each
in one thread and split over the loader's threads, and the loader's own copy-only path (uint8 out, no
flips). The headline is the C++ loader's bytes moved per second as a share of the fastest of those copies
in the same round (median and min-max over rounds); its share of a memcpy of one float32 batch's bytes over
and over (cache-resident, the machine's fastest copy) is shown beside it.
Prints the tables and writes bench/results/loader-cpu-<date>-<time>.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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


def _torch_convert_epochs(images: torch.Tensor, batch_size: int, intra_op_threads: int):
    """The conversion alone, in order: what the loader's float32 batches cost torch without gathering or flips."""
    def run() -> int:
        default_threads = torch.get_num_threads()
        torch.set_num_threads(intra_op_threads)
        try:
            count = 0
            for start in range(0, len(images) - batch_size + 1, batch_size):
                count += len(_torch_normalise(images[start:start + batch_size]))
            return count
        finally:
            torch.set_num_threads(default_threads)
    return run


def _memcpy_epochs(source: np.ndarray, copies: int, images_per_copy: int, threads: int, pool: ThreadPoolExecutor):
    """numpy.copyto (glibc's memcpy, GIL released) of source into a buffer of its size, `copies` times a run,
    split into `threads` contiguous parts copied at once; each copy counts as images_per_copy images."""
    flat = source.reshape(-1)
    target = np.empty_like(flat)
    np.copyto(target, flat)  # fault the target's pages in before timing
    bounds = [len(flat) * i // threads for i in range(threads + 1)]
    parts = [slice(a, b) for a, b in zip(bounds, bounds[1:])]

    def copy(part: slice) -> None:
        np.copyto(target[part], flat[part])

    def run() -> int:
        for _ in range(copies):
            if threads == 1:
                copy(parts[0])
            else:
                list(pool.map(copy, parts))
        return copies * images_per_copy
    return run


def _timed(run_epoch, min_seconds: float) -> float:
    """Images per second over whole epochs lasting at least min_seconds together."""
    count, start = 0, time.perf_counter()
    while True:
        count += run_epoch()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count / elapsed


def _contenders(dataset: PackedDataset, images: np.ndarray, labels: np.ndarray, batch_size: int, threads: int,
                pool: ThreadPoolExecutor):
    """(name, kind, bytes moved per image, epoch function) in table order; kind is fastgan, torch, reference
    (not the same job), or copy (the copy bandwidth the headline is a share of)."""
    same_job = dict(batch_size=batch_size, hflip=True, dtype=torch.float32)
    probe = next(iter(Loader(dataset, backend="native", num_threads=threads, **same_job)))[0]
    if probe.dtype != torch.float32 or probe.min() < -1 or probe.max() > 1:
        raise AssertionError(f"bench.loader: fastgan's batches are {probe.dtype} in "
                             f"[{probe.min()}, {probe.max()}], not float32 in [-1, 1]")
    as_torch = torch.from_numpy(images), torch.from_numpy(labels)
    torch_threads = sorted({torch.get_num_threads(), 1}, reverse=True)
    pixels = images[0].size
    convert, copy = 5 * pixels, 2 * pixels  # bytes read + written per image: 1 + 4 bytes a pixel, or 1 + 1
    s = "s" * (threads > 1)
    # Copy sources hold the data's bytes, not zeros: pages never written all map to one zero page, which a
    # copy reads from cache. glibc's memcpy switches to streaming stores above a size set by the cache size,
    # hence both the dataset's size and the size the loader writes per epoch (four times it).
    flat = images.reshape(-1)
    float_batch, float_epoch = np.resize(flat, batch_size * pixels * 4), np.resize(flat, 4 * flat.size)
    return [
        (f"fastgan C++ ({threads} threads)", "fastgan", convert,
         _fastgan_epochs(Loader(dataset, backend="native", num_threads=threads, **same_job))),
        ("fastgan NumPy path", "fastgan", convert, _fastgan_epochs(Loader(dataset, backend="python", **same_job))),
        *[(f"torch DataLoader(per-sample Dataset), {workers} workers, {t} torch thread{'s' * (t > 1)}", "torch",
           convert, _torch_epochs(*as_torch, batch_size, workers, t)) for workers in (2, 0) for t in torch_threads],
        ("reference: fastgan C++ (1 thread)", "reference", convert,
         _fastgan_epochs(Loader(dataset, backend="native", num_threads=1, **same_job))),
        *[(f"reference: torch convert pass, in order, no flips ({t} torch thread{'s' * (t > 1)})", "reference",
           convert, _torch_convert_epochs(as_torch[0], batch_size, t)) for t in torch_threads],
        (f"copy: fastgan C++ copy only (uint8, no flips, {threads} thread{s})", "copy", copy,
         _fastgan_epochs(Loader(dataset, backend="native", num_threads=threads, batch_size=batch_size,
                                dtype=torch.uint8))),
        *[(f"copy: memcpy of the dataset ({t} thread{'s' * (t > 1)})", "copy", copy,
           _memcpy_epochs(flat, 1, len(images), t, pool)) for t in sorted({1, threads})],
        *[(f"copy: memcpy of an epoch's float32 bytes (4x the dataset, {t} thread{'s' * (t > 1)})", "copy", copy,
           _memcpy_epochs(float_epoch, 1, 4 * len(images), t, pool)) for t in sorted({1, threads})],
        (f"reference: memcpy of one float32 batch, repeated (cache-resident, {threads} thread{s})", "reference",
         2 * 4 * pixels, _memcpy_epochs(float_batch, max(1, len(images) // batch_size), batch_size, threads, pool)),
    ]


def _take_turns(contenders, rounds: int, min_seconds: float) -> list[list[float]]:
    """Per contender, the images/s of each round."""
    for *_, run in contenders:
        run()  # warm-up: page cache, DataLoader workers, first buffers
    rates = [[] for _ in contenders]
    for _ in range(rounds):
        for (*_, run), samples in zip(contenders, rates):
            samples.append(_timed(run, min_seconds))
    return rates


def _spread(values, digits: int = 2) -> str:
    return f"{np.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _measure(resolution: int, args, pool: ThreadPoolExecutor) -> tuple[str, list[str]]:
    """The markdown table for one resolution and its summary lines."""
    count = args.dataset_mib * 2**20 // (3 * resolution * resolution)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, 3, resolution, resolution), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = PackedDataset(write_fgd(Path(tmp) / "bench.fgd", images, labels))
        # The contenders (and their DataLoader workers) live only inside this block.
        contenders = _contenders(dataset, images, labels, args.batch_size, args.threads, pool)
        rates = _take_turns(contenders, args.rounds, args.min_seconds)
    names, kinds, moved = ([c[i] for c in contenders] for i in range(3))
    # Rows doing the loader's job move the same bytes per image, so their ratio is also one of images/s.
    rates = np.array(rates)                      # (contender, round) images/s
    gbps = rates * np.array(moved)[:, None] / 1e9  # (contender, round) GB/s read + written
    fastgan, torch_rows = gbps[0], [i for i, k in enumerate(kinds) if k == "torch"]
    best_copy = gbps[[i for i, k in enumerate(kinds) if k == "copy"]].max(axis=0)
    baseline = rates[torch_rows].max(axis=0)
    convert = [i for i, name in enumerate(names) if "convert pass" in name]
    cached = next(i for i, name in enumerate(names) if "cache-resident" in name)
    summary = [
        f"fastgan C++ at {resolution} px: {np.median(rates[0]):,.0f} img/s, {np.median(fastgan):.1f} GB/s moved; "
        f"per round {_spread(fastgan / best_copy * 100, 0)} % of the round's fastest copy row "
        f"({np.median(best_copy):.1f} GB/s), {_spread(fastgan / gbps[cached] * 100, 0)} % of the cache-resident "
        f"batch copy; {_spread(rates[0] / baseline)}x the fastest torch DataLoader row; "
        f"{_spread(rates[0] / rates[convert].max(axis=0))}x the faster in-order torch convert pass",
    ]
    lines = [
        f"### 3x{resolution}x{resolution}: {count} images ({count * 3 * resolution * resolution / 2**20:.0f} MiB)",
        "",
        "| contender | images/s, median (min-max) | GB/s read + written, median | fastgan C++'s GB/s / this row's, "
        "per round |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {np.median(r):,.0f} ({min(r):,.0f}-{max(r):,.0f}) | {np.median(g):.1f} | {_spread(fastgan / g)} |"
          for name, r, g in zip(names, rates, gbps)],
    ]
    return "\n".join(lines), summary


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

    tables, summaries = [], []
    with ThreadPoolExecutor(args.threads) as pool:
        for resolution in args.resolutions:
            table, summary = _measure(resolution, args, pool)
            tables.append(table)
            summaries += summary
    now = datetime.datetime.now()
    from fastgan import _loader

    report = "\n".join([
        f"# Loader throughput, {now:%Y-%m-%d %H:%M}",
        "",
        f"- command: `{' '.join(['python -m bench.loader', *(sys.argv[1:] if argv is None else argv)])}`",
        f"- device: {cpu_model()}, {os.cpu_count()} logical CPUs; 1-minute load average {load_before:.1f} "
        f"before the run, {os.getloadavg()[0]:.1f} after (other processes share the machine)",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"fastgan._loader {_loader.__version__} (float32 conversion: {_loader.supported_isas()[-1]})",
        f"- workload: batch {args.batch_size}, shuffle, random hflip, float32 in [-1, 1]; .fgd memory-mapped "
        f"for fastgan, the same array in memory for torch; {args.rounds} rounds of at least "
        f"{args.min_seconds} s per contender, taking turns, after one warm-up epoch each; GB/s count the "
        f"pixels' bytes read + written (float32 job: 5 bytes a pixel; copies: 2)",
        *[f"- {line}" for line in summaries],
        "",
        *[part for table in tables for part in (table, "")],
    ])
    print(report)
    write_result(f"loader-cpu-{now:%Y-%m-%d-%H%M%S}.md", report, args.out)
    return report


if __name__ == "__main__":
    main()
