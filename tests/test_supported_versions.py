"""What pyproject claims about Python and triton is what CI tests (.ci/run's STACKS) and what the README says."""
from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from bench import gpu_pass

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def ci_stacks(text: str | None = None) -> list[dict[str, str]]:
    """The stacks .ci/run tests beside the README's: python, torch, triton, kind."""
    text = (ROOT / ".ci" / "run").read_text() if text is None else text
    block = re.search(r"^STACKS=\((.*?)\)$", text, re.M | re.S)
    assert block, ".ci/run has no STACKS=(...) list"
    rows = re.findall(r'"(\S+)\s+(\S+)\s+(\S+)\s+(\S+)"', block.group(1))
    return [dict(python=p, torch=t, triton=tr, kind=k) for p, t, tr, k in rows]


def _lower_bound(requirement: str) -> tuple[int, ...]:
    match = re.search(r">=\s*([\d.]+)", requirement)
    assert match, f"no lower bound in {requirement!r}"
    return _version(match.group(1))


def test_ci_runs_the_oldest_claimed_python_and_the_newest():
    claimed = _lower_bound(PYPROJECT["project"]["requires-python"])
    pythons = sorted(_version(s["python"]) for s in ci_stacks())
    assert pythons[0] == claimed, f"requires-python claims {claimed}; CI's oldest stack is {pythons[0]}"
    assert pythons[-1] >= (3, 13), f"CI's newest stack is Python {pythons[-1]}; 3.13 is the newest here"
    assert len({s["kind"] for s in ci_stacks() if _version(s["python"]) in (pythons[0], pythons[-1])}) >= 1


def test_ci_runs_the_oldest_claimed_triton_on_the_gpu_machines_python():
    (triton_req,) = [r for r in PYPROJECT["project"]["optional-dependencies"]["test"] if r.startswith("triton")]
    (image,) = [s for s in ci_stacks() if s["kind"] == "gpu-image"]
    assert _version(image["triton"])[:2] == _lower_bound(triton_req)[:2]
    assert image["python"] == gpu_pass.GPU_IMAGE_PYTHON


def test_the_readme_names_every_tested_stack():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^Tested in CI:(.*?)\n\n", readme, re.M | re.S)
    assert match, "README has no 'Tested in CI:' paragraph"
    text = " ".join(match.group(1).split())
    for s in ci_stacks():
        assert f"Python {s['python']}" in text and f"torch {s['torch']}" in text and f"triton {s['triton']}" in text, s
    assert f"Python >= {PYPROJECT['project']['requires-python'].lstrip('>=')}" in text


def test_the_stack_list_is_read_as_ci_runs_it():
    text = 'x\nSTACKS=("3.12   2.11.0 3.6.0  gpu-image"\n        "3.10 2.11.0 3.6.0 smoke")\nfor'
    assert ci_stacks(text) == [dict(python="3.12", torch="2.11.0", triton="3.6.0", kind="gpu-image"),
                               dict(python="3.10", torch="2.11.0", triton="3.6.0", kind="smoke")]
