"""DCGAN (Radford et al. 2016) for 16, 32 and 64 px, in the layout of pytorch/examples' dcgan.

The generator doubles resolution from 4x4 with ConvTranspose2d blocks whose batch norm + ReLU
tail is fastgan's fused epilogue; the discriminator mirrors it with strided convolutions and
LeakyReLU(0.2) and ends in a logit per image (per pack of images with PacGAN).

With num_classes > 0 both are class-conditional: G's batch norms become conditional batch norms (each
class's scale and shift, fused into the same epilogue) and D adds a projection term <embed(y), h> on the 4x4
features its last convolution reads (Miyato & Koyama 2018).
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import BatchNormAct, ConvBlock, ConvTransposeBlock, MinibatchStd, apply_spectral_norm, pack
from .conditional import Projection, check_labels

RESOLUTIONS = (16, 32, 64)


def _num_doublings(resolution: int) -> int:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"DCGAN: resolution must be one of {RESOLUTIONS}; got {resolution!r}")
    return {16: 2, 32: 3, 64: 4}[resolution]


class DCGANGenerator(nn.Module):
    """(N, z_dim) noise -> (N, channels, resolution, resolution) images in [-1, 1].

    num_classes > 0: class-conditional; forward(z, labels) takes int64 labels (N,), and labels=None means
    balanced ones (fastgan.models.conditional.balanced_labels), so that code written for unconditional
    generators (evaluation, sample grids) draws every class equally often.
    """

    def __init__(self, z_dim: int = 100, resolution: int = 64, channels: int = 3, width: int = 64,
                 num_classes: int = 0):
        super().__init__()
        n = _num_doublings(resolution)
        self.z_dim, self.resolution, self.channels, self.num_classes = z_dim, resolution, channels, num_classes
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]  # 64 px: 512, 256, 128, 64
        blocks = [ConvTransposeBlock(z_dim, widths[0], 4, 1, 0, norm="batch", act="relu", num_classes=num_classes)]
        for w_in, w_out in zip(widths, widths[1:]):
            blocks.append(ConvTransposeBlock(w_in, w_out, 4, 2, 1, norm="batch", act="relu", num_classes=num_classes))
        blocks.append(ConvTransposeBlock(widths[-1], channels, 4, 2, 1, norm="none", act="tanh"))
        self.net = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = z.view(z.shape[0], self.z_dim, 1, 1)
        if not self.num_classes:
            return self.net(h)
        labels = check_labels("DCGANGenerator", labels, z.shape[0], self.num_classes, z.device)
        for block in self.net:
            h = block(h, labels)
        return h


class DCGANDiscriminator(nn.Module):
    """Strided-convolution discriminator: (N, channels, resolution, resolution) -> N / pac logits.

    spectral_norm: spectrally normalise every convolution (Miyato et al. 2018) and drop batch norm
        from the blocks, as SN-GAN's discriminator does; batch norm would rescale what SN bounds.
    mbstd: append a MinibatchStd channel to the 4x4 features before the last convolution.
    pac: judge pac consecutive images at once (PacGAN); the first convolution takes pac * channels.
    num_classes > 0: a projection discriminator; forward(x, labels) adds <embed(labels), h> to the logit, h the
        flattened 4x4 features that the last convolution (a linear map of them) reads. Its blocks have no batch
        norm, as Miyato & Koyama's: batch statistics make each judgement depend on the other images of the batch
        and their classes (on the digits, generated-class accuracy 45% with batch norm, 97% without).
    The defaults build the plain DCGAN discriminator with its usual state-dict keys.
    """

    def __init__(self, resolution: int = 64, channels: int = 3, width: int = 64, *, spectral_norm: bool = False,
                 mbstd: bool = False, pac: int = 1, num_classes: int = 0):
        super().__init__()
        n = _num_doublings(resolution)
        if not isinstance(pac, int) or pac < 1:
            raise ValueError(f"DCGANDiscriminator: pac must be a positive integer; got {pac!r}")
        if num_classes and pac != 1:
            raise ValueError("DCGANDiscriminator: a projection discriminator judges one image against its label; "
                             f"use pac=1 with num_classes (got pac={pac})")
        self.resolution, self.channels, self.pac, self.num_classes = resolution, channels, pac, num_classes
        block_norm = "none" if spectral_norm or num_classes else "batch"
        widths = [width * 2 ** i for i in range(n)]  # 64 px: 64, 128, 256, 512
        blocks = [ConvBlock(pac * channels, widths[0], 4, 2, 1, norm="none", act="lrelu", alpha=0.2)]
        for w_in, w_out in zip(widths, widths[1:]):
            blocks.append(ConvBlock(w_in, w_out, 4, 2, 1, norm=block_norm, act="lrelu", alpha=0.2))
        last_width = widths[-1]
        if mbstd:
            blocks.append(MinibatchStd())
            last_width += blocks[-1].num_channels
        blocks.append(nn.Conv2d(last_width, 1, 4, 1, 0))
        self.net = nn.Sequential(*blocks)
        init_dcgan_weights(self)
        if num_classes:
            self.projection = Projection(num_classes, last_width * 4 * 4)
        if spectral_norm:
            apply_spectral_norm(self)
            if num_classes:
                torch.nn.utils.parametrizations.spectral_norm(self.projection.embed)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if not self.num_classes:
            return self.net(pack(x, self.pac)).flatten()
        if labels is None:
            raise ValueError("DCGANDiscriminator: a conditional discriminator needs the images' labels")
        labels = check_labels("DCGANDiscriminator", labels, x.shape[0], self.num_classes, x.device)
        h = x
        for layer in self.net[:-1]:
            h = layer(h)
        return self.net[-1](h).flatten() + self.projection(h.flatten(1), labels)


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) convolution weights, N(1, 0.02) batch-norm scales, zero biases (Radford et al. 2016)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, BatchNormAct):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
