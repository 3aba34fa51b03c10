"""The README's and docs' figures, rendered from bench/results files, so that no published number is typed by hand.

    python -m bench.render_docs                # rewrite every rendered block of README.md and docs/*.md
    python -m bench.render_docs --check        # exit 1 naming each block that differs from what it renders
    python -m bench.render_docs --default-run  # run the default `fastgan train` and `fastgan eval`, write
                                               # bench/results/default-run-cpu-DATE-HHMM.md (then pin it below)

A rendered block sits between `<!-- begin: KEY ... -->` and `<!-- end: KEY -->` in a page; everything between the
markers is this script's output and is overwritten. KEY names what is rendered: a figure or table from a pinned
results file (`headline`, `default-run`, `results:step`, ...), a command's `--help` (`help:train`, ...) or a list
from the code (`resumable`). tests/test_readme.py runs the --check, so a page that differs from its results files
or from the parsers fails the tests.

PINNED is the one place that says which results file each figure comes from. To cite a newer run of a benchmark,
change its file name there and run `python -m bench.render_docs`, or do both in one command:

    python -m bench.render_docs --pin ops=eager-ops-cpu-DATE-HHMM.md loader=loader-cpu-DATE-HHMMSS.md fid=fid-...md
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# Which results file each published figure comes from (file names in bench/results/).
PINNED = {
    "step": "train-step-cpu-2026-12-08-0154.md",        # python -m bench.train_step
    "ops": "eager-ops-cpu-2026-12-08-0118.md",          # python -m bench.eager_ops
    "loader": "loader-cpu-2026-12-08-003754.md",  # python -m bench.loader
    "fid": "fid-cpu-2026-11-23.md",                     # python -m bench.fid
    "fid-extract": "fid-cpu-2026-12-08-0006.md",  # bench.fid --part extract (when "fid" has none)
    "default-run": "default-run-cpu-2026-12-08-0113.md",  # python -m bench.render_docs --default-run
    "default-run-1thread": "default-run-cpu-2026-12-08-0114.md",  # ... --default-run --threads 1
    "r3gan": "r3gan-step-cpu-2026-12-07-2240.md",       # python -m bench.r3gan_step
    "ddp": "ddp-cpu-2026-11-23.md",                     # python -m bench.ddp
    "kernels-cpu": "kernels-cpu-2026-11-23.md",         # python -m bench.kernels (CPU mode)
    "compile-cpu": "train-step-cpu-2026-12-03-1417.md",  # python -m bench.train_step --compile
}

PAGES = ("README.md", "CONTRIBUTING.md", "docs/*.md")
BLOCK = re.compile(r"(<!-- begin: (?P<key>[\w:-]+)[^>]*-->\n)(?P<body>.*?)(<!-- end: (?P=key) -->)", re.S)
HELP_COLUMNS = "100"  # argparse wraps --help to the terminal's width; the pages show it at 100 columns


# ---------------------------------------------------------------------------------------------------------------
# Reading a results file

def results_text(key: str) -> str:
    path = RESULTS / PINNED[key]
    if not path.is_file():
        raise SystemExit(f"render_docs: PINNED[{key!r}] names bench/results/{PINNED[key]}, which does not exist: "
                         f"pin a file that is in bench/results/")
    return path.read_text()


def link(key: str, prefix: str = "") -> str:
    """A markdown link to the pinned file of `key`, relative to a page in `prefix` ('' for the root, '../' for
    docs/)."""
    return f"[`{PINNED[key]}`]({prefix}bench/results/{PINNED[key]})"


def tables(text: str) -> list[tuple[str, list[dict[str, str]]]]:
    """Every markdown table of `text` as (the heading above it, its rows as dicts keyed by the header's cells)."""
    found, heading, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip()):
            header = [c.strip() for c in line.strip().strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                rows.append(dict(zip(header, cells)))
                i += 1
            found.append((heading, rows))
            continue
        i += 1
    return found


def column(row: dict[str, str], starts: str, key: str) -> str:
    """The cell of the first column whose name starts with `starts`."""
    for name, value in row.items():
        if name.startswith(starts):
            return value
    raise SystemExit(f"render_docs: {PINNED[key]}: no column starting with {starts!r} (columns: {list(row)}); "
                     f"adapt bench/render_docs.py to the new format or pin another file")


def meta(text: str, name: str) -> str:
    """The value of a `- name: value` line of a results file's header ('' if absent)."""
    match = re.search(rf"^- {re.escape(name)}[^:\n]*: (.*)$", text, re.M)
    return match.group(1).strip() if match else ""


def when(key: str) -> str:
    """The date (and time, where the name has it) in a results file's name."""
    match = re.search(r"(\d{4}-\d{2}-\d{2})(?:-(\d{2})(\d{2})(?:\d\d)?\b)?", PINNED[key])
    if not match:
        raise SystemExit(f"render_docs: {PINNED[key]}: no date in the file name")
    return match.group(1) + (f" {match.group(2)}:{match.group(3)}" if match.group(2) else "")


def machine(key: str) -> str:
    """The CPU a results file was measured on, short: 'Intel Xeon' or 'AMD EPYC'."""
    device = meta(results_text(key), "device") or results_text(key)
    for name in ("Intel", "AMD EPYC", "NVIDIA"):
        if name in device:
            return "Intel Xeon" if name == "Intel" else name
    return device.split(";")[0]


# ---------------------------------------------------------------------------------------------------------------
# Figures

def step_summary(key: str = "step") -> str:
    """'DCGAN-16 18.5 vs 21.8 ms (1.21x, rounds 1.15-1.26), ...' from a bench.train_step file."""
    (_, rows), *_ = tables(results_text(key))
    by_model: dict[str, dict[str, dict[str, str]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["side"]] = row
    parts = []
    for model, sides in by_model.items():
        mine, plain = sides["fastgan"], sides["plain"]
        speed = column(mine, "speed vs plain", key)
        median, spread = re.match(r"([\d.]+x) \(([\d.]+-[\d.]+)\)", speed).groups()
        name = model.upper().replace("DCGAN", "DCGAN-") if model.startswith("dcgan") else model.upper()
        parts.append(f"{name} {column(mine, 'ms/step', key)} vs {column(plain, 'ms/step', key)} ms "
                     f"({median}, rounds {spread})")
    return ", ".join(parts)


def threads(key: str) -> str:
    device = meta(results_text(key), "device")
    match = re.search(r"(\d+) thread", device) or re.search(r"threads (\d+)", device)
    return f"{match.group(1)} thread{'s' if match.group(1) != '1' else ''}" if match else ""


def leading(value: str) -> float:
    """The number a cell starts with ('1,195,728', '1.23x', '1.23 (1.10-1.30)')."""
    match = re.match(r"[\d,]*\.?\d+", value.strip())
    if not match:
        raise ValueError(f"no number in {value!r}")
    return float(match.group(0).replace(",", ""))


def ops_ranges(key: str = "ops") -> tuple[str, int, int]:
    """Per op, the min-max of the fwd+bwd ratio (median of rounds) over its sizes; and how many rows of how many
    are below 1. Rows without a fwd+bwd measurement ('-') are left out."""
    (_, rows), *_ = tables(results_text(key))
    spans: dict[str, list[float]] = {}
    bce_paths = set()
    for row in rows:
        cell = column(row, "fwd+bwd ratio", key)
        if cell.strip() != "-":  # the BCE drop-in's call paths (bce_weight, bce_float64, ...) as one entry
            op = "bce_with_logits" if row["op"].startswith("bce") else row["op"]
            bce_paths |= {row["op"]} if op == "bce_with_logits" else set()
            spans.setdefault(op, []).append(leading(cell))
    below = sum(value < 1.0 for values in spans.values() for value in values)
    total = sum(len(values) for values in spans.values())
    paths = len(bce_paths)
    text = ", ".join(f"{op}{f' (its {paths} call paths)' if op == 'bce_with_logits' and paths > 1 else ''} "
                     f"{min(v):.2f}-{max(v):.2f}x" for op, v in spans.items())
    return text, below, total


def loader_summary(key: str = "loader") -> str:
    """Per image size: fastgan's C++ loader against the fastest torch DataLoader row, in the file's images/s
    column (the best round in the files of November, the median of rounds since)."""
    text = results_text(key)
    # Since December the file states the ratio itself, per round: its median and spread are what it reports.
    stated = re.findall(r"^- fastgan C\+\+ at (\d+) px: ([\d,]+) img/s.*?; ([\d.]+) \(([\d.]+-[\d.]+)\)x the fastest "
                        r"torch DataLoader row", text, re.M)
    if stated:
        return "; ".join(f"{px} px: {rate} img/s, {ratio}x the fastest DataLoader row (median of rounds; "
                         f"rounds {spread})" for px, rate, ratio, spread in stated)
    parts = []
    for heading, rows in tables(text):
        name = next(iter(rows[0]))  # 'loader' or 'contender'
        rate = next(k for k in rows[0] if k.startswith("images/s"))
        ours = next(r for r in rows if r[name].startswith("fastgan C++"))
        theirs = max((r for r in rows if r[name].startswith("torch")), key=lambda r: leading(r[rate]))
        a, b = leading(ours[rate]), leading(theirs[rate])
        which = "best round" if "best" in rate else "median of rounds"
        parts.append(f"{heading.split(':')[0]}: {a:,.0f} vs {b:,.0f} img/s ({a / b:.1f}x; {which})")
    return "; ".join(parts)


def fid_summary(key: str = "fid") -> str:
    """Each table of a bench.fid file (feature extraction, the Fréchet distance): fastgan's time against the
    other row's, and the file's speed-up line for it."""
    text = results_text(key)
    speedups = re.findall(r"^speed-up: \*\*([^*]+)\*\*", text, re.M)
    agree = re.search(r"relative difference of the two FIDs: (\S+)", text)
    parts = []
    for (heading, rows), speedup in zip(tables(text), speedups):
        first = next(iter(rows[0]))
        seconds = next(k for k in rows[0] if k.startswith("median s"))
        rows = sorted(rows, key=lambda r: "fastgan" not in r[first])
        times = " vs ".join(f"{re.sub(r' [(].*', '', r[first])} {r[seconds]} s" for r in rows)
        batch = re.search(r"batches of (\d+) images", heading)
        unit = (f" a batch of {batch.group(1)} images" if batch else " a batch") if "batch" in seconds else ""
        parts.append(f"{heading.split(':')[0].split(',')[0]}: {times}{unit} ({speedup})")
    return "; ".join(parts) + (f"; FIDs agree to {agree.group(1)}" if agree else "")


def default_run(key: str = "default-run") -> dict[str, str]:
    """Wall time, FID, machine and the console block of the pinned default run."""
    text = results_text(key)
    console = re.search(r"^```console\n(.*?)^```", text, re.S | re.M)
    load = re.match(r"[\d.]+ / [\d.]+", meta(text, "load average"))
    samples = re.match(r"docs/images/\S+\.png", meta(text, "samples"))
    return dict(wall=meta(text, "wall time"), fid=meta(text, "digits-FID"), load=load.group(0) if load else "?",
                console=console.group(1) if console else "", samples=samples.group(0) if samples else "")


# ---------------------------------------------------------------------------------------------------------------
# Blocks

def block_headline(prefix: str = "") -> str:
    ops, below, total = ops_ranges()
    run = default_run()
    rows = [
        ("training step, `python -m bench.train_step`",
         f"`fastgan train`'s step vs pytorch/examples' plain loop, batch 64, {threads('step')}: {step_summary()}",
         "step"),
        ("eager ops, `python -m bench.eager_ops`",
         f"forward + backward vs the torch a user would write, median of rounds, over sizes: {ops}; "
         f"{below} of {total} rows below 1.00x", "ops"),
        ("data loader, `python -m bench.loader`",
         f"C++ loader vs the fastest `torch.utils.data.DataLoader` row, batch 256, shuffle + flip: {loader_summary()}",
         "loader"),
        ("FID, `python -m bench.fid`", f"{threads('fid')}: " + "; ".join(fid_summary(k) for k in fid_keys()),
         fid_keys()),
        ("default run, `fastgan train`",
         f"DCGAN-16 on digits, 2,000 steps, torch's default threads: {run['wall']} s, digits-FID {run['fid']}"
         + (f"; with `--threads 1`: {default_run('default-run-1thread')['wall']} s, digits-FID "
            f"{default_run('default-run-1thread')['fid']}" if "default-run-1thread" in PINNED else "")
         + " (a shared machine: load averages in the files; no baseline in this row)",
         ["default-run", *(["default-run-1thread"] if "default-run-1thread" in PINNED else [])]),
    ]
    lines = ["| benchmark | result (fastgan vs plain PyTorch: above 1.00x is faster) | measured on | file |",
             "|---|---|---|---|"]
    for name, result, keys in rows:
        keys = [keys] if isinstance(keys, str) else keys
        measured = "; ".join(f"{machine(k)}, {when(k)}" for k in keys)
        lines.append(f"| {name} | {result} | {measured} | {', '.join(link(k, prefix) for k in keys)} |")
    return "\n".join(lines) + "\n"


def fid_keys() -> list[str]:
    """The FID files of the headline: the feature extraction's (where pinned apart) and the Fréchet distance's."""
    extract = PINNED.get("fid-extract")
    return ["fid-extract", "fid"] if extract and extract != PINNED["fid"] else ["fid"]


def block_default_run(prefix: str = "") -> str:
    run = default_run()
    return (f"```console\n{run['console']}```\n\n"
            f"`fastgan train` took {run['wall']} s on a shared 2-core {machine('default-run')} "
            f"({when('default-run')} UTC; 1-minute load average {run['load']} before / after, other jobs sharing "
            f"the cores), recorded by `python -m bench.render_docs --default-run` in {link('default-run', prefix)}.\n"
            + one_thread(prefix) + samples_image(prefix))


def samples_image(prefix: str) -> str:
    """The sample grid of the pinned default run, or of the one-thread run where the default's was not kept."""
    for key, caption in (("default-run", "the samples of this run"),
                         ("default-run-1thread", "the samples of the --threads 1 run")):
        if key in PINNED and default_run(key)["samples"]:
            return f"\n![{caption} after 2,000 steps]({prefix}{default_run(key)['samples']})\n"
    return ""


def one_thread(prefix: str) -> str:
    """The default run with one torch thread, beside the default's: on the loaded 2-core machine of 2026-12-07,
    torch's default of two threads measured several times slower than one."""
    if "default-run-1thread" not in PINNED:
        return ""
    run = default_run("default-run-1thread")
    return (f"The same run with `--threads 1` ({when('default-run-1thread')} UTC, load average {run['load']}): "
            f"{run['wall']} s, digits-FID {run['fid']} ({link('default-run-1thread', prefix)}).\n")


def block_results(key: str) -> str:
    """A pinned results file as it is, its headings moved below the page's, behind a link to it."""
    if PINNED[key] is None:
        return f"No file is pinned for this yet (`python -m bench.render_docs --pin {key}=FILE`).\n"
    text = results_text(key)
    body = re.sub(r"^# (.*)$", r"**\1**", text.rstrip("\n"), count=1, flags=re.M)
    body = re.sub(r"^(#{2,}) ", lambda m: "#" * min(len(m.group(1)) + 1, 6) + " ", body, flags=re.M)
    body = re.sub(r"^([^|\n].*)\n\|", r"\1\n\n|", body, flags=re.M)  # a table needs a blank line above it
    return f"From {link(key, '../')} ({machine(key)}, {when(key)}):\n\n{body}\n"


def block_help(argv: list[str]) -> str:
    """`fastgan ARGV --help` as the parser prints it at 100 columns."""
    from fastgan.cli import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            build_parser().parse_args([*argv, "--help"])
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return f"```\n$ fastgan {' '.join([*argv, '--help'])}\n{out.getvalue()}```\n"


def block_resumable() -> str:
    from fastgan.train.loop import RESUMABLE

    return ", ".join(f"`{name}`" for name in RESUMABLE) + "\n"


def render_block(key: str, page: str) -> str:
    prefix = "../" if page.startswith("docs/") else ""
    if key == "headline":
        return block_headline(prefix)
    if key == "default-run":
        return block_default_run(prefix)
    if key == "resumable":
        return block_resumable()
    if key.startswith("results:") and key.split(":", 1)[1] in PINNED:
        return block_results(key.split(":", 1)[1])
    if key.startswith("help:"):  # help:fastgan, help:COMMAND, help:train:MODEL (`fastgan train --model MODEL`)
        command, _, model = key.split(":", 1)[1].partition(":")
        return block_help([] if command == "fastgan" else [command, *(["--model", model] if model else [])])
    raise SystemExit(f"render_docs: {page}: unknown block {key!r}")


def pages() -> list[Path]:
    return sorted({p for pattern in PAGES for p in ROOT.glob(pattern)})


def render_text(text: str, page: str) -> tuple[str, list[str]]:
    """`text` (the page at `page`, relative to the root) with every block rendered, and the keys of the blocks
    that changed."""
    changed = []

    def one(match: re.Match) -> str:
        body = render_block(match.group("key"), page)
        if body != match.group("body"):
            changed.append(match.group("key"))
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(one, text), changed


def render_page(path: Path) -> tuple[str, list[str]]:
    return render_text(path.read_text(), str(path.relative_to(ROOT)))


# ---------------------------------------------------------------------------------------------------------------
# The default run, recorded

def record_default_run(threads: int | None = None) -> Path:
    """Run `fastgan train` with its defaults (and `--threads`, if given) and `fastgan eval --n 2000` on it, from a
    temporary folder, and write what they printed, the wall time and the machine as
    bench/results/default-run-cpu-DATE-HHMM.md; its sample grid goes to docs/images/ under the same name."""
    import torch

    from bench.system import cpu_model, write_result

    start_time = datetime.now(timezone.utc)
    load_before = os.getloadavg()[0]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "fastgan", "kernels", "csrc"],
                           capture_output=True, text=True).stdout.splitlines()
    dirty = sorted(line[3:] for line in dirty)
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        given = ["--threads", str(threads)] if threads is not None else []
        train_cmd = [sys.executable, "-m", "fastgan", "train", *given, "--out-dir", str(runs), "--no-progress"]
        t0 = time.perf_counter()
        train = subprocess.run(train_cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if train.returncode:
            raise SystemExit(f"render_docs: fastgan train failed:\n{train.stderr}")
        run_dir = runs / "digits-dcgan"
        last_log = run_dir.joinpath("metrics.jsonl").read_text().splitlines()[-1]
        image = ROOT / "docs" / "images" / f"default-run-cpu-{start_time.strftime('%Y-%m-%d-%H%M')}.png"
        shutil.copyfile(run_dir / "samples.png", image)
        t0 = time.perf_counter()
        ev = subprocess.run([sys.executable, "-m", "fastgan", "eval", "--ckpt", str(run_dir), "--n", "2000"],
                            capture_output=True, text=True, cwd=ROOT)
        eval_wall = time.perf_counter() - t0
        if ev.returncode:
            raise SystemExit(f"render_docs: fastgan eval failed:\n{ev.stderr}")
    load_after = os.getloadavg()[0]
    shown = lambda s: s.replace(str(runs), "runs")  # noqa: E731 - the temporary folder, as a user's runs/
    fid = re.search(r"^fid\s+(\S+)", ev.stdout, re.M).group(1)
    console = (f"$ {' '.join(['fastgan train', *given])}\n{shown(train.stdout)}"
               f"$ tail -n 1 runs/digits-dcgan/metrics.jsonl\n{last_log}\n"
               f"$ fastgan eval --ckpt runs/digits-dcgan --n 2000\n{shown(ev.stdout)}")
    stamp = start_time.strftime("%Y-%m-%d %H:%M")
    text = (
        f"# The default run: `fastgan train` (digits, DCGAN-16, 2,000 steps) and `fastgan eval --n 2000`, "
        f"CPU, {stamp}\n\n"
        f"- command: `python -m bench.render_docs --default-run{' --threads ' + str(threads) if given else ''}`: "
        f"`{' '.join(['fastgan train', *given])} --out-dir TMP --no-progress` (the defaults"
        f"{', but for the thread count' if given else ''}; --no-progress only hides the bar), then "
        f"`fastgan eval --ckpt TMP/digits-dcgan --n 2000`, in a temporary folder (shown below as runs/)\n"
        f"- device: {cpu_model()} ({os.cpu_count()} cores), "
        + (f"{threads} torch thread(s)\n" if given else f"torch's default thread count ({torch.get_num_threads()})\n")
        + f"- samples: docs/images/{image.name}, the run's samples.png\n"
        f"- date: {stamp} UTC\n"
        f"- versions: python {sys.version.split()[0]}, torch {torch.__version__}\n"
        f"- commit: {commit}" + (f" (uncommitted changes in {', '.join(dirty)})"
                                 if dirty else "") + "\n"
        f"- load average (1 min) before / after: {load_before:.2f} / {load_after:.2f} (a shared machine: other "
        f"jobs ran beside this one, so the time moves by tens of percent between runs)\n"
        f"- wall time of `fastgan train` (s, from start to exit, data loading and writing included): {wall:.1f}\n"
        f"- wall time of `fastgan eval` (s): {eval_wall:.1f}\n"
        f"- digits-FID (2,000 EMA samples, the digits classifier's features; one seed): {float(fid):.1f}\n\n"
        f"```console\n{console}```\n")
    return write_result(f"default-run-cpu-{start_time.strftime('%Y-%m-%d-%H%M')}.md", text)


def pin_file(key: str, name: str, source: Path = Path(__file__)) -> None:
    """Point PINNED[key] at bench/results/name, in `source` (this file) and in this process."""
    if key not in PINNED:
        raise SystemExit(f"render_docs: --pin {key}={name}: no such key; the keys are {', '.join(PINNED)}")
    if not (RESULTS / name).is_file():
        raise SystemExit(f"render_docs: --pin {key}={name}: bench/results/{name} does not exist")
    line = re.compile(rf'^(    "{re.escape(key)}": )(?:"[^"]*"|None)', re.M)
    source.write_text(line.sub(lambda m: f'{m.group(1)}"{name}"', source.read_text(), count=1))
    PINNED[key] = name
    print(f"pinned {key} to bench/results/{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render_docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is not as rendered")
    parser.add_argument("--default-run", action="store_true",
                        help="run the default fastgan train + eval and write its results file (pin it, then render)")
    parser.add_argument("--threads", type=int, default=None,
                        help="--default-run: pass --threads N to fastgan train (default: its own default)")
    parser.add_argument("--pin", nargs="+", metavar="KEY=FILE", default=[],
                        help="pin KEY's figures to bench/results/FILE (rewrites PINNED in this file), then render")
    args = parser.parse_args(argv)
    for pin in args.pin:
        if "=" not in pin:
            parser.error(f"--pin {pin}: give KEY=FILE, e.g. ops=eager-ops-cpu-2026-12-08-0100.md")
        pin_file(*pin.split("=", 1))
    if args.default_run:
        record_default_run(args.threads)
        return 0
    stale = []
    for path in pages():
        text, changed = render_page(path)
        if changed and args.check:
            stale += [f"{path.relative_to(ROOT)}: {key}" for key in changed]
        elif changed:
            path.write_text(text)
            print(f"rendered {path.relative_to(ROOT)}: {', '.join(changed)}")
    if stale:
        print("not as rendered from bench/results and the code (run python -m bench.render_docs):\n  "
              + "\n  ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
