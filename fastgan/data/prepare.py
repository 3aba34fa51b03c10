"""The dataset tool: turns image folders, zips, arrays, MNIST, CIFAR-10 or a built-in set into a .fgd file.

Images are stored uint8 NCHW: 1 channel when every source image is greyscale, else RGB (alpha is
dropped and palettes are converted, for image files and 4-channel arrays alike: training takes 1 or 3
channels). 16-bit greyscale images are scaled to 8 bits (v / 257, rounded), not clipped. The order is deterministic: files sorted by relative path. Labels come from
the first-level sub-folder names, sorted, when every image lives in one.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from ..atomic import check_replaceable, remove_stale_temps, require_regular_file
from .builtin import IMAGE_DATASETS, load_image_dataset
from .format import MAGIC, FgdWriter

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
WIDE_GREY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # 16-bit PNG and TIFF greyscale, as PIL opens them
#: what reading a damaged archive (.zip, .npz) raises: bad CRC, truncated or bit-flipped deflate streams
DAMAGED_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError)
IMAGE_KEYS = ("images", "x", "x_train", "data", "imgs")
LABEL_KEYS = ("labels", "y", "y_train", "targets", "label")
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CHUNK = 1024


@dataclass
class _Source:
    count: int
    shape: tuple[int, int, int]
    labels: np.ndarray | None
    chunks: Callable[[], Iterator[np.ndarray]]


def prepare(src, dst, resolution: int | None = None, center_crop: bool = False, progress: bool = True,
            force: bool = False) -> Path:
    """Write `src` as the .fgd file `dst` (atomically) and return its path.

    src: a folder of images (labels from sub-folder names), a .zip of images, a .npz / .npy uint8 array
    (NHWC or NCHW; in a .npz the keys images/x/x_train/data and labels/y/y_train/targets), an MNIST idx
    images file (raw or .gz; the matching labels file is picked up beside it), a CIFAR-10 python batches
    folder (data_batch_1..5), or a built-in dataset name (digits).
    resolution: resize every image to resolution x resolution (Lanczos); center_crop first cuts the
    central square so the aspect ratio is kept.
    dst is checked before any work starts: it is never src itself, and an existing dst is replaced only when it
    is a .fgd file (force=True replaces another kind of file).
    """
    if resolution is not None and not 1 <= resolution <= 65536:
        raise ValueError(f"prepare: resolution must be between 1 and 65536; got {resolution}")
    dst = check_replaceable(dst, "a .fgd dataset", lambda head: head.startswith(MAGIC),
                            inputs=[src] if os.path.lexists(src) else [], force=force)
    source = _open_source(src, resolution, center_crop)
    from tqdm import tqdm

    # Temporary files of an earlier prepare of dst that was killed (they can be as large as the dataset).
    remove_stale_temps(dst.parent, dst.name)
    with FgdWriter(dst, source.count, source.shape, source.labels is not None) as writer:
        with tqdm(total=source.count, disable=not progress, unit="img", desc=f"prepare {dst.name}") as bar:
            for chunk in source.chunks():
                writer.write(chunk)
                bar.update(len(chunk))
        return writer.finish(source.labels)


def _open_source(src, resolution, center_crop) -> _Source:
    path = Path(src)
    if not path.exists():
        if isinstance(src, str) and src in IMAGE_DATASETS:
            images, labels = load_image_dataset(src, resolution)
            return _array_source(images, labels, None, False, src)
        raise FileNotFoundError(f"prepare: {src} does not exist and is not a built-in dataset "
                                f"({', '.join(IMAGE_DATASETS)})")
    require_regular_file(path, "prepare input", folder_ok=True)
    if path.is_dir():
        if (path / CIFAR10_BATCHES[0]).exists():
            return _array_source(*_load_cifar10(path), resolution, center_crop, str(path))
        return _image_source(_folder_entries(path), resolution, center_crop, str(path))
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _image_source(_zip_entries(path), resolution, center_crop, str(path))
    if suffix in (".npz", ".npy"):
        return _array_source(*_load_array_file(path), resolution, center_crop, str(path))
    if _is_idx(path):
        return _array_source(*_load_mnist(path), resolution, center_crop, str(path))
    raise ValueError(f"prepare: cannot tell what {src} is; expected a folder of images, a .zip of images, "
                     f".npz/.npy, an MNIST idx file (optionally .gz), a CIFAR-10 batches folder, or one of: "
                     f"{', '.join(IMAGE_DATASETS)}")


# ---- arrays -------------------------------------------------------------------------------------------

def _array_source(images: np.ndarray, labels: np.ndarray | None, resolution, center_crop, name) -> _Source:
    images = _to_nchw(images, name)
    if images.shape[1] == 4:
        images = images[:, :3]  # RGBA: the alpha plane is dropped, as convert("RGB") does for image files
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{name}: labels must be {len(images)} integers; got {labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64)
    if len(images) == 0:
        raise ValueError(f"{name}: no images")
    c, h, w = images.shape[1:]
    if center_crop:
        h = w = min(h, w)
    if resolution is not None:
        h = w = resolution
    reshape = (h, w) != images.shape[2:]

    def chunks():
        for start in range(0, len(images), _CHUNK):
            chunk = images[start:start + _CHUNK]
            if reshape:
                chunk = np.stack([_resize_planes(x, resolution, center_crop) for x in chunk])
            yield chunk

    return _Source(len(images), (c, h, w), labels, chunks)


def _resize_planes(image: np.ndarray, resolution, center_crop) -> np.ndarray:
    # Channel by channel in mode "L": PIL resamples channels independently, and this covers C = 1..4.
    return np.stack([np.asarray(_fit(Image.fromarray(plane), resolution, center_crop)) for plane in image])


def _to_nchw(images: np.ndarray, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{name}: images must be uint8; got {images.dtype} (for floats in [0, 1] use "
                         f"(x * 255).round().astype(np.uint8))")
    if images.ndim == 3:
        return np.ascontiguousarray(images[:, None])
    if images.ndim == 4:
        if images.shape[3] in (1, 3, 4):
            return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        if images.shape[1] in (1, 3, 4):
            return np.ascontiguousarray(images)
    raise ValueError(f"{name}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1, 3, 4; "
                     f"got shape {images.shape}")


def _load_array_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        return _read_array_file(path)
    except DAMAGED_ARCHIVE_ERRORS as e:
        raise ValueError(f"{path}: not a readable {path.suffix.lower()} file (damaged or truncated?): {e}") from None
    except ValueError as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable {path.suffix.lower()} file (damaged or truncated?): {e}") from None


def _read_array_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False), None
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        image_key = next((k for k in IMAGE_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
        if image_key is None:
            raise ValueError(f"{path}: no images array; expected one of the keys {', '.join(IMAGE_KEYS)}, "
                             f"found {', '.join(keys) or 'none'}")
        label_key = next((k for k in LABEL_KEYS if k in keys), None)
        return archive[image_key], (archive[label_key] if label_key else None)


def _is_idx(path: Path) -> bool:
    with _open_maybe_gzip(path) as f:
        try:
            head = f.read(4)
        except (OSError, EOFError):
            return False
    return len(head) == 4 and head[0] == 0 and head[1] == 0 and head[2] == 0x08 and head[3] in (1, 3)


def _open_maybe_gzip(path: Path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read_idx(path: Path) -> np.ndarray:
    """An MNIST idx file of unsigned bytes (type 0x08): big-endian int32 dims, then the data."""
    try:
        with _open_maybe_gzip(path) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read idx file: {e}") from None
    if len(raw) < 4 or raw[:3] != b"\0\0\x08":
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated idx header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(f"{path}: idx header says shape {dims} ({expected} bytes), file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_mnist(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    images = _read_idx(path)
    if images.ndim != 3:
        raise ValueError(f"{path}: expected an idx images file (3 dims); got {images.ndim} dims")
    # train-images-idx3-ubyte[.gz] -> train-labels-idx1-ubyte[.gz], the MNIST / Fashion-MNIST naming.
    label_path = path.with_name(path.name.replace("images", "labels").replace("idx3", "idx1"))
    if label_path == path or not label_path.exists():
        return images, None
    labels = _read_idx(label_path)
    if labels.shape != (len(images),):
        raise ValueError(f"{label_path}: expected {len(images)} labels for {path.name}; got shape {labels.shape}")
    return images, labels


class _Cifar10Unpickler(pickle.Unpickler):
    """Admits only what the CIFAR-10 python batches contain (dicts, lists, numpy arrays), so a
    tampered pickle cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _load_cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in CIFAR10_BATCHES:
        path = folder / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; a CIFAR-10 python folder holds {', '.join(CIFAR10_BATCHES)}")
        require_regular_file(path, "CIFAR-10 batch")
        try:
            with open(path, "rb") as f:
                batch = _Cifar10Unpickler(f, encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            batch_labels = np.asarray(batch[b"labels"], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a CIFAR-10 python batch: {e}") from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or batch_labels.shape != (len(data),):
            raise ValueError(f"{path}: expected data (n, 3072) and n labels; got {data.shape}, {batch_labels.shape}")
        # Each row is 1024 red, 1024 green, 1024 blue values, row-major: already CHW.
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


# ---- image files --------------------------------------------------------------------------------------

def _folder_entries(folder: Path) -> list[tuple[str, str, Callable]]:
    """(path relative to the folder, name for messages, opener) per image, sorted by relative path."""
    entries = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                path = require_regular_file(Path(root) / name, "image")
                rel = path.relative_to(folder).as_posix()
                entries.append((rel, str(path), lambda p=path: p))
    return sorted(entries, key=lambda e: e[0])


def _zip_entries(path: Path) -> list[tuple[str, str, Callable]]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not a readable zip file: {e}") from None
    names = sorted(n for n in archive.namelist()
                   if not n.endswith("/") and n.lower().endswith(IMAGE_EXTENSIONS)
                   and not any(part.startswith((".", "__MACOSX")) for part in n.split("/")))
    def read(name: str) -> io.BytesIO:
        # Each member is read whole into memory: PIL wants a seekable file.
        try:
            return io.BytesIO(archive.read(name))
        except DAMAGED_ARCHIVE_ERRORS as e:
            raise ValueError(f"{path}/{name}: damaged zip member (bad CRC, truncated or corrupt): {e}; the zip "
                             "file is damaged, fetch or pack it again") from None

    return [(n, f"{path}/{n}", lambda n=n: read(n)) for n in names]


def _image_source(entries, resolution, center_crop, name) -> _Source:
    if not entries:
        raise ValueError(f"{name}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    rel = [e[0] for e in entries]
    labels = None
    if all("/" in r for r in rel):
        classes = sorted({r.split("/", 1)[0] for r in rel})
        labels = np.array([classes.index(r.split("/", 1)[0]) for r in rel], dtype=np.int64)

    modes, sizes = [], []
    for _, entry_name, opener in entries:
        with _open_image(entry_name, opener) as im:
            modes.append(im.mode)
            sizes.append(_fit_size(im.size, resolution, center_crop))
    mode = "L" if all(m in GREY_MODES for m in modes) else "RGB"
    if len(set(sizes)) > 1:
        first = sizes[0]
        odd = next(i for i, s in enumerate(sizes) if s != first)
        raise ValueError(f"{entries[odd][1]}: image is {sizes[odd][0]}x{sizes[odd][1]} (WxH) but "
                         f"{entries[0][1]} is {first[0]}x{first[1]}; pass resolution= (--resolution) to resize all")
    width, height = sizes[0]
    channels = 1 if mode == "L" else 3

    def chunks():
        for _, entry_name, opener in entries:
            with _open_image(entry_name, opener) as im:
                im = _to_8_bits(im, entry_name)
                try:
                    im = _fit(im.convert(mode), resolution, center_crop)
                except (OSError, ValueError, SyntaxError) as e:
                    raise ValueError(f"{entry_name}: cannot decode image: {e}") from None
            pixels = np.asarray(im, dtype=np.uint8)
            yield (pixels[None, None] if channels == 1 else pixels.transpose(2, 0, 1)[None])

    return _Source(len(entries), (channels, height, width), labels, chunks)


def _to_8_bits(im: Image.Image, name: str) -> Image.Image:
    """An 8-bit image for a 16-bit greyscale one (v / 257, rounded: 0 -> 0, 65535 -> 255); convert("L") would clip
    every value above 255 to white. Floating-point images have no agreed range and are refused."""
    if im.mode == "F":
        raise ValueError(f"{name}: floating-point image (mode F) has no fixed range; save it as 8- or 16-bit")
    if im.mode not in WIDE_GREY_MODES:
        return im
    values = np.asarray(im).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"{name}: {im.mode} image with values outside 0..65535; save it as 8- or 16-bit")
    return Image.fromarray(((values * 2 + 257) // 514).astype(np.uint8), mode="L")


def _open_image(name: str, opener) -> Image.Image:
    # opener gives a path (PIL then closes the file with the image) or an in-memory file.
    source = opener()
    try:
        return Image.open(source)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"{name}: cannot read image: {e}") from None


def _fit_size(size: tuple[int, int], resolution, center_crop) -> tuple[int, int]:
    if resolution is not None:
        return (resolution, resolution)
    if center_crop:
        side = min(size)
        return (side, side)
    return size


def _fit(im: Image.Image, resolution, center_crop) -> Image.Image:
    if center_crop:
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
    if resolution is not None and im.size != (resolution, resolution):
        im = im.resize((resolution, resolution), Image.LANCZOS)
    return im
