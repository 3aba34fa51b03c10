"""Inception Score from class probabilities or logits."""
from __future__ import annotations

import torch


def inception_score(probs_or_logits, splits: int = 10, from_logits: bool | None = None) -> tuple[float, float]:
    """Mean and standard deviation (ddof=0) over splits of exp(E_x KL(p(y|x) || p(y))).

    Salimans et al. 2016, section 4: within each split, p(y) is the split's mean of p(y|x). Splits are
    contiguous, rows [i*N//splits, (i+1)*N//splits), as in the original code.

    from_logits: True applies a softmax, False takes rows as probabilities; None decides by the data
    (rows that are non-negative and sum to 1 within 1e-3 are probabilities, anything else logits).
    """
    p = torch.as_tensor(probs_or_logits)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"inception_score: expected (N, num_classes) with num_classes >= 2; got shape {tuple(p.shape)}")
    n = p.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"inception_score: need 1 <= splits <= N; got splits={splits}, N={n}")
    p = p.to(torch.float64)
    if from_logits is None:
        from_logits = not (bool((p >= 0).all()) and bool(((p.sum(dim=1) - 1).abs() <= 1e-3).all()))
    if from_logits:
        log_p = torch.log_softmax(p, dim=1)
        p = log_p.exp()
    else:
        log_p = p.log()
    scores = torch.empty(splits, dtype=torch.float64)
    for i in range(splits):
        part, log_part = p[i * n // splits : (i + 1) * n // splits], log_p[i * n // splits : (i + 1) * n // splits]
        log_py = part.mean(dim=0).log()
        # 0 * log 0 = 0: a class a sample never predicts contributes nothing to its KL.
        kl = torch.where(part > 0, part * (log_part - log_py), torch.zeros_like(part)).sum(dim=1)
        scores[i] = kl.mean().exp()
    return float(scores.mean()), float(scores.std(correction=0))
