"""Every numbered notebook runs top to bottom in quick mode, is output-free and paired with its .py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from ngl.ui.notebook_runner import list_notebooks, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = list_notebooks(NB_DIR)
NBSTRIP = [sys.executable, "-m", "nbstripout", "--keep-id", "--extra-keys",
           "metadata.language_info metadata.jupytext.text_representation"]  # Makefile's filter


def committed_text(path: Path) -> str:
    """The notebook as git would commit it (the staged copy where git tracks it): the working
    copy may hold outputs that JupyterLab autosaved and the git filter strips."""
    rel = path.relative_to(ROOT).as_posix()
    shown = subprocess.run(["git", "show", f":{rel}"], cwd=ROOT, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else path.read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs_and_has_a_parameters_cell(path):
    nb = json.loads(committed_text(path))
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


def test_a_jupyterlab_save_changes_nothing_git_commits(tmp_path):
    """JupyterLab with jupytext saves outputs, execution counts, the kernel the user picked and
    its language_info into the .ipynb and rewrites the paired .py: the .py must come out as
    committed (pyproject's notebook_metadata_filter) and the git filter must give back the
    committed .ipynb."""
    src = NB_DIR / "02_gp_loss_search.ipynb"
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")  # the jupytext config
    nb = json.loads(src.read_text())
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7",
                                       "mimetype": "text/x-python"}
    nb["metadata"]["jupytext"]["text_representation"] = {
        "extension": ".py", "format_name": "percent", "format_version": "1.3",
        "jupytext_version": "1.99.0"}  # another jupytext saved it
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    code[0]["execution_count"] = 7
    code[0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hello\n"]}]
    saved = tmp_path / src.name
    saved.write_text(json.dumps(nb, indent=1))
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "py:percent",
                    str(saved)], check=True, cwd=tmp_path)
    assert saved.with_suffix(".py").read_text() == src.with_suffix(".py").read_text()
    clean = subprocess.run(NBSTRIP, input=saved.read_text(), capture_output=True, text=True,
                           check=True).stdout
    assert json.loads(clean) == json.loads(committed_text(src))
    assert ["filter=nbstripout" in line for line in
            (ROOT / ".gitattributes").read_text().splitlines() if "*.ipynb" in line] == [True]


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
