"""What the class-conditional networks share: the labels a conditional generator takes when it is given none,
and the class term of a projection discriminator (Miyato & Koyama 2018)."""
from __future__ import annotations

import torch
from torch import nn


def balanced_labels(n: int, num_classes: int, device=None) -> torch.Tensor:
    """0, 1, ..., num_classes - 1, 0, 1, ... (n of them): every class equally often, with no random draw."""
    return torch.arange(n, device=device) % num_classes


def check_labels(who: str, labels: torch.Tensor | None, n: int, num_classes: int, device) -> torch.Tensor:
    """labels as given, or balanced_labels when None; a ValueError names a wrong type or shape (a label out of
    range fails in the embedding lookup, which checks without a host synchronisation here)."""
    if labels is None:
        return balanced_labels(n, num_classes, device)
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{who}: labels must be an int64 tensor of class indices; got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)}")
    if tuple(labels.shape) != (n,):
        raise ValueError(f"{who}: labels must have shape ({n},), one per sample; got {tuple(labels.shape)}")
    return labels


def one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    return nn.functional.one_hot(labels.long(), num_classes).to(dtype)


class Projection(nn.Module):
    """The class term of a projection discriminator: <embed(y), h> per sample, added to the unconditional logit
    (Miyato & Koyama 2018, eq. 3: f(x, y) = y^T V phi(x) + psi(phi(x)))."""

    def __init__(self, num_classes: int, features: int):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"Projection: num_classes must be a positive integer; got {num_classes!r}")
        self.embed = nn.Embedding(num_classes, features)
        nn.init.xavier_uniform_(self.embed.weight)  # the authors' code (GlorotUniform)

    def forward(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.embed(labels) * h).sum(1)
