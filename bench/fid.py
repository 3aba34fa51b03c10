"""FID's two costs against what they replace: feature extraction and the Fréchet distance.

    python -m bench.fid [--part all|extract|frechet] [--threads 1]
        extract: [--batch-size 50] [--batches 1] [--resolution 16] [--rounds 5] [--weights default|calibrated]
        frechet: [--dim 2048] [--samples 5000] [--repeats 3]

extract: fastgan's InceptionV3 (its inference network: BatchNorm folded, channels_last) against pytorch-fid's
InceptionV3 on the same weights and the same batches (pytorch-fid where it is installed; else fastgan's
reference_features_and_logits, which is pytorch-fid's network module for module), taking turns within each
round; median seconds per batch, images/s, the ratio per round (min-max) and the relative difference of the
features. No weights are downloaded: both networks get one random state (--weights; random_inception).
frechet: frechet_distance (Cholesky + LAPACK sygst + eigvalsh) against the classic scipy.linalg.sqrtm formula.

Writes bench/results/fid-cpu-<date>-<HHMM>.md. Both sides run with the same number of threads (default 1): on a
shared 2-core machine, two threads per process oversubscribe the cores and make timings swing from run to run.
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


def random_inception(weights: str = "default", seed: int = 0):
    """fastgan's InceptionV3 with random weights of one of two kinds.

    default: torch's initialisation, BatchNorm statistics and affine parameters drawn away from the identity
    (the features hardly depend on the image). calibrated: He-normal convolutions and BatchNorm statistics
    measured on a batch of images, as a trained network's are (features that vary from image to image; float32
    is ~1e-6 off float64 through the 94 layers there). As tests/test_metrics_inception_fast.py builds them.
    """
    import torch

    from fastgan.metrics import InceptionV3

    torch.manual_seed(seed)
    net = InceptionV3(load_weights=False)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        if weights == "calibrated":
            for m in net.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.normal_(0, (2 / m.weight[0].numel()) ** 0.5)
            for m in bns:
                m.momentum = 1.0
            net.train()
            net.reference_features_and_logits(torch.rand(8, 3, 16, 16) * 2 - 1)
            net.eval()
        for m in bns:
            m.momentum = 0.1
            if weights == "default":
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.25, 4)
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.2)
    return net


def pytorch_fid_network(state_dict):
    """(pytorch-fid's InceptionV3 loaded with state_dict, its name), or (None, why not) where it is not installed."""
    try:
        import pytorch_fid
        import pytorch_fid.inception as pfi
    except Exception as e:  # not installed, or a torchvision that does not load against this torch
        return None, f"pytorch-fid not importable ({type(e).__name__}: {e})"
    # pytorch-fid downloads its weights inside fid_inception_v3(); hand it ours instead.
    pfi.load_state_dict_from_url = lambda *args, **kwargs: state_dict
    return pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval(), f"pytorch-fid {pytorch_fid.__version__}"


def relative_differences(a, b) -> tuple[float, float]:
    """(largest |a - b| over the largest |b|, largest per-row ||a - b|| / ||b||), in float64."""
    a, b = a.double(), b.double()
    return (float((a - b).abs().max() / b.abs().max()),
            float(((a - b).norm(dim=1) / b.norm(dim=1)).max()))


def extraction(args) -> list[str]:
    import torch

    net = random_inception(args.weights)
    theirs, baseline = pytorch_fid_network(net.state_dict())
    if theirs is None:
        print(f"{baseline}; the baseline is fastgan's reference_features_and_logits (pytorch-fid's network)")
        baseline, plain = "fastgan reference_features_and_logits (pytorch-fid's network, not installed: " + baseline + ")", (
            lambda x: net.reference_features_and_logits(x)[0])
    else:
        def plain(x):
            return theirs((x + 1) / 2)[0].flatten(1)  # pytorch-fid takes [0, 1] and scales it to [-1, 1]
    gen = torch.Generator().manual_seed(0)
    batches = [torch.rand(args.batch_size, 3, args.resolution, args.resolution, generator=gen) * 2 - 1
               for _ in range(args.batches)]
    with torch.no_grad():
        start = time.perf_counter()
        net(batches[0][:1])  # builds the folded copy (once per network; timed here, not in the rounds)
        build_s = time.perf_counter() - start
        fast_features = torch.cat([net(b) for b in batches])
        plain_features = torch.cat([plain(b) for b in batches])
        ref_features = torch.cat([net.reference_features_and_logits(b)[0] for b in batches])
        n64 = min(4, args.batch_size)
        exact = random_inception(args.weights).double().reference_features_and_logits(batches[0][:n64].double())[0]
    rel_plain = relative_differences(fast_features, plain_features)
    rel_ref = relative_differences(fast_features, ref_features)
    rel_exact_fast = relative_differences(fast_features[:n64], exact)
    rel_exact_plain = relative_differences(plain_features[:n64], exact)

    def run(fn):
        with torch.no_grad():
            for b in batches:
                fn(b)

    times = {"fast": [], "plain": []}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, fn in (("plain", plain), ("fast", net)):
            start = time.perf_counter()
            run(fn)
            times[name].append((time.perf_counter() - start) / args.batches)
    load_after = os.getloadavg()[0]
    ratios = [p / f for p, f in zip(times["plain"], times["fast"])]
    med = {k: statistics.median(v) for k, v in times.items()}
    images = args.batch_size
    rows = [
        f"## Feature extraction: batches of {args.batch_size} images {args.resolution}x{args.resolution} "
        f"(resized to 299), {args.batches} batch(es) a round, {args.rounds} rounds taking turns",
        "",
        f"- baseline: {baseline}, same weights ({args.weights}: see random_inception) and batches",
        f"- 1-minute load average of the machine: {load_before:.2f} before, {load_after:.2f} after",
        f"- fastgan's folded channels_last copy built once in {build_s:.2f} s (not in the rounds)",
        "",
        "| network | median s / batch | min-max | images/s |",
        "|---|---|---|---|",
        f"| {baseline.split(' (')[0]} | {med['plain']:.3f} | {min(times['plain']):.3f}-{max(times['plain']):.3f} | "
        f"{images / med['plain']:.2f} |",
        f"| fastgan InceptionV3 | {med['fast']:.3f} | {min(times['fast']):.3f}-{max(times['fast']):.3f} | "
        f"{images / med['fast']:.2f} |",
        "",
        f"speed-up: **{statistics.median(ratios):.2f}x** (rounds {min(ratios):.2f}-{max(ratios):.2f})",
        "",
        "Relative difference of the 2048-d features (largest |difference| / largest |feature|; largest per-image "
        "2-norm ratio):",
        "",
        f"- fastgan against the baseline: {rel_plain[0]:.2e}; {rel_plain[1]:.2e}",
        f"- fastgan against its own reference path: {rel_ref[0]:.2e}; {rel_ref[1]:.2e}",
        f"- against the float64 network ({n64} images): fastgan {rel_exact_fast[0]:.2e}; {rel_exact_fast[1]:.2e}, "
        f"baseline {rel_exact_plain[0]:.2e}; {rel_exact_plain[1]:.2e}",
        "",
    ]
    return rows


def frechet(args) -> list[str]:
    import numpy as np
    import scipy

    from fastgan.metrics import frechet_distance

    rng = np.random.default_rng(0)
    mu1, s1 = inception_like_stats(rng, args.dim, args.samples)
    mu2, s2 = inception_like_stats(rng, args.dim, args.samples)
    load_before = os.getloadavg()[0]
    (t_fast, v_fast), (t_ref, v_ref) = interleaved_median_seconds(
        [lambda: frechet_distance(mu1, s1, mu2, s2), lambda: scipy_frechet(mu1, s1, mu2, s2)], args.repeats)
    load_after = os.getloadavg()[0]
    rel = abs(v_fast - v_ref) / abs(v_ref)
    rows = [
        f"## frechet_distance vs scipy sqrtm, {args.dim}-d",
        "",
        f"- inputs: covariances of {args.samples} samples each; median of {args.repeats} repeats, the two methods "
        f"alternating; numpy {np.__version__}, scipy {scipy.__version__}",
        f"- 1-minute load average of the machine: {load_before:.2f} before, {load_after:.2f} after",
        "",
        "| method | dim | median s | FID |",
        "|---|---|---|---|",
        f"| fastgan.metrics.frechet_distance (potrf + sygst + eigvalsh) | {args.dim} | {t_fast:.3f} | {v_fast:.9g} |",
        f"| scipy.linalg.sqrtm formula | {args.dim} | {t_ref:.3f} | {v_ref:.9g} |",
        "",
        f"speed-up: **{t_ref / t_fast:.1f}x**; relative difference of the two FIDs: {rel:.2e}",
        "",
    ]
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "extract", "frechet"), default="all")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS/LAPACK threads for both sides")
    parser.add_argument("--batch-size", type=int, default=50, help="extract: images per batch, both networks")
    parser.add_argument("--batches", type=int, default=1, help="extract: batches per round")
    parser.add_argument("--resolution", type=int, default=16, help="extract: size of the images (resized to 299)")
    parser.add_argument("--rounds", type=int, default=5, help="extract: rounds, the two networks taking turns")
    parser.add_argument("--weights", choices=("default", "calibrated"), default="default",
                        help="extract: the random weights both networks get (see random_inception)")
    parser.add_argument("--dim", type=int, default=2048, help="frechet: feature dimension")
    parser.add_argument("--samples", type=int, default=5000, help="frechet: samples behind each covariance")
    parser.add_argument("--repeats", type=int, default=3, help="frechet: repeats")
    args = parser.parse_args(argv)
    # Thread pools read these when numpy, scipy and torch first load, so they are set before importing them.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    now = datetime.datetime.now(datetime.timezone.utc)
    command = "python -m bench.fid " + " ".join(argv if argv is not None else sys.argv[1:])
    header = [
        "# FID on the CPU: feature extraction and the Fréchet distance",
        "",
        f"- command: `{command.strip()}`",
        f"- date: {now:%Y-%m-%d %H:%M} UTC",
        f"- device: {cpu_model()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}",
        "",
    ]
    rows = []
    if args.part in ("all", "extract"):
        rows += extraction(args)
    if args.part in ("all", "frechet"):
        rows += frechet(args)
    report = "\n".join(header + rows)
    print(report)
    write_result(f"fid-cpu-{now:%Y-%m-%d-%H%M}.md", report)


if __name__ == "__main__":
    main()
