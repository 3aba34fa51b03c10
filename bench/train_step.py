"""One training step, eager vs torch.compile, on the same configuration in the same run.

    python -m bench.train_step [--device cpu] [--resolution 32] [--batch-size 64] [--iters 20]

Prints a table (mode, ms/step, img/s, ratio to eager) and writes it to
bench/results/train-step-<device>-<date>.md with the device, versions and command.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import torch

from bench.system import cpu_model, write_result
from fastgan.backend import backend
from fastgan.train import TrainConfig
from fastgan.train.throughput import measure_step_throughput


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="dcgan")
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--out", default=str(Path(__file__).parent / "results"), help="results folder")
    args = p.parse_args(argv)

    rows = []
    for mode in ("eager", "compile"):
        config = TrainConfig(model=args.model, resolution=args.resolution, g_width=args.width, d_width=args.width,
                             batch_size=args.batch_size, device=args.device, amp=args.amp,
                             compile=mode == "compile", progress=False)
        rows.append((mode, measure_step_throughput(config, iters=args.iters, warmup=args.warmup)))
    base = rows[0][1]["step_ms"]
    date = datetime.date.today().isoformat()
    lines = [
        f"# Training step: eager vs torch.compile ({args.model}, {args.resolution} px, width {args.width}, "
        f"batch {args.batch_size}, amp {args.amp})",
        "",
        f"- device: {device_name(args.device)}",
        f"- date: {date}",
        f"- torch {torch.__version__}, python {platform.python_version()}, fastgan backend {backend()}",
        f"- command: `python -m bench.train_step {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip(),
        "",
        "| mode | ms/step | img/s | speed-up vs eager | warm-up s |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, r in rows:
        lines.append(f"| {mode} | {r['step_ms']:.1f} | {r['img_per_s']:.0f} | {base / r['step_ms']:.2f}x | "
                     f"{r['warmup_s']:.1f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    dev = "cuda" if args.device.startswith("cuda") else "cpu"
    write_result(f"train-step-{dev}-{date}.md", table, args.out)


if __name__ == "__main__":
    main()
