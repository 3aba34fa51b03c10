"""FID from whatever the caller has: statistics, features, images, a .fgd dataset or a generator."""
from __future__ import annotations

import os

import torch
from torch import nn

from fastgan.metrics.features import extract, extractor_cache_name, generator_features, is_packed_dataset, real_image_features
from fastgan.metrics.frechet import frechet_distance
from fastgan.metrics.stats import FeatureStats


def _stats(x, name: str, extractor, z_dim, n, batch_size, seed, device) -> FeatureStats:
    if isinstance(x, FeatureStats):
        return x
    if isinstance(x, (str, os.PathLike)):
        if not is_packed_dataset(x):
            raise ValueError(f"fid: {name} is the string {x!r}; a path must name a .fgd file from `fastgan prepare`")
        if extractor is None:
            raise ValueError(f"fid: {name} is the dataset {os.fspath(x)!r}; pass extractor= (InceptionV3, DigitsClassifier or any nn.Module)")
        return real_image_features(x, None, extractor, extractor_cache_name(extractor), batch_size, device)[1]
    if isinstance(x, nn.Module):
        if z_dim is None:
            raise ValueError(f"fid: {name} is a generator; pass z_dim= (and n=) to sample it")
        return FeatureStats.from_features(generator_features(x, n, z_dim, extractor, batch_size, seed, device))
    t = torch.as_tensor(x)
    if t.ndim == 2:
        return FeatureStats.from_features(t)
    if t.ndim == 4:
        if extractor is None:
            raise ValueError(f"fid: {name} holds images {tuple(t.shape)}; pass extractor= (InceptionV3, DigitsClassifier or any nn.Module)")
        return FeatureStats.from_features(extract(extractor, t, batch_size, device))
    raise ValueError(f"fid: {name} must be FeatureStats, features (N, D), images (N, C, H, W), a .fgd file or a generator; "
                     f"got shape {tuple(t.shape)}")


def fid(real, fake, extractor: nn.Module | None = None, *, z_dim: int | None = None, n: int = 10000,
        batch_size: int = 250, seed: int = 0, device="cpu") -> float:
    """Fréchet Inception Distance (Heusel et al. 2017) between real and fake.

    Each of real and fake may be a FeatureStats, features (N, D), images (N, C, H, W) in [-1, 1]
    (run through extractor), the path of a .fgd file (all its images through extractor; the
    statistics are cached, see real_image_features), or a generator nn.Module (n samples of
    generator(randn(n, z_dim)) with seed, run through extractor when it is given, else used as
    features, e.g. 2D points).
    """
    s_real = _stats(real, "real", extractor, z_dim, n, batch_size, seed, device)
    s_fake = _stats(fake, "fake", extractor, z_dim, n, batch_size, seed, device)
    if s_real.dim != s_fake.dim:
        raise ValueError(f"fid: feature dimensions differ: real {s_real.dim}, fake {s_fake.dim}")
    return frechet_distance(s_real.mean, s_real.cov, s_fake.mean, s_fake.cov)
