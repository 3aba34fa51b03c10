"""The GAN family (MLP GAN, DCGAN): alternating D and G updates with the stability toolkit."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ... import losses
from ...models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ...nn import diff_augment, instance_noise, instance_noise_std
from ..base import BaseTrainer
from .family import OPTIONAL_FIELDS, Family


def build_models(config, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """G and D for data of shape (C, H, W) or (2,) (points in the plane)."""
    d_options = dict(spectral_norm=config.spectral_norm, mbstd=config.mbstd, pac=config.pac)
    if len(data_shape) == 1:
        g = MLPGenerator(config.z_dim, config.mlp_hidden, data_shape, out_act="linear")
        return g, MLPDiscriminator(data_shape, config.mlp_hidden, **d_options)
    if config.model == "mlp":
        return (MLPGenerator(config.z_dim, config.mlp_hidden, data_shape),
                MLPDiscriminator(data_shape, config.mlp_hidden, **d_options))
    c, h, w = data_shape
    if h != w:
        raise ValueError(f"DCGAN needs square images; the dataset has {h}x{w}")
    return DCGANGenerator(config.z_dim, h, c, config.g_width), DCGANDiscriminator(h, c, config.d_width, **d_options)


class GANTrainer(BaseTrainer):
    """n_critic D updates, then one G update; EMA of G; R1 / WGAN-GP; DiffAugment, instance noise, PacGAN,
    spectral norm and minibatch std on D."""

    def __init__(self, config, dist=None):
        super().__init__(config, dist)
        torch.manual_seed(config.seed)
        networks = self.build_networks(config, self.data_shape)
        g, d = networks["generator"], networks["discriminator"]
        if config.sync_bn and self.dist.world_size > 1:
            if self.device.type != "cuda":
                raise ValueError("sync_bn: torch's SyncBatchNorm synchronises CUDA tensors only; this run is on "
                                 f"{self.device}")
            from ..distributed import convert_sync_batchnorm

            g, d = convert_sync_batchnorm(g), convert_sync_batchnorm(d)
        self.generator = self.add_network("generator", g, config.lr_g)
        self.discriminator = self.add_network("discriminator", d, config.lr_d)
        self.add_ema("generator")
        # Compiled callables share parameters with the eager modules; the eager D serves R1 and
        # WGAN-GP, whose double backward torch.compile does not support.
        self.g_fwd = torch.compile(self.generator) if config.compile else self.generator
        self.d_fwd = torch.compile(self.discriminator) if config.compile else self.discriminator

    @staticmethod
    def build_networks(config, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        g, d = build_models(config, data_shape)
        return {"generator": g, "discriminator": d}

    @property
    def _packs_of_fresh(self) -> int:
        """Loader batches per D input: pac with --pac-fresh (PacGAN's code: batch_size packs of pac samples), else 1
        (the batch_size samples form batch_size / pac packs)."""
        return self.config.pac if self.config.pac_fresh else 1

    def _noise(self) -> torch.Tensor:
        return self.shared_noise(self.config.batch_size * self._packs_of_fresh, self.config.z_dim)

    def _real(self, batches) -> torch.Tensor:
        k = self._packs_of_fresh
        self.batches_seen += k
        return next(batches) if k == 1 else torch.cat([next(batches) for _ in range(k)])

    def _d_input(self, x: torch.Tensor, std: float) -> torch.Tensor:
        """What D sees of a real or fake batch: augmented and noised the same way for both."""
        if self.config.diffaug:
            x = diff_augment(x, self.config.diffaug, generator=self.rank_rng)
        if std > 0:
            x = instance_noise(x, std, generator=self.rank_rng)
        return x

    # -- one step -----------------------------------------------------------------------------

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        """n_critic D updates, then one G update on the last D update's fake batch."""
        cfg = self.config
        r1_now = cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0
        std = instance_noise_std(self.step, cfg.steps, cfg.instance_noise) if cfg.instance_noise else 0.0
        for i in range(cfg.n_critic):
            real = self._real(batches)
            last = i == cfg.n_critic - 1
            with self.autocast(), (contextlib.nullcontext() if last else torch.no_grad()):
                fake = self.g_fwd(self._noise())
            d_stats = self._d_update(real, fake.detach(), r1_now and i == 0, std)
        g_stats = self._g_update(fake, std)
        self.end_step()
        return {**d_stats, **g_stats}

    def _d_update(self, real, fake, with_r1: bool, std: float) -> dict[str, torch.Tensor]:
        cfg = self.config
        real, fake = self._d_input(real, std), self._d_input(fake, std)
        if with_r1:
            # R1 differentiates D at exactly what D judged (the augmented real batch), as in DiffAugment's code.
            real = real.detach().requires_grad_(True)
        with self.autocast():
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
            with self.autocast():
                gp = losses.gradient_penalty(self.discriminator, real.detach(), fake, generator=self.rank_rng)
            loss = loss + cfg.gp_weight * gp
            stats["gp"] = gp.detach()
        self.update("discriminator", loss)
        return stats

    def _g_update(self, fake, std: float) -> dict[str, torch.Tensor]:
        with self.autocast():
            fake_logits = self.d_fwd(self._d_input(fake, std))
        loss = losses.g_loss(fake_logits.float(), self.config.g_loss)
        # Only G's gradients are wanted; D's parameters keep requires_grad (no toggling in compiled code).
        self.update("generator", loss)
        return {"g_loss": loss.detach()}

    def samples_per_step(self) -> int:
        return self.config.batch_size * self._packs_of_fresh * self.config.n_critic * self.dist.world_size


GAN_OPTIONS = frozenset(OPTIONAL_FIELDS)
DCGAN = Family("dcgan", "DCGAN (Radford et al. 2016) on images", ("images",), GANTrainer, GAN_OPTIONS,
               metrics="fid, kid, is, pr")
MLP = Family("mlp", "fully connected G and D, on 2D points or images", ("points", "images"), GANTrainer,
             GAN_OPTIONS, metrics="fid, kid, pr, modes (points); fid, kid, is, pr (images)")
