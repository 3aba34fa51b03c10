"""Training-step throughput of a configuration, any model family: samples per second after warm-up."""
from __future__ import annotations

import time

import torch

from .config import TrainConfig
from .loop import make_trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_step_throughput(config: TrainConfig, iters: int = 20, warmup: int = 5) -> dict:
    """Time `iters` train steps after `warmup` (which absorbs torch.compile); nothing is written to disk."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"measure_step_throughput: need iters >= 1 and warmup >= 0; got {iters}, {warmup}")
    trainer = make_trainer(config)
    batches = trainer.real_batches()
    t0 = time.perf_counter()
    for _ in range(warmup):
        trainer.train_step(batches)
    _sync(trainer.device)
    t1 = time.perf_counter()
    for _ in range(iters):
        trainer.train_step(batches)
    _sync(trainer.device)
    t2 = time.perf_counter()
    step_s = (t2 - t1) / iters
    return {
        "step_ms": step_s * 1e3,
        "img_per_s": trainer.samples_per_step() / step_s,
        "warmup_s": t1 - t0,
    }
