"""Features of images, of generator samples, and of real datasets: built-in ones and .fgd files (cached on disk)."""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fastgan.atomic import atomic_write
from fastgan.metrics.cache import cache_dir
from fastgan.metrics.stats import FeatureStats

# Real images whose features are kept for KID and precision/recall (see real_image_features).
MAX_REAL_FEATURES = 10000
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def extract(extractor: nn.Module, images, batch_size: int = 250, device="cpu", with_logits: bool = False):
    """Run images (N, C, H, W) in [-1, 1] through extractor in batches; float32 CPU tensors.

    The extractor is any nn.Module with features = extractor(images); with_logits=True needs one with
    features_and_logits(images) (InceptionV3, DigitsClassifier) and returns (features, logits).
    """
    images = torch.as_tensor(images)
    if images.ndim != 4:
        raise ValueError(f"extract: images must be (N, C, H, W); got shape {tuple(images.shape)}")
    return _run(extractor, (images[i : i + batch_size] for i in range(0, len(images), batch_size)), device, with_logits)


def sample(generator: nn.Module, n: int, z_dim: int, batch_size: int = 250, seed: int = 0, device="cpu"):
    """Yield generator(z) for n latents z ~ N(0, I) in batches, drawn from a generator seeded with seed."""
    if n < 1:
        raise ValueError(f"sample: n must be at least 1; got {n}")
    rng = torch.Generator().manual_seed(seed)
    generator = generator.to(device)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - i), z_dim, generator=rng)
            yield generator(z.to(device))


def _run(extractor: nn.Module | None, batches, device, with_logits: bool):
    feats, logits = [], []
    for out in _extract_batches(extractor, batches, device, with_logits):
        f, logit = out if with_logits else (out, None)
        feats.append(f)
        if with_logits:
            logits.append(logit)
    features = torch.cat(feats)
    return (features, torch.cat(logits)) if with_logits else features


def _extract_batches(extractor: nn.Module | None, batches, device, with_logits: bool):
    """Yield the features (or (features, logits)) of each batch as float32 CPU tensors."""
    if with_logits and not hasattr(extractor, "features_and_logits"):
        raise TypeError(f"{type(extractor).__name__} has no features_and_logits(); the Inception Score needs class logits")
    if extractor is not None:
        extractor = extractor.to(device).eval()
    with torch.no_grad():
        for batch in batches:
            batch = batch.to(device)
            if extractor is None:
                yield batch.float().cpu()
                continue
            if with_logits:
                f, logit = extractor.features_and_logits(batch)
            else:
                f = extractor(batch)
            if f.ndim != 2:
                raise ValueError(f"extractor {type(extractor).__name__} returned shape {tuple(f.shape)}; features must be (N, D)")
            yield (f.float().cpu(), logit.float().cpu()) if with_logits else f.float().cpu()


def generator_features(generator: nn.Module, n: int, z_dim: int, extractor: nn.Module | None = None, batch_size: int = 250,
                       seed: int = 0, device="cpu", with_logits: bool = False):
    """Features of n generator samples; extractor=None takes the samples themselves (e.g. 2D points)."""
    return _run(extractor, sample(generator, n, z_dim, batch_size, seed, device), device, with_logits)


def is_packed_dataset(dataset) -> bool:
    """Whether dataset names a .fgd file (what `fastgan prepare` writes) rather than a built-in dataset."""
    return isinstance(dataset, os.PathLike) or str(dataset).endswith(".fgd")


def real_image_features(dataset, resolution: int | None, extractor: nn.Module, extractor_name: str,
                        batch_size: int = 250, device="cpu"):
    """(features (M, D) float32, FeatureStats) of the real images of a built-in dataset or a .fgd file.

    dataset: a built-in image dataset name (at resolution) or the path of a .fgd file (at its own
    size; resolution is not used). The FeatureStats, and so FID, cover every image; the features,
    which KID and precision/recall compare with the generated ones, are those of at most
    MAX_REAL_FEATURES images (a fixed random subset): their k-NN and kernel computations grow with
    the square of the count, and a 50,000-image set would make a 400 MB cache entry.

    Both are cached in cache_dir()/stats, keyed by the dataset (a built-in's name and resolution; a
    .fgd file's name, payload CRC32 from its header and size, which change whenever its content does),
    extractor_name and the image size. The entry holds the features and the FeatureStats arrays
    (n, mean, m2); it is written to a temporary name and renamed, so a crash never leaves a partial entry.
    """
    path = real_stats_cache_path(dataset, resolution, extractor_name)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return torch.from_numpy(data["features"]), FeatureStats.from_arrays(data, source=str(path))
        except (KeyError, ValueError, OSError, EOFError):
            pass  # A corrupt entry is recomputed and replaced below.
    images = _real_images(dataset, resolution)
    features, stats = _features_and_stats(extractor, images, batch_size, device)
    buf = io.BytesIO()
    np.savez(buf, features=features.numpy(), **stats.to_arrays())
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return features, stats


def real_stats_cache_path(dataset, resolution: int | None, extractor_name: str) -> Path:
    """Where real_image_features caches the features and statistics of dataset under extractor_name."""
    if not is_packed_dataset(dataset):
        return cache_dir() / "stats" / f"{dataset}-{extractor_name}-r{resolution}.npz"
    from fastgan.data.format import read_header

    header = read_header(dataset)
    name = _SAFE_NAME.sub("_", Path(dataset).stem)
    return (cache_dir() / "stats" /
            f"{name}.fgd-{header.checksum:08x}-{header.file_size}-{extractor_name}-{header.height}x{header.width}.npz")


def extractor_cache_name(extractor: nn.Module) -> str:
    """A name for extractor in cache keys: its class and a digest of its weights and buffers.

    Two networks of one class with different weights get different names; a change to the class's
    code that keeps its name and weights does not, so rename the class (or clear $FASTGAN_CACHE) then.
    """
    digest = hashlib.sha256()
    for key, value in sorted(extractor.state_dict().items()):
        value = value.detach().cpu().contiguous()
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    cls = type(extractor)
    return _SAFE_NAME.sub("_", f"{cls.__module__}.{cls.__qualname__}") + "-" + digest.hexdigest()[:16]


def _real_images(dataset, resolution: int | None) -> np.ndarray:
    """uint8 (N, C, H, W): the built-in's array, or the .fgd file's memory map (read batch by batch)."""
    if is_packed_dataset(dataset):
        from fastgan.data.packed import PackedDataset

        return PackedDataset(dataset).images
    from fastgan.data.builtin import load_image_dataset

    return load_image_dataset(dataset, resolution)[0]


def _features_and_stats(extractor: nn.Module, images: np.ndarray, batch_size: int, device):
    n = len(images)
    keep = np.ones(n, dtype=bool)
    if n > MAX_REAL_FEATURES:
        keep[:] = False
        keep[np.random.default_rng(0).choice(n, MAX_REAL_FEATURES, replace=False)] = True
    # np.array copies each batch out of the read-only memory map, which torch.from_numpy would warn about.
    batches = (torch.from_numpy(np.array(images[i : i + batch_size])).float() * (2 / 255) - 1
               for i in range(0, n, batch_size))
    stats, kept = FeatureStats(), []
    for i, features in zip(range(0, n, batch_size), _extract_batches(extractor, batches, device, False)):
        stats.update(features)
        kept.append(features[torch.from_numpy(keep[i : i + batch_size])])
    return torch.cat(kept), stats
