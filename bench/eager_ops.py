"""fastgan's public ops called eagerly vs the plain PyTorch a user would write, forward and forward + backward.

    python -m bench.eager_ops [--threads 1] [--rounds 3] [--min-run-time 0.2] [--ops bce_with_logits,...]
                              [--out bench/results]

On the CPU (no Triton kernel runs) every public op takes its fast eager path. For each op and size it times,
in one process and interleaved (fastgan, eager, eager, fastgan, ... over --rounds rounds):

  bce_with_logits  fastgan.functional.binary_cross_entropy_with_logits(x, t)  vs F.binary_cross_entropy_with_logits,
                   and every other call path of the drop-in, each against torch's call with the same arguments:
                   bce_soft_target (t requires grad), bce_weight (an elementwise weight), bce_pos_weight (a per-column
                   pos_weight), bce_weight_grad (a weight that requires grad: torch's op refuses it, so its side
                   is what a user writes, the unreduced loss times the weight, then the mean), bce_pos_weight_grad
                   (a pos_weight that requires grad, against the formula -(p t logsigmoid(x) + (1 - t)
                   logsigmoid(-x)).mean(), torch's op refusing it too), bce_row_weight (a per-row weight
                   (rows, 1), broadcast), bce_float64, bce_bfloat16, bce_float16
  d_loss           fastgan.losses.d_loss(r, f, "bce")   vs F.softplus(-r).mean() + F.softplus(f).mean()
  g_loss           fastgan.losses.g_loss(f, "ns")       vs F.softplus(-f).mean()
  d_loss_rpgan     fastgan.losses.d_loss(r, f, "rpgan") vs F.softplus(f - r).mean()   (r, f paired)
  g_loss_rpgan     fastgan.losses.g_loss(f, "rpgan", r) vs F.softplus(r - f).mean()
  r1_r2_penalty    R3GAN's D objective loss + gamma / 2 * (R1 + R2) on a small conv D (no cross-sample layer):
                   fastgan.losses.r1_r2_penalty (one forward over real and fake, one double backward) vs
                   R3GAN's two-pass form (two forwards, two double backwards); "backward" is w.r.t. D's parameters
  bias_act         fastgan.ops.bias_act(x, b, "lrelu")  vs F.leaky_relu(x + b[:, None, None], 0.2)
  batch_norm_act   fastgan.ops.batch_norm_act(x, w, b, rm, rv, True)  vs F.relu(F.batch_norm(x, rm, rv, w, b, True))

at 256 to 1M logits, DCGAN-16/32/64 epilogue shapes, two image batches for the penalty, and a one-element ("tiny";
batch_norm_act: two elements, one channel) input whose time is the
per-call overhead (listed again after the table as a multiple of torch's). Three passes: "no graph" is the forward
on the inputs detached (nothing records a graph); "fwd" the forward on inputs that require grad, so it builds the
autograd graph as in training; "fwd+bwd" adds torch.autograd.grad of the output (with a fixed upstream gradient
for the epilogues) w.r.t. every input that requires grad. Times are
medians over blocks of calls, fastgan's and eager's blocks taking turns (time_cases); a row reports the median
over rounds. ratio = eager time / fastgan time: above 1, fastgan is faster. Before timing, each row checks that the two agree (values
and gradients).

The table goes to stdout and to bench/results/eager-ops-<device>-<date>-<HHMM>.md with the device, date, versions,
thread count, load average and this command.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from bench import baselines
from bench.system import cpu_model, write_result
from fastgan import functional, losses, ops

COMMAND = "python -m bench.eager_ops"
LOSS_SIZES = [1, 256, 1 << 12, 1 << 16, 1 << 20]
# G's epilogues at batch 64, width 32, from 4x4 up to the image: DCGAN-16, then -32, then -64.
EPILOGUE_SHAPES = [(1, 1, 1, 1),
                   (64, 64, 4, 4), (64, 32, 8, 8), (64, 3, 16, 16),
                   (64, 128, 4, 4), (64, 64, 8, 8), (64, 32, 16, 16), (64, 3, 32, 32),
                   (64, 256, 4, 4), (64, 128, 8, 8), (64, 64, 16, 16), (64, 32, 32, 32), (64, 3, 64, 64)]
PASSES = ("no graph", "fwd", "fwd+bwd")
# The drop-in's call paths: name -> (input dtype, which of target / weight / pos_weight are given and require grad).
BCE_PATHS = {
    "bce_with_logits": dict(),
    "bce_soft_target": dict(target_grad=True),
    "bce_weight": dict(weight="full"),
    "bce_pos_weight": dict(pos_weight=True),
    "bce_weight_grad": dict(weight="full", weight_grad=True),
    "bce_pos_weight_grad": dict(pos_weight=True, pos_weight_grad=True),
    "bce_row_weight": dict(weight="row"),
    "bce_float64": dict(dtype=torch.float64),
    "bce_bfloat16": dict(dtype=torch.bfloat16),
    "bce_float16": dict(dtype=torch.float16),
}
PENALTY_BATCHES = [(16, 3, 16, 16), (64, 3, 32, 32)]
GAMMA = 0.1


@dataclass
class Case:
    """One row: an op at one size; each implementation is f(*inputs) -> output."""

    op: str
    size: str
    inputs: tuple[torch.Tensor, ...]
    impls: dict[str, Callable[..., torch.Tensor]]
    upstream: torch.Tensor | None = None  # d loss / d output for non-scalar outputs

    def runner(self, impl: str, pass_: str) -> Callable[[], object] | None:
        f, inputs = self.impls[impl], self.inputs
        if pass_ == "no graph":
            if self.op == "r1_r2_penalty":  # a penalty is a gradient: it has no forward without a graph
                return None
            detached = tuple(t.detach() for t in inputs)
            return lambda: f(*detached)
        if pass_ == "fwd":
            return lambda: f(*inputs)
        wrt = [t for t in inputs if t.requires_grad]
        dy = self.upstream
        return lambda: torch.autograd.grad(f(*inputs), wrt, dy)



def _label(n: int) -> str:
    return "tiny" if n == 1 else str(n)


def cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    out = []
    for n in LOSS_SIZES:
        out += [_bce_case(name, n, g, **how) for name, how in BCE_PATHS.items()]
        real = (torch.randn(max(n // 2, 1), generator=g) * 3).requires_grad_()
        fake = (torch.randn(max(n - n // 2, 1), generator=g) * 3).requires_grad_()
        out += [
            Case("d_loss", _label(n), (real, fake), {"fastgan": losses.d_loss, "eager": baselines.d_loss}),
            Case("g_loss", _label(n), (fake,), {"fastgan": losses.g_loss, "eager": baselines.g_loss}),
        ]
        paired = (torch.randn(fake.shape, generator=g) * 3).requires_grad_()
        out += [
            Case("d_loss_rpgan", _label(n), (paired, fake), {"fastgan": lambda r, f: losses.d_loss(r, f, "rpgan"),
                                                             "eager": lambda r, f: F.softplus(f - r).mean()}),
            Case("g_loss_rpgan", _label(n), (paired, fake), {"fastgan": lambda r, f: losses.g_loss(f, "rpgan", r),
                                                             "eager": lambda r, f: F.softplus(r - f).mean()}),
        ]
    for shape in EPILOGUE_SHAPES:
        c = shape[1]
        size = "tiny" if shape == (1, 1, 1, 1) else "x".join(map(str, shape))
        x = torch.randn(shape, generator=g).requires_grad_()
        b = torch.randn(c, generator=g).requires_grad_()
        w = (torch.rand(c, generator=g) + 0.5).requires_grad_()
        dy = torch.randn(shape, generator=g)
        out.append(Case("bias_act", size, (x, b), {"fastgan": ops.bias_act, "eager": baselines.bias_act}, dy))
        if shape == (1, 1, 1, 1):  # training batch norm needs more than one value per channel: its tiny input
            shape = (2, 1, 1, 1)
            x, dy = torch.randn(shape, generator=g).requires_grad_(), torch.randn(shape, generator=g)
        stats = {impl: (torch.zeros(c), torch.ones(c)) for impl in ("fastgan", "eager")}  # each updates its own
        out.append(Case("batch_norm_act", size, (x, w, b), {
            "fastgan": lambda x, w, b, s=stats["fastgan"]: ops.batch_norm_act(x, w, b, *s, True),
            "eager": lambda x, w, b, s=stats["eager"]: F.relu(F.batch_norm(x, *s, w, b, True)),
        }, dy))
    for shape in PENALTY_BATCHES:
        out.append(_penalty_case(shape, g))
    return out


def _bce_case(name: str, n: int, g: torch.Generator, dtype=torch.float32, target_grad=False, weight=None,
              weight_grad=False, pos_weight=False, pos_weight_grad=False) -> Case:
    """binary_cross_entropy_with_logits on n logits as (rows, 64) ((1, 1) for the tiny one), called the same way on
    both sides; the backward differentiates every tensor that requires grad."""
    shape = (max(n // 64, 1), min(n, 64))
    x = (torch.randn(shape, generator=g) * 3).to(dtype).requires_grad_()
    t = torch.rand(shape, generator=g).to(dtype).requires_grad_(target_grad)
    inputs = [x, t]
    kw = []
    if weight is not None:
        w = torch.rand(shape if weight == "full" else (shape[0], 1), generator=g).to(dtype)
        inputs.append(w.requires_grad_(weight_grad))
        kw.append("weight")
    if pos_weight:
        inputs.append((torch.rand(shape[-1:], generator=g) * 2).to(dtype).requires_grad_(pos_weight_grad))
        kw.append("pos_weight")

    def call(fn):
        return lambda x, t, *rest: fn(x, t, **dict(zip(kw, rest)))
    eager = call(F.binary_cross_entropy_with_logits)
    if weight_grad:  # torch's op is not differentiable in weight
        def eager(x, t, w):
            return (F.binary_cross_entropy_with_logits(x, t, reduction="none") * w).mean()
    if pos_weight_grad:  # nor in pos_weight: the formula, as a user writes it
        def eager(x, t, p):
            return -(p * t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x)).mean()
    return Case(name, _label(n), tuple(inputs), {"fastgan": call(functional.binary_cross_entropy_with_logits),
                                                 "eager": eager})


def _small_d(channels: int, height: int, width: int) -> torch.nn.Module:
    """Two strided convolutions with bias_act epilogues and a linear head: per-sample, like R3GAN's D."""
    class Layer(torch.nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = torch.nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
            self.bias = torch.nn.Parameter(torch.zeros(cout))

        def forward(self, x):
            return ops.bias_act(self.conv(x), self.bias, "lrelu")
    head = torch.nn.Linear(64 * -(-height // 4) * -(-width // 4), 1)
    return torch.nn.Sequential(Layer(channels, 32), Layer(32, 64), torch.nn.Flatten(), head)


def _two_pass(d, real, fake):
    """R3GAN's AccumulateDiscriminatorGradients, as a user writes it: D on each batch, one penalty each."""
    real, fake = real.detach().requires_grad_(True), fake.detach().requires_grad_(True)
    real_logits, fake_logits = d(real), d(fake)
    (g_real,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    (g_fake,) = torch.autograd.grad(fake_logits.sum(), fake, create_graph=True)
    adversarial = F.softplus(-(real_logits - fake_logits)).mean()
    return adversarial + GAMMA / 2 * (g_real.square().sum([1, 2, 3]).mean() + g_fake.square().sum([1, 2, 3]).mean())


def _one_pass(d, real, fake):
    loss, r1, r2, _ = losses.r1_r2_penalty(d, real, fake)
    return loss + GAMMA / 2 * (r1 + r2)


def _penalty_case(shape, g) -> Case:
    """The inputs are D's parameters (what the backward differentiates); the images are fixed."""
    torch.manual_seed(0)
    d = _small_d(*shape[1:])
    real, fake = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    return Case("r1_r2_penalty", "x".join(map(str, shape)), tuple(d.parameters()),
                {"fastgan": lambda *params: _one_pass(d, real, fake), "eager": lambda *params: _two_pass(d, real, fake)})


def check(case: Case) -> None:
    """fastgan and eager agree on the output and the gradients."""
    results = {}
    for impl in ("fastgan", "eager"):
        y = case.impls[impl](*case.inputs)
        wrt = [t for t in case.inputs if t.requires_grad]
        results[impl] = [y.detach(), *torch.autograd.grad(y, wrt, case.upstream)]
    low = case.inputs[0].dtype in (torch.float16, torch.bfloat16)  # torch computes these in their own dtype
    for a, b in zip(results["fastgan"], results["eager"]):
        torch.testing.assert_close(a, b, rtol=2e-2 if low else 1e-4, atol=1e-2 if low else 1e-5,
                                   msg=lambda m: f"{case.op} {case.size}: fastgan disagrees with eager: {m}")


BLOCKS = 10  # per implementation, per pass, per round


def _block_time(run: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        run()
    return (time.perf_counter() - start) / number


def time_cases(all_cases: list[Case], rounds: int,
               min_run_time: float) -> dict[tuple[str, str, str, str], list[float]]:
    """Each round's median time per call (seconds), keyed by (op, size, pass, impl).

    Within a round the two implementations take turns in short blocks (BLOCKS each, about min_run_time / BLOCKS
    seconds a block, the first of the pair alternating), so a burst of load on the shared machine falls on both
    rather than on whichever ran during it; a round's time is the median of its blocks."""
    samples: dict[tuple[str, str, str, str], list[float]] = {}
    for _ in range(rounds):
        for case in all_cases:
            for pass_ in PASSES:
                runs = {impl: case.runner(impl, pass_) for impl in ("fastgan", "eager")}
                if runs["fastgan"] is None:
                    continue
                for run in runs.values():  # warm up (allocator, autograd caches)
                    run()
                    run()
                number = 1
                while _block_time(runs["fastgan"], number) * number < min_run_time / BLOCKS / 2:
                    number *= 2
                blocks: dict[str, list[float]] = {"fastgan": [], "eager": []}
                for i in range(BLOCKS):
                    for impl in ("fastgan", "eager") if i % 2 == 0 else ("eager", "fastgan"):
                        blocks[impl].append(_block_time(runs[impl], number))
                for impl, times in blocks.items():
                    samples.setdefault((case.op, case.size, pass_, impl), []).append(statistics.median(times))
    return samples


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}" if seconds < 1e-3 else f"{seconds * 1e6:.0f}"


def table(all_cases: list[Case], samples) -> str:
    """Medians over the rounds; each ratio with its spread, the lowest and highest ratio of one round (each round's
    fastgan and eager timed next to each other)."""
    times = medians(samples)
    head = " | ".join(f"{p} fastgan (us) | {p} eager (us) | {p} ratio (min-max)" for p in PASSES)
    rows = [f"| op | size | {head} |", "|---|---|" + "---:|" * (3 * len(PASSES))]
    for case in all_cases:
        cells = []
        for pass_ in PASSES:
            key = (case.op, case.size, pass_)
            if key + ("fastgan",) not in samples:
                cells += ["-", "-", "-"]
                continue
            f, e = (times[key + (impl,)] for impl in ("fastgan", "eager"))
            per_round = [b / a for a, b in zip(samples[key + ("fastgan",)], samples[key + ("eager",)])]
            cells += [_us(f), _us(e), f"{e / f:.2f} ({min(per_round):.2f}-{max(per_round):.2f})"]
        rows.append(f"| {case.op} | {case.size} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def medians(samples) -> dict[tuple[str, str, str, str], float]:
    return {k: statistics.median(v) for k, v in samples.items()}


def overhead(all_cases: list[Case], samples) -> str:
    """Each op's per-call overhead: its time on the one-element input against torch's equivalent, without a graph,
    recording one (fwd) and with the backward (the issue's target: at most 1.5x torch's)."""
    times = medians(samples)
    rows = ["", "Per-call overhead (one-element input; times of the table; the target is at most 1.5x torch's):", ""]
    for case in all_cases:
        if case.size == "tiny":
            cells = []
            for pass_ in PASSES:
                f, e = (times[(case.op, case.size, pass_, impl)] for impl in ("fastgan", "eager"))
                cells.append(f"{pass_} {_us(f)} us vs {_us(e)} us: {f / e:.2f}x")
            rows.append(f"- {case.op}: " + "; ".join(cells))
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1, steadier on a shared machine)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; a row reports their median")
    p.add_argument("--min-run-time", type=float, default=0.2, help="seconds per implementation, pass and round, in blocks")
    p.add_argument("--ops", default=None, help="comma-separated ops to time (default: all)")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    all_cases = cases()
    if args.ops:
        wanted = args.ops.split(",")
        unknown = sorted(set(wanted) - {case.op for case in all_cases})
        if unknown:
            p.error(f"--ops: unknown op(s) {', '.join(unknown)}; choose among "
                    f"{', '.join(dict.fromkeys(case.op for case in all_cases))}")
        all_cases = [case for case in all_cases if case.op in wanted]
    for case in all_cases:
        check(case)
    load_before = os.getloadavg()
    times = time_cases(all_cases, args.rounds, args.min_run_time)
    load_after = os.getloadavg()
    now = datetime.datetime.now()
    header = "\n".join([
        f"# fastgan eager ops vs plain PyTorch, CPU, {now:%Y-%m-%d}",
        "",
        f"- command: `{COMMAND} --threads {args.threads} --rounds {args.rounds} "
        f"--min-run-time {args.min_run_time}" + (f" --ops {args.ops}" if args.ops else "") + "`",
        f"- device: {cpu_model()} ({os.cpu_count()} cores), {args.threads} thread(s)",
        f"- date: {now:%Y-%m-%d %H:%M}",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}",
        f"- load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f}",
        "- ratio = eager time / fastgan time (above 1: fastgan faster); median of the rounds' medians",
        "",
    ])
    text = header + table(all_cases, times) + "\n" + overhead(all_cases, times) + "\n"
    print(text)
    write_result(f"eager-ops-cpu-{now:%Y-%m-%d-%H%M}.md", text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
