"""Per-module counts of a mutmut run: python tests/mutation_report.py [MUTANTS_DIR] (default ./mutants).

Reads mutmut 3's result files (mutants/<path>.meta) and prints a Markdown table, one row per mutated module:
killed (timeouts and crashes counted with them: the tests did not pass), survived (the tests that reach the
mutated function pass), untested (no selected test reaches the function: a survivor too), not checked (the run
stopped before it), and the kill rate, killed / (killed + survived + untested). Then the survivors' names, for
`mutmut show NAME`.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 152, 255, 36, -9, -11}  # failed tests, pytest error, timeouts, crashes
SURVIVED = {0}


def outcome(exit_code) -> str:
    if exit_code is None or exit_code == 34:
        return "not checked"
    if exit_code in (5, 33):
        return "untested"
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
        survivors += [name for name, c in codes.items() if outcome(c) in ("survived", "untested")]
    print("| module | mutants | killed | survived | untested | not checked | kill rate |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total = Counter()
    for module, counts in rows + [("**all**", None)]:
        counts = total if counts is None else counts
        ran = counts["killed"] + counts["survived"] + counts["untested"] + counts["suspicious"]
        rate = f"{100 * counts['killed'] / ran:.1f}%" if ran else "-"
        print(f"| {module} | {sum(counts.values())} | {counts['killed']} | {counts['survived']} | "
              f"{counts['untested']} | {counts['not checked']} | {rate} |")
        if module != "**all**":
            total.update(counts)
    print(f"\nSurvivors ({len(survivors)}):\n")
    for name in survivors:
        print(f"- `{name}`")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("mutants"))
