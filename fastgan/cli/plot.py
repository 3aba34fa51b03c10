"""fastgan plot: the training curves of one or more runs on one figure."""
from __future__ import annotations

from pathlib import Path

HELP = "draw the training curves of one or more runs on one figure (needs matplotlib)"
DESCRIPTION = ("Reads each run's metrics.jsonl and draws, one panel each, the smoothed D and G losses, the mean real "
               "and fake logits, every other logged number and every evaluation metric over steps, one colour per "
               "run: the curves.png a run writes at each checkpoint, for several runs at once. Needs matplotlib "
               "(pip install 'fastgan[plot]').")


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directory, or its metrics.jsonl")
    parser.add_argument("--out", default="curves.png",
                        help="output PNG; an existing PNG is replaced, anything else needs --force (default: "
                             "curves.png)")
    parser.add_argument("--force", action="store_true", help="replace --out even if it is not a PNG image")


def is_png(head: bytes) -> bool:
    """Whether a file starting with `head` is a PNG image (its 8-byte signature)."""
    return head.startswith(b"\x89PNG\r\n\x1a\n")


def _log_of(run: str) -> Path:
    path = Path(run)
    log = path / "metrics.jsonl" if path.is_dir() else path
    if not log.is_file():
        raise FileNotFoundError(f"{run}: no metrics.jsonl there (pass a run directory or its metrics.jsonl)")
    return log


def run(args) -> None:
    from ..train.curves import draw_curves
    from ..train.loop import read_log

    from ..atomic import check_replaceable

    logs = [_log_of(run) for run in args.runs]
    check_replaceable(args.out, "a PNG image", is_png, inputs=logs, force=args.force)
    labels = [log.parent.name for log in logs]
    if len(set(labels)) < len(labels):  # runs of the same name in different folders
        labels = [str(log.parent) for log in logs]
    out = draw_curves({label: read_log(log) for label, log in zip(labels, logs)}, args.out)
    print(f"wrote the curves of {len(logs)} run{'s' if len(logs) > 1 else ''} to {out}")
