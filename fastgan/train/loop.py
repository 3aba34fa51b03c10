"""The training loop shared by every model family: run directory, log, samples, evaluation, checkpoints,
resume, and the processes of a distributed run."""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .base import BaseTrainer, NonFiniteError, check_device
from ..atomic import append_line, atomic_write_bytes, remove_stale_temps
from .checkpoint import (DAMAGED, LATEST, PREVIOUS, CheckpointError, CheckpointFallbackWarning, check_writable,
                         checkpoint_nbytes, load_checkpoint, require_keys, save_checkpoint, save_space_needed)
from .config import TrainConfig
from .curves import CURVES, MISSING, draw_curves, matplotlib_available
from .families import family

METRICS = "metrics.jsonl"
CONFIG = "config.json"
TENSORBOARD = "tensorboard"
#: what a resume may change: the length of the run, its outputs, and where and how fast it runs
RESUMABLE = ("steps", "log_every", "sample_every", "ckpt_every", "eval_every", "eval_n", "n_samples", "progress",
             "device", "threads", "tensorboard")
#: free space the pre-flight asks for beyond the checkpoints: the log and the sample grids
OUTPUT_MARGIN_BYTES = 1 << 20

__all__ = ["load_generator", "make_trainer", "read_log", "train"]


def make_trainer(config: TrainConfig, dist=None) -> BaseTrainer:
    """The trainer of config.model's family."""
    return family(config.model).trainer(config, dist)


def _has_checkpoint(run: Path) -> bool:
    return (run / LATEST).exists() or (run / PREVIOUS).exists()


def _choose_run_dir(config: TrainConfig) -> Path:
    """The run directory, which is not created here: _open_run_dir makes it once every check has passed.

    A named folder that holds a run which stopped before its first checkpoint (config.json, no checkpoint)
    is taken again: there is nothing in it to resume.
    """
    out = Path(config.out_dir)
    if config.resume:
        if not config.name:
            raise ValueError("resume needs the run's name (--name)")
        run = out / config.name
        if not run.is_dir():
            raise FileNotFoundError(f"{run}: no such run to resume (check --out-dir and --name)")
        if not _has_checkpoint(run):
            raise FileNotFoundError(f"{run}: nothing to resume: the run wrote no checkpoint (it stopped before its "
                                    f"first save); start it again without --resume")
        return run
    if config.name:
        run = out / config.name
        if run.exists() and (not run.is_dir() or any(run.iterdir())):
            if _has_checkpoint(run):
                raise FileExistsError(f"{run} exists: pass --resume to continue it, or another --name")
            if not (run / CONFIG).is_file():
                raise FileExistsError(f"{run} exists and is not a fastgan run: choose another --name")
        return run
    base = f"{Path(config.dataset).stem}-{config.model}"
    run, i = out / base, 1
    while run.exists():
        run, i = out / f"{base}-{i}", i + 1
    config.name = run.name
    return run


def _resumed_config(config: TrainConfig, state: dict, run_dir: Path) -> TrainConfig:
    """The saved run's config with the settings a resume may change taken from `config`.

    Any other field that `config` sets (an option, TOML key or constructor argument given) and that differs from the saved run is an error naming it: a resumed run keeps its
    own settings, and silently ignoring an option would train something other than what was asked.
    """
    try:
        saved = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir}: the checkpoint's config is not valid: {e}") from None
    changed = [name for name in config.differences(saved, ignore=(*RESUMABLE, "name", "out_dir", "resume"))
               if name in config.set_fields()]
    if changed:
        listed = ", ".join(f"{name} (saved {getattr(saved, name)!r}, given {getattr(config, name)!r})"
                           for name in changed)
        raise ValueError(f"{run_dir}: --resume continues the run with its saved settings, and these differ: "
                         f"{listed}. A resume may change only {', '.join(RESUMABLE)}: drop the others, or start a "
                         f"new run with another --name")
    for name in (*RESUMABLE, "name", "out_dir"):
        setattr(saved, name, getattr(config, name))
    saved.resume = True
    saved.validate()
    return saved


def _stepped_copy(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """An optimizer of the same kind and settings over copies of the parameters, stepped once with zero
    gradients, so that its state (Adam's moments) has the size a checkpoint will hold. The trainer's own
    optimizers and parameters are not touched: a resumed run stays bit-identical."""
    copies: dict[int, torch.Tensor] = {}
    groups = []
    for group in optimizer.param_groups:
        params = []
        for p in group["params"]:
            if id(p) not in copies:
                copies[id(p)] = p.detach().clone().requires_grad_(True)
                copies[id(p)].grad = torch.zeros_like(p)
            params.append(copies[id(p)])
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
    copy = type(optimizer)(groups, **optimizer.defaults)
    copy.step()
    return copy


def checkpoint_size(trainer: BaseTrainer) -> int:
    """Bytes of the checkpoints the trainer will write: its state serialised, with optimizer state as it is after
    the first update even when none has happened yet."""
    state = trainer.state_dict()
    for name, optimizer in trainer.optimizers.items():
        if not optimizer.state:
            state["optimizers"][name] = _stepped_copy(optimizer).state_dict()
    return checkpoint_nbytes(state)


def _open_run_dir(run_dir: Path, trainer: BaseTrainer) -> None:
    """Process 0, once everything else has been checked: clear what crashed writers left, check that the saves
    will fit, then create the run directory and write its config (and, on resume, cut its log back)."""
    config = trainer.config
    # Temporary files of writers killed mid-write (kill -9, power loss) would eat the space measured next.
    for folder in (run_dir, run_dir / "samples"):
        remove_stale_temps(folder)
    remove_stale_temps(run_dir.parent, ".fastgan-write-test")
    check_writable(run_dir, save_space_needed(run_dir, checkpoint_size(trainer)) + OUTPUT_MARGIN_BYTES)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.resume:
        _truncate_log(run_dir / METRICS, trainer.step)
    else:
        (run_dir / METRICS).unlink(missing_ok=True)  # left by a run that stopped before its first checkpoint
    atomic_write_bytes(run_dir / CONFIG, json.dumps(config.to_dict(), indent=2).encode())


def _log_lines(path: Path) -> list[tuple[str, dict]]:
    """(line, parsed row) for each line of a metrics.jsonl; see read_log."""
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if number == len(lines):
                warnings.warn(f"{path}: dropped its last line, torn by an interrupted write (crash or full disk): "
                              f"{line[:60]!r}", stacklevel=3)
                break
            raise ValueError(f"{path}: line {number} is damaged ({e}); delete or mend that line") from None
        rows.append((line, row))
    return rows


def read_log(path: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl.

    A last line that is not complete JSON (a write torn by a crash or a full disk) is dropped with a warning
    naming the file; a damaged line before the last is a ValueError naming the file and the line.
    """
    return [row for _, row in _log_lines(Path(path))]


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from, so the log has each step once."""
    if not path.exists():
        return
    kept = [line + "\n" for line, row in _log_lines(path) if row.get("step", 0) <= step]
    atomic_write_bytes(path, "".join(kept).encode())


def train(config: TrainConfig) -> Path:
    """Train config.model as `config` says; returns the run directory.

    The run directory holds samples.png (latest samples, from the EMA generator when there is one),
    samples/stepN.png, metrics.jsonl (one JSON object per log step), config.json and checkpoint.pt
    (with checkpoint.prev.pt, the one before it), curves.png (losses, logits and evaluations over steps, drawn at
    each checkpoint when matplotlib is installed) and, with config.tensorboard, TensorBoard events in
    tensorboard/. It is created only once the data, the networks, the device, a resumed checkpoint (or the
    --init-from source) and the free space have been checked, so a run that fails up front leaves nothing behind.
    With config.init_from the run starts from that checkpoint's state under its own settings (_start_from).

    Launched by torchrun with several processes, each process trains on its shard of every batch and
    gradients are averaged before each update; process 0 alone writes the run directory.
    """
    from tqdm import tqdm

    from .distributed import Distributed

    if config.resume and config.init_from:
        raise ValueError("--init-from cannot be combined with --resume: a resumed run continues from its own "
                         "checkpoint (it already started from --init-from's, if it was given one)")
    dist = Distributed.from_env(check_device(config.device, available=False))
    try:
        run_dir = _start_run(config, dist)
        if config.resume:
            state = _load_for_resume(run_dir, dist)
            require_keys(state, BaseTrainer.STATE_KEYS, run_dir)
            config = _resumed_config(config, state, run_dir)
        if config.tensorboard:
            _summary_writer_class()  # before anything is built: a missing package is a one-line error
        trainer = make_trainer(config, dist)
        if config.resume:
            trainer.load_state_dict(state)
        elif config.init_from:
            _start_from(trainer, config.init_from)
        main = dist.is_main
        if main:
            _open_run_dir(run_dir, trainer)
        try:
            _train_loop(trainer, run_dir, main, tqdm)
        except NonFiniteError as e:
            saved = (f"the last checkpoint, {run_dir / LATEST}, is intact" if _has_checkpoint(run_dir) else
                     "no checkpoint was written, so a new run may take the same name")
            raise NonFiniteError(f"{e}; {saved}") from e
        dist.barrier()
        return run_dir
    finally:
        dist.close()


def _start_from(trainer: BaseTrainer, source: str) -> None:
    """Load the training state of `source` (a run directory or checkpoint file) into a new run's trainer, keeping
    the trainer's own optimizer settings (learning rates, betas), which come from this run's config."""
    state = load_checkpoint(source)
    require_keys(state, BaseTrainer.STATE_KEYS, source)
    cfg = trainer.config
    model = state["config"].get("model")
    if model != cfg.model:
        raise ValueError(f"--init-from {source}: that run trained --model {model}, this one --model {cfg.model}; "
                         f"start from a {cfg.model} run")
    if state["step"] >= cfg.steps:
        raise ValueError(f"--init-from {source}: that run is at step {state['step']}, so --steps {cfg.steps} leaves "
                         f"nothing to train: pass --steps above {state['step']}")
    own = {name: [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
           for name, opt in trainer.optimizers.items()}
    try:
        trainer.load_state_dict(state)
    except CheckpointError as e:  # the data shape or the set of networks differs
        raise CheckpointError(f"--init-from {source}: {e}") from None
    except RuntimeError as e:  # torch's size mismatches, over several lines
        first = " ".join(" ".join(str(e).split("\n")[:2]).split()) or type(e).__name__
        raise ValueError(f"--init-from {source}: its networks do not fit this run's settings ({first}); start from "
                         f"a run with the same architecture options") from None
    for name, opt in trainer.optimizers.items():
        for group, settings in zip(opt.param_groups, own[name]):
            group.update(settings)


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
        return _choose_run_dir(config)
    import torch.distributed as td

    box = [None]
    if dist.is_main:
        box = [str(_choose_run_dir(config))]
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


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("--tensorboard needs the tensorboard package: pip install 'fastgan[tensorboard]'") from None
    return SummaryWriter


def _add_scalars(board, prefix: str, values: dict, step: int) -> None:
    for key, value in values.items():
        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
            board.add_scalar(f"{prefix}/{key}", value, step)


def _add_samples(board, trainer: BaseTrainer, run_dir: Path) -> None:
    """The sample grid just written, as an image of the run's TensorBoard events (image data only)."""
    if trainer.data.kind == "images":
        import numpy as np
        from PIL import Image

        with Image.open(run_dir / "samples.png") as grid:
            board.add_image("samples", np.asarray(grid.convert("RGB")), trainer.step, dataformats="HWC")


def _write_curves(run_dir: Path) -> None:
    try:
        draw_curves({run_dir.name: read_log(run_dir / METRICS)}, run_dir / CURVES)
    except ValueError:  # nothing logged yet
        pass


def _train_loop(trainer: BaseTrainer, run_dir: Path, main: bool, tqdm) -> None:
    config = trainer.config
    batches = trainer.real_batches()
    bar = tqdm(total=config.steps, initial=trainer.step, disable=not (config.progress and main), unit="step",
               dynamic_ncols=True)
    board = None
    if main and config.tensorboard:
        # A resumed run drops the events logged after its checkpoint, as its metrics.jsonl does.
        board = _summary_writer_class()(str(run_dir / TENSORBOARD),
                                        purge_step=trainer.step + 1 if config.resume else None)
    curves = main and matplotlib_available()
    if main and not curves:
        tqdm.write(f"fastgan: {MISSING}: curves.png is not drawn", file=sys.stderr)
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
                    append_line(run_dir / METRICS, json.dumps(row))
                if board is not None:
                    _add_scalars(board, "train", row, step)
                bar.set_postfix({k: f"{v:.3f}" for k, v in list(row.items())[1:3]})
                window_start, window_steps = time.perf_counter(), 0
            if main and (step % config.sample_every == 0 or last):
                trainer.write_samples(run_dir)
                if board is not None:
                    _add_samples(board, trainer, run_dir)
            if main and config.eval_every and (step % config.eval_every == 0 or last):
                scores = trainer.evaluate()
                append_line(run_dir / METRICS, json.dumps({"step": step, "eval": scores}))
                if board is not None:
                    _add_scalars(board, "eval", scores, step)
            if main and (step % config.ckpt_every == 0 or last):
                save_checkpoint(trainer.state_dict(), run_dir)
                if board is not None:
                    board.flush()
                if curves:
                    _write_curves(run_dir)
    finally:
        bar.close()
        if board is not None:
            board.close()


def load_generator(run_or_ckpt: str | Path, ema: bool = True, device="cpu"):
    """(sampling network in eval mode, its TrainConfig, the step) from a run directory or checkpoint file.

    The network maps a batch of noise (N, *Family.trainer.noise_shape(config)) to samples: images, points or
    sequences; SeqGAN's generator samples tokens with its `sample` method.
    """
    device = check_device(device)  # before reading: a missing GPU is not a damaged checkpoint
    state = load_checkpoint(run_or_ckpt, map_location=device)
    require_keys(state, ("step", "config", "data_shape", "networks", "ema"), run_or_ckpt)
    try:
        config = TrainConfig.from_dict(state["config"])
        declared = family(config.model)
        networks = declared.networks(config, tuple(state["data_shape"]))
        for name, net in networks.items():
            net.load_state_dict(state["networks"][name])
        sampler: nn.Module = declared.sampler_from(networks)
        if ema and state["ema"] is not None:
            sampler.load_state_dict(state["ema"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{run_or_ckpt}: the checkpoint does not match the networks its config describes: "
                              f"{e}") from None
    return sampler.to(device).eval(), config, state["step"]
