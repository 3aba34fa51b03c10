"""Convolutional variational autoencoder (Kingma & Welling 2014) for 16, 32 and 64 px images.

The encoder is the DCGAN discriminator's stack of strided convolutions ending in the mean and
log-variance of q(z|x); the decoder is the DCGAN generator's layout, so a VAE and a GAN of the same
`width` decode with the same network. Images are in [-1, 1], as everywhere in fastgan.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..fused.bce_with_logits import binary_cross_entropy_with_logits
from ..nn import ConvBlock, ConvTransposeBlock
from .dcgan import RESOLUTIONS, init_dcgan_weights

LIKELIHOODS = ("bernoulli", "gaussian")


def _num_doublings(resolution: int, who: str) -> int:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"{who}: resolution must be one of {RESOLUTIONS}; got {resolution!r}")
    return int(math.log2(resolution)) - 2


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014, eq. 10).

    Writing the sample as a deterministic function of (mu, logvar) and parameter-free noise is what
    lets gradients of E_q[f(z)] flow into the encoder. eps is drawn from `generator` unless given
    (shape of mu), e.g. as one process's slice of noise drawn for a data-parallel global batch.
    """
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    elif eps.shape != mu.shape:
        raise ValueError(f"reparameterize: eps has shape {tuple(eps.shape)}, mu {tuple(mu.shape)}")
    else:
        eps = eps.to(device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per sample, summed over the last dimension.

    Closed form from Kingma & Welling 2014, appendix B: -1/2 * sum(1 + logvar - mu^2 - exp(logvar)).
    """
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """-log N(x | mean, sigma^2 I) per sample, summed over every dimension but the first."""
    log_sigma = log_sigma.expand_as(x)
    nll = 0.5 * ((x - mean) * torch.exp(-log_sigma)).square() + log_sigma + 0.5 * math.log(2 * math.pi)
    return nll.flatten(1).sum(dim=1)


class VAEEncoder(nn.Module):
    """x (N, C, R, R) -> (mu, logvar), each (N, z_dim): the DCGAN discriminator's convolutions, 2*z_dim outputs."""

    def __init__(self, z_dim: int = 32, resolution: int = 32, channels: int = 1, width: int = 32):
        super().__init__()
        n = _num_doublings(resolution, "VAEEncoder")
        self.z_dim = z_dim
        widths = [width * 2 ** i for i in range(n)]
        blocks = [ConvBlock(channels, widths[0], 4, 2, 1, norm="none", act="lrelu", alpha=0.2)]
        for w_in, w_out in zip(widths, widths[1:]):
            blocks.append(ConvBlock(w_in, w_out, 4, 2, 1, norm="batch", act="lrelu", alpha=0.2))
        blocks.append(nn.Conv2d(widths[-1], 2 * z_dim, 4, 1, 0))
        self.net = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).flatten(1).chunk(2, dim=1)
        return mu, logvar


class VAEDecoder(nn.Module):
    """z (N, z_dim) -> (N, C, R, R): the DCGAN generator's layout with a chosen output activation.

    out_act="linear" gives Bernoulli logits; out_act="tanh" gives image means in [-1, 1].
    """

    def __init__(self, z_dim: int = 32, resolution: int = 32, channels: int = 1, width: int = 32,
                 out_act: str = "tanh"):
        super().__init__()
        n = _num_doublings(resolution, "VAEDecoder")
        self.z_dim = z_dim
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]
        blocks = [ConvTransposeBlock(z_dim, widths[0], 4, 1, 0, norm="batch", act="relu")]
        for w_in, w_out in zip(widths, widths[1:]):
            blocks.append(ConvTransposeBlock(w_in, w_out, 4, 2, 1, norm="batch", act="relu"))
        blocks.append(ConvTransposeBlock(widths[-1], channels, 4, 2, 1, norm="none", act=out_act))
        self.net = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.z_dim, 1, 1))


class VAE(nn.Module):
    """A convolutional VAE on images in [-1, 1].

    likelihood:
      "bernoulli"  p(x|z) = Bernoulli(sigmoid(decoder(z))) on pixels mapped to [0, 1]; the decoder
                   outputs logits.
      "gaussian"   p(x|z) = N(decoder(z), sigma^2 I) on pixels in [-1, 1]; the decoder outputs the
                   mean through tanh. sigma is fixed at `sigma`, or a learned scalar starting there
                   when learn_sigma=True.
    beta weighs the KL term (beta-VAE, Higgins et al. 2017); beta=1 is the ELBO.
    """

    def __init__(self, z_dim: int = 32, resolution: int = 32, channels: int = 1, width: int = 32,
                 likelihood: str = "bernoulli", beta: float = 1.0, sigma: float = 0.1, learn_sigma: bool = False):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"VAE: likelihood must be one of {', '.join(LIKELIHOODS)}; got {likelihood!r}")
        if sigma <= 0:
            raise ValueError(f"VAE: sigma must be positive; got {sigma!r}")
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.likelihood, self.beta = likelihood, beta
        self.encoder = VAEEncoder(z_dim, resolution, channels, width)
        self.decoder = VAEDecoder(z_dim, resolution, channels, width,
                                  out_act="linear" if likelihood == "bernoulli" else "tanh")
        log_sigma = torch.tensor(math.log(sigma))
        if learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z|x), each (N, z_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output: logits (bernoulli) or means in [-1, 1] (gaussian)."""
        return self.decoder(z)

    def to_images(self, output: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) in [-1, 1] from a decoder output."""
        return 2 * torch.sigmoid(output) - 1 if self.likelihood == "bernoulli" else output

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(decoder output for z ~ q(z|x), mu, logvar); eps as in reparameterize."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, generator, eps)), mu, logvar

    def reconstruction_nll(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per sample, summed over pixels."""
        if self.likelihood == "bernoulli":
            target = (x + 1) * 0.5
            nll = binary_cross_entropy_with_logits(output, target, reduction="none")
            return nll.flatten(1).sum(dim=1)
        return gaussian_nll(x, output, self.log_sigma)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Batch means of the per-sample terms: recon = -E_q[log p(x|z)] (one z per sample), kl =
        KL(q(z|x) || N(0, I)), loss = recon + beta * kl, the negative ELBO (Kingma & Welling 2014, eq. 10)."""
        if x.dim() != 4 or x.shape[1:] != (self.channels, self.resolution, self.resolution):
            raise ValueError(f"VAE: expected images (N, {self.channels}, {self.resolution}, {self.resolution}); "
                             f"got shape {tuple(x.shape)}")
        output, mu, logvar = self(x, generator, eps)
        recon = self.reconstruction_nll(x, output).mean()
        kl = gaussian_kl(mu, logvar).mean()
        return {"recon": recon, "kl": kl, "loss": recon + self.beta * kl}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [-1, 1] decoded from z ~ N(0, I): the means of p(x|z)."""
        device = self.log_sigma.device
        z = torch.randn(n, self.z_dim, generator=generator, device=device)
        return self.to_images(self.decode(z))
