"""The training loop: alternating D and G updates, AMP, compile, EMA, R1/GP, samples, logs, checkpoints."""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch
from torch import nn

from .. import losses
from ..data import ArrayDataset, Loader, load_image_dataset, load_toy
from ..data.toy import TOY_DATASETS, ToyMixture
from ..models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from .checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .ema import EMA
from .samples import save_image_grid, save_scatter

METRICS = "metrics.jsonl"
SAMPLES = "samples.png"


def build_models(config: TrainConfig, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """G and D for data of shape (C, H, W) or (2,) (points in the plane)."""
    if len(data_shape) == 1:
        if config.model != "mlp":
            raise ValueError(f"dataset {config.dataset!r} holds points, not images: use --model mlp")
        g = MLPGenerator(config.z_dim, config.mlp_hidden, data_shape, out_act="linear")
        return g, MLPDiscriminator(data_shape, config.mlp_hidden)
    if config.model == "mlp":
        return MLPGenerator(config.z_dim, config.mlp_hidden, data_shape), MLPDiscriminator(data_shape, config.mlp_hidden)
    c, h, w = data_shape
    if h != w:
        raise ValueError(f"DCGAN needs square images; the dataset has {h}x{w}")
    return DCGANGenerator(config.z_dim, h, c, config.g_width), DCGANDiscriminator(h, c, config.d_width)


def _open_data(config: TrainConfig):
    """(data source, shape of one sample): a ToyMixture, or a dataset for the Loader."""
    if config.dataset in TOY_DATASETS:
        return load_toy(config.dataset), (2,)
    if config.dataset.endswith(".fgd"):
        from ..data import PackedDataset

        ds = PackedDataset(config.dataset)
    else:
        ds = ArrayDataset(*load_image_dataset(config.dataset, config.resolution))
    return ds, tuple(ds.shape)


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


class Trainer:
    def __init__(self, config: TrainConfig):
        self.config = config
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r} requested but CUDA is not available")
        if config.threads:
            torch.set_num_threads(config.threads)
        self.data, self.data_shape = _open_data(config)
        self.is_toy = isinstance(self.data, ToyMixture)

        torch.manual_seed(config.seed)
        g, d = build_models(config, self.data_shape)
        self.generator, self.discriminator = g.to(self.device), d.to(self.device)
        self.ema = EMA(self.generator, config.ema_decay) if config.ema_decay > 0 else None
        self.opt_g = torch.optim.Adam(self.generator.parameters(), config.lr_g, betas=(config.beta1, config.beta2))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), config.lr_d, betas=(config.beta1, config.beta2))
        fp16 = config.amp == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        # Compiled callables share parameters with the eager modules; the eager D serves R1 and
        # WGAN-GP, whose double backward torch.compile does not support.
        self.g_fwd = torch.compile(self.generator) if config.compile else self.generator
        self.d_fwd = torch.compile(self.discriminator) if config.compile else self.discriminator
        # Every random draw of the loop comes from this generator, whose state is checkpointed.
        self.rng = torch.Generator(self.device).manual_seed(config.seed)
        self.fixed_z = torch.randn(config.n_samples, config.z_dim,
                                   generator=torch.Generator().manual_seed(config.seed + 1)).to(self.device)
        self.step = 0
        self.batches_seen = 0
        if not self.is_toy:
            self.loader = Loader(self.data, config.batch_size, shuffle=True, seed=config.seed, drop_last=True,
                                 hflip=config.hflip, device=self.device)

    # -- data ---------------------------------------------------------------------------------

    def real_batches(self):
        """Endless real batches, resuming at batch number self.batches_seen."""
        if self.is_toy:
            while True:
                yield self.data.sample(self.config.batch_size, self.rng)
        epoch, skip = divmod(self.batches_seen, len(self.loader))
        while True:
            self.loader.set_epoch(epoch)
            for i, (images, _) in enumerate(self.loader):
                if i >= skip:
                    yield images
            skip, epoch = 0, epoch + 1

    def _noise(self) -> torch.Tensor:
        return torch.randn(self.config.batch_size, self.config.z_dim, generator=self.rng, device=self.device)

    def _autocast(self):
        if self.config.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    # -- one step -----------------------------------------------------------------------------

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        """n_critic D updates, then one G update on the last D update's fake batch."""
        cfg = self.config
        r1_now = cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0
        for i in range(cfg.n_critic):
            real = next(batches)
            self.batches_seen += 1
            last = i == cfg.n_critic - 1
            with self._autocast(), (contextlib.nullcontext() if last else torch.no_grad()):
                fake = self.g_fwd(self._noise())
            d_stats = self._d_update(real, fake.detach(), r1_now and i == 0)
        g_stats = self._g_update(fake)
        if self.ema is not None:
            self.ema.update(self.generator)
        self.step += 1
        return {**d_stats, **g_stats}

    def _d_update(self, real, fake, with_r1: bool) -> dict[str, torch.Tensor]:
        cfg = self.config
        if with_r1:
            real = real.detach().requires_grad_(True)
        with self._autocast():
            real_logits = (self.discriminator if with_r1 else self.d_fwd)(real)
            fake_logits = self.d_fwd(fake)
        loss = losses.d_loss(real_logits.float(), fake_logits.float(), cfg.d_loss, cfg.label_smoothing)
        stats = {"d_loss": loss.detach(), "real_logit": real_logits.detach().float().mean(),
                 "fake_logit": fake_logits.detach().float().mean()}
        if with_r1:
            r1 = losses.r1_penalty(real_logits, real)
            loss = loss + 0.5 * cfg.r1_gamma * cfg.r1_every * r1
            stats["r1"] = r1.detach()
        if cfg.gp_weight > 0:
            with self._autocast():
                gp = losses.gradient_penalty(self.discriminator, real.detach(), fake, generator=self.rng)
            loss = loss + cfg.gp_weight * gp
            stats["gp"] = gp.detach()
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        return stats

    def _g_update(self, fake) -> dict[str, torch.Tensor]:
        with self._autocast():
            fake_logits = self.d_fwd(fake)
        loss = losses.g_loss(fake_logits.float(), self.config.g_loss)
        self.opt_g.zero_grad(set_to_none=True)
        # Only G's gradients are wanted; D's parameters keep requires_grad (no toggling in compiled code).
        self.scaler_g.scale(loss).backward(inputs=list(self.generator.parameters()))
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        return {"g_loss": loss.detach()}

    # -- outputs ------------------------------------------------------------------------------

    def sampler(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.generator

    @torch.no_grad()
    def write_samples(self, run_dir: Path) -> None:
        g = self.sampler()
        was_training = g.training
        g.eval()
        if self.is_toy:
            z = torch.randn(2000, self.config.z_dim, generator=torch.Generator().manual_seed(self.config.seed + 2))
            save_scatter(g(z.to(self.device)), run_dir / SAMPLES, self.data.centers)
        else:
            images = g(self.fixed_z)
            save_image_grid(images, run_dir / SAMPLES)
            (run_dir / "samples").mkdir(exist_ok=True)
            save_image_grid(images, run_dir / "samples" / f"step{self.step:07d}.png")
        g.train(was_training)

    def evaluate(self) -> dict[str, float]:
        """The default metrics of the sampling generator on config.eval_n samples (fastgan.metrics)."""
        from ..metrics import evaluate_generator

        cfg = self.config
        g = self.sampler()
        was_training = g.training
        try:
            return evaluate_generator(g, cfg.dataset, cfg.resolution, cfg.z_dim, n=cfg.eval_n,
                                      device=self.device, seed=cfg.seed)
        finally:
            g.train(was_training)

    def state_dict(self) -> dict:
        rng = {"cpu": torch.get_rng_state(), "loop": self.rng.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step,
            "batches_seen": self.batches_seen,
            "config": self.config.to_dict(),
            "data_shape": list(self.data_shape),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "generator_ema": self.ema.module.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng": rng,
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["data_shape"]) != list(self.data_shape):
            raise CheckpointError(
                f"checkpoint was trained on data of shape {state['data_shape']}, this run has {list(self.data_shape)}"
            )
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.ema is not None and state["generator_ema"] is not None:
            self.ema.module.load_state_dict(state["generator_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        torch.set_rng_state(state["rng"]["cpu"])
        self.rng.set_state(state["rng"]["loop"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.step, self.batches_seen = state["step"], state["batches_seen"]
        if self.ema is not None:
            self.ema.num_updates = self.step


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from, so the log has each step once."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines(keepends=True)
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_bytes(path, "".join(kept).encode())


def train(config: TrainConfig) -> Path:
    """Train G and D as `config` says; returns the run directory.

    The run directory holds samples.png (latest grid, from the EMA generator), samples/stepN.png,
    metrics.jsonl (one JSON object per log step), config.json and checkpoint.pt.
    """
    from tqdm import tqdm

    run_dir = _new_run_dir(config)
    if config.resume:
        state = load_checkpoint(run_dir)
        saved = TrainConfig.from_dict(state["config"])
        # A resumed run keeps its own settings; only the length and the outputs may change.
        for name in ("steps", "log_every", "sample_every", "ckpt_every", "progress", "device", "threads"):
            setattr(saved, name, getattr(config, name))
        saved.resume, config = True, saved
    trainer = Trainer(config)
    if config.resume:
        trainer.load_state_dict(state)
        _truncate_log(run_dir / METRICS, trainer.step)
    atomic_write_bytes(run_dir / "config.json", json.dumps(config.to_dict(), indent=2).encode())

    batches = trainer.real_batches()
    log = open(run_dir / METRICS, "a")
    bar = tqdm(total=config.steps, initial=trainer.step, disable=not config.progress, unit="step",
               dynamic_ncols=True)
    window_start, window_steps = time.perf_counter(), 0
    try:
        while trainer.step < config.steps:
            stats = trainer.train_step(batches)
            window_steps += 1
            bar.update(1)
            step = trainer.step
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - window_start
                row = {"step": step, **{k: round(float(v), 6) for k, v in stats.items()},
                       "img_per_s": round(window_steps * config.batch_size * config.n_critic / elapsed, 1)}
                log.write(json.dumps(row) + "\n")
                log.flush()
                bar.set_postfix(d_loss=f"{row['d_loss']:.3f}", g_loss=f"{row['g_loss']:.3f}")
                window_start, window_steps = time.perf_counter(), 0
            if step % config.sample_every == 0 or step == config.steps:
                trainer.write_samples(run_dir)
            if config.eval_every and (step % config.eval_every == 0 or step == config.steps):
                log.write(json.dumps({"step": step, "eval": trainer.evaluate()}) + "\n")
                log.flush()
            if step % config.ckpt_every == 0 or step == config.steps:
                save_checkpoint(trainer.state_dict(), run_dir)
    finally:
        bar.close()
        log.close()
    return run_dir


def load_generator(run_or_ckpt: str | Path, ema: bool = True, device="cpu"):
    """(generator in eval mode, its TrainConfig, the step) from a run directory or checkpoint file."""
    state = load_checkpoint(run_or_ckpt, map_location=device)
    config = TrainConfig.from_dict(state["config"])
    generator, _ = build_models(config, tuple(state["data_shape"]))
    weights = state["generator_ema"] if ema and state["generator_ema"] is not None else state["generator"]
    generator.load_state_dict(weights)
    return generator.to(device).eval(), config, state["step"]
