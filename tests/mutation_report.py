"""Per-module counts of a mutmut run: python tests/mutation_report.py [MUTANTS_DIR] (default ./mutants).

Reads mutmut 3's result files (mutants/<path>.meta) and prints a Markdown table, one row per mutated module:
killed (timeouts and crashes counted with them: the tests did not pass), survived, not run (no test reaches the
function, or the run stopped before it), and the kill rate over the mutants that ran. A second table lists the
survivors by name, for `mutmut show NAME`.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 152, 255, 36, -9, -11}  # failed tests, pytest error, timeouts, crashes
SURVIVED = {0}


def outcome(exit_code) -> str:
    if exit_code is None or exit_code in (5, 33, 34):
        return "not run"
    if exit_code in SURVIVED:
        return "survived"
    if exit_code in KILLED:
        return "killed"
    return "suspicious"


def main(root: Path) -> None:
    rows, survivors = [], []
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        counts = Counter(outcome(c) for c in codes.values())
        rows.append((str(meta.relative_to(root))[:-len(".meta")], counts))
        survivors += [name for name, c in codes.items() if outcome(c) == "survived"]
    print("| module | mutants | killed | survived | not run | kill rate |")
    print("|---|---:|---:|---:|---:|---:|")
    total = Counter()
    for module, counts in rows + [("**all**", None)]:
        counts = total if counts is None else counts
        ran = counts["killed"] + counts["survived"] + counts["suspicious"]
        rate = f"{100 * counts['killed'] / ran:.1f}%" if ran else "-"
        print(f"| {module} | {sum(counts.values())} | {counts['killed']} | {counts['survived']} | "
              f"{counts['not run']} | {rate} |")
        if module != "**all**":
            total.update(counts)
    print(f"\nSurvivors ({len(survivors)}):\n")
    for name in survivors:
        print(f"- `{name}`")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("mutants"))
