"""The `fastgan` command: one module per subcommand (train, sample, eval, prepare, bench), each with
`add_arguments(parser)` and `run(args)`. All argument parsing and printing of fastgan lives here."""
from __future__ import annotations

import argparse
import sys
import traceback

from . import bench, prepare, sample, train
from . import eval as eval_command
from .config_args import add_config_arguments, config_from_args

#: subcommand name -> its module, in the order --help lists them
COMMANDS = {"train": train, "sample": sample, "eval": eval_command, "prepare": prepare, "bench": bench}

__all__ = ["COMMANDS", "add_config_arguments", "build_parser", "config_from_args", "main", "version_text"]


def version_text() -> str:
    """fastgan's version and which implementation of each layer this process uses."""
    from .. import __version__
    from ..backend import describe as describe_fused
    from ..data.loader import describe as describe_loader

    return f"fastgan {__version__}\n{describe_fused()}\n{describe_loader()}"


class _Version(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            text = version_text()
        except (ValueError, ImportError) as e:  # a bad FASTGAN_BACKEND or FASTGAN_LOADER
            parser.exit(2, f"fastgan: error: {e}\n")
        print(text)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastgan", description="Fast, exact GAN training for PyTorch.")
    parser.add_argument("--version", action=_Version,
                        help="print the version and the implementation each layer uses (fused ops, data loader)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("fastgan: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"fastgan {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
