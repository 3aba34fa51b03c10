"""The training loop shared by every model family: run directory, log, samples, evaluation, checkpoints,
resume, and the processes of a distributed run."""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

from .base import DIVERGED_LOSS, BaseTrainer, DivergedError, NonFiniteError, all_finite, check_device
from .checkpoint import LATEST, CheckpointError, checkpoint_nbytes, load_checkpoint, require_finite_weights, require_keys
from .config import TrainConfig
from .curves import MISSING, matplotlib_available
from .families import family
from .run_folder import Divergence, RunFolder, read_log

#: what a resume may change: the length of the run, its outputs, where and how fast it runs, and whether it goes
#: on past a divergence
RESUMABLE = ("steps", "log_every", "sample_every", "ckpt_every", "eval_every", "eval_n", "n_samples", "progress",
             "device", "threads", "tensorboard", "on_divergence")

__all__ = ["load_generator", "make_trainer", "read_log", "train"]


def make_trainer(config: TrainConfig, dist=None) -> BaseTrainer:
    """The trainer of config.model's family."""
    return family(config.model).trainer(config, dist)


def _resumed_config(config: TrainConfig, state: dict, run_dir: Path) -> TrainConfig:
    """The saved run's config with the settings a resume may change taken from `config` where `config` gives them
    (an option, TOML key or constructor argument); the others keep their saved values, so a run trained with
    --device cuda --log-every 10 resumes so without repeating them.

    Any other field that `config` gives and that differs from the saved run is an error naming it: a resumed run
    keeps its own settings, and silently ignoring an option would train something other than what was asked.
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
        if name in config.set_fields() or name in ("name", "out_dir"):
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
    folder = None
    try:
        folder = _start_run(config, dist)
        run_dir = folder.path
        if config.resume:
            state = folder.load_for_resume(dist)
            require_keys(state, BaseTrainer.STATE_KEYS, run_dir)
            config = _resumed_config(config, state, run_dir)
            if config.steps <= state["step"]:
                raise ValueError(f"{run_dir}: the run is at step {state['step']}, so --steps {config.steps} leaves "
                                 f"nothing to train: pass --steps above {state['step']}")
            require_finite_weights(state, run_dir, "a resume")
        if config.tensorboard:
            _summary_writer_class()  # before anything is built: a missing package is a one-line error
        trainer = make_trainer(config, dist)
        if config.resume:
            trainer.load_state_dict(state)
        elif config.init_from:
            _start_from(trainer, config.init_from)
        main = dist.is_main
        if main:
            folder.open(json.dumps(config.to_dict(), indent=2).encode(), checkpoint_size(trainer),
                        trainer.step if config.resume else None)
        try:
            _train_loop(trainer, folder, main, tqdm)
        except NonFiniteError as e:
            saved = (f"the last checkpoint, {run_dir / LATEST}, is intact" if folder.has_checkpoint() else
                     "no checkpoint was written, so a new run may take the same name")
            raise NonFiniteError(f"{e}; {saved}") from e
        dist.barrier()
        return run_dir
    finally:
        if folder is not None:
            folder.release()
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


def _start_run(config: TrainConfig, dist) -> RunFolder:
    """The run folder, claimed by process 0 (RunFolder.claim) and shared with the others, which own nothing."""
    if dist.world_size == 1:
        return RunFolder.claim(config)
    import torch.distributed as td

    folder, box = None, [None]
    if dist.is_main:
        try:
            folder = RunFolder.claim(config)
            box = [str(folder.path)]
        except Exception as e:
            # The other processes end with the same error instead of waiting for a path.
            td.broadcast_object_list([f"error: {e}"], src=0)
            raise
    td.broadcast_object_list(box, src=0)
    if box[0].startswith("error: "):
        raise ValueError(f"process 0 could not start the run: {box[0][len('error: '):]}")
    config.name = Path(box[0]).name
    return folder if folder is not None else RunFolder(box[0])


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


def _divergence(trainer: BaseTrainer, folder: RunFolder) -> Divergence:
    """The run's divergence judge, with the ranges of the log it resumes (every process reads the same log)."""
    judge = Divergence(DIVERGED_LOSS)
    if trainer.config.resume:
        judge.replay([row for row in folder.log_rows() if row.get("step", 0) <= trainer.step])
    return judge


def _non_finite_weights(trainer: BaseTrainer) -> str | None:
    """Which network's weights hold NaN or infinity, if any (one host synchronisation per network; read before each
    checkpoint, whose save reads every weight anyway)."""
    for name, net in trainer.networks.items():
        if not bool(all_finite([p.detach() for p in net.parameters()])):
            return f"the {name}'s weights are NaN or infinite"
    return None


def _diverged(step: int, why: str, folder: RunFolder) -> DivergedError:
    if folder.healthy_step is None:
        kept = "no healthy checkpoint was written, so a new run may take the same name"
    else:
        kept = (f"the last healthy checkpoint, {folder.healthy_checkpoint()} (step {folder.healthy_step}), is kept; "
                f"--resume --on-divergence continue goes on from it")
    return DivergedError(f"step {step}: the run diverged ({why}); stopped: {kept}. Try a lower learning rate, or a "
                         f"penalty such as --r1-gamma")


@contextlib.contextmanager
def _interrupt_between_steps():
    """Ctrl-C (SIGINT) stops the run between steps, as KeyboardInterrupt; a second Ctrl-C stops it at once.

    Python raises KeyboardInterrupt wherever the main thread happens to be, and inside a finalizer or weakref
    callback it is printed as "Exception ignored" and dropped, leaving the run training. Taking the signal as a
    flag that the loop checks after each step makes every Ctrl-C count. The flag replaces Python's own handler
    only: a SIGINT that is ignored (`nohup`, a background job) stays ignored, a program that calls train() with
    its own handler keeps it, and only the main thread may install one."""
    requested = threading.Event()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield requested
        return

    def request_stop(signum, frame):
        requested.set()
        signal.signal(signal.SIGINT, saved)  # a second Ctrl-C interrupts wherever the run is

    saved = signal.signal(signal.SIGINT, request_stop)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, saved)


def _train_loop(trainer: BaseTrainer, folder: RunFolder, main: bool, tqdm) -> None:
    """Train to config.steps. At each log step and before each checkpoint the step's numbers (averaged over
    processes) are judged by Divergence; a diverged run stops there (on_divergence=stop), before its checkpoint,
    or goes on with its checkpoints marked diverged (continue). Per step, in this order: log line, evaluation,
    checkpoint, sample grid, curves: a failing sample write never costs the step's checkpoint."""
    config = trainer.config
    batches = trainer.real_batches()
    judge = _divergence(trainer, folder)
    bar = tqdm(total=config.steps, initial=trainer.step, disable=not (config.progress and main), unit="step",
               dynamic_ncols=True)
    board = None
    if main and config.tensorboard:
        board = folder.summary_writer(_summary_writer_class(), trainer.step if config.resume else None)
    curves = main and matplotlib_available()
    if main and not curves:
        tqdm.write(f"fastgan: {MISSING}: curves.png is not drawn", file=sys.stderr)
    window_start, window_steps = time.perf_counter(), 0
    healthy, why = True, None
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        if board is not None:
            stack.callback(board.close)
        interrupted = stack.enter_context(_interrupt_between_steps())
        while trainer.step < config.steps:
            if interrupted.is_set():
                raise KeyboardInterrupt
            stats = trainer.train_step(batches)
            window_steps += 1
            bar.update(1)
            step = trainer.step
            last = step == config.steps
            logs = step % config.log_every == 0 or last
            saves = step % config.ckpt_every == 0 or last
            if logs or saves:
                values = {k: round(float(v), 6) for k, v in _mean_over_processes(stats, trainer.dist).items()}
                why = judge.check(values, logged=logs)
                if why is None and saves:
                    why = _non_finite_weights(trainer)
                healthy = why is None
            if logs:
                elapsed = time.perf_counter() - window_start
                row = {"step": step, **values,
                       "img_per_s": round(window_steps * trainer.samples_per_step() / elapsed, 1)}
                if trainer.skipped_updates:
                    row["skipped_updates"] = trainer.skipped_updates
                if main:
                    folder.log(row)
                if board is not None:
                    _add_scalars(board, "train", row, step)
                bar.set_postfix({k: f"{v:.3f}" for k, v in list(row.items())[1:3]})
                window_start, window_steps = time.perf_counter(), 0
            if not healthy and config.on_divergence == "stop":
                raise _diverged(step, why, folder)
            if main and config.eval_every and (step % config.eval_every == 0 or last):
                scores = trainer.evaluate()
                folder.log({"step": step, "eval": scores})
                if board is not None:
                    _add_scalars(board, "eval", scores, step)
            if main and saves:
                folder.save_checkpoint(trainer.state_dict(), healthy)
                if board is not None:
                    board.flush()
            if main and (step % config.sample_every == 0 or last):
                folder.write_samples(trainer)
                if board is not None:
                    folder.add_samples(board, trainer)
            if curves and saves:
                folder.draw_curves()


def load_generator(run_or_ckpt: str | Path, ema: bool = True, device="cpu"):
    """(sampling network in eval mode, its TrainConfig, the step) from a run directory or checkpoint file.

    The network maps a batch of noise (N, *Family.trainer.noise_shape(config)) to samples: images, points or
    sequences; SeqGAN's generator samples tokens with its `sample` method.
    """
    device = check_device(device)  # before reading: a missing GPU is not a damaged checkpoint
    state = load_checkpoint(run_or_ckpt, map_location=device)
    require_keys(state, ("step", "config", "data_shape", "networks", "ema"), run_or_ckpt)
    require_finite_weights(state, run_or_ckpt, "sampling or evaluating it")
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
