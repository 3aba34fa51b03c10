"""Readable pure-PyTorch references for every fused op in fastgan.

These run on any device, support autograd to any order, and are the oracle that the Triton
kernels are tested against. Reduced-precision inputs are computed in float32 and the result is
returned in the input's dtype, as torch does for its own losses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")
D_LOSS_KINDS = ("bce", "hinge", "lsgan", "wgan")
G_LOSS_KINDS = ("ns", "saturating", "hinge", "lsgan", "wgan")


def wide(t: torch.Tensor) -> torch.Tensor:
    """The dtype fastgan computes in: float16/bfloat16/float32 -> float32; float64 stays float64."""
    return t if t.dtype == torch.float64 else t.float()


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def bce_with_logits(input, target, weight=None, reduction="mean", pos_weight=None) -> torch.Tensor:
    """-[pos_weight * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x))] * weight, reduced.

    logsigmoid is evaluated without forming sigmoid(x), so |x| up to 1e4 stays finite, and its
    gradient (sigmoid) is exact at x = 0, where max(x, 0) + log1p(exp(-|x|)) would give 0 or 1.
    """
    dtype = input.dtype
    x, t = wide(input), wide(target)
    if pos_weight is None:
        loss = -(t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x))
    else:
        loss = -(wide(pos_weight) * t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x))
    if weight is not None:
        loss = loss * wide(weight)
    return _reduce(loss, reduction).to(dtype)


def d_loss(real_logits, fake_logits, kind="bce", label_smoothing=0.0) -> torch.Tensor:
    """Discriminator loss, a float32 (float64 for float64 logits) scalar: the real term plus the fake term, each a batch mean.

    bce:   -log D(x) - log(1 - D(G(z))); with one-sided label smoothing s the real target is 1 - s
           (Salimans et al. 2016, sec. 3.4).
    hinge: relu(1 - D(x)) + relu(1 + D(G(z)))             (Lim & Ye 2017; Miyato et al. 2018)
    lsgan: (D(x) - 1)^2 / 2 + D(G(z))^2 / 2               (Mao et al. 2017, eq. 9 with a=0, b=c=1)
    wgan:  D(G(z)) - D(x)                                  (Arjovsky et al. 2017)
    """
    r, f = wide(real_logits), wide(fake_logits)
    if kind == "bce":
        real_term = -((1 - label_smoothing) * F.logsigmoid(r) + label_smoothing * F.logsigmoid(-r))
        return real_term.mean() + (-F.logsigmoid(-f)).mean()
    if kind == "hinge":
        return F.relu(1 - r).mean() + F.relu(1 + f).mean()
    if kind == "lsgan":
        return 0.5 * (r - 1).square().mean() + 0.5 * f.square().mean()
    if kind == "wgan":
        return f.mean() - r.mean()
    raise ValueError(f"d_loss: kind must be one of {', '.join(D_LOSS_KINDS)}; got {kind!r}")


def g_loss(fake_logits, kind="ns") -> torch.Tensor:
    """Generator loss, a float32 (float64 for float64 logits) scalar batch mean.

    ns:         -log D(G(z))            the non-saturating form (Goodfellow et al. 2014, sec. 3)
    saturating: log(1 - D(G(z)))        the original minimax objective, minimised by G
    hinge, wgan: -D(G(z))
    lsgan:      (D(G(z)) - 1)^2 / 2
    """
    f = wide(fake_logits)
    if kind == "ns":
        return (-F.logsigmoid(f)).mean()
    if kind == "saturating":
        return F.logsigmoid(-f).mean()
    if kind in ("hinge", "wgan"):
        return -f.mean()
    if kind == "lsgan":
        return 0.5 * (f - 1).square().mean()
    raise ValueError(f"g_loss: kind must be one of {', '.join(G_LOSS_KINDS)}; got {kind!r}")


@dataclass(frozen=True)
class Activation:
    """One row of the activation table shared by the reference and the kernels.

    Every activation here has a derivative expressible through its output y alone, which is why the
    fused backward saves y rather than x.
    """

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, 1.0),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, 1.0),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
}


def activation_spec(act: str) -> Activation:
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}") from None


def bias_act(x, b=None, act="lrelu", alpha=None, gain=None, clamp=None, dim=1) -> torch.Tensor:
    """clamp(act(x + b, alpha) * gain, -clamp, clamp), with b broadcast along dimension `dim`."""
    spec = activation_spec(act)
    alpha = spec.def_alpha if alpha is None else float(alpha)
    gain = spec.def_gain if gain is None else float(gain)
    dtype = x.dtype
    y = wide(x)
    if b is not None:
        y = y + wide(b).reshape([-1 if i == dim % x.ndim else 1 for i in range(x.ndim)])
    y = spec.func(y, alpha)
    if gain != 1:
        y = y * gain
    if clamp is not None and clamp >= 0:
        y = y.clamp(-clamp, clamp)
    return y.to(dtype)


def batch_norm_act(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5,
                   act="relu", alpha=None) -> torch.Tensor:
    """Batch norm over every dimension but 1 (N, H, W for images), then the activation.

    In training mode the batch statistics normalise x and the running statistics are updated in
    place (unbiased variance, as torch.nn.BatchNorm does); in eval mode the running statistics are
    folded into a per-channel scale and shift.
    """
    dtype = x.dtype
    y = F.batch_norm(wide(x), running_mean, running_var, weight, bias, training, momentum, eps)
    return bias_act(y, None, act, alpha).to(dtype)
