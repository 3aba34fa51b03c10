"""DiffAugment (Zhao et al. 2020): random augmentations that gradients flow through.

The same augmentation is applied to real and fake images before the discriminator, in both the D and
the G step, so D never sees an un-augmented image and G is trained through the augmentation. Every
random draw comes from the caller's torch.Generator, so a seeded run is bit-reproducible.
"""
from __future__ import annotations

import torch
from torch import nn

DIFF_AUGMENT_POLICIES = ("color", "translation", "cutout")

# Zhao et al. 2020 (data-efficient-gans, DiffAugment_pytorch.py): shift by up to 1/8 of the side,
# cut out a square of half the side.
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); '' -> (); unknown names raise ValueError."""
    if not isinstance(policy, str):
        raise ValueError(f"diff_augment: policy must be a comma-separated string; got {type(policy).__name__}")
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in DIFF_AUGMENT_POLICIES]
    if unknown:
        raise ValueError(f"diff_augment: unknown policy {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(DIFF_AUGMENT_POLICIES)}")
    return names


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a batch of NCHW images in [-1, 1]; differentiable with respect to x.

    policy is a comma-separated list applied in order, each with independent draws per image:
      color:       brightness + U(-0.5, 0.5); saturation x U(0, 2) around the per-pixel mean over
                   channels; contrast x U(0.5, 1.5) around the per-image mean.
      translation: shift by up to round(side / 8) pixels in each direction, filling with zeros.
      cutout:      zero one square of round(side / 2) pixels (clipped at the border) at a random centre.
    An empty policy returns x itself. generator (on x's device) supplies every random draw; torch.compile
    cannot trace a torch.Generator argument (fullgraph=True fails on it), so call this outside the
    compiled discriminator.
    """
    names = parse_policy(policy)
    if not names:
        return x
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4:
        raise ValueError("diff_augment: x must be a floating-point NCHW tensor; got "
                         f"{getattr(x, 'dtype', type(x).__name__)} of shape {tuple(getattr(x, 'shape', ()))}")
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"diff_augment: generator is on {generator.device} but x is on {x.device}; "
                         "create the generator on x's device")
    for name in names:
        x = _AUGMENTATIONS[name](x, generator)
    return x


class DiffAugment(nn.Module):
    """diff_augment as a module; the policy is checked once, here."""

    def __init__(self, policy: str = "color,translation,cutout"):
        super().__init__()
        self.policy = ",".join(parse_policy(policy))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return diff_augment(x, self.policy, generator)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"


def _uniform_per_image(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, generator=generator, dtype=x.dtype, device=x.device)


def _integers_per_image(low: int, high: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Integers in [low, high), shape (N, 1, 1) to broadcast against (N, H, W) index grids."""
    return torch.randint(low, high, (x.shape[0], 1, 1), generator=generator, device=x.device)


def _color(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    x = x + (_uniform_per_image(x, generator) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform_per_image(x, generator) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform_per_image(x, generator) + 0.5) + mean


def _pixel_grid(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index of every pixel, shapes (1, H, 1) and (1, 1, W)."""
    rows = torch.arange(x.shape[2], device=x.device).view(1, -1, 1)
    cols = torch.arange(x.shape[3], device=x.device).view(1, 1, -1)
    return rows, cols


def _translation(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    n, c, h, w = x.shape
    max_dy, max_dx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = _integers_per_image(-max_dy, max_dy + 1, x, generator)
    dx = _integers_per_image(-max_dx, max_dx + 1, x, generator)
    rows, cols = _pixel_grid(x)
    # Output pixel (i, j) reads input pixel (i - dy, j - dx): the content moves by (+dy, +dx).
    src_rows, src_cols = rows - dy, cols - dx
    inside = (src_rows >= 0) & (src_rows < h) & (src_cols >= 0) & (src_cols < w)
    # A gather reads each valid source pixel once, so its backward adds each gradient to a distinct
    # element (plus exact zeros from the masked reads): exact, and the same bits from run to run.
    index = (src_rows.clamp(0, h - 1) * w + src_cols.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
    shifted = x.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)
    return torch.where(inside.unsqueeze(1), shifted, torch.zeros((), dtype=x.dtype, device=x.device))


def _cutout(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    _, _, h, w = x.shape
    size_h, size_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    # Same centre range as Zhao et al.: the square may hang over the border by up to half its side.
    top = _integers_per_image(0, h + (1 - size_h % 2), x, generator) - size_h // 2
    left = _integers_per_image(0, w + (1 - size_w % 2), x, generator) - size_w // 2
    rows, cols = _pixel_grid(x)
    cut = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return torch.where(cut.unsqueeze(1), torch.zeros((), dtype=x.dtype, device=x.device), x)


_AUGMENTATIONS = {"color": _color, "translation": _translation, "cutout": _cutout}
