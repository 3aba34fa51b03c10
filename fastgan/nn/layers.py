"""Layers whose elementwise tail (bias, normalisation, activation) runs as one fused op."""
from __future__ import annotations

import torch
from torch import nn

from ..fused.activations import activation_spec
from ..fused.batch_norm_act import batch_norm_act
from ..fused.bias_act import bias_act


class BiasAct(nn.Module):
    """A learned per-channel bias followed by an activation, fused: y = clamp(act(x + b) * gain)."""

    def __init__(self, channels: int, act: str = "lrelu", alpha: float | None = None, gain: float | None = None,
                 clamp: float | None = None, dim: int = 1, bias: bool = True):
        super().__init__()
        activation_spec(act)
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.act, self.alpha, self.gain, self.clamp, self.dim = act, alpha, gain, clamp, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, self.bias, self.act, self.alpha, self.gain, self.clamp, self.dim)

    def extra_repr(self) -> str:
        return f"{0 if self.bias is None else len(self.bias)}, act={self.act!r}"


class BatchNormAct(nn.BatchNorm2d):
    """BatchNorm2d followed by an activation, fused. Same parameters and state dict as nn.BatchNorm2d."""

    def __init__(self, num_features: int, act: str = "relu", alpha: float | None = None, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        activation_spec(act)
        self.act, self.alpha = act, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            # nn.BatchNorm2d's counter, kept so state dicts stay interchangeable with it.
            self.num_batches_tracked.add_(1)
        return batch_norm_act(x, self.weight, self.bias, self.running_mean, self.running_var,
                              self.training, self.momentum, self.eps, self.act, self.alpha)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", act={self.act!r}"


class ConditionalBatchNormAct(nn.BatchNorm2d):
    """Conditional batch norm followed by an activation, fused: batch norm without an affine of its own, then
    each sample's class's scale and shift (rows of two (num_classes, C) tables, initialised to 1 and 0), then the
    activation (de Vries et al. 2017; the generator of Miyato & Koyama 2018). forward(x, labels) with int64
    labels (N,) in [0, num_classes)."""

    def __init__(self, num_features: int, num_classes: int, act: str = "relu", alpha: float | None = None,
                 eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        activation_spec(act)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"ConditionalBatchNormAct: num_classes must be a positive integer; got {num_classes!r}")
        self.num_classes, self.act, self.alpha = num_classes, act, alpha
        self.class_weight = nn.Parameter(torch.ones(num_classes, num_features))
        self.class_bias = nn.Parameter(torch.zeros(num_classes, num_features))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return batch_norm_act(x, self.class_weight[labels], self.class_bias[labels], self.running_mean,
                              self.running_var, self.training, self.momentum, self.eps, self.act, self.alpha)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_classes={self.num_classes}, act={self.act!r}"


class ConvTransposeBlock(nn.Module):
    """ConvTranspose2d (cuDNN on GPU) followed by a fused norm + activation epilogue.

    norm="batch" uses BatchNormAct (the convolution then has no bias: batch norm removes it);
    norm="none" uses BiasAct with the convolution's bias moved into the epilogue.
    num_classes > 0 with norm="batch": ConditionalBatchNormAct, and forward takes the samples' labels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 4, stride: int = 2,
                 padding: int = 1, norm: str = "batch", act: str = "relu", alpha: float | None = None,
                 num_classes: int = 0):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        if num_classes and norm == "batch":
            self.post = ConditionalBatchNormAct(out_channels, num_classes, act, alpha)
        else:
            self.post = _epilogue(out_channels, norm, act, alpha)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(self.post, ConditionalBatchNormAct):
            return self.post(self.conv(x), labels)
        return self.post(self.conv(x))


class ConvBlock(nn.Module):
    """Conv2d followed by a fused norm + activation epilogue (the discriminator's building block)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 4, stride: int = 2,
                 padding: int = 1, norm: str = "batch", act: str = "lrelu", alpha: float | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.post = _epilogue(out_channels, norm, act, alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.conv(x))


NORMS = ("batch", "none")


def _epilogue(channels: int, norm: str, act: str, alpha: float | None) -> nn.Module:
    if norm == "batch":
        return BatchNormAct(channels, act, alpha)
    if norm == "none":
        return BiasAct(channels, act, alpha)
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
