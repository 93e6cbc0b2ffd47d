"""The layers go one way: runners use tasks, tasks use measures, nothing imports upwards.

Checked on the source (every import statement, top-level or inside a function), so a lazy import that
reaches back up fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: package -> the project packages it must not import
FORBIDDEN = {"measures": {"tasks", "runners", "simbench"}, "tasks": {"runners", "simbench"}}


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every module ``path`` imports (absolute imports only)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_a_layer_above_it(package: str) -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & FORBIDDEN[package])
                 for p in sorted((ROOT / package).rglob("*.py"))}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{package}/ imports a layer above it: {offenders}"


def test_the_check_sees_a_lazy_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from runners.job import run_job\n    import runners.sweep\n")
    assert imported_packages(module) == {"runners"}
