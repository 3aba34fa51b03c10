"""README.md and docs/ say what the code and the results files say: every rendered figure, --help text and list
equals what `python -m bench.render_docs` renders from bench/results and the code; the README's examples print
what it shows; its hand-written figures are in the files it links; every link resolves."""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from bench import render_docs
from fastgan.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = render_docs.pages()


def fenced_after(text: str, start: int) -> tuple[str, int]:
    """The body of the first fenced block at or after `start`, and where it ends."""
    match = re.compile(r"^```[\w]*\n(.*?)^```", re.S | re.M).search(text, start)
    assert match, "no fenced block where one was expected"
    return match.group(1), match.end()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_is_as_rendered_from_the_results_files_and_the_code(page):
    _, changed = render_docs.render_page(page)
    assert not changed, (f"{page.relative_to(ROOT)}: blocks {changed} differ from what bench/results and the code give; "
                         f"run python -m bench.render_docs (and pin the newer results files in its PINNED)")


def test_a_changed_figure_or_help_text_is_caught():
    text = README.read_text()
    begin = text.index("<!-- begin: headline")
    end = text.index("<!-- end: headline -->")
    block = text[begin:end]
    figure = re.search(r"\d+\.\d+x", block).group(0)
    edited = text[:begin] + block.replace(figure, "9" + figure, 1) + text[end:]
    assert render_docs.render_text(edited, "README.md")[1] == ["headline"]
    cli = (ROOT / "docs" / "cli.md").read_text().replace("generator updates", "discriminator updates", 1)
    assert "help:train" in render_docs.render_text(cli, "docs/cli.md")[1]


def test_every_pinned_results_file_exists_and_is_cited():
    rendered = " ".join(p.read_text() for p in PAGES)
    for key, name in render_docs.PINNED.items():
        if name is None:  # a key that has no file yet renders as such
            continue
        assert (render_docs.RESULTS / name).is_file(), f"PINNED[{key!r}]: bench/results/{name} does not exist"
        assert f"bench/results/{name}" in rendered, f"no page cites the pinned {name}"


def test_readme_is_the_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 250, f"README.md has {len(text.splitlines())} lines; the front door holds 250"
    linked = set(re.findall(r"\]\(([^)#\s]+)", text))
    for doc in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "CONTRIBUTING.md", ROOT / "LICENSE",
                ROOT / "CITATION.cff"]:
        assert str(doc.relative_to(ROOT)) in linked, f"README.md does not link {doc.relative_to(ROOT)}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.relative_to(ROOT)}: link to {target}: no such file"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.relative_to(ROOT)}: link to {target}: no such heading"


def test_readme_drop_in_example_runs_and_prints_what_the_readme_shows():
    text = README.read_text()
    code, end = fenced_after(text, text.index("```python"))
    shown, _ = fenced_after(text, end)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    assert out.getvalue() == shown, "README's drop-in example no longer prints what README shows under it"


def test_default_run_output_has_the_lines_and_keys_the_code_writes(tmp_path, capsys):
    """The recorded default run (a results file) shows what today's `fastgan train` prints and logs: same
    message, same keys in metrics.jsonl (a 2-step run here; the figures themselves come from the file)."""
    console = render_docs.default_run()["console"]
    assert main(["train", "--out-dir", str(tmp_path), "--steps", "2", "--log-every", "1", "--no-progress",
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out.replace(str(tmp_path), "runs")
    assert printed in console, f"fastgan train prints {printed!r}; the recorded default run shows {console!r}"
    logged = json.loads((tmp_path / "digits-dcgan" / "metrics.jsonl").read_text().splitlines()[-1])
    shown = json.loads(re.search(r"^\{\"step\".*$", console, re.M).group(0))
    assert set(logged) == set(shown), f"metrics.jsonl now has keys {sorted(logged)}; README shows {sorted(shown)}"


def family_rows() -> list[tuple[str, str, str]]:
    """(model, the 'one result' cell's text, the file it links) of README's families table."""
    text = README.read_text()
    rows = []
    for line in text[text.index("## Model families"):].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.match(r"\[(.*)\]\(([^)#]+)(?:#[^)]*)?\)$", cells[-1]) if line.startswith("| `") else None
        if match:
            rows.append((cells[0], match.group(1), match.group(2)))
    return rows


def numbers(text: str) -> list[str]:
    return [n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


def test_readme_family_results_are_in_the_files_they_link():
    rows = family_rows()
    assert len(rows) >= 8
    for model, result, target in rows:
        source = (ROOT / target).read_text().replace(",", "")
        for n in numbers(result):
            assert re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", source), (
                f"README's {model} result gives {n}, which {target} does not contain")


def test_license_and_citation_match_pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"] == "Apache-2.0"
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version: \"?{re.escape(project['version'])}\"?$", citation, re.M)
    assert re.search(r"^license: Apache-2.0$", citation, re.M)


def test_model_docs_figures_are_in_results_md_or_the_files_they_name():
    """docs/models.md summarises docs/results.md and a few results files: each decimal figure it gives is in one
    of them."""
    text = (ROOT / "docs" / "models.md").read_text()
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    sources = [ROOT / "docs" / "results.md", *(ROOT / f for f in set(re.findall(r"bench/results/[\w.-]+\.md", text)))]
    source = " ".join(p.read_text() for p in sources).replace(",", "")
    for n in sorted(set(numbers(" ".join(re.findall(r"\d[\d,]*\.\d+", prose))))):
        assert re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", source), (
            f"docs/models.md gives {n}, which neither docs/results.md nor the results files it names contain")


def test_the_gpu_status_line_holds_while_no_gpu_pass_is_recorded():
    """README and docs/performance.md say no GPU has run fastgan; once the GPU pass writes its results file, that
    sentence must go (and the GPU rows come from the file)."""
    passes = sorted(p.name for p in render_docs.RESULTS.glob("gpu-pass-*.md"))
    claims = [p.relative_to(ROOT) for p in (README, ROOT / "docs" / "performance.md") if "no gpu has run" in p.read_text().lower()]
    assert not (passes and claims), f"{passes} recorded a GPU pass, but {claims} still say no GPU has run fastgan"
    assert passes or len(claims) == 2, "without a GPU pass on record, README and docs/performance.md must say so"


def test_every_section_of_results_md_gives_its_date_and_machine():
    text = (ROOT / "docs" / "results.md").read_text()
    for section in re.split(r"^(?=## )", text, flags=re.M)[1:]:
        heading = section.splitlines()[0]
        assert re.search(r"^\*\*Measured:\*\* \d{4}-\d{2}-\d{2}.*(EPYC|Xeon|GPU)", section, re.M), (
            f"docs/results.md: '{heading}' has no '**Measured:** DATE, MACHINE' line")
