"""Streaming mean and covariance of feature vectors in float64."""
from __future__ import annotations

import os

import numpy as np
import torch

from fastgan.atomic import atomic_write


def _as_float64_matrix(features, name: str, device=None) -> torch.Tensor:
    x = torch.as_tensor(features)
    if x.ndim != 2:
        raise ValueError(f"{name}: features must have shape (N, D); got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise TypeError(f"{name}: features must be real numbers; got dtype {x.dtype}")
    return x.to(device=device if device is not None else x.device, dtype=torch.float64)


class FeatureStats:
    """Running count, mean and covariance of (N, D) feature batches.

    The state is Chan, Golub & LeVeque's (n, mean, M2) with M2 = sum (x - mean)(x - mean)^T, kept in
    float64 and merged with their pairwise update (Chan et al. 1979, eq. 2.1b). Unlike running sums of
    x and x x^T, this does not lose digits when the features have a large common offset (a mean of 1e4
    with unit noise loses about 8 of float64's 16 digits to cancellation in the sum-of-squares form).
    """

    def __init__(self, dim: int | None = None, device: torch.device | str | None = None):
        self._device = torch.device(device) if device is not None else None
        self._n = 0
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None
        self._dim = None
        if dim is not None:
            self._init(int(dim), self._device or torch.device("cpu"))

    def _init(self, dim: int, device: torch.device) -> None:
        if dim < 1:
            raise ValueError(f"FeatureStats: dim must be at least 1; got {dim}")
        self._dim = dim
        self._device = device
        self._mean = torch.zeros(dim, dtype=torch.float64, device=device)
        self._m2 = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    @classmethod
    def from_features(cls, features) -> "FeatureStats":
        return cls().update(features)

    @property
    def n(self) -> int:
        return self._n

    @property
    def dim(self) -> int | None:
        return self._dim

    @property
    def mean(self) -> torch.Tensor:
        """(D,) float64 mean."""
        if self._n < 1:
            raise ValueError("FeatureStats.mean: no samples yet; call update() first")
        return self._mean.clone()

    @property
    def cov(self) -> torch.Tensor:
        """(D, D) float64 unbiased covariance, M2 / (n - 1), as np.cov(x, rowvar=False)."""
        if self._n < 2:
            raise ValueError(f"FeatureStats.cov: needs at least 2 samples; have {self._n}")
        return self._m2 / (self._n - 1)

    def _merge_moments(self, n_b: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        if n_b == 0:
            return
        n_a = self._n
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + torch.outer(delta, delta) * (n_a * n_b / n)
        self._n = n

    def _check_dim(self, dim: int, what: str) -> None:
        if self._dim != dim:
            raise ValueError(f"FeatureStats.{what}: feature dimension {dim} does not match the stats' dimension {self._dim}")

    def update(self, features) -> "FeatureStats":
        """Add a batch of features (N, D), numpy or torch, any real dtype; returns self."""
        x = _as_float64_matrix(features, "FeatureStats.update", self._device)
        if self._dim is None:
            self._init(x.shape[1], x.device)
        self._check_dim(x.shape[1], "update")
        if x.shape[0] == 0:
            return self
        mean_b = x.mean(dim=0)
        centred = x - mean_b
        self._merge_moments(x.shape[0], mean_b, centred.T @ centred)
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Fold another FeatureStats into this one (in place); returns self."""
        if not isinstance(other, FeatureStats):
            raise TypeError(f"FeatureStats.merge: expected a FeatureStats; got {type(other).__name__}")
        if other._dim is None:
            return self
        if self._dim is None:
            self._init(other._dim, self._device or other._device)
        self._check_dim(other._dim, "merge")
        self._merge_moments(other._n, other._mean.to(self._device), other._m2.to(self._device))
        return self

    def all_reduce_(self, group=None) -> "FeatureStats":
        """Merge the stats of every rank of a torch.distributed group, in rank order, on every rank.

        A no-op when torch.distributed is not initialised. Every rank must know the feature dimension:
        give FeatureStats(dim=...) on ranks that may see no samples.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        if self._dim is None:
            raise ValueError("FeatureStats.all_reduce_: this rank has no samples and no dim; construct FeatureStats(dim=D)")
        world = dist.get_world_size(group)
        dims = [torch.zeros(1, dtype=torch.int64, device=self._device) for _ in range(world)]
        dist.all_gather(dims, torch.tensor([self._dim], dtype=torch.int64, device=self._device), group=group)
        seen = sorted({int(d) for d in dims})
        if seen != [self._dim]:
            raise ValueError(f"FeatureStats.all_reduce_: ranks disagree on the feature dimension: {seen}")
        # Gathering (n, mean, M2) and merging in rank order gives every rank bit-identical results;
        # summing moments with all_reduce would not (reduction order differs by backend).
        packed = torch.cat([torch.tensor([float(self._n)], dtype=torch.float64, device=self._device), self._mean, self._m2.flatten()])
        gathered = [torch.empty_like(packed) for _ in range(world)]
        dist.all_gather(gathered, packed, group=group)
        d = self._dim
        self._n = 0
        self._mean.zero_()
        self._m2.zero_()
        for p in gathered:
            self._merge_moments(int(p[0].item()), p[1 : 1 + d], p[1 + d :].view(d, d))
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write n, mean and M2 to a .npz file (temporary file, then rename: never half-written)."""
        if self._dim is None:
            raise ValueError("FeatureStats.save: nothing to save; call update() first")
        atomic_write(path, lambda f: np.savez(f, **self.to_arrays()))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as numpy arrays n, mean, m2 (what save writes)."""
        return {"n": np.int64(self._n), "mean": self._mean.cpu().numpy(), "m2": self._m2.cpu().numpy()}

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str | None = None) -> "FeatureStats":
        path = os.fspath(path)
        with np.load(path, allow_pickle=False) as data:
            return cls.from_arrays(data, device=device, source=path)

    @classmethod
    def from_arrays(cls, arrays, device=None, source: str = "arrays") -> "FeatureStats":
        """Rebuild from the mapping to_arrays() gives (n, mean, m2)."""
        try:
            n, mean, m2 = int(arrays["n"]), np.asarray(arrays["mean"]), np.asarray(arrays["m2"])
        except KeyError as e:
            raise ValueError(f"{source}: not a FeatureStats file: missing array {e}") from None
        if mean.ndim != 1 or m2.shape != (mean.shape[0], mean.shape[0]) or n < 0:
            raise ValueError(f"{source}: corrupt FeatureStats file: n={n}, mean {mean.shape}, m2 {m2.shape}")
        stats = cls(dim=mean.shape[0], device=device)
        stats._n = n
        stats._mean = torch.as_tensor(mean, dtype=torch.float64, device=stats._device)
        stats._m2 = torch.as_tensor(m2, dtype=torch.float64, device=stats._device)
        return stats

    def __repr__(self) -> str:
        return f"FeatureStats(n={self._n}, dim={self._dim})"
