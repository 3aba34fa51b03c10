"""frechet_distance (Cholesky + LAPACK sygst + eigvalsh) against the classic scipy.linalg.sqrtm formula.

    python -m bench.fid [--dim 2048] [--repeats 3] [--threads 1]

Prints median seconds of each, the ratio and the agreement, and writes bench/results/fid-cpu-<date>.md.
Both run with the same number of BLAS/LAPACK threads (default 1): on a shared 2-core machine, two
threads per process oversubscribe the cores and make LAPACK timings swing by 10x from run to run.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

from bench.system import cpu_model, write_result


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    # The formula of the original TTUR / pytorch-fid code.
    import numpy as np
    import scipy.linalg

    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def inception_like_stats(rng, d: int, n: int):
    import numpy as np

    # Covariances of real features are estimated from n > d samples of correlated, non-negative
    # (post-ReLU-like) activations; a random low-rank-plus-noise factor model reproduces that spectrum.
    factors = rng.normal(size=(d, d // 4))
    x = np.maximum(rng.normal(size=(n, d // 4)) @ factors.T + rng.normal(size=(n, d)), 0) * 0.1
    return x.mean(0), np.cov(x, rowvar=False)


def interleaved_median_seconds(fns, repeats: int) -> list[tuple[float, float]]:
    """(median seconds, last value) of each function, timed in turn within each repeat.

    Alternating the methods spreads the load of other processes on a shared machine over both,
    instead of letting a busy minute land on one of them.
    """
    times, values = [[] for _ in fns], [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            values[i] = fn()
            times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), v) for t, v in zip(times, values)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=5000, help="samples behind each covariance")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/LAPACK threads for both methods")
    args = parser.parse_args(argv)
    # Thread pools read these when numpy, scipy and torch first load, so they are set before importing them.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import scipy
    import torch

    from fastgan.metrics import frechet_distance

    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    mu1, s1 = inception_like_stats(rng, args.dim, args.samples)
    mu2, s2 = inception_like_stats(rng, args.dim, args.samples)
    load_before = os.getloadavg()[0]
    (t_fast, v_fast), (t_ref, v_ref) = interleaved_median_seconds(
        [lambda: frechet_distance(mu1, s1, mu2, s2), lambda: scipy_frechet(mu1, s1, mu2, s2)], args.repeats)
    load_after = os.getloadavg()[0]
    rel = abs(v_fast - v_ref) / abs(v_ref)

    date = datetime.date.today().isoformat()
    command = "python -m bench.fid " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = [
        "| method | dim | median s | FID |",
        "|---|---|---|---|",
        f"| fastgan.metrics.frechet_distance (potrf + sygst + eigvalsh) | {args.dim} | {t_fast:.3f} | {v_fast:.9g} |",
        f"| scipy.linalg.sqrtm formula | {args.dim} | {t_ref:.3f} | {v_ref:.9g} |",
    ]
    report = "\n".join([
        f"# frechet_distance vs scipy sqrtm, {args.dim}-d, CPU",
        "",
        f"- command: `{command.strip()}`",
        f"- date: {date}",
        f"- device: {cpu_model()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, scipy {scipy.__version__}",
        f"- inputs: covariances of {args.samples} samples each; median of {args.repeats} repeats, both in this run, "
        f"the two methods alternating",
        f"- 1-minute load average of the machine: {load_before:.2f} before, {load_after:.2f} after",
        "",
        *rows,
        "",
        f"speed-up: **{t_ref / t_fast:.1f}x**; relative difference of the two FIDs: {rel:.2e}",
        "",
    ])
    print(report)
    write_result(f"fid-cpu-{date}.md", report)


if __name__ == "__main__":
    main()
