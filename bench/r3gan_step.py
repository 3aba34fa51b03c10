"""R3GAN's training step in fastgan against the same networks trained the way R3GAN's code does it, in one run.

    python -m bench.r3gan_step [--device cpu] [--resolution 16] [--batch-size 32] [--rounds 5] [--iters 5]
                               [--threads 1] [--amp none|bf16]

Both sides build the same networks (fastgan.train.families.r3gan.build_r3gan, the preset of --resolution) from
the same seed and train on the built-in digits. The plain side is brownvc/R3GAN's step written out in plain
PyTorch (R3GAN/Trainer.py, training/training_loop.py): the cosine schedules set on Adam(lr, (0, beta2), eps
1e-8), D on the real and the generated batch in two forwards, R1 and R2 from two autograd.grad calls with
create_graph, F.softplus for RpGAN, then G on fresh noise and a real batch, then G's EMA; batches from a
shuffling torch DataLoader. fastgan's side is `fastgan train --model r3gan`'s
step (its trainer's train_step: fastgan.losses.r1_r2_penalty, the fused RpGAN loss and bias_act, EMA,
schedules, non-finite guard), and, apart, the same step without the penalties
(--r3gan-gamma 0 --r3gan-gamma-final 0: no double backward), which gives the regularised / unregularised
cost. The sides take turns over --rounds rounds of --iters timed steps (after --warmup untimed ones); the table
gives the median and range of ms/step and the ratios. Writes bench/results/r3gan-step-<device>-<date>.md.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import sys

import torch
import torch.nn.functional as F

from bench.system import step_cells, write_result
from bench.train_step import FastganStep, _time, device_name
from fastgan.backend import backend
from fastgan.data import load_image_dataset
from fastgan.train import TrainConfig
from fastgan.train.families.r3gan import build_r3gan, cosine_decay_with_warmup


class PlainR3GAN:
    """brownvc/R3GAN's step on fastgan's R3GAN networks: AdversarialTraining (R3GAN/Trainer.py) for the losses,
    and from training/training_loop.py the schedules set on Adam before each update and G's EMA after it."""

    def __init__(self, config: TrainConfig):
        torch.manual_seed(config.seed)
        images, _ = load_image_dataset(config.dataset, config.resolution)
        data = torch.from_numpy(images).float().div(127.5).sub(1)
        self.g, self.d = build_r3gan(config, tuple(data.shape[1:]))
        self.device = torch.device(config.device)
        self.g.to(self.device)
        self.d.to(self.device)
        self.opt_g = torch.optim.Adam(self.g.parameters(), config.lr_g, betas=(0.0, config.beta2), eps=1e-8)
        self.opt_d = torch.optim.Adam(self.d.parameters(), config.lr_d, betas=(0.0, config.beta2), eps=1e-8)
        self.loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), config.batch_size,
                                                  shuffle=True, drop_last=True)
        self.batch_size, self.z_dim = config.batch_size, config.z_dim
        self.batches = self._endless()
        self.config, self.nimg = config, 0
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False)

    def _endless(self):
        while True:
            for (x,) in self.loader:
                yield x.to(self.device)

    @staticmethod
    def penalty(samples, critics):
        (gradient,) = torch.autograd.grad(outputs=critics.sum(), inputs=samples, create_graph=True)
        return gradient.square().sum([1, 2, 3])

    def train_step(self) -> None:
        cfg, total = self.config, self.config.r3gan_decay_kimg * 1000
        lr = cosine_decay_with_warmup(self.nimg, cfg.lr_g, cfg.r3gan_lr_final, total)
        beta2 = cosine_decay_with_warmup(self.nimg, cfg.beta2, cfg.r3gan_beta2_final, total)
        gamma = cosine_decay_with_warmup(self.nimg, cfg.r3gan_gamma, cfg.r3gan_gamma_final, total)
        ema_nimg = cosine_decay_with_warmup(self.nimg, 0.0, total / 4, total)
        for opt in (self.opt_d, self.opt_g):
            for group in opt.param_groups:
                group["lr"], group["betas"] = lr, (0.0, beta2)
        # D (AccumulateDiscriminatorGradients)
        self.opt_d.zero_grad(set_to_none=True)
        real = next(self.batches).detach().requires_grad_(True)
        with torch.no_grad():
            fake = self.g(torch.randn(self.batch_size, self.z_dim, device=self.device))
        fake.requires_grad_(True)
        real_logits, fake_logits = self.d(real), self.d(fake)
        r1, r2 = self.penalty(real, real_logits), self.penalty(fake, fake_logits)
        loss = F.softplus(-(real_logits - fake_logits)) + (gamma / 2) * (r1 + r2)
        loss.mean().backward()
        self.opt_d.step()
        # G (AccumulateGeneratorGradients)
        self.opt_g.zero_grad(set_to_none=True)
        fake = self.g(torch.randn(self.batch_size, self.z_dim, device=self.device))
        real = next(self.batches)
        loss = F.softplus(-(self.d(fake) - self.d(real)))
        loss.mean().backward(inputs=list(self.g.parameters()))
        self.opt_g.step()
        # G's EMA (training_loop.py)
        beta = 0.5 ** (self.batch_size / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.g_ema.parameters(), self.g.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
        self.nimg += self.batch_size


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, default=16, choices=(8, 16, 32))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=5, help="timed steps per round and side")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads on every side (0: torch's default)")
    p.add_argument("--out", default=None, help="results folder (default: bench/results)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = dict(model="r3gan", resolution=args.resolution, batch_size=args.batch_size, device=args.device,
                progress=False, threads=args.threads)
    config = TrainConfig(**base)
    sides = {"plain R3GAN": PlainR3GAN(config), "fastgan": FastganStep(config),
             "fastgan, no penalties": FastganStep(TrainConfig(**base, r3gan_gamma=0.0, r3gan_gamma_final=0.0))}
    device = torch.device(args.device)
    for side in sides.values():
        _time(side, args.warmup, device)
    times = {name: [] for name in sides}
    names = list(sides)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(_time(sides[name], args.iters, device))
    date = datetime.datetime.now().strftime("%Y-%m-%d")
    lines = [
        f"# R3GAN step: fastgan vs R3GAN's code in plain PyTorch ({args.resolution} px digits, batch "
        f"{args.batch_size}, preset {'small16' if args.resolution <= 16 else 'small32'})",
        "",
        f"- device: {device_name(args.device)}",
        f"- date: {date}",
        f"- torch {torch.__version__}, python {platform.python_version()}, fastgan backend {backend()}",
        f"- command: `python -m bench.r3gan_step {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip(),
        f"- {args.rounds} rounds of {args.iters} steps per side, taking turns, after {args.warmup} warm-up steps",
        f"- load average (1 min) at the start: {os.getloadavg()[0]:.2f}",
        "",
        "| side | ms/step (median) | range over rounds | speed vs plain R3GAN (median of rounds) |",
        "|---|---:|---:|---:|",
    ]
    for name, ms in times.items():
        lines.append(f"| {name} | {step_cells(ms, times['plain R3GAN'])} |")
    cost = [a / b for a, b in zip(times["fastgan"], times["fastgan, no penalties"])]
    lines += ["", f"fastgan's step with R1 + R2 costs {statistics.median(cost):.2f}x its step without them "
                  f"(median of rounds; range {min(cost):.2f}-{max(cost):.2f})."]
    table = "\n".join(lines) + "\n"
    print(table)
    dev = "cuda" if args.device.startswith("cuda") else "cpu"
    write_result(f"r3gan-step-{dev}-{datetime.datetime.now().strftime('%Y-%m-%d-%H%M')}.md", table, args.out)


if __name__ == "__main__":
    main()
