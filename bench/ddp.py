"""Data-parallel scaling: training throughput of 1 vs N processes at a fixed per-process batch.

    python -m bench.ddp [--procs 1,2] [--model dcgan] [--batch-size 64] [--steps 60] [--rounds 3] [--device cpu]

Each process count runs the same training configuration on torch.distributed (gloo on the CPU, nccl on
CUDA, one GPU per process), one torch thread per process on the CPU. The time of `--steps` training steps
after `--warmup` steps runs from the first rank's start to the last rank's end; images/s counts the global
batch. Scaling efficiency = (images/s with N processes) / (N x images/s with one). For N > 1 the same N
processes also run at once without a process group (each its own 1-process training, its own GPU on CUDA,
timed steps started together): their images over the same span are what the machine gives N processes
before any communication, so the gap to it is the cost of data parallelism itself, apart from cores, caches
and memory bandwidth the processes share. Writes bench/results/ddp-<device>-<date>.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import sys
import tempfile
import time

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from bench.system import cpu_model, write_result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, args, out: str, start_together=None) -> None:
    from fastgan.train import TrainConfig, make_trainer
    from fastgan.train.distributed import Distributed

    independent = start_together is not None
    if independent:  # a 1-process run of its own, in its own directory, beside the others
        out = os.path.join(out, str(rank))
        if args.device.startswith("cuda"):
            # Its own GPU, as in the data-parallel run (set before CUDA is initialised in this process).
            os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)
        rank, world_size = 0, 1
        os.makedirs(out)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    with Distributed.from_env(args.device) as dist:
        config = TrainConfig(model=args.model, dataset=args.dataset, resolution=args.resolution,
                             batch_size=args.batch_size, progress=False, out_dir=out, device=args.device,
                             ema_decay=0.999)
        trainer = make_trainer(config, dist)
        batches = trainer.real_batches()
        for _ in range(args.warmup):
            trainer.train_step(batches)
        _sync(trainer.device, dist)
        if independent:
            start_together.wait()
        start = time.time()
        for _ in range(args.steps):
            trainer.train_step(batches)
        _sync(trainer.device, dist)
        # Wall-clock stamps, so independent processes can be put on one time line.
        first_start, last_end = (torch.tensor([t], dtype=torch.float64) for t in (start, time.time()))
        if dist.enabled:
            torch_dist.all_reduce(first_start, op=torch_dist.ReduceOp.MIN)
            torch_dist.all_reduce(last_end, op=torch_dist.ReduceOp.MAX)
        if dist.is_main:
            with open(os.path.join(out, "span"), "w") as f:
                f.write(f"{first_start.item()} {last_end.item()}")


def _sync(device: torch.device, dist) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()


def run(world_size: int, args, independent: bool = False) -> float:
    """Global images per second of `world_size` processes: all images over the time from the first process's
    start to the last one's end (independent processes start their timed steps together)."""
    start_together = mp.get_context("spawn").Barrier(world_size) if independent else None
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(world_size, _free_port(), args, out, start_together), nprocs=world_size)
        dirs = [os.path.join(out, str(r)) for r in range(world_size)] if independent else [out]
        spans = []
        for d in dirs:
            with open(os.path.join(d, "span")) as f:
                spans.append([float(t) for t in f.read().split()])
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    return args.steps * args.batch_size * world_size / seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts (default: 1,2)")
    parser.add_argument("--model", default="dcgan")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3, help="turns each contender takes; the best counts")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per process)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process on the CPU")
    args = parser.parse_args(argv)
    procs = [int(p) for p in args.procs.split(",")]

    # Contenders take turns for --rounds rounds; each keeps its best round (the least disturbed by the
    # other work a shared machine does).
    contenders = [(n, False) for n in procs] + [(n, True) for n in procs if n > 1]
    rates = {c: 0.0 for c in contenders}
    for _ in range(args.rounds):
        for n, independent in contenders:
            rates[n, independent] = max(rates[n, independent], run(n, args, independent))
    base = rates.get((1, False))
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_model()
    rows = []
    for (n, independent), rate in rates.items():
        eff = f"{rate / (n * base):.2f}" if base else "-"
        what = f"{n} independent 1-process runs at once (no communication)" if independent else f"{n} process(es)"
        batch = f"{args.batch_size} each" if independent else f"{args.batch_size * n}"
        rows.append(f"| {what} | {batch} | {rate:,.0f} | {eff} |")
        print(f"{what}: {rate:,.0f} img/s, scaling efficiency {eff}")

    date = datetime.date.today().isoformat()
    command = "python -m bench.ddp " + " ".join(argv if argv is not None else sys.argv[1:])
    backend = "nccl" if args.device.startswith("cuda") else "gloo"
    text = "\n".join([
        f"# Data-parallel scaling, {args.model} on {args.dataset} {args.resolution}px, {backend}",
        "",
        f"- date: {date}",
        f"- device: {device} ({os.cpu_count()} cores visible)",
        f"- command: `{command.strip()}`",
        f"- torch {torch.__version__}, python {platform.python_version()}",
        f"- per-process batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up steps, "
        f"best of {args.rounds} rounds taken in turns"
        + (f", {args.threads} torch thread(s) per process" if args.device == "cpu" else ""),
        "",
        "| processes | global batch | images/s | scaling efficiency |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
    write_result(f"ddp-{args.device.split(':')[0]}-{date}.md", text)


if __name__ == "__main__":
    main()
