"""Every Triton kernel compiles for real GPUs (sm_80, sm_90) with Triton's own compiler, no GPU needed.

The interpreter (tests/test_kernels_triton.py) runs the kernels in numpy and forgives what compilation
does not: an int argument equal to 1 that Triton turns into a constexpr, a method called on it, a type
that does not lower. Here the public ops run on CPU tensors with the Triton path switched on, the launch
of each kernel is caught just before it would reach a GPU, and the exact specialisation the JIT would
build from those arguments (constexprs, 16-byte alignment and divisibility attributes, dtypes) is
compiled ahead of time to PTX and, where ptxas is present (Triton bundles it), to a cubin.

The calls cover sizes 1, 2, 15, 16, 17, a multiple of the block and not, float32/float16/bfloat16, every
activation and loss kind, and contiguous and channels_last layouts, forward and backward; and, call for call,
what tests/test_kernels_cuda.py launches on a GPU.
"""
from __future__ import annotations

import functools
import os
import subprocess

import pytest
import torch

triton = pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                                reason="the interpreter replaces the JIT whose specialisations are compiled here")

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime import jit as triton_jit  # noqa: E402

from fastgan import functional, losses, ops, reference  # noqa: E402
from fastgan.fused import batch_norm_act, bce_with_logits, bias_act, eager, gan_loss  # noqa: E402

TARGETS = {"sm_80": GPUTarget("cuda", 80, 32), "sm_90": GPUTarget("cuda", 90, 32)}
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
SIZES = (1, 2, 15, 16, 17, 1024, 3000)  # 1024: the loss kernels' block; 3000: several blocks, a partial last one


def _ptxas_works(target: GPUTarget) -> bool:
    from triton.backends.nvidia.compiler import get_ptxas

    try:
        subprocess.run([get_ptxas(target.arch).path, "--version"], check=True, capture_output=True)
    except (OSError, RuntimeError, subprocess.CalledProcessError):
        return False
    return True


@functools.cache
def _ptx_only_hook():
    """A stages hook that stops compilation at PTX (used when ptxas is missing)."""
    def hook(*args):
        if not args:  # asked for the cache key of this pipeline
            return "fastgan-ptx-only", "fastgan-ptx-only"
        args[1].pop("cubin", None)
    return hook


class Launches:
    """Records the specialisation of every kernel launch instead of running it."""

    def __init__(self):
        self.backend = make_backend(TARGETS["sm_90"])  # the arguments' specialisation is target-independent
        self.seen: dict[str, tuple] = {}

    def run(self, fn, *args, grid, warmup, **kwargs):
        binder = triton_jit.create_function_from_signature(fn.signature, fn.params, self.backend)
        bound, specialization, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = fn._pack_args(self.backend, kwargs, bound, specialization, options)
        grid = grid(bound) if callable(grid) else grid
        assert all(0 < g for g in grid) and all(g <= 65535 for g in grid[1:]), f"{fn.__name__}: grid {grid}"
        options = {k: v for k, v in options.__dict__.items() if k != "arch" and v is not None}
        key = repr((fn.__name__, sorted(signature.items()), sorted(constexprs.items(), key=repr),
                    sorted(attrs.items(), key=repr), sorted(options.items(), key=repr)))
        self.seen.setdefault(key, (fn, signature, constexprs, attrs, options))


def _on_triton_path(monkeypatch) -> Launches:
    """Sends every non-empty, non-float64 tensor to the Triton launchers and catches their launches."""
    def use_triton(t, min_numel=0):
        return t.numel() > 0 and t.dtype != torch.float64
    # eager.runs_eager reads use_triton too: patched there, the public ops leave their fast eager paths.
    for module in (bce_with_logits, gan_loss, bias_act, batch_norm_act, eager):
        monkeypatch.setattr(module, "use_triton", use_triton)
    launches = Launches()
    monkeypatch.setattr(triton_jit.JITFunction, "run", lambda fn, *a, **k: launches.run(fn, *a, **k))
    return launches


# ---------------------------------------------------------------- the calls, op by op
# Sizes change only the integer specialisations, kinds and dtypes only the constexpr and pointer types:
# each op sweeps the sizes in one configuration and every kind and dtype at one awkward size, which
# reaches every specialisation value without the full cross product (a compile costs ~0.2 s).

def _backward(out, inputs):
    wanted = [t for t in inputs if t is not None and t.requires_grad]
    torch.autograd.grad(out, wanted, torch.ones_like(out))


def _leaf(shape, dtype=torch.float32, channels_last=False):
    x = torch.randn(shape).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_()


def calls_bce_with_logits():
    def run(n, dtype, reduction="mean", weighted=False):
        x, t = _leaf((n,), dtype), torch.rand(n).to(dtype)
        w, pw = (torch.rand(n).to(dtype), torch.rand(1).to(dtype)) if weighted else (None, None)
        _backward(functional.binary_cross_entropy_with_logits(x, t, w, reduction, pw), [x])
        _backward(functional.binary_cross_entropy_with_logits(x, t, w, reduction, pw) * 0.5, [x])
    for n in SIZES:
        run(n, torch.float32)
    for dtype in DTYPES:
        for reduction in reference.REDUCTIONS:
            run(17, dtype, reduction)
        run(17, dtype, "mean", weighted=True)


def calls_gan_loss():
    def run(n_real, n_fake, dtype, kinds=("bce",), g_kinds=("ns",)):
        real, fake = _leaf((n_real, 1), dtype), _leaf((n_fake, 1), dtype)
        paired = _leaf((n_fake, 1), dtype)  # rpgan's real logits: one per fake
        for kind in kinds:
            r = paired if kind == "rpgan" else real
            _backward(losses.d_loss(r, fake, kind), [r, fake])
            _backward(losses.d_loss(r, fake, kind) * 0.5, [r, fake])  # an upstream gradient other than 1
        for kind in g_kinds:
            _backward(losses.g_loss(fake, kind, paired), [fake])
            _backward(losses.g_loss(fake, kind, paired) * 2.0, [fake])
    for n in SIZES:
        run(n, n, torch.float32, ("bce", "rpgan"))
        run(n, max(n - 1, 1), torch.float32)
    for dtype in DTYPES:
        run(17, 15, dtype, reference.D_LOSS_KINDS, reference.G_LOSS_KINDS)
        real, fake = _leaf((17, 1), dtype), _leaf((15, 1), dtype)
        _backward(losses.d_loss(real, fake, "bce", 0.1), [real, fake])


# (shape, channels_last): sizes 1, 2, 15, 16, 17, a multiple of the blocks, and 3x3 / 7x7 maps
EPILOGUE_SHAPES = [((1, 1), False), ((2, 1), False), ((1, 15), False), ((16, 1), False), ((17, 3), False),
                   ((4, 8, 16, 16), False), ((4, 8, 16, 16), True), ((3, 5, 7, 7), False), ((3, 5, 7, 7), True),
                   ((2, 3, 3, 3), True)]
AWKWARD = (3, 5, 7, 7)


def _double_backward(fn, x, b, act, **kwargs):
    """A create_graph backward of fn(x, b) and the backward of its gradients (R1 through the layer)."""
    wrt = [t for t in (x, b) if t is not None]
    first = torch.autograd.grad(fn(x, b, act, **kwargs).sum(), wrt, create_graph=True)
    torch.autograd.grad(sum(g.square().sum() for g in first), wrt, allow_unused=True)


def calls_bias_act():
    for shape, cl in EPILOGUE_SHAPES:
        x, b = _leaf(shape, channels_last=cl), _leaf((shape[1],))
        _backward(ops.bias_act(x, b, "lrelu"), [x, b])
        _backward(ops.bias_act(x, None, "linear", dim=x.ndim - 1), [x])
    for dtype in DTYPES:
        for cl in (False, True):
            for act in reference.ACTIVATIONS:
                x, b = _leaf(AWKWARD, dtype, cl), _leaf((AWKWARD[1],), dtype)
                _backward(ops.bias_act(x, b, act), [x, b])
            x = _leaf(AWKWARD, dtype, cl)
            _backward(ops.bias_act(x, None, "tanh", gain=1.4, clamp=256.0), [x])
            for act, b in (("lrelu", _leaf((AWKWARD[1],), dtype)), ("tanh", None), ("sigmoid", _leaf((AWKWARD[1],), dtype))):
                _double_backward(ops.bias_act, _leaf(AWKWARD, dtype, cl), b, act, clamp=4.0 if b is None else None)
    for shape, cl in EPILOGUE_SHAPES:  # the double backward's sizes (R1/R2 through bias_act)
        _double_backward(ops.bias_act, _leaf(shape, channels_last=cl), _leaf((shape[1],)), "tanh")


def calls_batch_norm_act():
    def run(shape, dtype, cl, acts=("relu",)):
        for act in acts:
            x, w, b = _leaf(shape, dtype, cl), _leaf((shape[1],)), _leaf((shape[1],))
            stats = torch.zeros(shape[1]), torch.ones(shape[1])
            _backward(ops.batch_norm_act(x, w, b, *stats, True, 0.1, 1e-5, act), [x, w, b])
            _backward(ops.batch_norm_act(x, w, b, *stats, False, 0.1, 1e-5, act), [x, w, b])
        x = _leaf(shape, dtype, cl)
        _backward(ops.batch_norm_act(x, None, None, None, None, True, 0.1, 1e-5, "lrelu"), [x])
        # Per-sample (N, C) weight and bias (conditional batch norm), with a per-channel or absent partner.
        n, c = shape[:2]
        for w, b in (((n, c), (n, c)), ((c,), (n, c)), (None, (n, c)), ((n, c), None)):
            x = _leaf(shape, dtype, cl)
            w, b = (None if w is None else _leaf(w)), (None if b is None else _leaf(b))
            for training in (True, False):
                stats = torch.zeros(c), torch.ones(c)
                out = ops.batch_norm_act(x, w, b, *stats, training, 0.1, 1e-5, list(acts)[-1])
                _backward(out, [t for t in (x, w, b) if t is not None])
    for shape, cl in EPILOGUE_SHAPES:
        if shape[0] * (shape[2] * shape[3] if len(shape) == 4 else 1) >= 2:  # training needs two values a channel
            run(shape, torch.float32, cl)
    for dtype in DTYPES:
        for cl in (False, True):
            run(AWKWARD, dtype, cl, reference.ACTIVATIONS)


def calls_of_the_cuda_tests():
    """What tests/test_kernels_cuda.py launches on the GPU (training sizes, three dtypes), here on the CPU: bench's
    GPU pass compiles these in its dry run. Left out: the > 2**31-element bias_act test (4 GiB of memory)."""
    import test_kernels_cuda

    for calls, args in test_kernels_cuda.CALLS:
        calls(*args, device="cpu")


CALLS = {"bce_with_logits": calls_bce_with_logits, "gan_loss": calls_gan_loss, "bias_act": calls_bias_act,
         "batch_norm_act": calls_batch_norm_act, "cuda_tests": calls_of_the_cuda_tests}


# ---------------------------------------------------------------- compiling

_COMPILED: dict[tuple[str, str], str] = {}  # (launch key, target) -> '' or the compiler's message


def _compile(key: str, target_name: str, fn, signature, constexprs, attrs, options) -> str:
    """'' when the specialisation compiles for the target, else the compiler's message (cached per run)."""
    if (key, target_name) in _COMPILED:
        return _COMPILED[key, target_name]
    target = TARGETS[target_name]
    options = dict(options)
    if not _ptxas_works(target):
        # Without ptxas stop at PTX; a PTX version must then be given, as ptxas is what reports it.
        triton.knobs.runtime.add_stages_inspection_hook = _ptx_only_hook()
        triton.knobs.nvidia.mock_ptx_version = "12.4"
        options["ptx_version"] = 84
    try:
        kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options)
        assert "ptx" in kernel.asm, list(kernel.asm)
        error = ""
    except Exception as e:  # noqa: BLE001 - the compiler's error types vary by stage
        error = f"{type(e).__name__}: {str(e)[-1500:]}"
    _COMPILED[key, target_name] = error
    return error


@functools.cache
def _specialisations(op: str) -> tuple:
    mp = pytest.MonkeyPatch()
    try:
        launches = _on_triton_path(mp)
        CALLS[op]()
    finally:
        mp.undo()
    return tuple(launches.seen.items())


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("op", list(CALLS))
def test_every_kernel_compiles_for_the_gpu(op, target):
    specs = _specialisations(op)
    assert specs, f"{op}: no kernel was launched"
    failures = []
    for key, (fn, signature, constexprs, attrs, options) in specs:
        error = _compile(key, target, fn, signature, constexprs, attrs, options)
        if error:
            failures.append(f"{fn.__name__} {signature} {constexprs}:\n{error}")
    assert not failures, (f"{len(failures)} of {len(specs)} specialisations of {op} fail for {target}:\n"
                          + "\n\n".join(failures[:3]))


def test_the_launch_catcher_sees_the_int_specialisations_of_real_calls(monkeypatch):
    # A one-element logit set makes Triton pass n = 1 as a constexpr: the case the interpreter cannot show.
    launches = _on_triton_path(monkeypatch)
    losses.g_loss(torch.randn(1, requires_grad=True))
    constexpr_ints = [(fn.__name__, sig) for fn, sig, constexprs, *_ in launches.seen.values()
                      for name, kind in sig.items() if kind == "constexpr" and name.islower()]
    assert constexpr_ints, list(launches.seen)
