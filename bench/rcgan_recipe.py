"""RCGAN trained the way its authors' code trains it, on TimeGAN's sines, scored with TimeGAN's two scores.

    python -m bench.rcgan_recipe [--g-steps 3000] [--d-rounds 5] [--d-optimizer sgd|adam] [--lr-d 0.1]
                                 [--lr-g 1e-3] [--beta1 0.9] [--hidden 100] [--noise-dim 5] [--batch-size 28]
                                 [--out-act tanh|sigmoid] [--authors-init | --no-authors-init] [--seed 0]
                                 [--repeats 3] [--out bench/results]

fastgan's `rgan` family trains RCGAN's networks (one LSTM in G and in D, a logit per step) with the trainer's
Adam for both networks and one D update per G update. ratschlab/RGAN's code (model.py: GAN_loss, GAN_solvers,
generator, discriminator; experiment.py's train_epoch) trains them differently, and this script replays that:

- D: plain gradient descent at learning rate 0.1 (`tf.train.GradientDescentOptimizer`), `D_rounds` = 5 updates,
  each on a fresh real batch and fresh noise, before each G update; G: Adam at TensorFlow's defaults (1e-3, 0.9);
- 100 hidden units in each LSTM, 5 noise numbers per step drawn from N(0, 1), batch 28, G's output tanh;
- with --authors-init (the default), the output layers of G and D start from a truncated N(0, 1) (weights and
  bias) and G's LSTM biases at 1.0, as the authors' variables are initialised; PyTorch's own initialisation
  otherwise.

It exists to tell whether fastgan's RGAN falls short of the published RCGAN score on these sines (0.022
discriminative, in TimeGAN's table) because of how fastgan trains RCGAN's networks. Each G step's D accuracy
on its last batch is logged every tenth of the run. After training, 10,000 generated sequences are scored
against the 10,000 training sequences with fastgan.metrics' discriminative and predictive scores (--repeats
repeats, seed 0), as docs/results.md's rows are. Writes bench/results/rcgan-recipe-cpu-<date>-<HHMM>.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

from bench.system import cpu_model, write_result

COMMAND = "python -m bench.rcgan_recipe"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--g-steps", type=int, default=3000, help="G updates (each after --d-rounds D updates)")
    p.add_argument("--d-rounds", type=int, default=5, help="D updates per G update (RCGAN: 5)")
    p.add_argument("--d-optimizer", choices=("sgd", "adam"), default="sgd", help="D's optimizer (RCGAN: sgd)")
    p.add_argument("--lr-d", type=float, default=0.1, help="D's learning rate (RCGAN: 0.1)")
    p.add_argument("--lr-g", type=float, default=1e-3, help="G's Adam learning rate (RCGAN: TensorFlow's 1e-3)")
    p.add_argument("--beta1", type=float, default=0.9, help="Adam beta1 of G (and of D with adam)")
    p.add_argument("--hidden", type=int, default=100, help="LSTM units of G and of D (RCGAN: 100)")
    p.add_argument("--noise-dim", type=int, default=5, help="noise numbers per step (RCGAN: 5)")
    p.add_argument("--batch-size", type=int, default=28, help="RCGAN: 28")
    p.add_argument("--out-act", choices=("tanh", "sigmoid"), default="tanh", help="G's output (RCGAN: tanh)")
    p.add_argument("--authors-init", action=argparse.BooleanOptionalAction, default=True,
                   help="RCGAN's initialisation of the output layers and of G's LSTM biases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="repeats of each score")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = p.parse_args(argv)
    for name in ("g_steps", "d_rounds", "hidden", "noise_dim", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _authors_init(generator: nn.Module, discriminator: nn.Module) -> None:
    for layer in (generator.out, discriminator.out):
        nn.init.trunc_normal_(layer.weight, 0.0, 1.0, -2.0, 2.0)
        nn.init.trunc_normal_(layer.bias, 0.0, 1.0, -2.0, 2.0)
    with torch.no_grad():  # TensorFlow's LSTMCell has one bias per gate, started at bias_start = 1.0
        generator.lstm.bias_ih_l0.fill_(1.0)
        generator.lstm.bias_hh_l0.zero_()


def train_and_score(args) -> tuple[list[tuple], dict]:
    from fastgan.data import timegan_sines
    from fastgan.metrics.timeseries import discriminative_score, predictive_score
    from fastgan.models import RCGANDiscriminator, RCGANGenerator

    torch.manual_seed(args.seed)
    data = torch.from_numpy(timegan_sines(seed=0))
    n, steps, features = data.shape
    G = RCGANGenerator(features, args.noise_dim, args.hidden, 1, out_act=args.out_act)
    D = RCGANDiscriminator(features, args.hidden, 1)
    if args.authors_init:
        _authors_init(G, D)
    if args.d_optimizer == "sgd":
        opt_d = torch.optim.SGD(D.parameters(), args.lr_d)
    else:
        opt_d = torch.optim.Adam(D.parameters(), args.lr_d, (args.beta1, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), args.lr_g, (args.beta1, 0.999))
    order, at = torch.randperm(n), 0

    def real_batch():
        nonlocal order, at
        if at + args.batch_size > n:
            order, at = torch.randperm(n), 0
        at += args.batch_size
        return data[order[at - args.batch_size:at]]

    def noise(count):
        return torch.randn(count, steps, args.noise_dim)

    log, start = [], time.perf_counter()
    for step in range(1, args.g_steps + 1):
        for _ in range(args.d_rounds):
            real_logits, fake_logits = D(real_batch()), D(G(noise(args.batch_size)).detach())
            d_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        g_loss = F.softplus(-D(G(noise(args.batch_size)))).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if step % max(1, args.g_steps // 10) == 0:
            accuracy = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()).item()
            log.append((step, d_loss.item(), g_loss.item(), accuracy))
            print(f"step {step}: d_loss {d_loss.item():.3f}, g_loss {g_loss.item():.3f}, "
                  f"D accuracy {accuracy:.3f}", flush=True)
    train_s = time.perf_counter() - start
    with torch.no_grad():
        fake = torch.cat([G(noise(1000)) for _ in range(n // 1000)])
    scores = {"train_s": train_s,
              "discriminative": discriminative_score(data, fake, repeats=args.repeats, seed=0),
              "predictive": predictive_score(data, fake, repeats=args.repeats, seed=0),
              "range": (fake.min().item(), fake.max().item()),
              "step_std": (fake.diff(dim=1).std().item(), data.diff(dim=1).std().item())}
    return log, scores


def report(args, log, scores, load: tuple[float, float], argv: list[str]) -> str:
    now = datetime.datetime.now()
    d, p = scores["discriminative"], scores["predictive"]
    lines = [f"# RCGAN as its authors' code trains it, TimeGAN's sines, CPU, {now:%Y-%m-%d}", "",
             f"- command: `{COMMAND} {' '.join(argv)}`",
             f"- device: {cpu_model()}, {torch.get_num_threads()} thread(s)",
             f"- date: {now:%Y-%m-%d %H:%M}",
             f"- versions: python {platform.python_version()}, torch {torch.__version__}",
             f"- load average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f}",
             f"- settings: {vars(args)}", "",
             "| G step | d_loss | g_loss | D accuracy on its last batch |", "|---:|---:|---:|---:|",
             *[f"| {s} | {dl:.3f} | {gl:.3f} | {a:.3f} |" for s, dl, gl, a in log], "",
             f"- training: {scores['train_s']:.0f} s",
             f"- discriminative score: {d[0]:.3f} +- {d[1]:.3f} (over {args.repeats} repeats)",
             f"- predictive score: {p[0]:.3f} +- {p[1]:.3f}",
             f"- generated values in [{scores['range'][0]:.3f}, {scores['range'][1]:.3f}] (data: [0.5, 1])",
             f"- std of the step-to-step difference: {scores['step_std'][0]:.4f} (data: {scores['step_std'][1]:.4f})",
             ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(1)
    before = os.getloadavg()[0]
    log, scores = train_and_score(args)
    text = report(args, log, scores, (before, os.getloadavg()[0]), argv)
    print(text)
    write_result(f"rcgan-recipe-cpu-{datetime.datetime.now():%Y-%m-%d-%H%M}.md", text, args.out)


if __name__ == "__main__":
    main()
