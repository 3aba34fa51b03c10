"""Kernel microbenchmarks: fastgan's fused ops vs eager PyTorch vs torch.compile of the reference.

    python -m bench.kernels [--threads 1] [--out bench/results]

For each op (bce_with_logits, d_loss, g_loss, bias_act, batch_norm_act) and size it times the forward
and the forward + backward of three implementations of the same computation:

  fastgan  the fastgan op through the PyTorch dispatcher: the Triton kernel on CUDA (above the op's
           size threshold), the PyTorch reference on the CPU;
  eager    the same maths as plain torch.nn.functional calls;
  compile  torch.compile (inductor, default settings) of the function in fastgan.reference.

The device picks the mode. On CUDA: CUDA events, median of 20 runs after 3 warm-up runs, with a 256 MB
buffer written before each timed run so no input is served from L2; sizes from 256 logits to 256 MB
activations; float32, float16 and bfloat16, contiguous and channels_last; the number of CUDA kernels each
implementation launches (torch.profiler); effective bandwidth as a share of the device's peak where
PEAK_GB_S knows the device. On the CPU: torch.utils.benchmark's
blocked_autorange, median, float32, sizes up to 16 MB, on --threads threads (default 1: steadier
numbers on a shared machine). Before timing, every row checks that the three implementations agree.

Effective GB/s is the number of bytes fastgan's kernels move divided by fastgan's time (see
bytes_per_element); eager/fastgan and compile/fastgan above 1 mean fastgan is faster. The table goes to
stdout and to bench/results/kernels-<device>-<date>.md with the device, date, versions, fastgan's
backend and this command.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import os
import pathlib
import platform
import re
import sys
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
import torch.utils.benchmark as benchmark

from bench import baselines
from bench.system import cpu_model, write_result
from fastgan import functional, losses, ops, reference
from fastgan.backend import backend

COMMAND = "python -m bench.kernels"
IMPLS = ("fastgan", "eager", "compile")
PASSES = ("fwd", "fwd+bwd")

# Logit counts for the losses (the D loss splits them evenly into real and fake) and activation shapes
# for the epilogues, per device: a DCGAN batch of D logits up to 256 MB (CUDA) or 16 MB (CPU) of float32.
CUDA_LOSS_SIZES = [256, 1 << 12, 1 << 16, 1 << 20, 1 << 24, 1 << 26]
CUDA_EPILOGUE_SHAPES = [(128, 512, 4, 4), (128, 256, 8, 8), (128, 128, 16, 16), (128, 64, 32, 32), (256, 64, 64, 64)]
CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
CPU_LOSS_SIZES = [256, 1 << 12, 1 << 16, 1 << 20]
CPU_EPILOGUE_SHAPES = [(64, 256, 4, 4), (64, 128, 8, 8), (64, 64, 16, 16), (64, 64, 32, 32)]
CPU_DTYPES = (torch.float32,)
CPU_MIN_RUN_TIME_S = 0.2

# Bytes fastgan's kernels move per element of the op's main tensor (the logits, or the activation x), for
# an element size e: a pass that needs a whole reduction before it can go on re-reads its input (batch
# norm's statistics before normalising, the backward's sums before dx).
#   bce:        fwd reads x, t, writes the float32 gradient (and the loss, reduction="none"); bwd reads the
#               gradient, writes dx
#   d/g loss:   fwd reads the logits, writes the float32 gradient; bwd reads it, writes dx
#   bias_act:   fwd reads x, writes y; bwd reads dy, y, writes dx
#   batch norm: fwd reads x twice, writes y; bwd reads x, dy twice, writes dx


def bytes_per_element(op: str, pass_: str, e: int) -> int:
    fwd = {"bce_with_logits": 2 * e + 4, "d_loss": e + 4, "g_loss": e + 4, "bias_act": 2 * e,
           "batch_norm_act": 3 * e}[op]
    bwd = {"bce_with_logits": 4 + e, "d_loss": 4 + e, "g_loss": 4 + e, "bias_act": 3 * e, "batch_norm_act": 5 * e}[op]
    return fwd if pass_ == "fwd" else fwd + bwd


# HBM bandwidth (GB/s) from the vendors' data sheets, by a substring of torch.cuda.get_device_name().
PEAK_GB_S = {"H200": 4800, "H100 SXM": 3350, "H100 80GB HBM3": 3350, "H100 PCIe": 2000, "H100 NVL": 3900,
             "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100-SXM4-40GB": 1555, "A100-PCIE-40GB": 1555,
             "L40S": 864, "L4": 300, "A10G": 600, "A10": 600, "RTX 4090": 1008, "V100": 900, "T4": 320}
L2_FLUSH_BYTES = 256 << 20


def peak_gb_s(device: str) -> float | None:
    for key, value in PEAK_GB_S.items():
        if key in device:
            return value
    return None


AGREE_TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float16: dict(rtol=1e-2, atol=1e-2),
             torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}


@dataclass
class Case:
    """One row group: an op at one size, its inputs and the three implementations (each f(*inputs))."""

    op: str
    label: str
    size: str
    inputs: tuple[torch.Tensor, ...]
    impls: dict[str, Callable[..., torch.Tensor]]
    numel: int
    element_size: int

    def bytes(self, pass_: str) -> int:
        return bytes_per_element(self.op, pass_, self.element_size) * self.numel


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]



def loss_cases(device: str, sizes: list[int], compiled: dict[str, Callable]) -> list[Case]:
    cases = []
    for n in sizes:
        logits = torch.randn(n, device=device, requires_grad=True)
        targets = torch.rand(n, device=device)
        real = torch.randn(n // 2, device=device, requires_grad=True)
        fake = torch.randn(n - n // 2, device=device, requires_grad=True)
        common = dict(size=str(n), numel=n, element_size=logits.element_size())
        cases += [
            Case("bce_with_logits", "bce_with_logits fp32", inputs=(logits, targets), impls={
                "fastgan": functional.binary_cross_entropy_with_logits,
                "eager": F.binary_cross_entropy_with_logits,
                "compile": compiled["bce_with_logits"]}, **common),
            Case("d_loss", "d_loss bce fp32", inputs=(real, fake), impls={
                "fastgan": losses.d_loss, "eager": baselines.d_loss, "compile": compiled["d_loss"]}, **common),
            Case("g_loss", "g_loss ns fp32", inputs=(logits,), impls={
                "fastgan": losses.g_loss, "eager": baselines.g_loss, "compile": compiled["g_loss"]}, **common),
        ]
    return cases


def epilogue_cases(device: str, shapes: list[tuple[int, ...]], dtypes, compiled: dict[str, Callable],
                   layouts=("nchw",)) -> list[Case]:
    cases = []
    for shape, dtype, layout in ((s, d, lo) for s in shapes for d in dtypes for lo in layouts):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        x = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=fmt).requires_grad_()
        b = torch.randn(shape[1], device=device, dtype=dtype, requires_grad=True)
        w = torch.ones(shape[1], device=device, requires_grad=True)
        bn_b = b.detach().float().requires_grad_()
        # Each implementation updates its own running statistics.
        stats = {impl: (torch.zeros(shape[1], device=device), torch.ones(shape[1], device=device)) for impl in IMPLS}
        common = dict(size="x".join(map(str, shape)) + (" cl" if layout == "channels_last" else ""),
                      numel=x.numel(), element_size=x.element_size())
        cases += [
            Case("bias_act", f"bias_act lrelu {_dtype_name(dtype)}", inputs=(x, b), impls={
                "fastgan": ops.bias_act, "eager": baselines.bias_act, "compile": compiled["bias_act"]}, **common),
            Case("batch_norm_act", f"batch_norm_act relu {_dtype_name(dtype)}", inputs=(x, w, bn_b), impls={
                "fastgan": lambda x, w, b, s=stats["fastgan"]: ops.batch_norm_act(x, w, b, *s, True),
                "eager": lambda x, w, b, s=stats["eager"]: F.relu(F.batch_norm(x, *s, w, b, True)),
                "compile": lambda x, w, b, s=stats["compile"]: compiled["batch_norm_act"](x, w, b, *s, True)},
                 **common),
        ]
    return cases


def _forward(f, inputs):
    return lambda: f(*inputs)


def _forward_backward(f, inputs):
    wanted = [t for t in inputs if t.requires_grad]

    def run():
        out = f(*inputs)
        torch.autograd.grad(out, wanted, torch.ones_like(out))
    return run


def check_agreement(case: Case) -> None:
    """Runs each implementation once (compiling where needed) and checks their outputs agree."""
    outputs = {impl: f(*case.inputs).detach().float() for impl, f in case.impls.items()}
    dtype = case.inputs[0].dtype
    for impl in ("eager", "compile"):
        torch.testing.assert_close(outputs[impl], outputs["fastgan"], **AGREE_TOL[dtype],
                                   msg=lambda m, impl=impl: f"{case.label} {case.size}: {impl} disagrees with fastgan: {m}")


def cuda_seconds(fn: Callable[[], None], repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    times = []
    for _ in range(repeats):
        flush.zero_()  # evicts the inputs from L2, outside the timed span
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def cpu_seconds(fn: Callable[[], None], threads: int) -> float:
    fn()  # the first backward of a compiled function compiles its backward graph
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=CPU_MIN_RUN_TIME_S).median


def cuda_launches(fn: Callable[[], None]) -> int:
    """CUDA kernels (and memsets) one call of fn launches, as torch.profiler sees them."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def rows_for(case: Case, seconds: Callable[[Callable[[], None]], float], peak: float | None = None,
             launches: Callable[[Callable[[], None]], int] | None = None) -> list[str]:
    check_agreement(case)
    rows = []
    for pass_, make in zip(PASSES, (_forward, _forward_backward)):
        t = {impl: seconds(make(f, case.inputs)) for impl, f in case.impls.items()}
        gbs = case.bytes(pass_) / t["fastgan"] / 1e9
        n = ("/".join(str(launches(make(f, case.inputs))) for f in case.impls.values()) if launches else "—")
        share = f"{100 * gbs / peak:.0f}%" if peak else "—"
        rows.append(f"| {case.label} | {case.size} | {pass_} | {t['fastgan'] * 1e6:.1f} | {t['eager'] * 1e6:.1f} | "
                    f"{t['compile'] * 1e6:.1f} | {gbs:.2f} | {share} | {n} | {t['eager'] / t['fastgan']:.2f} | "
                    f"{t['compile'] / t['fastgan']:.2f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the CPU mode (default: 1)")
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"), help="results folder")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be at least 1; got {args.threads}")

    on_cuda = torch.cuda.is_available()
    if not on_cuda and backend() == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
        print("bench.kernels: FASTGAN_BACKEND=triton with TRITON_INTERPRET=1 would time Triton's interpreter, "
              "which is a test tool, not a performance target; unset them to benchmark the CPU path.", file=sys.stderr)
        return 2
    compiled = {name: torch.compile(getattr(reference, name))
                for name in ("bce_with_logits", "d_loss", "g_loss", "bias_act", "batch_norm_act")}
    if on_cuda:
        device, slug = torch.cuda.get_device_name(), None
        cases = loss_cases("cuda", CUDA_LOSS_SIZES, compiled) + epilogue_cases(
            "cuda", CUDA_EPILOGUE_SHAPES, CUDA_DTYPES, compiled, layouts=("nchw", "channels_last"))
        seconds = cuda_seconds
        timing = "CUDA events, median of 20 runs after 3 warm-up runs, L2 flushed (256 MB written) before each"
    else:
        torch.set_num_threads(args.threads)
        device, slug = f"{cpu_model()} ({args.threads} thread{'s' if args.threads > 1 else ''})", "cpu"
        cases = loss_cases("cpu", CPU_LOSS_SIZES, compiled) + epilogue_cases("cpu", CPU_EPILOGUE_SHAPES,
                                                                              CPU_DTYPES, compiled)
        seconds = functools.partial(cpu_seconds, threads=args.threads)
        timing = (f"torch.utils.benchmark blocked_autorange (at least {CPU_MIN_RUN_TIME_S} s per measurement), "
                  f"median; torch.set_num_threads({args.threads}) (one thread gives steadier numbers on a shared "
                  f"machine); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores when it started")

    peak = peak_gb_s(device) if on_cuda else None
    rows = ["| op | size | pass | fastgan µs | eager µs | compile µs | fastgan GB/s | % of peak | launches f/e/c | "
            "eager/fastgan | compile/fastgan |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for case in cases:
        rows += rows_for(case, seconds, peak, cuda_launches if on_cuda else None)

    date = datetime.date.today().isoformat()
    command = " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)])
    header = [
        f"# fastgan kernels on {device}",
        "",
        f"- date: {date}",
        f"- torch {torch.__version__}, triton {_version('triton')}, python {platform.python_version()}, "
        f"fastgan backend: {backend()}",
        f"- command: `{command}`",
        f"- timing: {timing}",
        "- fastgan: the op through the dispatcher"
        + ("" if on_cuda else ", which on the CPU runs the PyTorch reference (the Triton kernels need a GPU): "
           "these rows measure the reference and the op's dispatch, not the kernels"),
        "- eager: plain torch.nn.functional; compile: torch.compile (inductor, default settings) of fastgan.reference",
        "- fwd: the forward with autograd recording (as in training); fwd+bwd: the forward and the gradients of "
        "every input that requires them",
        "- fastgan GB/s: bytes fastgan's kernels move / fastgan's time (bytes_per_element in bench/kernels.py); "
        + (f"% of peak: of {peak:.0f} GB/s (data sheet); " if peak else "% of peak: device not in PEAK_GB_S; ")
        + "launches f/e/c: CUDA kernels per call of fastgan / eager / compile (torch.profiler); "
        "ratios above 1 mean fastgan is faster",
        "",
    ]
    text = "\n".join(header + rows) + "\n"
    print(text)
    write_result(f"kernels-{slug or re.sub(r'[^A-Za-z0-9]+', '-', device).strip('-')}-{date}.md", text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
