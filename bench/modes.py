"""Mode coverage on the 2D mixtures: plain GAN vs the stability toolkit, over several seeds.

    python -m bench.modes [--datasets ring8,grid25] [--seeds 0,1] [--steps 20000] [--jobs 2]
                          [--configs plain,pacgan,pacgan2,pacgan4,r1,sn,mbstd,noise,smoothing,wgangp]
                          [--mlp-hidden 256,256] [--batch-size 64] [--lr 2e-4]

Each configuration trains an MLP GAN with `fastgan train` (CPU, one thread per run, no EMA: averaging the
weights of a generator that hops between modes puts its samples between them) and scores 2,000 samples
with `fastgan.metrics.mode_coverage`: modes captured (a mode counts when at least one sample lies within 3 std
of it, as the VEEGAN and PacGAN code count), the stricter count of PacGAN's sec. 5.1 (at least 0.8% of the
samples, 20 of 2,500), high-quality share (samples within 3 std of a centre), and KL(mode histogram || uniform).
ring8 is radius 1, std 0.01, as in the papers' code. Writes bench/results/modes-cpu-<date>-<steps>steps[-mlpWxW...].md with mean
and range over seeds. The defaults take about 75 minutes on 2 cores; at 2,000 steps no configuration has yet gathered its
samples onto the modes, so shorter runs rank nothing.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import torch

from bench.system import cpu_model, write_result

# Short key: (label, options).
CONFIGS = {
    "plain": ("plain (BCE, non-saturating)", []),
    "pacgan": ("PacGAN, pac=4, batch split into packs", ["--pac", "4"]),
    "pacgan2": ("PacGAN2 (batch_size packs of 2 fresh samples)", ["--pac", "2", "--pac-fresh"]),
    "pacgan4": ("PacGAN4 (batch_size packs of 4 fresh samples)", ["--pac", "4", "--pac-fresh"]),
    "r1": ("R1, gamma=0.1 (lazy, every 16)", ["--r1-gamma", "0.1"]),
    "sn": ("spectral norm", ["--spectral-norm"]),
    "mbstd": ("minibatch std", ["--mbstd"]),
    "noise": ("instance noise 0.1", ["--instance-noise", "0.1"]),
    "smoothing": ("label smoothing 0.1", ["--label-smoothing", "0.1"]),
    "wgangp": ("WGAN-GP, n_critic 5", ["--d-loss", "wgan", "--g-loss", "wgan", "--gp-weight", "0.1", "--n-critic",
                                       "5", "--beta1", "0", "--beta2", "0.9", "--lr-d", "1e-4", "--lr-g", "1e-4"]),
}
BASE = ["--model", "mlp", "--ema-decay", "0", "--threads", "1", "--no-progress", "--sample-every", "100000",
        "--ckpt-every", "100000", "--log-every", "1000"]


def run_one(dataset: str, name: str, extra: list[str], seed: int, steps: int, out: str) -> dict:
    from fastgan.data import load_toy
    from fastgan.metrics import mode_coverage
    from fastgan.metrics.modes import PACGAN_MIN_SHARE
    from fastgan.train import load_generator

    run = f"{dataset}-{abs(hash(name)) % 10**8}-{seed}"
    cmd = [sys.executable, "-m", "fastgan", "train", "--dataset", dataset, "--steps", str(steps), "--seed", str(seed),
           "--out-dir", out, "--name", run, *BASE, *extra]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    generator, config, _ = load_generator(os.path.join(out, run), ema=False)
    toy = load_toy(dataset)
    with torch.no_grad():
        z = torch.randn(2000, config.z_dim, generator=torch.Generator().manual_seed(1000 + seed))
        samples = generator(z)
    return mode_coverage(samples, toy.centers, toy.std, min_share=PACGAN_MIN_SHARE)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ring8,grid25")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {','.join(CONFIGS)}")
    parser.add_argument("--mlp-hidden", default="256,256", help="hidden widths of G and D (fastgan train's option)")
    parser.add_argument("--batch-size", type=int, default=64, help="VEEGAN's runs: 500")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of G and D (VEEGAN's runs: 1e-3)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    datasets, seeds = args.datasets.split(","), [int(s) for s in args.seeds.split(",")]
    keys = args.configs.split(",")
    unknown = [k for k in keys if k not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    shared = ["--mlp-hidden", args.mlp_hidden, "--batch-size", str(args.batch_size), "--lr-g", str(args.lr),
              "--lr-d", str(args.lr)]
    configs = {CONFIGS[k][0]: [*shared, *CONFIGS[k][1]] for k in keys}

    jobs = [(d, name, extra, s) for d in datasets for name, extra in configs.items() for s in seeds]
    with tempfile.TemporaryDirectory() as out, ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda j: run_one(*j, args.steps, out), jobs))

    lines = []
    for dataset in datasets:
        lines += [f"### {dataset}", "",
                  "| configuration | modes captured (mean; per seed) | modes with >= 0.8% of samples (mean) | "
                  "high-quality samples % (mean) | KL to uniform (mean) |",
                  "|---|---|---|---|---|"]
        for name in configs:
            rows = [r for j, r in zip(jobs, results) if j[0] == dataset and j[1] == name]
            modes = [r["modes"] for r in rows]
            hq = statistics.mean(100 * r["high_quality"] for r in rows)
            kls = [r["kl"] for r in rows if r["kl"] == r["kl"]]
            kl = f"{statistics.mean(kls):.2f}" if kls else "n/a"
            strict = statistics.mean(r["modes_min_share"] for r in rows)
            line = (f"| {name} | {statistics.mean(modes):.1f} / {rows[0]['num_modes']}; "
                    f"{', '.join(map(str, modes))} | {strict:.1f} | {hq:.1f} | {kl} |")
            lines.append(line)
            print(dataset, line)
        lines.append("")

    date = datetime.date.today().isoformat()
    command = "python -m bench.modes " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        "# Mode coverage of an MLP GAN on the 2D Gaussian mixtures",
        "",
        f"- date: {date}",
        f"- device: {cpu_model()} ({os.cpu_count()} cores), one torch thread per run",
        f"- command: `{command.strip()}`",
        f"- torch {torch.__version__}, python {platform.python_version()}",
        f"- every run: `fastgan train --dataset D --steps {args.steps} --seed S {' '.join(BASE)}` plus the options "
        f"below (MLP hidden widths {args.mlp_hidden}, batch {args.batch_size}, Adam {args.lr:g}, beta 0.5/0.999 unless "
        "stated); 2,000 "
        "samples of the final G (no EMA) scored by `fastgan.metrics.mode_coverage`; seeds " + ", ".join(map(str, seeds)),
        "",
        *[f"- {CONFIGS[k][0]}: `{' '.join(CONFIGS[k][1]) or '(defaults)'}`" for k in keys],
        "",
        *lines,
    ])
    widths = "" if args.mlp_hidden == parser.get_default("mlp_hidden") else "-mlp" + args.mlp_hidden.replace(",", "x")
    write_result(f"modes-cpu-{date}-{args.steps}steps{widths}.md", text)


if __name__ == "__main__":
    main()
