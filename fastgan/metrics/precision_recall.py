"""k-NN manifold metrics: precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020)."""
from __future__ import annotations

import torch


def _features(x, name: str, fn: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{fn}: {name} must have shape (N, D); got shape {tuple(t.shape)}")
    return t if t.dtype == torch.float64 else t.to(torch.float32)


def _pair(feats_real, feats_fake, k: int, fn: str) -> tuple[torch.Tensor, torch.Tensor]:
    real = _features(feats_real, "feats_real", fn)
    fake = _features(feats_fake, "feats_fake", fn).to(device=real.device, dtype=real.dtype)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"{fn}: feature dimensions differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if k < 1:
        raise ValueError(f"{fn}: k must be at least 1; got {k}")
    for name, t in (("feats_real", real), ("feats_fake", fake)):
        if t.shape[0] <= k:
            raise ValueError(f"{fn}: {name} needs more than k={k} samples for k-NN radii; got {t.shape[0]}")
    return real, fake


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # ||a||^2 + ||b||^2 - 2 a.b is one matrix product; clamping removes the small negatives round-off
    # gives for near-identical rows.
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2 * (a @ b.T)
    return d.clamp_min_(0)


def knn_radii(feats: torch.Tensor, k: int, chunk_size: int = 4096) -> torch.Tensor:
    """Squared distance from each row to its k-th nearest other row; memory O(chunk_size^2)."""
    n = feats.shape[0]
    radii = torch.empty(n, dtype=feats.dtype, device=feats.device)
    for i in range(0, n, chunk_size):
        rows = feats[i : i + chunk_size]
        best = torch.full((rows.shape[0], 0), float("inf"), dtype=feats.dtype, device=feats.device)
        for j in range(0, n, chunk_size):
            d = torch.cat([best, _squared_distances(rows, feats[j : j + chunk_size])], dim=1)
            best = d.topk(min(k + 1, d.shape[1]), dim=1, largest=False).values
        # Column 0 is the row's distance to itself (0), so the k-th neighbour is column k.
        radii[i : i + rows.shape[0]] = best[:, k]
    return radii


def _ball_membership(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk_size: int):
    """For each query, how many balls B(centre, radius) hold it; for each centre, whether any query lies in its ball."""
    counts = torch.zeros(queries.shape[0], dtype=torch.int64, device=queries.device)
    hit = torch.zeros(centres.shape[0], dtype=torch.bool, device=queries.device)
    for i in range(0, queries.shape[0], chunk_size):
        q = queries[i : i + chunk_size]
        for j in range(0, centres.shape[0], chunk_size):
            inside = _squared_distances(q, centres[j : j + chunk_size]) <= radii[None, j : j + chunk_size]
            counts[i : i + q.shape[0]] += inside.sum(dim=1)
            hit[j : j + inside.shape[1]] |= inside.any(dim=0)
    return counts, hit


def precision_recall(feats_real, feats_fake, k: int = 3, chunk_size: int = 4096) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eqs. 1-3).

    Each set's manifold is the union of balls around its samples with radius the distance to the
    k-th nearest neighbour in the same set. Precision is the share of fake samples inside the real
    manifold, recall the share of real samples inside the fake manifold. Distances are computed on
    the features' device in blocks of chunk_size x chunk_size, so memory stays bounded for any N.
    """
    real, fake = _pair(feats_real, feats_fake, k, "precision_recall")
    in_real, _ = _ball_membership(fake, real, knn_radii(real, k, chunk_size), chunk_size)
    in_fake, _ = _ball_membership(real, fake, knn_radii(fake, k, chunk_size), chunk_size)
    return {"precision": float((in_real > 0).double().mean()), "recall": float((in_fake > 0).double().mean())}


def density_coverage(feats_real, feats_fake, k: int = 5, chunk_size: int = 4096) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020, eqs. 3-4), on the real samples' k-NN balls only.

    density = 1/(k M) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))] (can exceed 1 where fakes crowd dense
    real regions); coverage = 1/N sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]. The paper uses k=5.
    """
    real, fake = _pair(feats_real, feats_fake, k, "density_coverage")
    counts, hit = _ball_membership(fake, real, knn_radii(real, k, chunk_size), chunk_size)
    return {"density": float(counts.double().sum() / (k * fake.shape[0])), "coverage": float(hit.double().mean())}
