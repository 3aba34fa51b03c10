"""The training loop shared by every model family: run directory, log, samples, evaluation, checkpoints,
resume, and the processes of a distributed run."""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .base import BaseTrainer
from ..atomic import atomic_write_bytes
from .checkpoint import (DAMAGED, LATEST, CheckpointFallbackWarning, check_writable, checkpoint_nbytes, load_checkpoint,
                         save_checkpoint)
from .config import TrainConfig
from .families import family

METRICS = "metrics.jsonl"

__all__ = ["load_generator", "make_trainer", "train"]


def make_trainer(config: TrainConfig, dist=None) -> BaseTrainer:
    """The trainer of config.model's family."""
    return family(config.model).trainer(config, dist)


def _new_run_dir(config: TrainConfig) -> Path:
    out = Path(config.out_dir)
    if config.resume:
        if not config.name:
            raise ValueError("resume needs the run's name (--name)")
        run = out / config.name
        if not (run / "checkpoint.pt").exists() and not (run / "checkpoint.prev.pt").exists():
            raise FileNotFoundError(f"{run}: nothing to resume (no checkpoint.pt)")
        return run
    if config.name:
        run = out / config.name
        if run.exists() and any(run.iterdir()):
            raise FileExistsError(f"{run} exists: pass --resume to continue it, or another --name")
    else:
        base = f"{Path(config.dataset).stem}-{config.model}"
        run, i = out / base, 1
        while run.exists():
            run, i = out / f"{base}-{i}", i + 1
        config.name = run.name
    run.mkdir(parents=True, exist_ok=True)
    return run


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from, so the log has each step once."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines(keepends=True)
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_bytes(path, "".join(kept).encode())


def train(config: TrainConfig) -> Path:
    """Train config.model as `config` says; returns the run directory.

    The run directory holds samples.png (latest samples, from the EMA generator when there is one),
    samples/stepN.png, metrics.jsonl (one JSON object per log step), config.json and checkpoint.pt
    (with checkpoint.prev.pt, the one before it).

    Launched by torchrun with several processes, each process trains on its shard of every batch and
    gradients are averaged before each update; process 0 alone writes the run directory.
    """
    from tqdm import tqdm

    from .distributed import Distributed

    dist = Distributed.from_env(config.device)
    try:
        run_dir = _start_run(config, dist)
        if config.resume:
            state = _load_for_resume(run_dir, dist)
            saved = TrainConfig.from_dict(state["config"])
            # A resumed run keeps its own settings; only the length and the outputs may change.
            for name in ("steps", "log_every", "sample_every", "ckpt_every", "progress", "device", "threads"):
                setattr(saved, name, getattr(config, name))
            saved.resume, config = True, saved
        trainer = make_trainer(config, dist)
        if config.resume:
            trainer.load_state_dict(state)
        main = dist.is_main
        if main:
            if config.resume:
                _truncate_log(run_dir / METRICS, trainer.step)
            # Room for a new checkpoint next to the previous one; fail now rather than at the first save.
            check_writable(run_dir, checkpoint_nbytes(trainer.state_dict()))
            atomic_write_bytes(run_dir / "config.json", json.dumps(config.to_dict(), indent=2).encode())
        _train_loop(trainer, run_dir, main, tqdm)
        dist.barrier()
        return run_dir
    finally:
        dist.close()


def _load_for_resume(run_dir: Path, dist) -> dict:
    """The run's latest usable checkpoint. A damaged checkpoint.pt that was passed over is renamed to
    checkpoint.damaged.pt, so that the next save does not push the good checkpoint.prev.pt out for it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointFallbackWarning)
        state = load_checkpoint(run_dir)
    fell_back = False
    for w in caught:
        fell_back |= issubclass(w.category, CheckpointFallbackWarning)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    dist.barrier()  # every process has read the files before one is renamed
    if fell_back and dist.is_main and (run_dir / LATEST).exists():
        os.replace(run_dir / LATEST, run_dir / DAMAGED)
    return state


def _start_run(config: TrainConfig, dist) -> Path:
    """The run directory, chosen by process 0 and shared with the others."""
    if dist.world_size == 1:
        return _new_run_dir(config)
    import torch.distributed as td

    box = [None]
    if dist.is_main:
        box = [str(_new_run_dir(config))]
    td.broadcast_object_list(box, src=0)
    config.name = Path(box[0]).name
    return Path(box[0])


def _mean_over_processes(stats: dict[str, torch.Tensor], dist) -> dict[str, torch.Tensor]:
    """Each logged number as the mean over processes, so a log reads the same for any process count."""
    if dist.world_size == 1 or not stats:
        return stats
    import torch.distributed as td

    values = torch.stack([v.detach().float().reshape(()) for v in stats.values()])
    td.all_reduce(values)
    return dict(zip(stats, values / dist.world_size))


def _train_loop(trainer: BaseTrainer, run_dir: Path, main: bool, tqdm) -> None:
    config = trainer.config
    batches = trainer.real_batches()
    log = open(run_dir / METRICS, "a") if main else None
    bar = tqdm(total=config.steps, initial=trainer.step, disable=not (config.progress and main), unit="step",
               dynamic_ncols=True)
    window_start, window_steps = time.perf_counter(), 0
    try:
        while trainer.step < config.steps:
            stats = trainer.train_step(batches)
            window_steps += 1
            bar.update(1)
            step = trainer.step
            last = step == config.steps
            if step % config.log_every == 0 or last:
                stats = _mean_over_processes(stats, trainer.dist)
                elapsed = time.perf_counter() - window_start
                row = {"step": step, **{k: round(float(v), 6) for k, v in stats.items()},
                       "img_per_s": round(window_steps * trainer.samples_per_step() / elapsed, 1)}
                if trainer.skipped_updates:
                    row["skipped_updates"] = trainer.skipped_updates
                if main:
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                bar.set_postfix({k: f"{v:.3f}" for k, v in list(row.items())[1:3]})
                window_start, window_steps = time.perf_counter(), 0
            if main and (step % config.sample_every == 0 or last):
                trainer.write_samples(run_dir)
            if main and config.eval_every and (step % config.eval_every == 0 or last):
                log.write(json.dumps({"step": step, "eval": trainer.evaluate()}) + "\n")
                log.flush()
            if main and (step % config.ckpt_every == 0 or last):
                save_checkpoint(trainer.state_dict(), run_dir)
    finally:
        bar.close()
        if log is not None:
            log.close()


def load_generator(run_or_ckpt: str | Path, ema: bool = True, device="cpu"):
    """(sampling network in eval mode, its TrainConfig, the step) from a run directory or checkpoint file.

    The network maps a batch of noise (N, *Family.trainer.noise_shape(config)) to samples: images, points or
    sequences; SeqGAN's generator samples tokens with its `sample` method.
    """
    state = load_checkpoint(run_or_ckpt, map_location=device)
    config = TrainConfig.from_dict(state["config"])
    declared = family(config.model)
    networks = declared.networks(config, tuple(state["data_shape"]))
    for name, net in networks.items():
        net.load_state_dict(state["networks"][name])
    sampler: nn.Module = declared.sampler_from(networks)
    if ema and state["ema"] is not None:
        sampler.load_state_dict(state["ema"])
    return sampler.to(device).eval(), config, state["step"]
