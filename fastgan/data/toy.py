"""2D Gaussian mixtures from the mode-collapse literature: 8 modes on a ring, 25 on a grid."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TOY_DATASETS = ("ring8", "grid25")


@dataclass(frozen=True)
class ToyMixture:
    """An equal-weight isotropic Gaussian mixture in 2D."""

    name: str
    centers: torch.Tensor  # (K, 2)
    std: float

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """n points (n, 2), float32, with the mode of each drawn uniformly, on `generator`'s device."""
        device = generator.device if generator is not None else device
        k = torch.randint(len(self.centers), (n,), generator=generator, device=device)
        noise = torch.randn(n, 2, generator=generator, device=device)
        return self.centers.to(device)[k] + self.std * noise


def ring8(radius: float = 1.0, std: float = 0.01) -> ToyMixture:
    # 8 modes on a circle of radius 1, std 0.01, as in the unrolled-GAN (Metz et al. 2017), VEEGAN, PacGAN and
    # GDPP code. fastgan before issue 17 used radius 2, std 0.02: ring8(2.0, 0.02) (the same task scaled by 2).
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    centers = torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], dim=1).float()
    return ToyMixture("ring8", centers, std)


def grid25(spacing: float = 2.0, std: float = 0.05) -> ToyMixture:
    # Lin et al. 2018 (PacGAN) / Srivastava et al. 2017 (VEEGAN): 5x5 modes at {-4,-2,0,2,4}^2, std 0.05.
    ticks = (torch.arange(5, dtype=torch.float32) - 2) * spacing
    centers = torch.cartesian_prod(ticks, ticks)
    return ToyMixture("grid25", centers, std)


def load_toy(name: str) -> ToyMixture:
    if name == "ring8":
        return ring8()
    if name == "grid25":
        return grid25()
    raise ValueError(f"unknown toy dataset {name!r}; toy datasets are: {', '.join(TOY_DATASETS)}")
