"""SNGAN's residual generator and discriminator (Miyato et al. 2018) for 16, 32 and 64 px.

The block layout is that of the authors' Chainer code and of mimicry's sngan_32 / sngan_64:
- G: a linear layer to 4x4, blocks that each double the resolution (BN, ReLU, nearest upsampling, 3x3
  convolution, BN, ReLU, 3x3 convolution; shortcut: upsampling and a 1x1 convolution), then BN, ReLU, a 3x3
  convolution to the image and tanh;
- D: an "optimized" first block (3x3 convolution, ReLU, 3x3 convolution, 2x2 average pooling; shortcut: pooling
  then a 1x1 convolution), pre-activation blocks (ReLU, 3x3, ReLU, 3x3, pooling where the block downsamples;
  shortcut: a 1x1 convolution then pooling, where the channels change or the block downsamples), then ReLU,
  global sum pooling and a linear layer to one logit.

Each BN + ReLU is fastgan's fused BatchNormAct and each convolution that an activation follows hands its bias to
a fused BiasAct; a convolution that batch norm follows has no bias (batch norm removes it).

With num_classes > 0 both are class-conditional, as in Miyato & Koyama 2018: the batch norms of G's blocks are
conditional (each class's scale and shift, fused into the same epilogue; the last one stays unconditional, as in
the authors' code) and D adds the projection term <embed(y), h> on its globally pooled features.

Widths, as in the papers' networks with `width` = 64: 16 and 32 px, every block has `width` channels (SNGAN's
CIFAR-10 networks: 256 in G, 128 in D); 64 px, G's blocks halve from 16 x width at 4x4 to width and D's double
from width to 16 x width.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import BatchNormAct, BiasAct, ConditionalBatchNormAct, MinibatchStd, apply_spectral_norm, pack
from .conditional import Projection, check_labels

RESOLUTIONS = (16, 32, 64)


def _check_resolution(who: str, resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"{who}: resolution must be one of {RESOLUTIONS}; got {resolution!r}")


def _conv3x3(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class GBlock(nn.Module):
    """BN-ReLU, 2x nearest upsampling, 3x3 conv, BN-ReLU, 3x3 conv; plus upsampling and a 1x1 conv of the input.
    num_classes > 0: conditional batch norms, and forward takes the labels."""

    def __init__(self, c_in: int, c_out: int, num_classes: int = 0):
        super().__init__()
        # Batch norm before the upsampling: nearest upsampling repeats each pixel 4 times, so the batch statistics
        # are the same and the fused epilogue reads a quarter of the pixels.
        self.bn1 = ConditionalBatchNormAct(c_in, num_classes, "relu") if num_classes else BatchNormAct(c_in, "relu")
        self.conv1 = _conv3x3(c_in, c_out, bias=False)
        self.bn2 = ConditionalBatchNormAct(c_out, num_classes, "relu") if num_classes else BatchNormAct(c_out, "relu")
        self.conv2 = _conv3x3(c_out, c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cond = () if labels is None else (labels,)
        h = self.conv2(self.bn2(self.conv1(_upsample(self.bn1(x, *cond))), *cond))
        return h + self.shortcut(_upsample(x))


class DBlock(nn.Module):
    """ReLU, 3x3 conv, ReLU, 3x3 conv, [2x2 average pooling]; shortcut: 1x1 conv then pooling when the channels
    change or the block downsamples, else the identity."""

    def __init__(self, c_in: int, c_out: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.act_in = BiasAct(c_in, "relu", bias=False)
        self.conv1 = _conv3x3(c_in, c_out, bias=False)
        self.act1 = BiasAct(c_out, "relu")  # conv1's bias
        self.conv2 = _conv3x3(c_out, c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if downsample or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.act1(self.conv1(self.act_in(x))))
        s = x if self.shortcut is None else self.shortcut(x)
        if self.downsample:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class OptimizedDBlock(nn.Module):
    """D's first block: 3x3 conv, ReLU, 3x3 conv, 2x2 average pooling; shortcut: pooling then a 1x1 conv. No
    activation on the input image."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, bias=False)
        self.act1 = BiasAct(c_out, "relu")  # conv1's bias
        self.conv2 = _conv3x3(c_out, c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.conv2(self.act1(self.conv1(x))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class ResNetGenerator(nn.Module):
    """(N, z_dim) noise -> (N, channels, resolution, resolution) images in [-1, 1].

    num_classes > 0: class-conditional; forward(z, labels) takes int64 labels (N,), and labels=None means
    balanced ones (fastgan.models.conditional.balanced_labels).
    """

    def __init__(self, z_dim: int = 128, resolution: int = 32, channels: int = 3, width: int = 64,
                 num_classes: int = 0):
        super().__init__()
        _check_resolution("ResNetGenerator", resolution)
        self.z_dim, self.resolution, self.channels, self.num_classes = z_dim, resolution, channels, num_classes
        n = int(math.log2(resolution)) - 2  # blocks from 4x4
        widths = [width * 2 ** (n - i) for i in range(n + 1)] if resolution == 64 else [width] * (n + 1)
        self.linear = nn.Linear(z_dim, 4 * 4 * widths[0])
        self.blocks = nn.Sequential(*(GBlock(a, b, num_classes) for a, b in zip(widths, widths[1:])))
        self.bn_out = BatchNormAct(widths[-1], "relu")
        self.conv_out = _conv3x3(widths[-1], channels, bias=False)
        self.act_out = BiasAct(channels, "tanh")  # conv_out's bias
        _init_weights(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.linear(z.reshape(z.shape[0], self.z_dim)).view(z.shape[0], -1, 4, 4)
        if self.num_classes:
            labels = check_labels("ResNetGenerator", labels, z.shape[0], self.num_classes, z.device)
            for block in self.blocks:
                h = block(h, labels)
        else:
            h = self.blocks(h)
        return self.act_out(self.conv_out(self.bn_out(h)))


class ResNetDiscriminator(nn.Module):
    """(N, channels, resolution, resolution) images -> N / pac logits.

    spectral_norm: spectrally normalise every convolution and the linear layer (SNGAN's setting).
    mbstd: a MinibatchStd channel before the last block (Karras et al. 2018).
    pac: judge pac consecutive images at once (PacGAN); the first convolution takes pac * channels.
    num_classes > 0: a projection discriminator; forward(x, labels) adds <embed(labels), h> to the logit, h the
        globally pooled features that the linear layer reads (SNGAN's projection discriminator).
    """

    def __init__(self, resolution: int = 32, channels: int = 3, width: int = 64, *, spectral_norm: bool = False,
                 mbstd: bool = False, pac: int = 1, num_classes: int = 0):
        super().__init__()
        _check_resolution("ResNetDiscriminator", resolution)
        if not isinstance(pac, int) or pac < 1:
            raise ValueError(f"ResNetDiscriminator: pac must be a positive integer; got {pac!r}")
        if num_classes and pac != 1:
            raise ValueError("ResNetDiscriminator: a projection discriminator judges one image against its label; "
                             f"use pac=1 with num_classes (got pac={pac})")
        self.resolution, self.channels, self.pac, self.num_classes = resolution, channels, pac, num_classes
        if resolution == 64:  # five downsampling blocks, 64 -> 2 px
            widths, down = [width * 2 ** i for i in range(5)], [True] * 4
        else:  # two downsampling blocks, then two at that size (16 px: 4x4; 32 px: 8x8)
            widths, down = [width] * 4, [True, False, False]
        blocks: list[nn.Module] = [OptimizedDBlock(pac * channels, widths[0])]
        for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
            if mbstd and i == len(down) - 1:
                blocks.append(MinibatchStd())
                c_in += blocks[-1].num_channels
            blocks.append(DBlock(c_in, c_out, down[i]))
        self.blocks = nn.Sequential(*blocks)
        self.act_out = BiasAct(widths[-1], "relu", bias=False)
        self.linear = nn.Linear(widths[-1], 1)
        _init_weights(self)
        if num_classes:
            self.projection = Projection(num_classes, widths[-1])
        if spectral_norm:
            apply_spectral_norm(self)
            if num_classes:
                torch.nn.utils.parametrizations.spectral_norm(self.projection.embed)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.act_out(self.blocks(pack(x, self.pac))).sum(dim=(2, 3))  # global sum pooling, as SNGAN
        if not self.num_classes:
            return self.linear(h).flatten()
        if labels is None:
            raise ValueError("ResNetDiscriminator: a conditional discriminator needs the images' labels")
        labels = check_labels("ResNetDiscriminator", labels, x.shape[0], self.num_classes, x.device)
        return self.linear(h).flatten() + self.projection(h, labels)


def _init_weights(module: nn.Module) -> None:
    """Xavier-uniform weights, gain sqrt(2) on the 3x3 convolutions of the residual branches and 1 elsewhere, zero
    biases (the authors' code and mimicry's)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        if isinstance(m, (GBlock, DBlock, OptimizedDBlock)):
            for conv in (m.conv1, m.conv2):
                nn.init.xavier_uniform_(conv.weight, math.sqrt(2))
