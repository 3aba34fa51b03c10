"""Loader throughput: fastgan's C++ loader vs its NumPy path vs a per-sample torch DataLoader.

python -m bench.loader [--images N] [--resolution R] [--batch-size B] [--epochs E]

Every contender produces the same thing: shuffled float32 batches in [-1, 1] with random horizontal
flips, from a uint8 (N, 3, R, R) dataset. Prints a table and writes bench/results/loader-cpu-<date>.md.
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

from bench.system import cpu_model
from fastgan.data import Loader, PackedDataset
from fastgan.data.format import write_fgd


def _images_per_second(make_epoch, epochs: int) -> float:
    """Best epoch of `epochs` after one warm-up epoch; each epoch returns the number of images it yielded."""
    make_epoch()
    best = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        count = make_epoch()
        best = max(best, count / (time.perf_counter() - start))
    return best


def _fastgan_epoch(loader):
    epoch = [0]

    def run():
        loader.set_epoch(epoch[0])
        epoch[0] += 1
        return sum(len(x) for x, _ in loader)
    return run


class _PerSampleDataset(torch.utils.data.Dataset):
    """One image per __getitem__, the way most image datasets are written (TensorDataset fetches whole
    batches through __getitems__, which is not what a typical per-sample dataset does)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def _torch_epoch(images: torch.Tensor, labels: torch.Tensor, batch_size: int, num_workers: int):
    dataset = _PerSampleDataset(images, labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=num_workers, persistent_workers=num_workers > 0)

    def run():
        count = 0
        for x, _ in loader:
            flip = torch.rand(len(x)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            x = x.float().mul_(2 / 255).sub_(1)
            count += len(x)
        return count
    return run


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bench.loader", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 3, args.resolution, args.resolution), dtype=np.uint8)
    labels = rng.integers(0, 10, size=args.images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset = PackedDataset(write_fgd(Path(tmp) / "bench.fgd", images, labels))
        common = dict(batch_size=args.batch_size, hflip=True, dtype=torch.float32)
        contenders = [
            (f"fastgan C++ ({args.threads} threads)",
             _fastgan_epoch(Loader(dataset, backend="cpp", num_threads=args.threads, **common))),
            ("fastgan NumPy path", _fastgan_epoch(Loader(dataset, backend="numpy", **common))),
            ("torch DataLoader(per-sample Dataset), 2 workers",
             _torch_epoch(torch.from_numpy(images), torch.from_numpy(labels), args.batch_size, 2)),
            ("torch DataLoader(per-sample Dataset), 0 workers",
             _torch_epoch(torch.from_numpy(images), torch.from_numpy(labels), args.batch_size, 0)),
        ]
        for name, run in contenders:
            rows.append((name, _images_per_second(run, args.epochs)))

    baseline = rows[-1][1]  # the per-sample DataLoader with 0 workers
    header = "| loader | images/s | vs torch DataLoader |\n|---|---:|---:|"
    table = "\n".join([header] + [f"| {name} | {rate:,.0f} | {rate / baseline:.2f}x |" for name, rate in rows])
    now = datetime.datetime.now()
    from fastgan import _loader

    report = "\n".join([
        f"# Loader throughput, {now:%Y-%m-%d}",
        "",
        f"- command: `{' '.join(['python -m bench.loader', *(sys.argv[1:] if argv is None else argv)])}`",
        f"- device: {cpu_model()}, {os.cpu_count()} logical CPUs",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"fastgan._loader {_loader.__version__}",
        f"- workload: {args.images} images 3x{args.resolution}x{args.resolution} uint8 (.fgd, memory-mapped), "
        f"batch {args.batch_size}, shuffle, random hflip, float32 in [-1, 1]; best of {args.epochs} epochs "
        f"after one warm-up",
        "",
        table,
        "",
    ])
    print(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"loader-cpu-{args.resolution}px-{now:%Y-%m-%d}.md").write_text(report)
    return report


if __name__ == "__main__":
    main()
