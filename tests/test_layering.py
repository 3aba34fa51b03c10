"""The layering of DESIGN.md holds: the import contracts in pyproject.toml, kernels that import only triton and
torch, and kernels reached by import statements rather than strings."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module, level) of every import statement in a file, at any depth (function bodies too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed (the test extra)")
def test_import_contracts_hold():
    result = subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "kernels").glob("*.py")), ids=lambda p: p.name)
def test_kernels_import_only_triton_torch_and_each_other(path):
    for module, level in _imports(path):
        top = module.split(".")[0]
        assert level == 1 or top in ("__future__", "triton", "torch"), f"{path.name} imports {'.' * level}{module}"


def test_no_module_is_imported_by_a_string():
    """Kernels and subpackages are reached with import statements, which go-to-definition and the import
    contracts can see; fastgan/__init__.py's lazy loading of its subpackages is the one exception."""
    offenders = []
    for path in sorted([*(ROOT / "fastgan").rglob("*.py"), *(ROOT / "kernels").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if name in ("import_module", "__import__"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(offenders) <= 1 and all(o.startswith("fastgan/__init__.py:") for o in offenders), offenders


def test_python_m_fastgan_is_the_cli():
    result = subprocess.run([sys.executable, "-m", "fastgan", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "prepare" in result.stdout
