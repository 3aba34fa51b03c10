"""What every model family's trainer shares: networks with their optimizers and loss scalers, the seeded
random stream, one guarded update per network (gradients averaged across processes, non-finite steps
skipped), EMA, and a checkpointable state.

A family (GAN, VAE, VAE-GAN, recurrent GAN/VAE, SeqGAN) subclasses BaseTrainer and writes its step as
plain code: forward passes, losses, and `self.update(name, loss)` per network. What follows from the kind
of data (reading batches, writing and scoring samples) is here, once, keyed by that kind.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .ema import EMA
from .kinds import data_kind

if TYPE_CHECKING:
    from .config import TrainConfig

SAMPLES = "samples"  # run_dir/samples.png (or .txt): the latest samples; run_dir/samples/: one per sample step
DEVICE_TYPES = ("cpu", "cuda")
#: |loss| above which an update is taken for a diverged one and warned about (once per network): a GAN, VAE
#: or sequence loss of a working run is far below it (BCE of a logit l is about |l|, so this is |logit| ~ 1e6;
#: `--lr-d 1e6` drives the logits to ~1e14 while every value stays finite)
DIVERGED_LOSS = 1e6
#: fewest real sequences an evaluation scores with the discriminative and predictive scores: their classifier
#: is tested on a held-out 20% (here 100 real and 100 generated), and fewer make the accuracy too coarse
TIMESERIES_MIN_N = 500
#: device types where torch.compile speeds up a GAN training step; elsewhere --compile trains eagerly and says so.
#: On the CPU a compiled DCGAN-32 step ran at 0.94x of eager (bench/results/train-step-cpu-2026-12-03-1347.md):
#: oneDNN's convolutions, which inductor leaves as they are, take ~77% of the step, and the rest is already fused.
COMPILE_PAYS_ON = ("cuda",)


def finite_sum(tensors: list[torch.Tensor], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The sum, in dtype, of every element of every tensor: finite only if every element is (an inf or a NaN
    survives a sum). float32 sums are vectorised on the CPU and take a quarter of float64's time, but finite
    values can sum past 3.4e38; a float64 sum of float32 (or narrower) values cannot overflow (3.4e38 times 2^31
    elements is far below 1.8e308), so it is finite exactly when every value is (see all_finite). float64
    tensors, whose sum could overflow either way, count as 0 or NaN by torch.isfinite."""
    sums = [torch.where(t.isfinite().all(), 0.0, float("nan")).to(dtype) if t.dtype == torch.float64
            else t.sum(dtype=dtype) for t in tensors]
    return torch.stack(sums).sum()


def all_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Whether every element of every tensor is finite, as a 0-dim bool tensor (no host synchronisation): the
    float64 finite_sum, a quarter of torch.isfinite(t).all()'s time on the CPU, where that is not vectorised."""
    return finite_sum(tensors, torch.float64).isfinite()


def adam(params, lr: float, betas: tuple[float, float], **options) -> torch.optim.Adam:
    """torch.optim.Adam in torch's fused implementation where it has one (CPU and CUDA float parameters): one
    kernel per parameter instead of a dozen ops, twice as fast on the CPU for the MLP GAN. It rounds as the
    for-loop Adam does to within an ulp per step; a resumed run takes the same path as the run it resumes."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr, betas=betas, fused=fused or None, **options)


class NonFiniteError(RuntimeError):
    """Training produced non-finite losses or gradients for too many consecutive updates."""


class DivergedError(RuntimeError):
    """The run diverged (run_folder.Divergence) and config.on_divergence is "stop": the last healthy checkpoint is
    kept, and the message names its step."""


class DivergenceWarning(UserWarning):
    """A loss is finite but so large (|loss| > DIVERGED_LOSS) that training has almost surely diverged."""


class EagerFallbackWarning(UserWarning):
    """--compile was asked for on a device where torch.compile does not speed training up; the run trains eagerly."""


def check_device(device, available: bool = True) -> torch.device:
    """The torch.device fastgan runs on for `device`, or ValueError saying what is wrong and what to pass.

    Without `available`, only the name is checked (a saved config may name a GPU that this machine lacks);
    with it, the device must also exist here.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if parsed.type not in DEVICE_TYPES:
        raise ValueError(f"device {device!r}: fastgan trains on {' or '.join(DEVICE_TYPES)} devices; use cpu, cuda "
                         f"or cuda:N")
    if available and parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"device {device!r}: CUDA is not available ({why}); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    return parsed


class BaseTrainer:
    #: the network whose EMA (or itself, without EMA) maps noise to samples
    sampling_network = "generator"

    def __init__(self, config: TrainConfig, dist=None):
        from .distributed import Distributed

        self.config = config
        self.dist = dist if dist is not None else Distributed.single(config.device)
        self.device = check_device(self.dist.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        # The loop's random draws come from this generator, whose state is checkpointed. All processes
        # share its seed and draw the global batch's noise, each keeping its own slice (`shared_noise`):
        # a run's result then does not depend on how many processes share it. Draws made inside
        # augmentations and penalties on a process's own slice use `rank_rng` instead.
        self.rng = torch.Generator(self.device).manual_seed(config.seed)
        self._rank_rng: torch.Generator | None = None
        self._rank_rng_step = -1
        self.step = 0
        self.batches_seen = 0  # real batches consumed, so a resumed run reads on from the same one
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self.ema: EMA | None = None
        self.ema_of: str | None = None
        # Consecutive skipped updates, per network: a healthy G step does not excuse a broken D.
        self.nonfinite_in_a_row: dict[str, int] = {}
        self.skipped_updates = 0
        self.diverged_warned: set[str] = set()  # networks already warned about with a DivergenceWarning
        self._said_eager = False  # the --compile notice is printed once
        self.kind = data_kind(config.dataset)  # what the run trains on: fastgan.train.kinds
        self.data = self.open_data()
        self.data_shape = tuple(self.data.shape)

    def open_data(self):
        """The run's real data (fastgan.train.real_data): read from config.dataset by its kind's reader unless a
        family makes its own."""
        return self.kind.reader(self.config, self.dist, self.device)

    # -- building -----------------------------------------------------------------------------

    def add_network(self, name: str, module: nn.Module, lr: float | None = None) -> nn.Module:
        """Register a network (moved to the device, the same on every process); with lr, give it an Adam optimizer."""
        module = module.to(self.device)
        if any(isinstance(m, nn.modules.conv._ConvNd) and m.weight.ndim == 4 for m in module.modules()):
            # oneDNN's convolutions (and cuDNN's with tensor cores) run fastest on channels_last tensors: a DCGAN-32
            # step is ~1.2x faster on the CPU. Activations follow the weights' layout; the results are unchanged.
            module = module.to(memory_format=torch.channels_last)
        if self.dist.world_size > 1:
            from .distributed import broadcast_parameters

            broadcast_parameters(module, self.dist)
        self.networks[name] = module
        if lr is not None:
            cfg = self.config
            params = [p for p in module.parameters() if p.requires_grad]
            self.optimizers[name] = adam(params, lr, (cfg.beta1, cfg.beta2))
            self.scalers[name] = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        return module

    def add_ema(self, name: str) -> None:
        if self.config.ema_decay > 0:
            self.ema, self.ema_of = EMA(self.networks[name], self.config.ema_decay), name

    def compiled(self, module: nn.Module):
        """torch.compile(module) under --compile where compiling pays (COMPILE_PAYS_ON), else module itself."""
        if not self.config.compile:
            return module
        if self.device.type not in COMPILE_PAYS_ON:
            if not self._said_eager:
                self._said_eager = True
                warnings.warn(f"--compile: torch.compile does not speed up training on {self.device.type} (a "
                              f"compiled DCGAN-32 step ran at 0.94x of eager on the CPU); training eagerly",
                              EagerFallbackWarning, stacklevel=2)
            return module
        return torch.compile(module)

    # -- one update ---------------------------------------------------------------------------

    def autocast(self):
        if self.config.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def slice_for_rank(self, global_batch: torch.Tensor) -> torch.Tensor:
        """This process's share of a batch drawn for all processes (rank r takes rows r, r + W, ...)."""
        if self.dist.world_size == 1:
            return global_batch
        return global_batch[self.dist.rank::self.dist.world_size]

    def shared_noise(self, n: int, *shape: int) -> torch.Tensor:
        """N(0, I) noise (n, *shape) for this process's n samples: its slice of the global batch's noise."""
        return self.slice_for_rank(torch.randn(n * self.dist.world_size, *shape, generator=self.rng,
                                               device=self.device))

    @property
    def rank_rng(self) -> torch.Generator:
        """The generator of random draws a function makes on this process's slice alone (augmentation,
        instance noise, the gradient penalty's interpolation points, rollouts).

        One process: the loop generator itself. Several: a generator of this process, seeded afresh
        from (seed, step, rank) at each step, so that the processes draw independently (with the shared
        generator they would all apply the same draws to different samples) and a resumed run draws
        what the uninterrupted one did without checkpointing every process's generator state.
        """
        if self.dist.world_size == 1:
            return self.rng
        if self._rank_rng_step != self.step:
            if self._rank_rng is None:
                self._rank_rng = torch.Generator(self.device)
            # Hashed, so no (seed, step, rank) meets another's stream or the shared generator's (seeded `seed`).
            key = np.random.SeedSequence([self.config.seed, self.step, self.dist.rank])
            self._rank_rng.manual_seed(int(key.generate_state(1, np.uint64)[0]) >> 1)
            self._rank_rng_step = self.step
        return self._rank_rng

    def update(self, name: str, loss: torch.Tensor) -> bool:
        """Gradient of `loss` w.r.t. network `name` only, averaged over processes, then its optimizer step.

        Returns False when the step was skipped because the loss or a gradient was not finite.
        """
        optimizer, scaler = self.optimizers[name], self.scalers[name]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward(inputs=params)
        return self.apply_gradients(name, loss)

    def apply_gradients(self, name: str, loss: torch.Tensor) -> bool:
        """Average network `name`'s .grad over processes and step its optimizer, unless something is not finite.

        Policy for non-finite values: the update is skipped (with fp16 the loss scale is also lowered, as
        GradScaler does for overflows), a warning names the step and network, and after
        config.max_nonfinite skipped updates in a row training stops with NonFiniteError. The check costs one
        host synchronisation per update (two with several processes, which also read which parameters had a
        gradient on some rank). With fp16, overflowing gradients under a finite loss are the loss
        scaler's normal business and do not count.
        """
        optimizer, scaler = self.optimizers[name], self.scalers[name]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # |loss| is read in the same host synchronisation as the gradients' verdict: not finite, the update is
        # skipped; finite but this large, the run has diverged without overflowing (see DIVERGED_LOSS).
        size = loss.detach().abs().max().float()
        if self.dist.world_size > 1:
            from .distributed import all_reduce_gradients

            # Every rank's loss verdict rides in the gradients' collective. A non-finite gradient on
            # any rank makes the summed gradient non-finite, so the check below sees the same
            # reduced values, and reaches the same decision, on every rank.
            size = torch.where(all_reduce_gradients(params, self.dist, size.isfinite()), size, float("nan"))
        grads = [p.grad for p in params if p.grad is not None] if not scaler.is_enabled() else []
        size, grad_sum = torch.stack([size, finite_sum(grads) if grads else size.new_zeros(())]).tolist()
        ok = math.isfinite(size)
        diverged = ok and size > DIVERGED_LOSS
        if ok and not math.isfinite(grad_sum):  # a non-finite gradient, or finite ones whose sum overflowed
            ok = bool(all_finite(grads))
        if diverged and name not in self.diverged_warned:
            self.diverged_warned.add(name)
            warnings.warn(f"step {self.step + 1}: {name}: loss {size:.3g} is finite "
                          f"but above {DIVERGED_LOSS:g}: training has diverged. Try a lower learning rate, or a "
                          f"penalty such as --r1-gamma", DivergenceWarning, stacklevel=2)
        if ok:
            self.nonfinite_in_a_row[name] = 0
            self.clip_gradients(name)
            scaler.step(optimizer)
            scaler.update()
            return True
        in_a_row = self.nonfinite_in_a_row[name] = self.nonfinite_in_a_row.get(name, 0) + 1
        self.skipped_updates += 1
        if scaler.is_enabled():
            scaler.unscale_(optimizer)
            scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
        optimizer.zero_grad(set_to_none=True)
        where = f"step {self.step + 1}: {name}"
        if in_a_row >= self.config.max_nonfinite:
            raise NonFiniteError(
                f"{where}: non-finite loss or gradients in {in_a_row} updates in a row; training "
                f"stopped. Try a lower learning rate, --amp bf16, or a penalty such as --r1-gamma")
        warnings.warn(f"{where}: non-finite loss or gradients; update skipped "
                      f"({in_a_row} in a row, stop at {self.config.max_nonfinite})", stacklevel=2)
        return False

    def clip_gradients(self, name: str) -> None:
        """Scale network `name`'s gradients to a global L2 norm of at most config.clip_grad (0: off), as
        tf.clip_by_global_norm does in SeqGAN's code; with fp16 they are unscaled first."""
        if self.config.clip_grad > 0:
            optimizer = self.optimizers[name]
            self.scalers[name].unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.config.clip_grad)

    def end_step(self) -> None:
        if self.ema is not None:
            self.ema.update(self.networks[self.ema_of])
        self.step += 1

    # -- what a family provides ----------------------------------------------------------------

    @staticmethod
    def build_networks(config: TrainConfig, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        """The family's networks by name, freshly initialised (checkpoints and samplers rebuild them here)."""
        raise NotImplementedError

    @staticmethod
    def noise_shape(config: TrainConfig) -> tuple[int, ...]:
        """The shape of the noise the sampling network maps to one sample."""
        return (config.z_dim,)

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    #: samples each train_step consumes (for the images/s column of the log)
    def samples_per_step(self) -> int:
        return self.config.batch_size * self.dist.world_size

    # -- what follows from the kind of data ---------------------------------------------------

    def real_batches(self):
        """Endless batches of real data for this process, resuming where the checkpoint left off."""
        return self.data.batches(self)

    def sampler(self) -> nn.Module:
        """The module that turns noise into samples (the EMA copy when there is one)."""
        return self.ema.module if self.ema is not None else self.networks[self.sampling_network]

    @classmethod
    def draw_samples(cls, sampler: nn.Module, config: TrainConfig, n: int, seed: int, device) -> torch.Tensor:
        """n samples of a sampling network (in eval mode) from noise drawn with seed, 1000 at a time."""
        z = torch.randn(n, *cls.noise_shape(config), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return torch.cat([sampler(chunk.to(device)) for chunk in z.split(1000)])

    def generate(self, n: int, seed: int) -> torch.Tensor:
        """n samples of the sampling network, drawn with their own seeded stream (training's is untouched)."""
        g = self.sampler()
        was_training = g.training
        g.eval()
        try:
            return self.draw_samples(g, self.config, n, seed, self.device)
        finally:
            g.train(was_training)

    def write_samples(self, run_dir: Path) -> None:
        """The latest samples at run_dir/samples.png (.txt for tokens) and, but for points, a copy per step in
        run_dir/samples/. Drawn from the same seed every time, so successive files show training's progress."""
        kind = self.kind
        samples = self.generate(kind.grid_samples or self.config.n_samples, self.config.seed + 1)
        centers = getattr(self.data, "centers", None)
        kind.write(samples, run_dir / SAMPLES, centers)
        if kind.history:
            (run_dir / SAMPLES).mkdir(exist_ok=True)
            kind.write(samples, run_dir / SAMPLES / f"step{self.step:07d}", centers)

    def evaluate(self, n: int | None = None, seed: int | None = None, **options) -> dict[str, float]:
        """The default metrics of n (default config.eval_n) samples of the sampling network, drawn with seed
        (default: the run's). Images and points: fastgan.metrics.evaluate_generator, which takes `options`
        (metrics, extractor, dataset, batch_size). Sequences: sequence_metrics against as many training
        sequences, and "n", the number scored (at most the training set); with at least TIMESERIES_MIN_N of them
        and config.eval_ts_repeats > 0, also TimeGAN's discriminative and predictive scores (mean and _std over
        that many repeats), whose post-hoc GRUs train afresh at every evaluation (fastgan.metrics.timeseries)."""
        from .. import metrics

        cfg = self.config
        n = cfg.eval_n if n is None else n
        seed = cfg.seed if seed is None else seed
        if not self.kind.feature_metrics:  # sequences (a family of tokens scores them itself)
            if options:
                raise ValueError(f"{', '.join(options)}: a {cfg.model} run is scored with its own metrics "
                                 f"(sequence_metrics on the data it was trained on)")
            real = self.data.real_sample(n, seed)
            fake = self.generate(len(real), seed).float()
            result = {"n": len(real), **metrics.sequence_metrics(real, fake, cfg.dataset == "sines", seed)}
            if cfg.eval_ts_repeats and len(real) >= TIMESERIES_MIN_N:
                for name, score in (("discriminative", metrics.discriminative_score),
                                    ("predictive", metrics.predictive_score)):
                    result[name], result[f"{name}_std"] = score(real, fake, cfg.eval_ts_repeats, seed)
            return result
        g = self.sampler()
        was_training = g.training
        try:
            return metrics.evaluate_generator(g, options.pop("dataset", None) or cfg.dataset, cfg.resolution,
                                              cfg.z_dim, n=n, device=self.device, seed=seed, **options)
        finally:
            g.train(was_training)

    # -- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        rng = {"cpu": torch.get_rng_state(), "loop": self.rng.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step,
            "batches_seen": self.batches_seen,
            "config": self.config.to_dict(),
            "data_shape": list(self.data_shape),
            "networks": {name: net.state_dict() for name, net in self.networks.items()},
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scalers": {name: scaler.state_dict() for name, scaler in self.scalers.items()},
            "rng": rng,
            # So that a resumed run stops at the same update as an uninterrupted one would.
            "nonfinite": {"in_a_row": dict(self.nonfinite_in_a_row), "skipped_updates": self.skipped_updates},
        }

    #: keys load_state_dict needs; "nonfinite" is optional (checkpoints written before it existed)
    STATE_KEYS = ("step", "batches_seen", "config", "data_shape", "networks", "ema", "optimizers", "scalers", "rng")

    def load_state_dict(self, state: dict) -> None:
        from .checkpoint import CheckpointError, require_keys

        require_keys(state, self.STATE_KEYS, "checkpoint")
        if list(state["data_shape"]) != list(self.data_shape):
            raise CheckpointError(
                f"checkpoint was trained on data of shape {state['data_shape']}, this run has {list(self.data_shape)}")
        for kind, mine in (("networks", self.networks), ("optimizers", self.optimizers), ("scalers", self.scalers)):
            if set(state[kind]) != set(mine):
                raise CheckpointError(f"checkpoint {kind} are {sorted(state[kind])}; this run has {sorted(mine)}")
            for name, obj in mine.items():
                obj.load_state_dict(state[kind][name])
        if self.ema is not None and state["ema"] is not None:
            self.ema.module.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"]["cpu"])
        self.rng.set_state(state["rng"]["loop"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.step, self.batches_seen = state["step"], state["batches_seen"]
        nonfinite = state.get("nonfinite", {})
        self.nonfinite_in_a_row = dict(nonfinite.get("in_a_row", {}))
        self.skipped_updates = nonfinite.get("skipped_updates", 0)
        if self.ema is not None:
            self.ema.num_updates = self.step
