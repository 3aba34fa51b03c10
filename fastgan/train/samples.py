"""Samples written to files, one format per kind of sample: a PNG grid of images, a scatter plot of 2D
points, line plots of sequences (their values as .npy: npy_bytes), or token sequences as text. Which kind takes
which format is its record's (fastgan.train.kinds)."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..atomic import atomic_write_bytes


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


# Distinct on white and to colour-blind readers (Okabe & Ito 2008); features beyond eight reuse them.
LINE_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


def sequence_plots(sequences: torch.Tensor, ncol: int | None = None, panel: tuple[int, int] = (160, 80),
                   extent: float | None = None) -> Image.Image:
    """(N, T, F) sequences as a grid of line plots, one panel per sequence, one colour per feature.

    Every panel spans the same vertical range [-extent, extent] (default: the largest |value|), so
    amplitudes can be compared across panels; the grey line is zero.
    """
    seqs = sequences.detach().float().cpu()
    if seqs.ndim != 3 or min(seqs.shape) == 0:
        raise ValueError(f"sequence_plots: expected sequences (N, T, F); got {tuple(seqs.shape)}")
    if not torch.isfinite(seqs).all():
        raise ValueError("sequence_plots: the sequences contain NaN or infinite values")
    n, length, features = seqs.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    rows = math.ceil(n / ncol)
    width, height = panel
    pad = 4
    if extent is None:
        extent = float(seqs.abs().max()) * 1.05 or 1.0
    image = Image.new("RGB", (ncol * (width + pad) + pad, rows * (height + pad) + pad), "white")
    draw = ImageDraw.Draw(image)
    xs = [(t / max(length - 1, 1)) * (width - 1) for t in range(length)]
    for i in range(n):
        r, c = divmod(i, ncol)
        left, top = pad + c * (width + pad), pad + r * (height + pad)
        to_y = lambda v, top=top: top + (1 - (v / extent + 1) / 2) * (height - 1)  # noqa: E731
        draw.rectangle((left, top, left + width - 1, top + height - 1), outline="#b0b0b0")
        draw.line((left, to_y(0.0), left + width - 1, to_y(0.0)), fill="#dddddd")
        for f in range(features):
            points = [(left + x, to_y(v)) for x, v in zip(xs, seqs[i, :, f].tolist())]
            if length == 1:
                draw.point(points, fill=LINE_COLOURS[f % len(LINE_COLOURS)])
            else:
                draw.line(points, fill=LINE_COLOURS[f % len(LINE_COLOURS)], width=1)
    return image


def save_sequence_plots(sequences: torch.Tensor, path: str | Path, ncol: int | None = None) -> None:
    _write_png(sequence_plots(sequences, ncol), Path(path))


def save_token_text(tokens: torch.Tensor, path: str | Path) -> None:
    """(N, T) integer tokens as text: one sequence per line, token ids separated by spaces."""
    if tokens.ndim != 2 or tokens.dtype.is_floating_point or tokens.dtype.is_complex:
        raise ValueError(f"save_token_text: expected integer tokens (N, T); got {tokens.dtype} of shape "
                         f"{tuple(tokens.shape)}")
    lines = (" ".join(map(str, row)) + "\n" for row in tokens.cpu().tolist())
    atomic_write_bytes(Path(path), "".join(lines).encode())


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
