"""TrainConfig: every knob of a training run, with defaults that train DCGAN on digits on a CPU."""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..losses import D_LOSS_KINDS, G_LOSS_KINDS

MODELS = ("dcgan", "mlp")
AMP_MODES = ("bf16", "fp16")


def _f(default, help: str, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    # Run
    name: str = _f("", "run name; the run directory is OUT_DIR/NAME (default: DATASET-MODEL, numbered if taken)")
    out_dir: str = _f("runs", "parent folder of run directories")
    resume: bool = _f(False, "continue the run OUT_DIR/NAME from its latest checkpoint")
    seed: int = _f(0, "seed of weights, noise and data order; a seeded CPU run is bit-reproducible")
    device: str = _f("cpu", "torch device: cpu, cuda, cuda:1, ...")
    threads: int = _f(0, "CPU threads for torch (0: torch's default)")
    # Data
    dataset: str = _f("digits", "built-in dataset (digits, ring8, grid25) or a .fgd file from `fastgan prepare`")
    resolution: int = _f(16, "image size of the built-in digits (8, 16, 32 or 64)")
    hflip: bool = _f(False, "random horizontal flips of real images")
    # Models
    model: str = _f("dcgan", "architecture of G and D", MODELS)
    z_dim: int = _f(100, "latent size")
    g_width: int = _f(32, "DCGAN: channels of G's last hidden block (doubling toward 4x4)")
    d_width: int = _f(32, "DCGAN: channels of D's first block (doubling toward 4x4)")
    mlp_hidden: tuple[int, ...] = _f((256, 256), "MLP: hidden layer widths of G and D, comma-separated")
    # Optimisation
    steps: int = _f(2000, "generator updates")
    batch_size: int = _f(64, "images per D and per G update")
    n_critic: int = _f(1, "D updates per G update")
    lr_g: float = _f(2e-4, "Adam learning rate of G")
    lr_d: float = _f(2e-4, "Adam learning rate of D (TTUR: set it apart from lr_g)")
    beta1: float = _f(0.5, "Adam beta1 (both networks)")
    beta2: float = _f(0.999, "Adam beta2 (both networks)")
    d_loss: str = _f("bce", "discriminator loss", D_LOSS_KINDS)
    g_loss: str = _f("ns", "generator loss", G_LOSS_KINDS)
    label_smoothing: float = _f(0.0, "one-sided label smoothing of D's real target (bce only)")
    r1_gamma: float = _f(0.0, "R1 penalty weight gamma (0: off); applied lazily every r1_every steps")
    r1_every: int = _f(16, "steps between lazy R1 penalties (the penalty is scaled by this)")
    gp_weight: float = _f(0.0, "WGAN-GP gradient penalty weight (0: off)")
    ema_decay: float = _f(0.999, "EMA decay of G's weights for samples and evaluation (0: no EMA)")
    amp: str | None = _f(None, "mixed precision: bf16, fp16 (with loss scaling) or none", AMP_MODES)
    compile: bool = _f(False, "torch.compile G and D")
    # Output
    log_every: int = _f(50, "steps between metrics.jsonl lines")
    sample_every: int = _f(500, "steps between sample grids")
    ckpt_every: int = _f(500, "steps between checkpoints (one is always written at the end)")
    n_samples: int = _f(64, "images in a sample grid")
    eval_every: int = _f(0, "steps between evaluations of the EMA generator, logged to metrics.jsonl (0: off)")
    eval_n: int = _f(2000, "generated samples per evaluation")
    progress: bool = _f(True, "show a progress bar")

    def __post_init__(self):
        if isinstance(self.amp, str) and self.amp.lower() in ("", "none", "fp32", "no"):
            self.amp = None
        if isinstance(self.mlp_hidden, list):
            self.mlp_hidden = tuple(self.mlp_hidden)
        self.validate()

    def validate(self) -> None:
        def bad(name, why):
            raise ValueError(f"TrainConfig.{name}: {why}; got {getattr(self, name)!r}")

        if self.model not in MODELS:
            bad("model", f"must be one of {', '.join(MODELS)}")
        if self.d_loss not in D_LOSS_KINDS:
            bad("d_loss", f"must be one of {', '.join(D_LOSS_KINDS)}")
        if self.g_loss not in G_LOSS_KINDS:
            bad("g_loss", f"must be one of {', '.join(G_LOSS_KINDS)}")
        if self.amp is not None and self.amp not in AMP_MODES:
            bad("amp", "must be bf16, fp16 or none")
        for name in ("steps", "batch_size", "n_critic", "z_dim", "g_width", "d_width", "r1_every",
                     "log_every", "sample_every", "ckpt_every", "n_samples", "eval_n"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                bad(name, "must be > 0")
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                bad(name, "must be in [0, 1)")
        for name in ("r1_gamma", "gp_weight", "eval_every"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", "must be in [0, 1)")
        if self.label_smoothing and self.d_loss != "bce":
            bad("label_smoothing", "applies to d_loss=bce only")
        if self.threads < 0:
            bad("threads", "must be >= 0")
        if not self.mlp_hidden or any(h < 1 for h in self.mlp_hidden):
            bad("mlp_hidden", "must be one or more positive widths")
        if "/" in self.name or self.name in (".", ".."):
            bad("name", "must be a plain folder name")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "TrainConfig":
        with open(path, "rb") as f:
            try:
                values = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"{path}: not valid TOML: {e}") from None
        values.update(overrides)
        return cls.from_dict(values)
