"""DCGAN (Radford et al. 2016) for 16, 32 and 64 px, in the layout of pytorch/examples' dcgan.

The generator doubles resolution from 4x4 with ConvTranspose2d blocks whose batch norm + ReLU
tail is fastgan's fused epilogue; the discriminator mirrors it with strided convolutions and
LeakyReLU(0.2) and ends in a logit per image.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import BatchNormAct, ConvBlock, ConvTransposeBlock

RESOLUTIONS = (16, 32, 64)


def _num_doublings(resolution: int) -> int:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"DCGAN: resolution must be one of {RESOLUTIONS}; got {resolution!r}")
    return {16: 2, 32: 3, 64: 4}[resolution]


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, resolution: int = 64, channels: int = 3, width: int = 64):
        super().__init__()
        n = _num_doublings(resolution)
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]  # 64 px: 512, 256, 128, 64
        blocks = [ConvTransposeBlock(z_dim, widths[0], 4, 1, 0, norm="batch", act="relu")]
        for w_in, w_out in zip(widths, widths[1:]):
            blocks.append(ConvTransposeBlock(w_in, w_out, 4, 2, 1, norm="batch", act="relu"))
        blocks.append(ConvTransposeBlock(widths[-1], channels, 4, 2, 1, norm="none", act="tanh"))
        self.net = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.z_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    def __init__(self, resolution: int = 64, channels: int = 3, width: int = 64):
        super().__init__()
        n = _num_doublings(resolution)
        self.resolution, self.channels = resolution, channels
        widths = [width * 2 ** i for i in range(n)]  # 64 px: 64, 128, 256, 512
        blocks = [ConvBlock(channels, widths[0], 4, 2, 1, norm="none", act="lrelu", alpha=0.2)]
        for w_in, w_out in zip(widths, widths[1:]):
            blocks.append(ConvBlock(w_in, w_out, 4, 2, 1, norm="batch", act="lrelu", alpha=0.2))
        blocks.append(nn.Conv2d(widths[-1], 1, 4, 1, 0))
        self.net = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


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
