"""Which implementation the fused ops use, decided once per process."""
from __future__ import annotations

import functools
import importlib.util
import os

import torch

BACKENDS = ("reference", "triton")


def _requested() -> str:
    """FASTGAN_BACKEND, normalised; '' when unset."""
    choice = os.environ.get("FASTGAN_BACKEND", "").strip().lower()
    if choice and choice not in BACKENDS:
        raise ValueError(f"FASTGAN_BACKEND must be one of {', '.join(BACKENDS)}; got {choice!r}")
    return choice


def _has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def _assume_constant_result(fn):
    """torch.compiler.assume_constant_result(fn) without importing torch._dynamo (1.7 s, a third of every fastgan
    command's start) to get at it: the decorator only marks fn, and torch.compile reads the mark when it traces.
    tests/test_compile.py holds the mark to what the decorator sets."""
    fn._dynamo_marked_constant = True
    return fn


@_assume_constant_result  # torch.compile reads the choice rather than tracing how it is made
def backend() -> str:
    """'triton' or 'reference'.

    FASTGAN_BACKEND=reference forces the PyTorch reference everywhere (A/B tests, debugging);
    FASTGAN_BACKEND=triton forces the Triton kernels (with TRITON_INTERPRET=1 they run on CPU
    tensors, which is how the tests exercise them without a GPU). Unset, fastgan uses Triton when
    it is installed and a CUDA device is present, and the reference otherwise.
    """
    return _choose()


@functools.cache
def _choose() -> str:
    choice = _requested()
    has_triton = _has_triton()
    if choice == "triton":
        if not has_triton:
            raise ImportError("FASTGAN_BACKEND=triton but triton is not installed: pip install triton")
        return "triton"
    if choice == "reference":
        return "reference"
    return "triton" if has_triton and torch.cuda.is_available() else "reference"


def describe() -> str:
    """One line saying which implementation the fused ops use and why (for `fastgan --version`)."""
    choice, chosen = _requested(), backend()
    if choice:
        why = f"FASTGAN_BACKEND={choice}"
        if chosen == "triton" and not torch.cuda.is_available():
            why += (", CPU tensors under the Triton interpreter" if os.environ.get("TRITON_INTERPRET") == "1"
                    else ", no CUDA device: CPU tensors take the reference")
    elif chosen == "triton":
        why = "FASTGAN_BACKEND unset, CUDA present"
    elif not _has_triton():
        why = "FASTGAN_BACKEND unset, triton not installed: pip install triton"
    else:
        why = "FASTGAN_BACKEND unset, no CUDA device"
    return f"fused ops: {chosen} ({why})"


def use_triton(t, min_numel: int = 0) -> bool:
    """Whether a fused op on tensor t launches its Triton kernel rather than the reference.

    On CUDA: when the backend is 'triton' and t has at least min_numel elements (below that the
    reference's eager kernels are as fast; the thresholds live next to each op). On CPU: only under
    the Triton interpreter (TRITON_INTERPRET=1), which is how the tests run the kernels. Never for
    float64 tensors.
    """
    if backend() != "triton":  # first: the whole answer on a machine without CUDA, at the least cost
        return False
    n = t.numel()
    # The kernels compute in float32: float64 tensors keep the reference's float64 arithmetic.
    if n == 0 or t.dtype == torch.float64:
        return False
    if t.device.type == "cuda":
        return n >= min_numel
    return t.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
