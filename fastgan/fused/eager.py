"""What the fused ops' fast eager paths share: when they run, how they call their autograd.Functions, and the
in-place form of each activation.

A fast eager path computes an op with plain differentiable torch ops and lets torch's autograd do the
backward, so an eager call on the CPU pays neither the torch.library dispatcher (~30 us a call, ~105 us with
autograd) nor a Python backward; the BCE-type losses on float32 CPU logits (bce_with_logits without weights, also
on float16 / bfloat16 logits through float32 copies; d_loss 'bce' and 'rpgan', g_loss 'ns' and 'rpgan') instead
compute loss and gradient in one pass of the C++ extension fastgan.fused._cpu_losses, behind a small
autograd.Function (called through fast_apply) whose backward is one multiplication; where fastgan has nothing
faster (bce_with_logits with weight or pos_weight, or in float64) they call torch's own op. It runs wherever the
op has no Triton kernel for the tensor (the CPU without the interpreter, float64, CUDA tensors below the op's
MIN_NUMEL), traced by torch.compile too: there the fastgan op would only run the same torch ops behind a
wall inductor cannot see through, while traced ones fuse with their neighbours. Where a kernel runs,
compiled graphs keep the one fastgan op.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .backend import use_triton


def fast_apply(function: type[torch.autograd.Function]) -> Callable[..., torch.Tensor]:
    """function.apply without torch.autograd.Function.apply's Python layer, which costs ~2 us a call in torch 2.13
    (a fifth of a small loss's call): its C apply, reached as Function.apply reaches it. The Python layer is
    there for functorch (vmap, grad, jvp): under an active transform, or given a tensor a transform wrapped, the
    full apply runs. The fast eager paths call their Functions through this."""
    raw = super(torch.autograd.Function, function).apply
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    active = torch._C._are_functorch_transforms_active

    def apply(*args):
        if active():
            return function.apply(*args)
        for a in args:
            if isinstance(a, torch.Tensor) and wrapped(a):
                return function.apply(*args)
        return raw(*args)
    return apply


def runs_eager(t: torch.Tensor, min_numel: int) -> bool:
    """Whether an op on t takes its fast eager path (eagerly or traced): no Triton kernel for t."""
    return not use_triton(t, min_numel)


# The in-place form of each activation in fastgan.fused.activations.ACTIVATIONS (tests check that every row
# has one). Applied to a tensor the caller just made, it saves an allocation and a pass; autograd accepts
# it because each backward reads the activation's output, which is what is kept.
ACT_IN_PLACE: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "linear": lambda y, a: y,
    "relu": lambda y, a: y.relu_(),  # (the C functions themselves: F.relu(inplace=True)'s wrapper costs ~0.5 us)
    "lrelu": lambda y, a: F.leaky_relu_(y, a),
    "tanh": lambda y, a: y.tanh_(),
    "sigmoid": lambda y, a: y.sigmoid_(),
}
