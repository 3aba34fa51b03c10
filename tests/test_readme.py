"""README's copy of `fastgan train --help` is the parser's own text, so that the front door cannot fall behind
the options (regenerate it with `COLUMNS=100 fastgan train --help`)."""
from __future__ import annotations

import re
from pathlib import Path

from fastgan.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(command: str) -> str:
    """The text that follows `$ COMMAND` in a fenced block of README, up to the fence's end."""
    match = re.search(rf"^\$ {re.escape(command)}\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert match, f"README has no block starting with '$ {command}'"
    return match.group(1)


def subcommand_help(name: str) -> str:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return subparsers.choices[name].format_help()


def test_readme_train_help_is_the_parsers(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width
    assert readme_block("fastgan train --help") == subcommand_help("train"), (
        "README's `fastgan train --help` is stale: regenerate it with `COLUMNS=100 fastgan train --help`")
