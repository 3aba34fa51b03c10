"""The plain PyTorch a user would write in place of fastgan's fused ops: the baselines of bench.kernels and
bench.eager_ops, defined once so both benchmarks measure against the same code."""
from __future__ import annotations

import torch.nn.functional as F


def d_loss(real, fake):
    """fastgan.losses.d_loss(real, fake, kind="bce") as softplus terms."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss(fake):
    """fastgan.losses.g_loss(fake, kind="ns")."""
    return F.softplus(-fake).mean()


def bias_act(x, b):
    """fastgan.ops.bias_act(x, b, act="lrelu") for (C, H, W) or (N, C, H, W) x."""
    return F.leaky_relu(x + b[:, None, None], 0.2)
