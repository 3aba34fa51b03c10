"""Command-line options generated from TrainConfig and the families' settings, so --help never drifts from the
dataclasses; shared by `fastgan train` and `fastgan bench`.

Every family's settings are options of the parser (a setting of another family is then an error naming the
families that take it, not an unknown option); --help lists the shared options and those of --model's family.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing

from ..train import FAMILIES, TrainConfig
from ..train.config import ALL_SETTINGS
from ..train.families import OPTIONAL_FIELDS

DEFAULT_MODEL = TrainConfig.__dataclass_fields__["model"].default


def _parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def _setting_groups() -> list[type]:
    """TrainConfig, then every family's settings dataclasses once, in --model order."""
    groups = [TrainConfig]
    for declared in FAMILIES.values():
        groups += [group for group in declared.settings if group not in groups]
    return groups


def _setting_fields() -> list[tuple[dataclasses.Field, object]]:
    """(field, its type) of every setting: the shared ones, then each family's."""
    return [(f, typing.get_type_hints(cls)[f.name]) for cls in _setting_groups() for f in dataclasses.fields(cls)]


#: option dest -> its help text, for the settings --help shows only for the families that take them
_FAMILY_HELP: dict[str, str] = {}


def _applies(dest: str, model: str) -> bool:
    declared = FAMILIES[model]
    if dest in ALL_SETTINGS:
        return model in ALL_SETTINGS[dest]
    return dest not in OPTIONAL_FIELDS or dest in declared.options


def show_settings_of(parser: argparse.ArgumentParser, model: str) -> None:
    """Let parser's --help list the shared options and the settings of `model`'s family."""
    for action in parser._actions:
        if action.dest in _FAMILY_HELP:
            action.help = _FAMILY_HELP[action.dest] if _applies(action.dest, model) else argparse.SUPPRESS
    others = ", ".join(name for name in FAMILIES if name != model)
    parser.epilog = (f"Shown: the options every model shares and those of --model {model}. Another model's: "
                     f"--model MODEL --help ({others}).")


class _ModelHelp(argparse.Action):
    """-h/--help: the shared options and those of the --model given before it."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0,
                         help="show the options every model shares and those of --model (given before --help), "
                              "then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        model = getattr(namespace, "model", DEFAULT_MODEL)
        show_settings_of(parser, model if model in FAMILIES else DEFAULT_MODEL)
        parser.print_help()
        parser.exit()


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per setting (shared and every family's), plus --config FILE.toml and a --help that follows
    --model."""
    parser.add_argument("-h", "--help", action=_ModelHelp)  # the parser is made without argparse's (OWN_HELP)
    parser.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file; options override it")
    for cls in _setting_groups():
        # A family's settings under their own heading (its dataclass's docstring), the shared ones under options.
        takers = [f.name for f in FAMILIES.values() if cls in f.settings]
        target = parser if cls is TrainConfig else parser.add_argument_group(
            f"{(cls.__doc__ or cls.__name__).splitlines()[0].rstrip('.')} ({', '.join(takers)})")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            _add_option(target, f, hints[f.name])
    show_settings_of(parser, DEFAULT_MODEL)


def _add_option(parser, f: dataclasses.Field, kind) -> None:
    flag = "--" + f.name.replace("_", "-")
    help_text = f.metadata["help"] + (f" (default: {_show(f.default)})" if f.default != "" else "")
    if f.name in ALL_SETTINGS or f.name in OPTIONAL_FIELDS:
        _FAMILY_HELP[f.name] = help_text
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
    """The TrainConfig of the options given (and of --config's file, which they override). A setting of another
    family than --model's is an error naming the families that take it."""
    names = {f.name for f, _ in _setting_fields()}
    given = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "config", None):
        return TrainConfig.from_toml(args.config, **given)
    return TrainConfig(**given)  # records which options were given (a resume refuses changed ones)
