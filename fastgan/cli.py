"""The `fastgan` command: train, sample, eval, prepare, bench."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from .train.config import TrainConfig


def _parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, generated from the dataclass so --help never drifts from it."""
    parser.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file; options override it")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        help_text = f.metadata["help"] + (f" (default: {_show(f.default)})" if f.default != "" else "")
        kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif kind == tuple[int, ...]:
            parser.add_argument(flag, type=_parse_ints, metavar="N,N,...", **kwargs)
        elif f.name == "amp":
            parser.add_argument(flag, choices=["none", *f.metadata["choices"]], **kwargs)
        else:
            base = {int: int, float: float, str: str}[kind]
            parser.add_argument(flag, type=base, choices=f.metadata["choices"], **kwargs)


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "config", None):
        return TrainConfig.from_toml(args.config, **given)
    return TrainConfig(**given)


def cmd_train(args) -> None:
    from .train import train

    import os

    run_dir = train(config_from_args(args))
    if os.environ.get("RANK", "0") == "0":
        samples = "samples.txt" if (run_dir / "samples.txt").exists() else "samples.png"
        print(f"run written to {run_dir}: {samples}, metrics.jsonl, checkpoint.pt")


def cmd_sample(args) -> None:
    """Images: a PNG grid at --out (toy 2D data: a scatter plot). Sequences (rgan, rvae): a PNG of line plots
    at --out and the values, float32 (N, T, F), in the .npy of the same name. Tokens (seqgan): the token
    ids as text, one sequence per line, at --out with the suffix .txt."""
    from pathlib import Path

    import numpy as np
    import torch

    from .data.toy import TOY_DATASETS, load_toy
    from .train import load_generator
    from .train.samples import save_image_grid, save_scatter, save_sequence_plots, save_token_text

    if args.n < 1:
        raise ValueError(f"--n must be >= 1; got {args.n}")
    generator, config, step = load_generator(args.ckpt, ema=not args.no_ema, device=args.device)
    out = Path(args.out)
    with torch.no_grad():
        if config.model == "seqgan":
            written = [out.with_suffix(".txt")]
            rng = torch.Generator(args.device).manual_seed(args.seed)
            save_token_text(generator.sample(args.n, config.seq_len, rng), written[0])
        else:
            # rgan's generator takes fresh noise at every time step; the other families one vector per sample.
            shape = (args.n, config.seq_len, config.z_dim) if config.model == "rgan" else (args.n, config.z_dim)
            z = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed)).to(args.device)
            samples = generator(z)
            written = [out]
            if config.model in ("rgan", "rvae"):
                save_sequence_plots(samples, out)
                written.append(out.with_suffix(".npy"))
                np.save(written[1], samples.float().cpu().numpy())
            elif config.dataset in TOY_DATASETS:
                save_scatter(samples, out, load_toy(config.dataset).centers)
            else:
                save_image_grid(samples, out)
    print(f"wrote {args.n} samples of step {step} to {' and '.join(map(str, written))}")


def cmd_bench(args) -> None:
    from .backend import backend
    from .train.throughput import measure_step_throughput

    result = measure_step_throughput(config_from_args(args), iters=args.iters, warmup=args.warmup)
    print(f"backend={backend()} step={result['step_ms']:.1f} ms  {result['img_per_s']:.1f} img/s  "
          f"(warm-up {result['warmup_s']:.1f} s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastgan", description="Fast, exact GAN training for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a GAN; writes runs/NAME/ (samples.png, metrics.jsonl, checkpoint.pt)",
                       description="Train a GAN. With no options: DCGAN on the built-in digits, on the CPU.")
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="write samples from a checkpoint: images, sequence plots or tokens",
                       description=cmd_sample.__doc__)
    p.add_argument("--ckpt", required=True, help="run directory or checkpoint file")
    p.add_argument("--n", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("--out", default="samples.png",
                   help="output PNG; sequences also write their values to this name with suffix .npy; seqgan's tokens go "
                        "to this name with suffix .txt (default: samples.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent noise (default: 0)")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator instead of its EMA")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("bench", help="time training steps of a configuration (images/s)",
                       description="Time training steps of a configuration; takes every `train` option.")
    add_config_arguments(p)
    p.add_argument("--iters", type=int, default=20, help="timed steps (default: 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first, absorbing compilation (default: 5)")
    p.set_defaults(func=cmd_bench)

    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub) -> None:
    from .data.prepare import add_prepare_arguments, run_prepare
    from .metrics.evaluate import add_eval_arguments, run_eval

    p = sub.add_parser("prepare", help="pack images (folder, zip, npz, MNIST, CIFAR-10, digits) into a .fgd file")
    add_prepare_arguments(p)
    p.set_defaults(func=run_prepare)

    p = sub.add_parser("eval", help="evaluate a checkpoint: FID, KID, IS, precision/recall, mode coverage")
    add_eval_arguments(p)
    p.set_defaults(func=run_eval)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("fastgan: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        print(f"fastgan {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
