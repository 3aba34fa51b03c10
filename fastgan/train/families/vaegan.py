"""VAE-GAN (Larsen et al. 2016) on images: an encoder, a decoder that doubles as G, and a discriminator whose
features measure reconstructions."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ...models import VAEGAN, vaegan_backward, vaegan_losses
from ...models.vaegan import equilibrium_gates
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
        cfg = self.config
        x = next(batches)
        self.batches_seen += 1
        with self.autocast():
            eps, z_prior = self.shared_noise(len(x), cfg.z_dim), self.shared_noise(len(x), cfg.z_dim)
            losses = vaegan_losses(self.model, x, None, cfg.vaegan_gamma, cfg.g_loss, eps, z_prior, cfg.vae_beta,
                                   cfg.vaegan_joint_decode, cfg.vaegan_dis_layer, cfg.vaegan_d_batches,
                                   cfg.vaegan_gan_on_recon)
        update_d, decoder_gan = True, True
        if cfg.vaegan_margin > 0:
            # One host synchronisation: the rule decides which updates happen.
            d_real, d_fake = torch.stack([losses.d_real, losses.d_fake]).float().tolist()
            update_d, decoder_gan = equilibrium_gates(d_real, d_fake, cfg.vaegan_margin)
            if not decoder_gan:
                losses = dataclasses.replace(losses, decoder=cfg.vaegan_gamma * losses.llike)
        names = VAEGAN_NETWORKS if update_d else VAEGAN_NETWORKS[:2]
        # With fp16 each network's loss is scaled by its own GradScaler, which unscales in apply_gradients.
        scaled = dataclasses.replace(losses, **{name: self.scalers[name].scale(loss.float())
                                                for name, loss in losses.per_network().items()})
        for name in VAEGAN_NETWORKS:
            self.optimizers[name].zero_grad(set_to_none=True)
        vaegan_backward(self.model, scaled, names)
        per_network = losses.per_network()
        for name in names:
            self.apply_gradients(name, per_network[name].float())
        self.end_step()
        stats = {"kl": losses.prior.detach().float(), "llike": losses.llike.detach().float(),
                 "d_loss": losses.discriminator.detach().float(), "dec_loss": losses.decoder.detach().float(),
                 "d_real": losses.d_real.detach().float(), "d_fake": losses.d_fake.detach().float()}
        if cfg.vaegan_margin > 0:
            stats["d_updated"], stats["dec_gan"] = torch.tensor(float(update_d)), torch.tensor(float(decoder_gan))
        return stats


VAEGAN_FAMILY = Family(
    "vaegan", "VAE-GAN on images (Larsen et al. 2016)", ("images",), VAEGANTrainer,
    fixed={"n_critic": ((1,), "it updates its three networks once per batch"),
           "label_smoothing": ((0.0,), "its losses use D's probability of real"),
           "d_loss": (("bce",), "its losses use D's probability of real"),
           "g_loss": (("ns", "saturating"), "Larsen et al. 2016's decoder loss is ns or saturating")},
    # beta 4 keeps q(z|x) near the prior that samples are drawn from (KL ~13 nats against ~32 at beta 1): digits-FID
    # 36 against 72 at 1,000 steps over three seeds, reconstructions' label agreement 98.1% against 98.8%
    # (docs/results.md).
    defaults={"vae_beta": 4.0},
    metrics="fid, kid, is, pr")
