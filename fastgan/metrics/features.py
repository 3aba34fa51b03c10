"""Features of images, of generator samples, and of built-in real datasets (cached on disk)."""
from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from fastgan.metrics.cache import atomic_write, cache_dir
from fastgan.metrics.stats import FeatureStats


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
    if with_logits and not hasattr(extractor, "features_and_logits"):
        raise TypeError(f"{type(extractor).__name__} has no features_and_logits(); the Inception Score needs class logits")
    if extractor is not None:
        extractor = extractor.to(device).eval()
    feats, logits = [], []
    with torch.no_grad():
        for batch in batches:
            batch = batch.to(device)
            if extractor is None:
                feats.append(batch.float().cpu())
                continue
            if with_logits:
                f, l = extractor.features_and_logits(batch)
                logits.append(l.float().cpu())
            else:
                f = extractor(batch)
            if f.ndim != 2:
                raise ValueError(f"extractor {type(extractor).__name__} returned shape {tuple(f.shape)}; features must be (N, D)")
            feats.append(f.float().cpu())
    features = torch.cat(feats)
    return (features, torch.cat(logits)) if with_logits else features


def generator_features(generator: nn.Module, n: int, z_dim: int, extractor: nn.Module | None = None, batch_size: int = 250,
                       seed: int = 0, device="cpu", with_logits: bool = False):
    """Features of n generator samples; extractor=None takes the samples themselves (e.g. 2D points)."""
    return _run(extractor, sample(generator, n, z_dim, batch_size, seed, device), device, with_logits)


def real_image_features(dataset: str, resolution: int, extractor: nn.Module, extractor_name: str,
                        batch_size: int = 250, device="cpu"):
    """(features (N, D) float32, FeatureStats) of a built-in image dataset, cached in cache_dir() keyed by dataset, extractor and resolution.

    The cache file holds the features and their FeatureStats arrays (n, mean, m2); it is written to a
    temporary name and renamed, so a crash never leaves a partial entry.
    """
    from fastgan.data.builtin import load_image_dataset

    path = cache_dir() / "stats" / f"{dataset}-{extractor_name}-r{resolution}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return torch.from_numpy(data["features"]), FeatureStats.from_arrays(data, source=str(path))
        except (KeyError, ValueError, OSError, EOFError):
            pass  # A corrupt entry is recomputed and replaced below.
    images, _ = load_image_dataset(dataset, resolution)
    features = extract(extractor, torch.from_numpy(images).float() * (2 / 255) - 1, batch_size, device)
    stats = FeatureStats.from_features(features)
    buf = io.BytesIO()
    np.savez(buf, features=features.numpy(), **stats.to_arrays())
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return features, stats
