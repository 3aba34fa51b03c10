"""fastgan train: train a model as the options (or a TOML file) say; writes a run directory."""
from __future__ import annotations

import os

from .config_args import add_config_arguments, config_from_args

HELP = "train a model; writes runs/NAME/ (samples, metrics.jsonl, checkpoint.pt)"
OWN_HELP = True  # add_config_arguments adds a --help that follows --model
DESCRIPTION = "Train a model. With no options: DCGAN on the built-in digits, on the CPU."


def add_arguments(parser) -> None:
    add_config_arguments(parser)


def run(args) -> None:
    from ..train import train

    run_dir = train(config_from_args(args))
    if os.environ.get("RANK", "0") == "0":
        samples = "samples.txt" if (run_dir / "samples.txt").exists() else "samples.png"
        print(f"run written to {run_dir}: {samples}, metrics.jsonl, checkpoint.pt")
