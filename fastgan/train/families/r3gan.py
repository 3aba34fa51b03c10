"""The R3GAN family (Huang, Gokaslan, Kuleshov, Tompkin, NeurIPS 2024): the relativistic pairing loss RpGAN with
zero-centred gradient penalties on real (R1) and generated (R2) data at every D step, on R3GAN's
normalisation-free ResNeXt networks (fastgan.models.r3gan), with its schedules.

As in its code (brownvc/R3GAN: R3GAN/Trainer.py, training/training_loop.py, train.py):
- each step is one D update on a real batch and fresh noise, then one G update on another real batch and fresh
  noise (n_critic is 1);
- D's loss is softplus(-(D(real) - D(fake))) + gamma / 2 (R1 + R2), R1 and R2 the squared norms of D's gradient
  at each real and each generated sample; G's is softplus(-(D(fake) - D(real)));
- Adam with beta1 0 and eps 1e-8; the learning rate (both networks), Adam's beta2, gamma and the EMA's half-life
  (in images) follow cosine_decay_with_warmup over r3gan_decay_kimg thousand images (images seen: steps x
  batch); the EMA's decay is 0.5 ** (batch / half-life), so it starts at 0 (a copy of G) and grows.

fastgan's EMA keeps its own ramp min(decay, (1 + t) / (10 + t)), which is larger than R3GAN's decay at every
step of its presets, so the EMA is R3GAN's. D has no layer that mixes samples, so both penalties come from one D
forward over the real and generated batches together and one double backward (on the CPU, where two D
forwards measured faster, one per batch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ... import losses
from ...models import R3GANDiscriminator, R3GANGenerator
from .family import Family
from .gan import GANTrainer, num_classes
from .settings import setting

#: preset -> (G's widths, cardinalities and blocks per stage, from 4x4 up; D mirrors them). small16 and small32
#: fit a 2-core CPU; cifar10 is the paper's CIFAR-10 network (train.py --preset CIFAR10), for a GPU.
PRESETS = {
    "small16": ((64, 64, 64), (8, 8, 8), (1, 1, 1)),
    "small32": ((64, 64, 64, 64), (8, 8, 8, 8), (1, 1, 1, 1)),
    "cifar10": ((768, 768, 768, 768), (96, 96, 96, 96), (2, 2, 2, 2)),
}


@dataclass
class R3GANSettings:
    """R3GAN's networks and schedules."""

    r3gan_preset: str = setting("auto", "network size: small16 or small32 (for a CPU), cifar10 (the paper's CIFAR-10 "
                                        "networks, for a GPU), or auto (small16 up to 16 px, small32 above)",
                                ("auto", *PRESETS))
    r3gan_gamma: float = setting(0.05, "weight gamma of R1 + R2 (each scaled by gamma / 2) at the start; cosine-"
                                       "decayed to r3gan_gamma_final (the paper's CIFAR-10: 0.05 -> 0.005)",
                                 at_least=0)
    r3gan_gamma_final: float = setting(0.005, "gamma at the end of the decay", at_least=0)
    r3gan_lr_final: float = setting(5e-5, "learning rate of G and D at the end of the decay (from lr_g and lr_d; "
                                          "the paper: 2e-4 -> 5e-5)", above=0)
    r3gan_beta2_final: float = setting(0.99, "Adam beta2 at the end of the decay (from --beta2; the paper: 0.9 -> "
                                             "0.99)", at_least=0, below=1)
    r3gan_ema_kimg: float = setting(0.0, "half-life of the EMA of G's weights at the end of the decay, in "
                                         "thousands of images (0: a quarter of the decay, the ratio of the paper's "
                                         "CIFAR-10 preset: 5,000 of 20,000)", at_least=0)
    r3gan_decay_kimg: float = setting(128.0, "thousands of images over which the schedules decay, then stay at their "
                                             "final values (images: steps x batch; 128: the default 2,000 steps of "
                                             "64; the paper's CIFAR-10: 20,000). Fixed, not the run's length, so a "
                                             "resume with more --steps keeps the schedule", above=0)
    r3gan_warmup_kimg: float = setting(0.0, "thousands of images of linear warm-up of every schedule from 0 (the "
                                            "paper's presets: 0)", at_least=0)


def cosine_decay_with_warmup(nimg: float, base: float, final: float, total_nimg: float, warmup_nimg: float = 0.0,
                             warmup_value: float = 0.0) -> float:
    """R3GAN's schedule: from `base` to `final` along half a cosine over total_nimg images (then `final`), after
    a linear warm-up from warmup_value over warmup_nimg images."""
    if nimg > total_nimg:
        return final
    if warmup_nimg > 0 and nimg < warmup_nimg:
        return warmup_value + (base - warmup_value) * nimg / warmup_nimg
    decay = 0.5 * (1 + math.cos(math.pi * (nimg - warmup_nimg) / (total_nimg - warmup_nimg)))
    return base + (1 - decay) * (final - base)


def preset(config, resolution: int) -> tuple[tuple[int, ...], ...]:
    """(widths, cardinalities, blocks) of G's stages, 4x4 to `resolution`, for config.r3gan_preset."""
    name = config.r3gan_preset
    if name == "auto":
        name = "small16" if resolution <= 16 else "small32"
    stages = int(math.log2(resolution)) - 1
    if resolution < 4 or 2 ** (stages + 1) != resolution:
        raise ValueError(f"model r3gan needs square images of 4, 8, 16, ... px; the dataset has {resolution} px")
    widths, groups, blocks = PRESETS[name]
    # A preset lists the stages of its own resolution; another resolution takes its first `stages` (smaller) or
    # repeats its last stage (larger).
    pick = lambda values: tuple(values[min(i, len(values) - 1)] for i in range(stages))  # noqa: E731
    return pick(widths), pick(groups), pick(blocks)


def build_r3gan(config, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    c, h, w = data_shape
    if h != w:
        raise ValueError(f"model r3gan needs square images; the dataset has {h}x{w}")
    widths, groups, blocks = preset(config, h)
    k = num_classes(config)
    g = R3GANGenerator(config.z_dim, c, widths, groups, blocks, num_classes=k, embed_dim=config.z_dim if k else 0)
    d = R3GANDiscriminator(c, widths[::-1], groups[::-1], blocks[::-1], num_classes=k,
                           embed_dim=widths[0] if k else 0)
    return g, d


def r3gan_d_loss(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, gamma: float,
                 cond: tuple = (), one_pass: bool | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D's loss, RpGAN's softplus(-(D(real) - D(fake))) + gamma / 2 (R1 + R2) averaged over pairs, and its
    statistics, from fastgan.losses.r1_r2_penalty: both penalties and the loss from one D forward over real and
    generated samples together and one double backward (exact, as R3GAN's D mixes no samples), or with
    one_pass=False from a D forward per batch. With gamma 0 the penalties are not computed (no double
    backward): RpGAN alone, the unregularised step."""
    if gamma == 0:
        both = torch.cat([real, fake]).detach()
        logits = discriminator(both, *(torch.cat([c, c]) for c in cond))
        loss = losses.d_loss(*logits.chunk(2), "rpgan")
        return loss, {"d_loss": loss.detach()}
    result = losses.r1_r2_penalty(discriminator, real, fake, "rpgan", one_pass, labels=cond[0] if cond else None)
    loss = result.loss + gamma / 2 * (result.r1 + result.r2)
    return loss, {"d_loss": result.loss.detach(), "r1": result.r1.detach(), "r2": result.r2.detach()}


class R3GANTrainer(GANTrainer):
    """One D update with RpGAN + R1 + R2, then one G update with RpGAN, under R3GAN's schedules."""

    @staticmethod
    def build_networks(config, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        g, d = build_r3gan(config, data_shape)
        return {"generator": g, "discriminator": d}

    @property
    def _packs_of_fresh(self) -> int:
        return 1

    def schedule(self) -> dict[str, float]:
        """The learning rate, beta2, gamma and EMA half-life (images) at this step."""
        cfg = self.config
        batch = cfg.batch_size * self.dist.world_size
        nimg = self.step * batch
        total = cfg.r3gan_decay_kimg * 1000
        warmup = cfg.r3gan_warmup_kimg * 1000
        ema_final = cfg.r3gan_ema_kimg * 1000 or total / 4

        def at(base, final):
            return cosine_decay_with_warmup(nimg, base, final, total, warmup)

        return {"lr_g": at(cfg.lr_g, cfg.r3gan_lr_final), "lr_d": at(cfg.lr_d, cfg.r3gan_lr_final),
                "beta2": at(cfg.beta2, cfg.r3gan_beta2_final), "gamma": at(cfg.r3gan_gamma, cfg.r3gan_gamma_final),
                "ema_nimg": at(0.0, ema_final)}

    def _set_schedule(self, now: dict[str, float]) -> None:
        for name, lr in (("generator", now["lr_g"]), ("discriminator", now["lr_d"])):
            for group in self.optimizers[name].param_groups:
                group["lr"], group["betas"] = lr, (self.config.beta1, now["beta2"])
        if self.ema is not None:
            self.ema.decay = 0.5 ** (self.config.batch_size * self.dist.world_size / max(now["ema_nimg"], 1e-8))

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        now = self.schedule()
        self._set_schedule(now)
        d_stats = self._r3_d_update(*self._real(batches), now["gamma"])
        g_stats = self._r3_g_update(*self._real(batches))
        self.end_step()
        return {**d_stats, **g_stats, "gamma": torch.tensor(now["gamma"])}

    def _r3_d_update(self, real, cond: tuple, gamma: float) -> dict[str, torch.Tensor]:
        with self.autocast(), torch.no_grad():
            fake = self.g_fwd(self._noise(), *cond)
        with self.autocast():
            # On the CPU the two-pass form measured faster (bench.r3gan_step, 2026-12-07: the step 0.95x of R3GAN's
            # code against 0.89x with one pass; fewer, larger convolutions do not pay there); elsewhere, one pass.
            loss, stats = r3gan_d_loss(self.discriminator, real, fake, gamma, cond,
                                       one_pass=None if self.device.type != "cpu" else False)
        self.update("discriminator", loss)
        return stats

    def _r3_g_update(self, real, cond: tuple) -> dict[str, torch.Tensor]:
        with self.autocast():
            fake = self.g_fwd(self._noise(), *cond)
            # Two D forwards, as R3GAN's code: one over both batches measured slower on the CPU.
            fake_logits, real_logits = self.d_fwd(fake, *cond).float(), self.d_fwd(real, *cond).float()
        loss = losses.g_loss(fake_logits, "rpgan", real_logits=real_logits)
        self.update("generator", loss)
        return {"g_loss": loss.detach(), "real_logit": real_logits.mean().detach(),
                "fake_logit": fake_logits.mean().detach()}

    def samples_per_step(self) -> int:
        return 2 * self.config.batch_size * self.dist.world_size  # a real batch for D and one for G


R3GAN = Family(
    "r3gan", "R3GAN: RpGAN + R1 + R2 on a normalisation-free ResNeXt (Huang et al. 2024) on images", ("images",),
    R3GANTrainer, frozenset({"conditional", "compile"}), settings=(R3GANSettings,),
    fixed={"n_critic": ((1,), "its schedule is one D and one G update per step"),
           "d_loss": (("rpgan",), "its loss is RpGAN's"), "g_loss": (("rpgan",), "its loss is RpGAN's"),
           "label_smoothing": ((0.0,), "its loss is RpGAN's"), "beta1": ((0.0,), "R3GAN's Adam has beta1 0")},
    # The paper's CIFAR-10 settings: Adam(2e-4, 0, 0.9) with eps 1e-8, z of 64.
    defaults={"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.9, "z_dim": 64, "d_loss": "rpgan",
              "g_loss": "rpgan"},
    metrics="fid, kid, is, pr")
