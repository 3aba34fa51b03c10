"""Built-in image datasets that ship inside installed packages, so training needs no network."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

IMAGE_DATASETS = ("digits",)
DIGITS_RESOLUTIONS = (8, 16, 32, 64)


def _digits_csv() -> Path:
    # Located without importing scikit-learn, whose import costs seconds; the file is the same
    # one sklearn.datasets.load_digits reads.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise RuntimeError("the built-in digits dataset ships with scikit-learn: pip install scikit-learn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise RuntimeError(f"scikit-learn is installed but its digits data is missing: {path}")
    return path


@functools.lru_cache(maxsize=None)
def _digits_8x8() -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(_digits_csv(), delimiter=",", dtype=np.float64)
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def digits(resolution: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (UCI optdigits), as uint8 images (N, 1, R, R) and int64 labels.

    The originals are 8x8 with 17 grey levels; they are scaled to 0..255 and resized with bicubic
    interpolation, which keeps strokes smooth at 16 and 32 px.
    """
    if resolution not in DIGITS_RESOLUTIONS:
        raise ValueError(f"digits: resolution must be one of {DIGITS_RESOLUTIONS}; got {resolution!r}")
    from PIL import Image

    pixels, labels = _digits_8x8()
    small = np.clip(np.rint(pixels * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    if resolution == 8:
        images = small
    else:
        images = np.stack(
            [np.asarray(Image.fromarray(im).resize((resolution, resolution), Image.BICUBIC)) for im in small]
        )
    return np.ascontiguousarray(images[:, None]), labels.copy()


def load_image_dataset(name: str, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A built-in image dataset by name: (uint8 images N,C,H,W, int64 labels)."""
    if name == "digits":
        return digits(16 if resolution is None else resolution)
    raise ValueError(f"unknown built-in image dataset {name!r}; built-ins are: {', '.join(IMAGE_DATASETS)}")
