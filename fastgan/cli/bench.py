"""fastgan bench: time training steps of a configuration (any model family)."""
from __future__ import annotations

from .config_args import add_config_arguments, config_from_args

HELP = "time training steps of a configuration (samples/s)"
OWN_HELP = True  # add_config_arguments adds a --help that follows --model
DESCRIPTION = "Time training steps of a configuration, any --model; takes every `train` option."


def add_arguments(parser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--iters", type=int, default=20, help="timed steps (default: 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first, absorbing compilation (default: 5)")


def run(args) -> None:
    from ..backend import backend
    from ..train.throughput import measure_step_throughput

    config = config_from_args(args)
    result = measure_step_throughput(config, iters=args.iters, warmup=args.warmup)
    print(f"model={config.model} backend={backend()} step={result['step_ms']:.1f} ms  "
          f"{result['img_per_s']:.1f} samples/s  (warm-up {result['warmup_s']:.1f} s)")
