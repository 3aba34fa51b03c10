"""fastgan's training step against the plain PyTorch loop a user would write, in the same run.

    python -m bench.train_step [--device cpu] [--models dcgan16,dcgan32,dcgan64,mlp] [--rounds 5] [--iters 10]
                               [--compile] [--threads N]

The baseline is pytorch/examples' dcgan/main.py written for the same networks: nn.ConvTranspose2d +
BatchNorm2d + ReLU (G), Conv2d + BatchNorm2d + LeakyReLU(0.2) (D), the same widths, N(0, 0.02) init,
F.binary_cross_entropy_with_logits, Adam(2e-4, (0.5, 0.999)), D on real then on detached fake, G on fresh
D outputs, batches from a shuffling torch DataLoader over the same images in [-1, 1]. fastgan's step is
`fastgan train`'s (its trainer's train_step: loader, fused ops, non-finite guard, EMA). The two take turns
over --rounds rounds of --iters timed steps each (after --warmup untimed steps), so drift and noise from
other processes fall on both; the table gives the median and the range of the per-round ms/step and the
speed ratio plain_ms / fastgan_ms (above 1: fastgan is faster). Writes the table, with device, date,
versions and command, to bench/results/train-step-<device>-<date>.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from bench.system import cpu_model, step_cells, write_result
from fastgan.backend import backend
from fastgan.data import load_image_dataset
from fastgan.train import TrainConfig, base, make_trainer

# name -> (TrainConfig overrides): the configurations both sides train
MODELS = {
    "dcgan16": dict(model="dcgan", resolution=16),
    "dcgan32": dict(model="dcgan", resolution=32),
    "dcgan64": dict(model="dcgan", resolution=64),
    "mlp": dict(model="mlp", resolution=16),
}


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def plain_dcgan(z_dim: int, resolution: int, channels: int, width: int) -> tuple[nn.Module, nn.Module]:
    """pytorch/examples' netG / netD at fastgan's DCGAN widths (the same parameters, in torch's own layers)."""
    n = {16: 2, 32: 3, 64: 4}[resolution]
    g_widths = [width * 2 ** (n - 1 - i) for i in range(n)]
    g = [nn.Unflatten(1, (z_dim, 1, 1)), nn.ConvTranspose2d(z_dim, g_widths[0], 4, 1, 0, bias=False),
         nn.BatchNorm2d(g_widths[0]), nn.ReLU(True)]
    for w_in, w_out in zip(g_widths, g_widths[1:]):
        g += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU(True)]
    g += [nn.ConvTranspose2d(g_widths[-1], channels, 4, 2, 1), nn.Tanh()]
    d_widths = [width * 2 ** i for i in range(n)]
    d = [nn.Conv2d(channels, d_widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
    for w_in, w_out in zip(d_widths, d_widths[1:]):
        d += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.LeakyReLU(0.2, True)]
    d += [nn.Conv2d(d_widths[-1], 1, 4, 1, 0), nn.Flatten(0)]
    generator, discriminator = nn.Sequential(*g), nn.Sequential(*d)
    _init(generator)
    _init(discriminator)
    return generator, discriminator


def plain_mlp(z_dim: int, shape: tuple[int, ...], hidden: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    size = 1
    for s in shape:
        size *= s
    g, width = [], z_dim
    for h in hidden:
        g += [nn.Linear(width, h), nn.ReLU()]
        width = h
    g += [nn.Linear(width, size), nn.Tanh(), nn.Unflatten(1, shape)]
    d, width = [nn.Flatten()], size
    for h in hidden:
        d += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
        width = h
    d += [nn.Linear(width, 1), nn.Flatten(0)]
    return nn.Sequential(*g), nn.Sequential(*d)


class PlainLoop:
    """pytorch/examples' dcgan/main.py step, with logits and F.binary_cross_entropy_with_logits."""

    def __init__(self, config: TrainConfig):
        torch.manual_seed(config.seed)
        images, _ = load_image_dataset(config.dataset, config.resolution)
        data = torch.from_numpy(images).float().div(127.5).sub(1)
        shape = tuple(data.shape[1:])
        if config.model == "dcgan":
            self.g, self.d = plain_dcgan(config.z_dim, config.resolution, shape[0], config.g_width)
        else:
            self.g, self.d = plain_mlp(config.z_dim, shape, config.mlp_hidden)
        self.device = torch.device(config.device)
        self.g.to(self.device)
        self.d.to(self.device)
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.g.parameters(), config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), config.lr_d, betas=betas)
        self.loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), config.batch_size,
                                                  shuffle=True, drop_last=True)
        self.batch_size, self.z_dim = config.batch_size, config.z_dim
        self.batches = self._endless()

    def _endless(self):
        while True:
            for (x,) in self.loader:
                yield x.to(self.device)

    def train_step(self) -> None:
        real = next(self.batches)
        ones = torch.ones(self.batch_size, device=self.device)
        zeros = torch.zeros(self.batch_size, device=self.device)
        self.d.zero_grad()
        F.binary_cross_entropy_with_logits(self.d(real), ones).backward()
        fake = self.g(torch.randn(self.batch_size, self.z_dim, device=self.device))
        F.binary_cross_entropy_with_logits(self.d(fake.detach()), zeros).backward()
        self.opt_d.step()
        self.g.zero_grad()
        F.binary_cross_entropy_with_logits(self.d(fake), ones).backward()
        self.opt_g.step()


class FastganStep:
    def __init__(self, config: TrainConfig):
        self.trainer = make_trainer(config)
        self.batches = self.trainer.real_batches()

    def train_step(self) -> None:
        self.trainer.train_step(self.batches)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step, iters: int, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step.train_step()
    _sync(device)
    return (time.perf_counter() - t0) / iters * 1e3


def compare(config: TrainConfig, rounds: int, iters: int, warmup: int, compiled: bool) -> dict[str, list[float]]:
    """Per-round ms/step of each side, taking turns (the order alternates between rounds)."""
    device = torch.device(config.device)
    sides = {"plain": PlainLoop(config), "fastgan": FastganStep(config)}
    if compiled:
        # Compiled even where `fastgan train --compile` trains eagerly because compiling does not pay: this
        # measures that.
        base.COMPILE_PAYS_ON = (*base.COMPILE_PAYS_ON, device.type)
        sides["fastgan compile"] = FastganStep(TrainConfig(**{**config.to_dict(), "compile": True}))
    for side in sides.values():
        _time(side, warmup, device)
    times = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(_time(sides[name], iters, device))
    return times


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {','.join(MODELS)}")
    p.add_argument("--width", type=int, default=32, help="DCGAN width of G's last and D's first block")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=10, help="timed steps per round and side")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time fastgan with --compile")
    p.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0: torch's default)")
    p.add_argument("--out", default=None, help="results folder (default: bench/results)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        p.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")

    date = datetime.datetime.now().strftime("%Y-%m-%d")
    lines = [
        f"# Training step: fastgan vs the plain PyTorch loop (batch {args.batch_size}, DCGAN width {args.width})",
        "",
        f"- device: {device_name(args.device)}",
        f"- date: {date}",
        f"- torch {torch.__version__}, python {platform.python_version()}, fastgan backend {backend()}",
        f"- command: `python -m bench.train_step {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip(),
        f"- {args.rounds} rounds of {args.iters} steps per side, taking turns, after {args.warmup} warm-up steps",
        f"- load average (1 min) at the start: {os.getloadavg()[0]:.2f}",
        "",
        "| model | side | ms/step (median) | range over rounds | speed vs plain (median of rounds) |",
        "|---|---|---:|---:|---:|",
    ]
    for name in names:
        widths = {} if MODELS[name]["model"] == "mlp" else dict(g_width=args.width, d_width=args.width)
        config = TrainConfig(**MODELS[name], **widths, batch_size=args.batch_size, device=args.device,
                             progress=False, threads=args.threads)
        times = compare(config, args.rounds, args.iters, args.warmup, args.compile)
        for side, ms in times.items():
            lines.append(f"| {name} | {side} | {step_cells(ms, times['plain'])} |")
        print("\n".join(lines[-len(times):]), flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    dev = "cuda" if args.device.startswith("cuda") else "cpu"
    write_result(f"train-step-{dev}-{datetime.datetime.now().strftime('%Y-%m-%d-%H%M')}.md", table, args.out)


if __name__ == "__main__":
    main()
