"""Drop-in functional API: the same signatures as torch.nn.functional, fused where fastgan has a kernel."""
from __future__ import annotations

import importlib

import torch

from . import reference
from .backend import use_triton

__all__ = ["binary_cross_entropy_with_logits"]


def _check_float(name: str, what: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: {what} must be a torch.Tensor; got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: {what} must be a floating-point tensor; got {t.dtype}")


def _check_broadcastable(name: str, what: str, t: torch.Tensor, shape: torch.Size) -> None:
    try:
        out = torch.broadcast_shapes(t.shape, shape)
    except RuntimeError:
        out = None
    if out != shape:
        raise ValueError(f"{name}: {what} of shape {tuple(t.shape)} does not broadcast to input shape {tuple(shape)}")


# The fused loss is one launch against eager's chain of elementwise kernels, so the CUDA path uses it at
# every size; raise this if `python -m bench.kernels` shows otherwise on a target GPU.
MIN_NUMEL_LOSS = 0


def _suffix_broadcast(t: torch.Tensor | None, shape: torch.Size) -> bool:
    """Whether t broadcasts to shape as a trailing block (what the kernel reads at offset % t.numel())."""
    if t is None:
        return True
    dims = list(t.shape)
    while dims and dims[0] == 1:
        dims.pop(0)
    return len(dims) <= len(shape) and tuple(dims) == tuple(shape[len(shape) - len(dims):])


def _bce_grad(x, t, weight, pos_weight):
    """d bce / d x = w ((1 - t) sigmoid(x) - p t sigmoid(-x)), the reference of the kernel's gradient."""
    pt = t if pos_weight is None else t * pos_weight.float()
    grad = (1 - t) * torch.sigmoid(x) - pt * torch.sigmoid(-x)
    return grad if weight is None else grad * weight.float()


@torch.library.custom_op("fastgan::bce_with_logits", mutates_args=(), device_types=("cpu", "cuda"))
def _bce_op(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
            pos_weight: torch.Tensor | None, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, float32 d loss / d input), the gradient already divided by N for reduction='mean'."""
    if use_triton(input, MIN_NUMEL_LOSS):
        return importlib.import_module("fastgan.kernels.bce").bce_with_logits(input, target, weight, pos_weight,
                                                                               reduction)
    x, t = input.float(), target.float()
    grad = torch.broadcast_to(_bce_grad(x, t, weight, pos_weight), input.shape).contiguous()
    if reduction == "mean":
        grad = grad / input.numel()
    loss = reference.bce_with_logits(input, target, weight, reduction, pos_weight)
    return loss.clone() if loss is input else loss, grad


@_bce_op.register_fake
def _(input, target, weight, pos_weight, reduction):
    grad = torch.empty(input.shape, dtype=torch.float32, device=input.device)
    return torch.empty(() if reduction != "none" else input.shape, dtype=input.dtype, device=input.device), grad


def _bce_setup(ctx, inputs, output):
    input, target, weight, pos_weight, reduction = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1], input, target, weight, pos_weight)
    ctx.reduction = reduction


def _bce_backward(ctx, dloss, _dgrad):
    grad, input, target, weight, pos_weight = ctx.saved_tensors
    if torch.is_grad_enabled():
        # create_graph: the stored gradient carries no graph, so differentiate the reference instead.
        with torch.enable_grad():
            loss = reference.bce_with_logits(input, target, weight, ctx.reduction, pos_weight)
            (dx,) = torch.autograd.grad(loss, input, dloss, create_graph=True)
        return dx, None, None, None, None
    return (grad * dloss.float()).to(input.dtype), None, None, None, None


_bce_op.register_autograd(_bce_backward, setup_context=_bce_setup)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy on logits, as torch.nn.functional.binary_cross_entropy_with_logits.

    Same signature, broadcasting, values and gradients as torch's; computed in float32 for
    float16/bfloat16 inputs and stable for logits of any magnitude.

    Runs as the fused op fastgan::bce_with_logits (loss and d loss / d input in one launch). It falls
    back to the reference, which autograd differentiates directly, when target, weight or
    pos_weight requires grad (the kernel computes d / d input only), when weight or pos_weight
    broadcast other than as a trailing block of input's shape (e.g. a per-row weight of shape (N, 1)),
    for float64 inputs (the kernel accumulates in float32) and for empty inputs.
    """
    name = "binary_cross_entropy_with_logits"
    _check_float(name, "input", input)
    _check_float(name, "target", target)
    if target.shape != input.shape:
        raise ValueError(
            f"{name}: target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)}"
        )
    if reduction not in reference.REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {', '.join(reference.REDUCTIONS)}; got {reduction!r}")
    for what, t in (("weight", weight), ("pos_weight", pos_weight)):
        if t is not None:
            _check_float(name, what, t)
            _check_broadcastable(name, what, t, input.shape)
    fused = (input.numel() > 0 and input.dtype != torch.float64 and _suffix_broadcast(weight, input.shape) and _suffix_broadcast(pos_weight, input.shape)
             and not any(t is not None and t.requires_grad for t in (target, weight, pos_weight)))
    if not fused:
        return reference.bce_with_logits(input, target, weight, reduction, pos_weight)
    return _bce_op(input, target, weight, pos_weight, reduction)[0]
