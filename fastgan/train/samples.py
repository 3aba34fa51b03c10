"""Sample images written as PNG: a grid of images, or a scatter plot of 2D points."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .checkpoint import atomic_write_bytes


def _write_png(image: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, scale: int = 1) -> Image.Image:
    """(N, C, H, W) images in [-1, 1] tiled into one picture, nrow per row (default: a square)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"image_grid: expected (N, 1|3, H, W) images; got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    grid = np.zeros((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = pixels[i].transpose(1, 2, 0)
    image = Image.fromarray(grid[..., 0] if c == 1 else grid)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    h = images.shape[-1]
    _write_png(image_grid(images, nrow, scale=max(1, 64 // h)), Path(path))


def save_scatter(points: torch.Tensor, path: str | Path, centers: torch.Tensor | None = None,
                 size: int = 512, extent: float | None = None) -> None:
    """2D points as black dots on white, with the mixture's centres (if given) as red crosses."""
    pts = points.detach().float().cpu()
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"save_scatter: expected (N, 2) points; got {tuple(pts.shape)}")
    if extent is None:
        ref = centers if centers is not None else pts
        extent = float(ref.abs().max()) * 1.25 + 1e-6
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    to_px = lambda v: (v / extent + 1) * 0.5 * (size - 1)  # noqa: E731
    for x, y in pts.tolist():
        px, py = to_px(x), to_px(-y)
        draw.point((px, py), fill="black")
    if centers is not None:
        for x, y in centers.tolist():
            px, py = to_px(x), to_px(-y)
            draw.line((px - 4, py, px + 4, py), fill="red")
            draw.line((px, py - 4, px, py + 4), fill="red")
    _write_png(image, Path(path))
