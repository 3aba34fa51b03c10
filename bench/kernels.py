"""Kernel microbenchmarks: fastgan's fused ops vs eager PyTorch vs torch.compile of the reference, fwd + bwd.

    python -m bench.kernels

Times with CUDA events (median of repeats after warm-up), reports effective GB/s (bytes the fused
op must read and write) and the ratio to eager, and writes bench/results/kernels-<device>-<date>.md
with the device, date, versions and this command. Without CUDA there is nothing to time (the Triton
interpreter is not a performance target): it says so and exits 0.
"""
from __future__ import annotations

import datetime
import pathlib
import re
import sys

import torch
import torch.nn.functional as F

from fastgan import losses, ops, reference

COMMAND = "python -m bench.kernels"
LOSS_SIZES = [256, 1 << 12, 1 << 16, 1 << 20, 1 << 24, 1 << 26]
EPILOGUE_SHAPES = [(128, 512, 4, 4), (128, 256, 8, 8), (128, 128, 16, 16), (128, 64, 32, 32), (256, 64, 64, 64)]


def _time_ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def _fwd_bwd(f, *inputs):
    def run():
        out = f(*inputs)
        torch.autograd.grad(out, [t for t in inputs if t.requires_grad], torch.ones_like(out))
    return run


def _row(name, size, nbytes, fused, eager, compiled):
    t = [_time_ms(fused), _time_ms(eager), _time_ms(compiled)]
    gbs = nbytes / t[0] / 1e6
    return f"| {name} | {size} | {t[0]:.3f} | {t[1]:.3f} | {t[2]:.3f} | {gbs:.0f} | {t[1] / t[0]:.2f} | {t[2] / t[0]:.2f} |"


def _eager_d_loss(r, f):
    return F.softplus(-r).mean() + F.softplus(f).mean()


def main() -> int:
    if not torch.cuda.is_available():
        print("bench.kernels: no CUDA device; the Triton kernels only run on a GPU, nothing to time.")
        return 0
    import triton

    dev = torch.cuda.get_device_name()
    rows = ["| op | size | fastgan ms | eager ms | compile ms | fastgan GB/s | eager/fastgan | compile/fastgan |",
            "|---|---|---|---|---|---|---|---|"]
    ref_d = torch.compile(reference.d_loss)
    for n in LOSS_SIZES:
        r = torch.randn(n // 2, device="cuda", requires_grad=True)
        f = torch.randn(n // 2, device="cuda", requires_grad=True)
        # read logits, write float32 gradients, read them back and write dx: 4 + 4 + 4 + 4 bytes each
        rows.append(_row("d_loss bce fp32", n, 16 * n, _fwd_bwd(losses.d_loss, r, f), _fwd_bwd(_eager_d_loss, r, f),
                         _fwd_bwd(ref_d, r, f)))
    ref_ba = torch.compile(reference.bias_act)
    ref_bn = torch.compile(reference.batch_norm_act)
    for shape in EPILOGUE_SHAPES:
        for dtype in (torch.float32, torch.float16):
            x = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
            b = torch.randn(shape[1], device="cuda", dtype=dtype, requires_grad=True)
            e = x.element_size() * x.numel()
            rows.append(_row(f"bias_act lrelu {str(dtype)[6:]}", "x".join(map(str, shape)), 4 * e,
                             _fwd_bwd(ops.bias_act, x, b),
                             _fwd_bwd(lambda x, b: F.leaky_relu(x + b[:, None, None], 0.2), x, b),
                             _fwd_bwd(ref_ba, x, b)))
            w = torch.ones(shape[1], device="cuda", requires_grad=True)
            rm, rv = torch.zeros(shape[1], device="cuda"), torch.ones(shape[1], device="cuda")
            rows.append(_row(f"batch_norm_act relu {str(dtype)[6:]}", "x".join(map(str, shape)), 7 * e,
                             _fwd_bwd(lambda x, w, b: ops.batch_norm_act(x, w, b, rm, rv, True), x, w, b.float()),
                             _fwd_bwd(lambda x, w, b: F.relu(F.batch_norm(x, rm, rv, w, b, True)), x, w, b.float()),
                             _fwd_bwd(lambda x, w, b: ref_bn(x, w, b, rm, rv, True), x, w, b.float())))
    date = datetime.date.today().isoformat()
    header = [f"# fastgan kernels on {dev}", "", f"- date: {date}", f"- torch {torch.__version__}, triton {triton.__version__}",
              f"- command: `{COMMAND}`", "- times: median of 20 fwd+bwd runs (CUDA events)", ""]
    text = "\n".join(header + rows) + "\n"
    print(text)
    out = pathlib.Path(__file__).parent / "results" / f"kernels-{re.sub(r'[^A-Za-z0-9]+', '-', dev).strip('-')}-{date}.md"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
