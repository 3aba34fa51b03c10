"""R3GAN's networks (Huang, Gokaslan, Kuleshov, Tompkin, "The GAN is dead; long live the GAN!", NeurIPS 2024),
as its code builds them (brownvc/R3GAN, R3GAN/Networks.py, Resamplers.py, FusedOperators.py).

A normalisation-free ResNeXt: every stage is residual blocks of a 1x1 expanding convolution, a grouped 3x3
convolution and a 1x1 contracting convolution, each of the first two followed by a biased leaky ReLU (fastgan's
bias_act). The contracting convolution starts at zero, so every block starts as the identity; the others are
initialised with variance 1/fan_in scaled by the activation's gain and by (blocks in the network)^(-1/4), the
fix-up scaling of the paper (sec. 4). G starts from a learned 4x4 basis modulated by a linear map of z and
doubles the resolution stage by stage with a [1, 2, 1] interpolation filter; D mirrors it, halving with the same
filter and ending in a depthwise 4x4 basis and a linear layer. Neither has batch norm or any layer that mixes
samples, so D's gradient with respect to one input depends on that input alone (the one-pass R1 + R2 relies on
it). Conditional: G concatenates a linear embedding of the one-hot class to z; D projects its last features on an
embedding of the class (both bias-free, as in R3GAN's code).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import bias_act

#: gain of a leaky ReLU with slope 0.2 (He et al. 2015), which the initialisation multiplies in
LRELU_GAIN = math.sqrt(2 / (1 + 0.2 ** 2))
#: R3GAN's resampling filter
RESAMPLING_FILTER = (1, 2, 1)


def msr_init_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Normal weights with std gain / sqrt(fan_in) (R3GAN's MSRInitializer); gain 0 gives zeros."""
    fan_in = weight.shape[1] * weight[0][0].numel()
    with torch.no_grad():
        return weight.normal_(0, gain / math.sqrt(fan_in))


def lowpass_kernel(taps=RESAMPLING_FILTER) -> torch.Tensor:
    """The 2D interpolation kernel of R3GAN's resamplers: the outer product of taps convolved with [1, 1]
    ([1, 2, 1] -> [1, 3, 3, 1]), summing to 1."""
    row = torch.tensor(taps, dtype=torch.float64)
    row = F.conv1d(F.pad(row.view(1, 1, -1), (1, 1)), torch.ones(1, 1, 2, dtype=torch.float64)).view(-1)
    kernel = torch.outer(row, row)
    return (kernel / kernel.sum()).float()


class Conv(nn.Module):
    """A bias-free convolution with R3GAN's initialisation."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, groups: int = 1, gain: float = 1.0,
                 padding: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(msr_init_(torch.empty(c_out, c_in // groups, kernel_size, kernel_size), gain))
        self.groups = groups
        self.padding = (kernel_size - 1) // 2 if padding is None else padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), padding=self.padding, groups=self.groups)


class BiasedLReLU(nn.Module):
    """x + bias per channel, then a leaky ReLU of slope 0.2, in one fastgan.ops.bias_act call (gain 1, as R3GAN's
    code calls StyleGAN's bias_act)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, self.bias.to(x.dtype), act="lrelu", alpha=0.2, gain=1.0)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, cardinality: int, expansion: int, total_blocks: int):
        super().__init__()
        expanded = channels * expansion
        if expanded % cardinality:
            raise ValueError(f"R3GAN block: {expanded} expanded channels do not split into {cardinality} groups")
        # Fix-up scaling: three linear layers per block, so the gain shrinks as total_blocks^(-1 / (2 * 3 - 2)).
        gain = LRELU_GAIN * total_blocks ** (-1 / 4)
        self.expand = Conv(channels, expanded, 1, gain=gain)
        self.act1 = BiasedLReLU(expanded)
        self.grouped = Conv(expanded, expanded, 3, groups=cardinality, gain=gain)
        self.act2 = BiasedLReLU(expanded)
        self.contract = Conv(expanded, channels, 1, gain=0.0)  # each block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.contract(self.act2(self.grouped(self.act1(self.expand(x)))))


class Resample(nn.Module):
    """x2 up (a transposed depthwise convolution with 4 x the kernel) or /2 down (a strided one), with an optional
    1x1 convolution to change the channels: before upsampling, after downsampling, as R3GAN's code orders them."""

    def __init__(self, c_in: int, c_out: int, up: bool):
        super().__init__()
        self.up = up
        self.register_buffer("kernel", lowpass_kernel(), persistent=False)
        self.linear = Conv(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up and self.linear is not None:
            x = self.linear(x)
        channels = x.shape[1]
        kernel = self.kernel.to(x.dtype).expand(channels, 1, *self.kernel.shape)
        if self.up:
            x = F.conv_transpose2d(x, 4 * kernel, stride=2, padding=1, groups=channels)
        else:
            x = F.conv2d(x, kernel, stride=2, padding=1, groups=channels)
        if not self.up and self.linear is not None:
            x = self.linear(x)
        return x


class R3GANGenerator(nn.Module):
    """z (N, z_dim) [and labels (N,)] -> images (N, channels, 4 * 2^(stages - 1), ...), unbounded (no tanh)."""

    def __init__(self, z_dim: int, channels: int, widths, cardinalities, blocks, expansion: int = 2,
                 num_classes: int = 0, embed_dim: int = 0):
        super().__init__()
        total = sum(blocks)
        self.num_classes = num_classes
        self.embed = (nn.Linear(num_classes, embed_dim, bias=False) if num_classes else None)
        if self.embed is not None:
            msr_init_(self.embed.weight)
        c_in = z_dim + (embed_dim if num_classes else 0)
        self.basis = nn.Parameter(torch.randn(widths[0], 4, 4))
        self.basis_map = nn.Linear(c_in, widths[0], bias=False)
        msr_init_(self.basis_map.weight)
        stages = []
        for i, (width, groups, n) in enumerate(zip(widths, cardinalities, blocks)):
            layers = [] if i == 0 else [Resample(widths[i - 1], width, up=True)]
            layers += [ResidualBlock(width, groups, expansion, total) for _ in range(n)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.to_image = Conv(widths[-1], channels, 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if labels is None:
                raise ValueError("R3GANGenerator: a conditional generator needs labels")
            z = torch.cat([z, self.embed(F.one_hot(labels, self.num_classes).to(z.dtype))], dim=1)
        x = self.basis.to(z.dtype) * self.basis_map(z).view(len(z), -1, 1, 1)
        for stage in self.stages:
            x = stage(x)
        return self.to_image(x)


class R3GANDiscriminator(nn.Module):
    """images (N, channels, H, W) [and labels (N,)] -> logits (N,)."""

    def __init__(self, channels: int, widths, cardinalities, blocks, expansion: int = 2, num_classes: int = 0,
                 embed_dim: int = 0):
        super().__init__()
        total = sum(blocks)
        self.num_classes = num_classes
        self.from_image = Conv(channels, widths[0], 1)
        stages = []
        for i, (width, groups, n) in enumerate(zip(widths, cardinalities, blocks)):
            layers = [ResidualBlock(width, groups, expansion, total) for _ in range(n)]
            if i + 1 < len(widths):
                layers.append(Resample(width, widths[i + 1], up=False))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        out = embed_dim if num_classes else 1
        # Depthwise 4x4 -> 1x1. Every convolution here is a Conv (not an nn.Conv2d), so the trainer keeps the
        # networks in the default memory format: channels_last made a D step 0.84x as fast on the CPU.
        self.basis = Conv(widths[-1], widths[-1], 4, groups=widths[-1], padding=0)
        self.linear = nn.Linear(widths[-1], out, bias=False)
        msr_init_(self.linear.weight)
        self.embed = nn.Linear(num_classes, embed_dim, bias=False) if num_classes else None
        if self.embed is not None:
            msr_init_(self.embed.weight, gain=1 / math.sqrt(embed_dim))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.from_image(x)
        for stage in self.stages:
            x = stage(x)
        x = self.linear(self.basis(x).flatten(1))
        if self.embed is not None:
            if labels is None:
                raise ValueError("R3GANDiscriminator: a conditional discriminator needs labels")
            x = (x * self.embed(F.one_hot(labels, self.num_classes).to(x.dtype))).sum(dim=1, keepdim=True)
        return x.view(len(x))
