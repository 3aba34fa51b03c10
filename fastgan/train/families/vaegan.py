"""VAE-GAN (Larsen et al. 2016) on images: an encoder, a decoder that doubles as G, and a discriminator whose
features measure reconstructions."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ...models import VAEGAN, vaegan_backward, vaegan_losses
from ..base import BaseTrainer
from .family import Family

VAEGAN_NETWORKS = ("encoder", "decoder", "discriminator")


def build_vaegan(config, data_shape: tuple[int, ...]) -> VAEGAN:
    c, h, w = data_shape
    if h != w:
        raise ValueError(f"model vaegan needs square images; the dataset has {h}x{w}")
    return VAEGAN(config.z_dim, h, c, config.vae_width)


class VAEGANTrainer(BaseTrainer):
    """Larsen et al. 2016, Algorithm 1: from one forward pass, each of encoder, decoder and discriminator gets
    the gradient of its own loss only, then its own Adam step (encoder and decoder at lr_g, D at lr_d)."""

    sampling_network = "decoder"

    def __init__(self, config, dist=None):
        super().__init__(config, dist)
        torch.manual_seed(config.seed)
        self.model = build_vaegan(config, self.data_shape)
        for name in VAEGAN_NETWORKS:
            self.add_network(name, getattr(self.model, name), config.lr_d if name == "discriminator" else config.lr_g)
        self.add_ema(self.sampling_network)

    @staticmethod
    def build_networks(config, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        model = build_vaegan(config, data_shape)
        return {name: getattr(model, name) for name in VAEGAN_NETWORKS}

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


VAEGAN_FAMILY = Family(
    "vaegan", "VAE-GAN on images (Larsen et al. 2016)", ("images",), VAEGANTrainer,
    fixed={"n_critic": ((1,), "it updates its three networks once per batch"),
           "label_smoothing": ((0.0,), "its losses use D's probability of real"),
           "d_loss": (("bce",), "its losses use D's probability of real"),
           "g_loss": (("ns", "saturating"), "Larsen et al. 2016's decoder loss is ns or saturating")},
    metrics="fid, kid, is, pr")
