"""Every numbered notebook runs top to bottom in quick mode, is output-free and paired with its .py."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest

from ngl.ui.notebook_runner import list_notebooks, run_notebook

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = list_notebooks(NB_DIR)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs_and_has_a_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert 'os.environ.get("NGL_QUICK") == "1"' in "".join(tagged[0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_py_percent_twin_are_in_sync(path):
    twin = path.with_suffix(".py")
    assert twin.exists(), f"{twin.name} missing: run `jupytext --set-formats ipynb,py:percent {path.name}`"
    a, b = jupytext.read(path), jupytext.read(twin)
    assert [(c.cell_type, c.source) for c in a.cells] == [(c.cell_type, c.source) for c in b.cells], (
        f"{path.name} and {twin.name} differ: run `jupytext --sync {twin}`"
    )


@pytest.mark.notebooks
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("NGL_RUNS_DIR", str(tmp_path / "runs"))
    figs = tmp_path / "figures"
    out = run_notebook(path, tmp_path / "executed", quick=True, figures_dir=figs)
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    produced = sorted(p.name for p in (figs / path.stem).glob("*.pdf"))
    assert produced, f"{path.name} exported no figure"
    for pdf in produced:
        stem = pdf[:-4]
        assert (figs / path.stem / f"{stem}.png").stat().st_size > 1000
        assert json.loads((figs / path.stem / f"{stem}.json").read_text())["notebook"] == path.stem
