"""VAE-GAN (Larsen et al. 2016) on images: an encoder, a decoder that doubles as G, and a discriminator whose
features measure reconstructions."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ...models import VAEGAN, vaegan_backward, vaegan_losses
from ...models.vaegan import D_BATCHES, DIS_LAYERS, EQUILIBRIUM, equilibrium_gates
from ..base import BaseTrainer
from .family import Family
from .settings import setting
from .vae import KLWeight, VAEWidth


@dataclass
class VAEGANSettings:
    """VAE-GAN's losses and training rules."""

    vaegan_gamma: float = setting(1.0, "weight of the feature-space reconstruction against the GAN term in the "
                                       "decoder's loss (Larsen et al. 2016)", at_least=0)
    vaegan_margin: float = setting(0.0, "equilibrium rule of Larsen et al.'s code: D skips its update while its "
                                        "cross-entropy on real or generated images is below 0.68 - margin, and the "
                                        "decoder drops its GAN term while either is above 0.68 + margin (0: off; "
                                        "their code: 0.35)", at_least=0, below=EQUILIBRIUM)
    vaegan_joint_decode: bool = setting(False, "decode the posterior and prior codes in one decoder pass, so batch "
                                               "norm normalises both with the same statistics")
    vaegan_dis_layer: str = setting("last", "Dis_l, the discriminator layer whose features measure reconstructions: "
                                            "its last block's output, or that block's convolution before batch norm "
                                            "and activation (conv, as in Larsen et al.'s code)", DIS_LAYERS)
    vaegan_d_batches: str = setting("separate", "D judges real, reconstructed and prior-sampled images in one pass "
                                                "each (separate, as DCGAN's D does), or in one pass (joint: shared "
                                                "batch-norm statistics, which let part of the samples collapse onto "
                                                "one pattern; see docs/results.md)", D_BATCHES)
    vaegan_gan_on_recon: bool = setting(False, "D judges reconstructions as well as prior samples (the paper's "
                                               "L_GAN); off: prior samples only, as Larsen et al.'s code runs "
                                               "CIFAR-10 and CelebA")

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
    settings=(VAEWidth, KLWeight, VAEGANSettings),
    fixed={"n_critic": ((1,), "it updates its three networks once per batch"),
           "label_smoothing": ((0.0,), "its losses use D's probability of real"),
           "d_loss": (("bce",), "its losses use D's probability of real"),
           "g_loss": (("ns", "saturating"), "Larsen et al. 2016's decoder loss is ns or saturating")},
    # beta 4 keeps q(z|x) near the prior that samples are drawn from (KL ~13 nats against ~32 at beta 1): digits-FID
    # 36 against 72 at 1,000 steps over three seeds, reconstructions' label agreement 98.1% against 98.8%
    # (docs/results.md).
    defaults={"vae_beta": 4.0},
    metrics="fid, kid, is, pr")
