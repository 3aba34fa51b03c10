"""The `fastgan` command: one module per subcommand (train, sample, eval, plot, prepare, bench), each with
`add_arguments(parser)` and `run(args)`. All argument parsing and printing of fastgan lives here."""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import traceback
import warnings

from . import bench, plot, prepare, sample, train
from . import eval as eval_command
from .config_args import add_config_arguments, config_from_args

#: subcommand name -> its module, in the order --help lists them
COMMANDS = {"train": train, "sample": sample, "eval": eval_command, "plot": plot, "prepare": prepare, "bench": bench}

__all__ = ["COMMANDS", "add_config_arguments", "build_parser", "config_from_args", "describe_error", "main",
           "version_text"]


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


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a bad option or value is one line (`fastgan train: error: ...`) with a pointer to
    --help, not the usage text before it: the usage is long, and it hides the one line that matters."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastgan", description="Fast, exact GAN training for PyTorch.")
    parser.add_argument("--version", action=_Version,
                        help="print the version and the implementation each layer uses (fused ops, data loader)")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (as does the environment variable FASTGAN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        # A command with its own -h/--help (train, bench: one that follows --model) says so by OWN_HELP.
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                           add_help=not getattr(module, "OWN_HELP", False))
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def debug_requested(args: argparse.Namespace) -> bool:
    """--debug, or FASTGAN_DEBUG set to anything but empty or 0."""
    return args.debug or os.environ.get("FASTGAN_DEBUG", "") not in ("", "0")


#: errno values that mean the disk (or the user's share of it) is full
_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def describe_error(e: BaseException) -> tuple[int, str]:
    """(exit status, one line) for an error that ends a command: 2 for what the user can fix in the command, its
    files, its settings or its installation (ValueError, OSError, ImportError), 1 for a failure at run time (a run that diverged, anything
    unexpected, which the line says how to see in full)."""
    from ..train import NonFiniteError
    from ..train.base import DivergedError

    text = str(e)
    if isinstance(e, OSError):
        if e.filename is not None and e.strerror and not text.startswith(str(e.filename)):
            text = f"{e.filename}: {e.strerror}"
        elif e.strerror and text.startswith("[Errno"):
            text = text.split("] ", 1)[-1]
        if e.errno in _FULL:
            text += " (the disk is full: free some space and run again)"
    text = " ".join(text.split("\n")).strip()
    if isinstance(e, (NonFiniteError, DivergedError)):
        return 1, text
    if isinstance(e, (ValueError, OSError, ImportError)):
        return 2, text
    return 1, f"{type(e).__name__}: {text} (unexpected; FASTGAN_DEBUG=1 or --debug shows where it happened)"


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Warnings printed as `fastgan COMMAND: warning: MESSAGE`, one line each, where Python's format adds the file,
    line and source of the warn() call. Only the format changes, so whoever records warnings still gets them."""
    def one_line(message, category, filename, lineno, line=None):
        return f"fastgan {command}: warning: {' '.join(str(message).split())}\n"

    saved, warnings.formatwarning = warnings.formatwarning, one_line
    try:
        yield
    finally:
        warnings.formatwarning = saved


def main(argv: list[str] | None = None) -> int:
    """Run a fastgan command. Errors end in one line on stderr and exit status 2 (bad option, file, setting,
    device, full disk) or 1 (a run that stopped at run time); --debug or FASTGAN_DEBUG=1 prints the
    traceback first."""
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "config", None):  # a FIFO would block the TOML reader; refused before anything runs
            from ..atomic import require_regular_file

            require_regular_file(args.config, "--config file")
        with _one_line_warnings(args.command):
            args.run(args)
    except KeyboardInterrupt:
        print("fastgan: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug_requested(args):
            traceback.print_exc()
        status, text = describe_error(e)
        print(f"fastgan {args.command}: error: {text}", file=sys.stderr)
        return status
    return 0
