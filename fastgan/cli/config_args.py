"""Command-line options generated from TrainConfig, so --help never drifts from the dataclass; shared by
`fastgan train` and `fastgan bench`."""
from __future__ import annotations

import argparse
import dataclasses
import typing

from ..train import TrainConfig


def _parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, plus --config FILE.toml."""
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
        elif kind == str | None:
            # An optional choice: "none" turns it off.
            parser.add_argument(flag, choices=["none", *f.metadata["choices"]], **kwargs)
        else:
            base = {int: int, float: float, str: str}[kind]
            parser.add_argument(flag, type=base, choices=f.metadata["choices"], **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "config", None):
        return TrainConfig.from_toml(args.config, **given)
    return TrainConfig.from_dict(given)  # records which options were given (a resume refuses changed ones)
