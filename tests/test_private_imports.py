"""Structure rules: no module of ngl or benchmarks/ imports another ngl module's private name
(``_x``: what is shared is public, so a rename inside one module cannot silently break
another), and no module of ngl is over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*(ROOT / "ngl").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])


def _private_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ngl":
            found += [f"{node.module}.{a.name} (line {node.lineno})" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_the_check_sees_a_private_import(tmp_path):
    # the control: the scan finds the pattern it is meant to forbid
    probe = tmp_path / "probe.py"
    probe.write_text("from ngl.gp.worker import (\n    evaluate_chunk,\n    _hidden,\n)\n")
    assert _private_imports(probe) == ["ngl.gp.worker._hidden (line 1)"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_of_another_module_is_imported(path):
    assert _private_imports(path) == []


@pytest.mark.parametrize("path", [p for p in FILES if "ngl" in p.relative_to(ROOT).parts[:1]],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_of_ngl_is_over_400_lines(path):
    # one job per module: a room past 400 lines is two rooms (issue 21)
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400
