"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric").

One network is both the VAE's decoder and the GAN's generator. The reconstruction error is measured
in the feature space of a hidden discriminator layer Dis_l instead of on pixels, so the similarity
the VAE learns is the one the discriminator has found useful.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..fused.bce_with_logits import binary_cross_entropy_with_logits
from ..fused.gan_loss import g_loss
from ..nn import ConvBlock
from .dcgan import init_dcgan_weights
from .vae import VAEDecoder, VAEEncoder, _num_doublings, gaussian_kl, reparameterize

DECODER_GAN_KINDS = ("ns", "saturating")
#: where Dis_l is read: "last", the last convolutional block's output (after its batch norm and activation);
#: "conv", that block's convolution before them, as in Larsen et al.'s code (recon_depth ends on a convolution)
DIS_LAYERS = ("last", "conv")
#: how D sees real, reconstructed and prior-sampled images: "joint", one pass over the three batches (shared
#: batch-norm statistics); "separate", one pass per batch, as DCGAN's D sees real and generated batches
D_BATCHES = ("joint", "separate")
#: D's loss per batch at which Larsen et al.'s code holds the game balanced (model/aegan.py, GradientDescent:
#: equilibrium=0.68, near ln 2, the binary cross-entropy of a D that cannot tell real from generated)
EQUILIBRIUM = 0.68


class VAEGANDiscriminator(nn.Module):
    """The DCGAN discriminator with its last convolutional block exposed as Dis_l.

    features(x) -> (N, D) activations of the last block (the deepest layer before the logit, as in
    the paper's choice of a late convolutional layer), or with layer="conv" that block's convolution
    before its batch norm and activation; forward(x) -> (N,) logits.
    """

    def __init__(self, resolution: int = 32, channels: int = 1, width: int = 32):
        super().__init__()
        n = _num_doublings(resolution, "VAEGANDiscriminator")
        widths = [width * 2 ** i for i in range(n)]
        blocks = [ConvBlock(channels, widths[0], 4, 2, 1, norm="none", act="lrelu", alpha=0.2)]
        for w_in, w_out in zip(widths, widths[1:]):
            blocks.append(ConvBlock(w_in, w_out, 4, 2, 1, norm="batch", act="lrelu", alpha=0.2))
        self.body = nn.Sequential(*blocks)
        self.head = nn.Conv2d(widths[-1], 1, 4, 1, 0)
        init_dcgan_weights(self)

    def features(self, x: torch.Tensor, layer: str = "last") -> torch.Tensor:
        return self.features_and_logits(x, layer)[0]

    def features_and_logits(self, x: torch.Tensor, layer: str = "last") -> tuple[torch.Tensor, torch.Tensor]:
        if layer not in DIS_LAYERS:
            raise ValueError(f"VAEGANDiscriminator: layer must be one of {', '.join(DIS_LAYERS)}; got {layer!r}")
        last = self.body[-1]
        conv = last.conv(self.body[:-1](x))
        h = last.post(conv)
        return (conv if layer == "conv" else h).flatten(1), self.head(h).flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).flatten()


class VAEGAN(nn.Module):
    """Encoder, decoder/generator (tanh output, images in [-1, 1]) and Dis_l-exposing discriminator."""

    def __init__(self, z_dim: int = 32, resolution: int = 32, channels: int = 1, width: int = 32):
        super().__init__()
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.encoder = VAEEncoder(z_dim, resolution, channels, width)
        self.decoder = VAEDecoder(z_dim, resolution, channels, width, out_act="tanh")
        self.discriminator = VAEGANDiscriminator(resolution, channels, width)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction in [-1, 1], mu, logvar)."""
        mu, logvar = self.encoder(x)
        return self.decoder(reparameterize(mu, logvar, generator)), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        return self.decoder(torch.randn(n, self.z_dim, generator=generator, device=device))


@dataclass
class VAEGANLosses:
    """The three per-network losses of Larsen et al. 2016, Algorithm 1, plus the terms they are made of.

    Each loss is meant for its own network's parameters only: use `vaegan_backward` (or
    torch.autograd.grad per network), since e.g. the encoder's loss also depends on the decoder.
    """

    encoder: torch.Tensor        # beta * L_prior + L_llike^Dis_l
    decoder: torch.Tensor        # gamma * L_llike^Dis_l - L_GAN (as the chosen generator GAN loss)
    discriminator: torch.Tensor  # L_GAN as the discriminator's loss
    prior: torch.Tensor          # L_prior = KL(q(z|x) || N(0, I)), batch mean
    llike: torch.Tensor          # L_llike^Dis_l, batch mean
    gan: torch.Tensor            # the discriminator's GAN loss on x, x_prior and (gan_on_recon) x_recon
    decoder_gan: torch.Tensor    # the GAN part of the decoder's loss
    d_real: torch.Tensor         # D's binary cross-entropy on x, batch mean
    d_fake: torch.Tensor         # D's binary cross-entropy on the generated batches it learns from, their mean

    def per_network(self) -> dict[str, torch.Tensor]:
        return {"encoder": self.encoder, "decoder": self.decoder, "discriminator": self.discriminator}


def equilibrium_gates(d_real: float, d_fake: float, margin: float) -> tuple[bool, bool]:
    """(update D, keep the GAN term in the decoder's loss) by the equilibrium rule of Larsen et al.'s code.

    D's per-batch cross-entropies on real (d_real) and generated (d_fake) images are compared with EQUILIBRIUM:
    when either is below EQUILIBRIUM - margin, D is too far ahead and skips its update; when either is above
    EQUILIBRIUM + margin, D is too weak to teach the decoder, which then learns from reconstruction alone. Their
    code skips the decoder's whole update there; its decoder loss is nearly all GAN (a reconstruction weight of
    1e-6 to 5e-5), so dropping the GAN term is the same rule for a decoder that weighs reconstruction by gamma.
    If both would stop, both go on. margin 0 turns the rule off (their runs use 0.35).
    """
    if margin <= 0:
        return True, True
    update_d = min(d_real, d_fake) >= EQUILIBRIUM - margin
    decoder_gan = max(d_real, d_fake) <= EQUILIBRIUM + margin
    if not (update_d or decoder_gan):
        return True, True
    return update_d, decoder_gan


def vaegan_losses(model: VAEGAN, x: torch.Tensor, generator: torch.Generator | None = None,
                  gamma: float = 1.0, decoder_gan_kind: str = "ns", eps: torch.Tensor | None = None,
                  z_prior: torch.Tensor | None = None, beta: float = 1.0, joint_decode: bool = False,
                  dis_layer: str = "last", d_batches: str = "joint", gan_on_recon: bool = True) -> VAEGANLosses:
    """The losses of one VAE-GAN step on real images x in [-1, 1] (Larsen et al. 2016, sec. 2.2 and Algorithm 1).

    L_prior = KL(q(z|x) || p(z)).
    L_llike^Dis_l = -E_q[log N(Dis_l(x) | Dis_l(x_recon), I)] (eqs. 6-7), dropping the constant:
        1/2 * ||Dis_l(x) - Dis_l(x_recon)||^2 per sample.
    L_GAN = log Dis(x) + log(1 - Dis(x_recon)) + log(1 - Dis(x_prior)) with x_prior = Dec(z), z ~ N(0, I)
        (eq. 9); the discriminator minimises its negation, the binary cross-entropy of the three terms.
    The decoder's -L_GAN is the minimax generator loss on x_recon and x_prior; decoder_gan_kind="ns"
    (default) replaces it by the non-saturating -log Dis(.), which has the same fixed point and does not
    vanish while the discriminator wins; "saturating" keeps the paper's form.
    gamma weighs reconstruction against fooling the discriminator in the decoder's loss (sec. 2.3).
    beta weighs L_prior in the encoder's loss (1: the paper). L_llike^Dis_l is a sum over every Dis_l feature,
    not a calibrated likelihood, so it can dwarf L_prior and leave q(z|x) far from the prior the samples are
    drawn from; beta > 1 pulls it back.
    The noise of x_recon (eps, as in reparameterize) and x_prior (z_prior, (N, z_dim)) is drawn from
    `generator` unless given.
    joint_decode decodes the posterior and prior codes in one decoder pass, so the decoder's batch norm
    normalises both with the same statistics, as it does at sampling time with its running averages of them;
    otherwise each batch has its own. dis_layer picks Dis_l (DIS_LAYERS), d_batches how D sees the three
    batches (D_BATCHES). gan_on_recon=False leaves x_recon out of L_GAN (D's loss and the decoder's GAN term),
    as Larsen et al.'s code does for CIFAR-10 and CelebA (discriminate_ae_recon=False): D then learns real
    against prior samples only; x_recon still passes D for its Dis_l features.
    """
    if beta < 0:
        raise ValueError(f"vaegan_losses: beta must be >= 0; got {beta}")
    for name, value, choices in (("dis_layer", dis_layer, DIS_LAYERS), ("d_batches", d_batches, D_BATCHES)):
        if value not in choices:
            raise ValueError(f"vaegan_losses: {name} must be one of {', '.join(choices)}; got {value!r}")
    if decoder_gan_kind not in DECODER_GAN_KINDS:
        raise ValueError(f"vaegan_losses: decoder_gan_kind must be one of {', '.join(DECODER_GAN_KINDS)}; "
                         f"got {decoder_gan_kind!r}")
    if x.dim() != 4 or x.shape[1:] != (model.channels, model.resolution, model.resolution):
        raise ValueError(f"vaegan_losses: expected images (N, {model.channels}, {model.resolution}, "
                         f"{model.resolution}); got shape {tuple(x.shape)}")
    n = x.shape[0]
    mu, logvar = model.encoder(x)
    z_recon = reparameterize(mu, logvar, generator, eps)
    if z_prior is None:
        z_prior = torch.randn(n, model.z_dim, generator=generator, device=x.device, dtype=x.dtype)
    elif z_prior.shape != (n, model.z_dim):
        raise ValueError(f"vaegan_losses: z_prior has shape {tuple(z_prior.shape)}, expected {(n, model.z_dim)}")
    else:
        z_prior = z_prior.to(device=x.device, dtype=x.dtype)
    if joint_decode:
        x_recon, x_prior = model.decoder(torch.cat([z_recon, z_prior])).split(n)
    else:
        x_recon, x_prior = model.decoder(z_recon), model.decoder(z_prior)

    if d_batches == "joint":
        features, logits = model.discriminator.features_and_logits(torch.cat([x, x_recon, x_prior]), dis_layer)
        f_real, f_recon, _ = features.split(n)
        l_real, l_recon, l_prior = logits.split(n)
    else:
        (f_real, l_real), (f_recon, l_recon), (_, l_prior) = (
            model.discriminator.features_and_logits(batch, dis_layer) for batch in (x, x_recon, x_prior))

    prior = gaussian_kl(mu, logvar).mean()
    llike = 0.5 * (f_real - f_recon).square().sum(dim=1).mean()
    d_real = binary_cross_entropy_with_logits(l_real, torch.ones_like(l_real))
    d_prior = binary_cross_entropy_with_logits(l_prior, torch.zeros_like(l_prior))
    if gan_on_recon:
        d_recon = binary_cross_entropy_with_logits(l_recon, torch.zeros_like(l_recon))
        gan, d_fake = d_real + d_recon + d_prior, 0.5 * (d_recon + d_prior)
        decoder_gan = g_loss(l_recon, decoder_gan_kind) + g_loss(l_prior, decoder_gan_kind)
    else:
        gan, d_fake, decoder_gan = d_real + d_prior, d_prior, g_loss(l_prior, decoder_gan_kind)
    return VAEGANLosses(encoder=beta * prior + llike, decoder=gamma * llike + decoder_gan, discriminator=gan,
                        prior=prior, llike=llike, gan=gan, decoder_gan=decoder_gan, d_real=d_real, d_fake=d_fake)


def vaegan_backward(model: VAEGAN, losses: VAEGANLosses, names=("encoder", "decoder", "discriminator")) -> None:
    """Set each network of `names` to the gradient of its own loss only (Algorithm 1), accumulating like backward()."""
    networks = {"encoder": model.encoder, "decoder": model.decoder, "discriminator": model.discriminator}
    per_network = losses.per_network()
    for name in names:
        loss = per_network[name]
        params = [p for p in networks[name].parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        for p, g in zip(params, grads):
            if g is None:
                continue
            p.grad = g if p.grad is None else p.grad + g
