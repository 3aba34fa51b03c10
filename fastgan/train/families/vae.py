"""The VAE families: a convolutional VAE on images (vae) and VRAE on sequences (rvae, Fabius & van
Amersfoort 2014), both trained on the negative ELBO (with beta) by one Adam update per batch.

Both sample like a GAN generator: the sampling network maps prior noise z (N, z_dim) to the means of
p(x|z), so `fastgan sample`, `fastgan eval` and `load_generator` treat them as they treat DCGAN.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...models import VAE, VRAE
from ...models.recurrent import OUTPUT_ACTS
from ...models.vae import LIKELIHOODS
from ..base import BaseTrainer
from ..kinds import IMAGES, SEQUENCES, DataKind
from .family import Family
from .sequences import SequenceSettings, SinesSettings
from .settings import setting


@dataclass
class VAEWidth:
    """The convolutional encoder and decoder's width."""

    vae_width: int = setting(32, "channels of the encoder's first and the decoder's last hidden block (DCGAN "
                                 "layout)", at_least=1)


@dataclass
class KLWeight:
    """The weight of the KL term."""

    vae_beta: float = setting(1.0, "weight of the KL term (1: the ELBO; otherwise a beta-VAE); vaegan: of the KL "
                                   "term in the encoder's loss (1: Larsen et al.; vaegan's default: 4)", at_least=0)


@dataclass
class Likelihood:
    """The likelihood p(x|z)."""

    vae_likelihood: str = setting("auto", "p(x|z); auto is bernoulli for images, gaussian for sequences",
                                  ("auto", *LIKELIHOODS))
    vae_sigma: float = setting(0.1, "standard deviation of the gaussian likelihood", above=0)


@dataclass
class RVAEOutput:
    """The recurrent decoder's output."""

    rvae_out_act: str = setting("linear", "activation of the decoder's mean (gaussian likelihood); sigmoid keeps "
                                          "samples of data in [0, 1] inside it", OUTPUT_ACTS)


def vae_likelihood(config, kind: DataKind) -> str:
    """config.vae_likelihood with "auto" resolved by the kind of data: bernoulli for images, gaussian for
    sequences."""
    if config.vae_likelihood != "auto":
        return config.vae_likelihood
    return kind.vae_likelihood


class ImageVAE(nn.Module):
    """A VAE whose forward decodes prior noise: z (N, z_dim) -> the mean of p(x|z), images in [-1, 1].

    Training goes through `elbo_terms`; forward is what a sampler is asked for, as of any generator.
    """

    def __init__(self, config, data_shape: tuple[int, ...]):
        super().__init__()
        c, h, w = data_shape
        if h != w:
            raise ValueError(f"model vae needs square images; the dataset has {h}x{w}")
        self.vae = VAE(config.z_dim, h, c, config.vae_width, vae_likelihood(config, IMAGES), config.vae_beta,
                       config.vae_sigma)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.vae.elbo_terms(x, generator, eps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.to_images(self.vae.decode(z))


class SequenceVAE(nn.Module):
    """A VRAE whose forward decodes prior noise: z (N, z_dim) -> sequences (N, T, F), the means of p(x|z)."""

    def __init__(self, config, data_shape: tuple[int, ...]):
        super().__init__()
        self.length, features = data_shape
        self.vrae = VRAE(features, config.seq_hidden, config.z_dim, vae_likelihood(config, SEQUENCES),
                         config.vae_sigma, config.vae_beta, config.rvae_out_act)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.vrae.elbo_terms(x, generator, eps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vrae.to_values(self.vrae.decode(z, self.length))


class VAETrainer(BaseTrainer):
    """One Adam update of encoder and decoder (lr_g) per batch on the negative ELBO (with beta)."""

    sampling_network = "vae"

    def __init__(self, config, dist=None):
        super().__init__(config, dist)
        if vae_likelihood(config, self.kind) == "bernoulli" and self.kind is SEQUENCES:
            low, high = float(self.data.array.min()), float(self.data.array.max())
            if low < 0 or high > 1:
                raise ValueError(f"{config.dataset}: values span [{low:.4g}, {high:.4g}]; the bernoulli likelihood "
                                 f"needs values in [0, 1] (use --vae-likelihood gaussian)")
        torch.manual_seed(config.seed)
        network = self.build_networks(config, self.data_shape)[self.sampling_network]
        self.vae = self.add_network(self.sampling_network, network, config.lr_g)
        self.add_ema(self.sampling_network)

    @staticmethod
    def build_networks(config, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        return {"vae": ImageVAE(config, data_shape)}

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        x = next(batches)
        self.batches_seen += 1
        with self.autocast():
            terms = self.vae.elbo_terms(x, eps=self.shared_noise(len(x), self.config.z_dim))
        recon, kl = terms["recon"].float(), terms["kl"].float()
        self.update(self.sampling_network, terms["loss"].float())
        self.end_step()
        # The ELBO itself (beta = 1), in nats per sample, whatever beta the loss weighs the KL with.
        return {"elbo": -(recon + kl).detach(), "recon": recon.detach(), "kl": kl.detach()}


class SequenceVAETrainer(VAETrainer):
    """VAETrainer with a VRAE on sequences."""

    sampling_network = "vrae"

    @staticmethod
    def build_networks(config, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        return {"vrae": SequenceVAE(config, data_shape)}


# A VAE has no discriminator: the GAN settings must stay at their defaults.
NO_DISCRIMINATOR = {"n_critic": ((1,), "it has no discriminator updates to repeat"),
                    "label_smoothing": ((0.0,), "it has no discriminator"),
                    "d_loss": (("bce",), "it has no discriminator"),
                    "g_loss": (("ns",), "it has no discriminator")}
VAE_FAMILY = Family("vae", "convolutional VAE on images (Kingma & Welling 2014)", ("images",), VAETrainer,
                    settings=(VAEWidth, KLWeight, Likelihood), fixed=NO_DISCRIMINATOR, metrics="fid, kid, is, pr")
RVAE = Family("rvae", "recurrent VAE on sequences (VRAE, Fabius & van Amersfoort 2014)", ("sequences",),
              SequenceVAETrainer, settings=(SequenceSettings, SinesSettings, KLWeight, Likelihood, RVAEOutput),
              fixed=NO_DISCRIMINATOR,
              metrics="fid, kid on the values; freq_w1, amp_w1, sine_r2 on sines; TimeGAN's discriminative and "
                      "predictive scores")
