"""The VAE family on images: a convolutional VAE trained on the ELBO, and VAE-GAN (Larsen et al. 2016).

Both sample like a GAN generator: the sampling network maps prior noise z (N, z_dim) to images in
[-1, 1], so `fastgan sample`, `fastgan eval` and `load_generator` treat them as they treat DCGAN.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from ..data import Loader
from ..models import VAE, VAEGAN, vaegan_backward, vaegan_losses
from .base import BaseTrainer
from .config import TrainConfig
from .gan import SAMPLES, open_image_data
from .samples import save_image_grid


def vae_likelihood(config: TrainConfig, data: str) -> str:
    """config.vae_likelihood with "auto" resolved: bernoulli for images, gaussian for sequences."""
    if config.vae_likelihood != "auto":
        return config.vae_likelihood
    return "bernoulli" if data == "images" else "gaussian"


class ImageVAE(nn.Module):
    """A VAE whose forward decodes prior noise: z (N, z_dim) -> the mean of p(x|z), images in [-1, 1].

    Training goes through `elbo_terms`; forward is what a sampler is asked for, as of any generator.
    """

    def __init__(self, config: TrainConfig, data_shape: tuple[int, ...]):
        super().__init__()
        c, h, w = data_shape
        if h != w:
            raise ValueError(f"model vae needs square images; the dataset has {h}x{w}")
        self.vae = VAE(config.z_dim, h, c, config.vae_width, vae_likelihood(config, "images"), config.vae_beta,
                       config.vae_sigma)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.vae.elbo_terms(x, generator, eps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.to_images(self.vae.decode(z))


class ImageFamilyTrainer(BaseTrainer):
    """What the image families share: the image loader (resumable by batch count), sample grids from fixed
    noise, and evaluation of the sampling network with fastgan.metrics."""

    #: the network whose EMA (or itself, without EMA) maps noise to images
    sampling_network = ""

    def __init__(self, config: TrainConfig, dist=None):
        super().__init__(config, dist)
        self.data, self.data_shape = open_image_data(config)
        self.fixed_z = torch.randn(config.n_samples, config.z_dim,
                                   generator=torch.Generator().manual_seed(config.seed + 1)).to(self.device)
        self.loader = Loader(self.data, config.batch_size, shuffle=True, seed=config.seed, drop_last=True,
                             hflip=config.hflip, device=self.device, rank=self.dist.rank,
                             world_size=self.dist.world_size)

    def real_batches(self):
        """Endless real batches, resuming at batch number self.batches_seen."""
        return self.loader_batches(self.loader)

    def sampler(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.networks[self.sampling_network]

    @torch.no_grad()
    def write_samples(self, run_dir: Path) -> None:
        g = self.sampler()
        was_training = g.training
        g.eval()
        images = g(self.fixed_z)
        g.train(was_training)
        save_image_grid(images, run_dir / SAMPLES)
        (run_dir / "samples").mkdir(exist_ok=True)
        save_image_grid(images, run_dir / "samples" / f"step{self.step:07d}.png")

    def evaluate(self) -> dict[str, float]:
        """The default image metrics of the sampling network on config.eval_n samples (fastgan.metrics)."""
        from ..metrics import evaluate_generator

        cfg = self.config
        g = self.sampler()
        was_training = g.training
        try:
            return evaluate_generator(g, cfg.dataset, cfg.resolution, cfg.z_dim, n=cfg.eval_n, device=self.device,
                                      seed=cfg.seed)
        finally:
            g.train(was_training)


class VAETrainer(ImageFamilyTrainer):
    """One Adam update of encoder and decoder (lr_g) per batch on the negative ELBO (with beta)."""

    sampling_network = "vae"

    def __init__(self, config: TrainConfig, dist=None):
        super().__init__(config, dist)
        torch.manual_seed(config.seed)
        self.vae = self.add_network("vae", self.build_networks(config, self.data_shape)["vae"], config.lr_g)
        self.add_ema(self.sampling_network)

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        x = next(batches)
        self.batches_seen += 1
        with self.autocast():
            terms = self.vae.elbo_terms(x, eps=self.shared_noise(len(x), self.config.z_dim))
        recon, kl = terms["recon"].float(), terms["kl"].float()
        self.update("vae", terms["loss"].float())
        self.end_step()
        # The ELBO itself (beta = 1), in nats per image, whatever beta the loss weighs the KL with.
        return {"elbo": -(recon + kl).detach(), "recon": recon.detach(), "kl": kl.detach()}

    @staticmethod
    def sampler_from(networks: dict[str, nn.Module]) -> nn.Module:
        return networks["vae"]

    @staticmethod
    def build_networks(config: TrainConfig, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        return {"vae": ImageVAE(config, data_shape)}


VAEGAN_NETWORKS = ("encoder", "decoder", "discriminator")


class VAEGANTrainer(ImageFamilyTrainer):
    """Larsen et al. 2016, Algorithm 1: from one forward pass, each of encoder, decoder and discriminator gets
    the gradient of its own loss only, then its own Adam step (encoder and decoder at lr_g, D at lr_d)."""

    sampling_network = "decoder"

    def __init__(self, config: TrainConfig, dist=None):
        super().__init__(config, dist)
        torch.manual_seed(config.seed)
        self.model = self._build(config, self.data_shape)
        for name in VAEGAN_NETWORKS:
            self.add_network(name, getattr(self.model, name), config.lr_d if name == "discriminator" else config.lr_g)
        self.add_ema(self.sampling_network)

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        x = next(batches)
        self.batches_seen += 1
        with self.autocast():
            eps, z_prior = self.shared_noise(len(x), self.config.z_dim), self.shared_noise(len(x), self.config.z_dim)
            losses = vaegan_losses(self.model, x, None, self.config.vaegan_gamma, self.config.g_loss, eps, z_prior,
                                   self.config.vae_beta)
        # With fp16 each network's loss is scaled by its own GradScaler, which unscales in apply_gradients.
        scaled = dataclasses.replace(losses, **{name: self.scalers[name].scale(loss.float())
                                                for name, loss in losses.per_network().items()})
        for name in VAEGAN_NETWORKS:
            self.optimizers[name].zero_grad(set_to_none=True)
        vaegan_backward(self.model, scaled)
        for name, loss in losses.per_network().items():
            self.apply_gradients(name, loss.float())
        self.end_step()
        return {"kl": losses.prior.detach().float(), "llike": losses.llike.detach().float(),
                "d_loss": losses.discriminator.detach().float(), "dec_loss": losses.decoder.detach().float()}

    @staticmethod
    def _build(config: TrainConfig, data_shape: tuple[int, ...]) -> VAEGAN:
        c, h, w = data_shape
        if h != w:
            raise ValueError(f"model vaegan needs square images; the dataset has {h}x{w}")
        return VAEGAN(config.z_dim, h, c, config.vae_width)

    @staticmethod
    def sampler_from(networks: dict[str, nn.Module]) -> nn.Module:
        return networks["decoder"]

    @staticmethod
    def build_networks(config: TrainConfig, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        model = VAEGANTrainer._build(config, data_shape)
        return {name: getattr(model, name) for name in VAEGAN_NETWORKS}
