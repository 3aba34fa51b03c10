"""Readable pure-PyTorch references for every fused op in fastgan.

These run on any device, support autograd to any order, and are the oracle that the Triton
kernels are tested against. Reduced-precision inputs are computed in float32 and the result is
returned in the input's dtype, as torch does for its own losses.

A face: each reference lives beside its op in fastgan.fused.<op>, the activation table in
fastgan.fused.activations.
"""
from __future__ import annotations

from .fused.activations import ACTIVATIONS, Activation, activation_spec
from .fused.arguments import wide
from .fused.batch_norm_act import batch_norm_act_reference as batch_norm_act
from .fused.bce_with_logits import REDUCTIONS
from .fused.bce_with_logits import bce_with_logits_reference as bce_with_logits
from .fused.bias_act import bias_act_reference as bias_act
from .fused.gan_loss import D_LOSS_KINDS, G_LOSS_KINDS
from .fused.gan_loss import d_loss_reference as d_loss
from .fused.gan_loss import g_loss_reference as g_loss

__all__ = ["ACTIVATIONS", "D_LOSS_KINDS", "G_LOSS_KINDS", "REDUCTIONS", "Activation", "activation_spec",
           "batch_norm_act", "bce_with_logits", "bias_act", "d_loss", "g_loss", "wide"]
