"""Discriminator-side tools against GAN training instability and mode collapse.

- apply_spectral_norm: 1-Lipschitz layers (Miyato et al. 2018, SN-GAN).
- MinibatchStd: lets D see the spread of a batch, so a collapsed G is easy to spot (Karras et al. 2018).
- pack: PacGAN, D judges pac samples at once (Lin et al. 2018).
- instance_noise: Gaussian noise on D's inputs, annealed to zero (Arjovsky & Bottou 2017; Sønderby et al. 2017).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

SPECTRAL_NORM_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectrally normalise the weight of every Conv2d, ConvTranspose2d and Linear in module; returns module.

    Uses torch.nn.utils.parametrizations.spectral_norm (one power iteration per training-mode forward,
    on the weight reshaped to a matrix with the output channels as rows). Weights already
    parametrised are left alone, so applying it twice is the same as once. Initialise the weights
    before calling it: afterwards `weight` is computed from `parametrizations.weight.original`.
    """
    for layer in list(module.modules()):
        if isinstance(layer, SPECTRAL_NORM_LAYERS) and not parametrize.is_parametrized(layer, "weight"):
            spectral_norm(layer)
    return module


class MinibatchStd(nn.Module):
    """Append the standard deviation across groups of the batch as num_channels extra features.

    As in StyleGAN2 (Karras et al. 2020): the batch is split into groups of G samples (sample i
    belongs to group i mod N/G), the channels into num_channels groups; each group's per-feature std
    over its G samples, sqrt(var + 1e-8), is averaged over channels and positions and appended to
    every sample of the group as a constant channel. Works on (N, C, *spatial) tensors, including flat
    (N, F) features. G is the largest divisor of N that is at most group_size (StyleGAN2 takes
    min(group_size, N) and requires N to divide; here any N works). A batch with no divisor in
    2..group_size, e.g. a prime N > group_size, gets G = 1 and a constant feature sqrt(1e-8): keep N a
    multiple of group_size. Statistics are taken in at least float32, where the 1e-8 does not underflow.
    """

    EPS = 1e-8
    #: its output for one sample depends on others in its batch (fastgan.losses.mixes_samples: the penalties of
    #: a D with this layer take the exact two-pass form)
    cross_sample = True

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"MinibatchStd: group_size must be a positive integer; got {group_size!r}")
        if not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f"MinibatchStd: num_channels must be a positive integer; got {num_channels!r}")
        self.group_size, self.num_channels = group_size, num_channels

    def group_size_for(self, batch_size: int) -> int:
        """The largest divisor of batch_size that is at most group_size (group_size for an empty batch)."""
        return next(g for g in range(self.group_size, 0, -1) if batch_size % g == 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2:
            raise ValueError(f"MinibatchStd: x must have shape (N, C, ...); got {tuple(x.shape)}")
        n, c, *spatial = x.shape
        if c % self.num_channels:
            raise ValueError(f"MinibatchStd: {c} channels do not split into num_channels={self.num_channels} groups")
        g, f = self.group_size_for(n), self.num_channels
        y = x.to(torch.promote_types(x.dtype, torch.float32)).reshape(g, n // g, f, c // f, *spatial)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + self.EPS).sqrt().mean(dim=tuple(range(2, y.ndim)))  # (N / G, F)
        y = y.to(x.dtype).reshape(n // g, f, *[1] * len(spatial)).repeat(g, 1, *spatial)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


def pack(x: torch.Tensor, pac: int) -> torch.Tensor:
    """PacGAN packing (Lin et al. 2018): (N, C, ...) -> (N / pac, pac * C, ...).

    Consecutive samples are packed together (samples k*pac .. k*pac + pac - 1 form pack k), so pass
    real and fake images to D in separate calls, or in halves that pac divides.
    `fastgan train --pac K` packs the batch_size samples of a step into batch_size / K packs; with --pac-fresh
    a step draws batch_size * K samples, so that D judges batch_size packs as in PacGAN's code.
    """
    if not isinstance(pac, int) or pac < 1:
        raise ValueError(f"pack: pac must be a positive integer; got {pac!r}")
    if x.ndim < 2:
        raise ValueError(f"pack: x must have shape (N, C, ...); got {tuple(x.shape)}")
    n = x.shape[0]
    if n % pac:
        raise ValueError(f"pack: batch size N={n} is not divisible by pac={pac}; use a batch size that is a "
                         "multiple of pac")
    return x.reshape(n // pac, pac * x.shape[1], *x.shape[2:])


def instance_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + std * N(0, 1), drawn from generator; std == 0 returns x itself."""
    if not std >= 0:
        raise ValueError(f"instance_noise: std must be >= 0; got {std!r}")
    if std == 0:
        return x
    return x + std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def instance_noise_std(step: int, total_steps: int, start_std: float) -> float:
    """start_std at step 0, falling linearly to 0 at total_steps and staying there."""
    if total_steps <= 0:
        raise ValueError(f"instance_noise_std: total_steps must be positive; got {total_steps!r}")
    if step < 0:
        raise ValueError(f"instance_noise_std: step must be >= 0; got {step!r}")
    if not start_std >= 0:
        raise ValueError(f"instance_noise_std: start_std must be >= 0; got {start_std!r}")
    return start_std * max(0.0, 1.0 - step / total_steps)
