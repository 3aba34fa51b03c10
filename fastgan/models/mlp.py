"""Fully connected GAN (Goodfellow et al. 2014): z 100 -> 256 -> 256 -> 784 tanh, and its discriminator.

With num_classes > 0 both are class-conditional by concatenation (Mirza & Osindero 2014): a one-hot label joins
G's noise and D's flattened input.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..nn import MinibatchStd, apply_spectral_norm, pack
from .conditional import check_labels, one_hot


class MLPGenerator(nn.Module):
    """z -> hidden layers (ReLU) -> prod(out_shape), tanh for images or linear for points in the plane.

    num_classes > 0: forward(z, labels) reads z and the one-hot labels; labels=None means balanced ones.
    """

    def __init__(self, z_dim: int = 100, hidden: tuple[int, ...] = (256, 256),
                 out_shape: tuple[int, ...] = (1, 28, 28), out_act: str = "tanh", num_classes: int = 0):
        super().__init__()
        if out_act not in ("tanh", "linear"):
            raise ValueError(f"MLPGenerator: out_act must be 'tanh' or 'linear'; got {out_act!r}")
        self.z_dim, self.out_shape, self.num_classes = z_dim, tuple(out_shape), num_classes
        layers, width = [], z_dim + num_classes
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, math.prod(self.out_shape)))
        if out_act == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            labels = check_labels("MLPGenerator", labels, z.shape[0], self.num_classes, z.device)
            z = torch.cat([z, one_hot(labels, self.num_classes, z.dtype)], 1)
        return self.net(z).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    """x -> hidden layers (LeakyReLU 0.2) -> one logit per sample (no sigmoid: losses take logits).

    spectral_norm: spectrally normalise every Linear (Miyato et al. 2018).
    mbstd: append a MinibatchStd feature to the last hidden layer's output.
    pac: judge pac consecutive samples at once (PacGAN); N samples give N / pac logits and the first
        Linear takes pac * prod(in_shape) inputs.
    num_classes > 0: forward(x, labels) reads the flattened x and the one-hot labels.
    The defaults build the plain discriminator with its usual state-dict keys.
    """

    def __init__(self, in_shape: tuple[int, ...] = (1, 28, 28), hidden: tuple[int, ...] = (256, 256), *,
                 spectral_norm: bool = False, mbstd: bool = False, pac: int = 1, num_classes: int = 0):
        super().__init__()
        if not isinstance(pac, int) or pac < 1:
            raise ValueError(f"MLPDiscriminator: pac must be a positive integer; got {pac!r}")
        if num_classes and pac != 1:
            raise ValueError("MLPDiscriminator: a conditional discriminator judges one sample against its label; "
                             f"use pac=1 with num_classes (got pac={pac})")
        self.in_shape, self.pac, self.num_classes = tuple(in_shape), pac, num_classes
        layers, width = [nn.Flatten()], pac * math.prod(self.in_shape) + num_classes
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        if mbstd:
            layers.append(MinibatchStd())
            width += layers[-1].num_channels
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if not self.num_classes:
            return self.net(pack(x, self.pac)).squeeze(1)
        if labels is None:
            raise ValueError("MLPDiscriminator: a conditional discriminator needs the samples' labels")
        labels = check_labels("MLPDiscriminator", labels, x.shape[0], self.num_classes, x.device)
        h = torch.cat([self.net[0](x), one_hot(labels, self.num_classes, x.dtype)], 1)
        return self.net[1:](h).squeeze(1)
