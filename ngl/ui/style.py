"""Figure style and export: paper sizes, the style itself, and saving figures and tables for LaTeX.

Sizes are in column widths (a single column is about 3.4 in, a full page width about 7 in),
fonts are embedded as TrueType (``pdf.fonttype = 42``) so journals accept the PDFs, and
:func:`save_figure` writes PDF + 300 dpi PNG + a JSON sidecar that says how it was made;
:func:`save_table` puts a table's text next to the figures it goes with.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import seaborn as sns

import ngl
from ngl.io.paths import figures_dir, repo_root
from ngl.io.records import atomic_write, write_text_atomic

__all__ = ["COLUMN_WIDTH", "TEXT_WIDTH", "current_notebook", "save_figure", "save_table", "set_style"]

COLUMN_WIDTH = 3.4  # inches, one column of a two-column paper
TEXT_WIDTH = 7.0  # inches, full text width


def set_style(style: str = "paper") -> None:
    """Apply the figure style: ``paper`` (small fonts, TrueType, constrained layout) or ``notebook``."""
    if style not in ("paper", "notebook", "talk"):
        raise ValueError(f"style={style!r} is not supported; expected 'paper', 'notebook' or 'talk'")
    sns.set_theme(context=style, style="ticks", palette="colorblind")
    mpl.rcParams.update({
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "svg.fonttype": "none",
        "figure.constrained_layout.use": True,
        "savefig.dpi": 300,
        "figure.dpi": 100,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "svg.hashsalt": "ngl",  # stable SVG ids
    })


def _git_commit() -> str | None:
    root = repo_root(Path(__file__).resolve().parent)
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _check_stem(name: str, kind: str, example: str) -> None:
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"{kind} name {name!r} must be a plain file stem such as {example!r}")


def current_notebook() -> str:
    """The running notebook's stem, which names its figure folder.

    ``$NGL_NOTEBOOK`` (set by the notebook runner and the tests) first; else the notebook the
    kernel was started for, which jupyter-server (2.x) tells every kernel in
    ``$JPY_SESSION_NAME`` (the notebook's path), so notebooks opened in JupyterLab write their
    own ``figures/<notebook>/`` instead of all sharing one folder; else ``misc`` (a console,
    a script).
    """
    name = os.environ.get("NGL_NOTEBOOK")
    if name:
        return name
    session = os.environ.get("JPY_SESSION_NAME", "")
    path = Path(session)
    if path.suffix in (".ipynb", ".py") and path.stem and not path.stem.startswith("."):
        return path.stem
    return "misc"


def _out_dir(notebook: str | None, directory: str | os.PathLike | None) -> Path:
    """``directory``, or ``figures/<notebook>`` (`current_notebook`), created."""
    notebook = notebook or current_notebook()
    out_dir = Path(directory) if directory is not None else figures_dir() / notebook
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def save_figure(fig: plt.Figure, name: str, notebook: str | None = None,
                config: Mapping | None = None, formats: Sequence[str] = ("pdf", "png"),
                directory: str | os.PathLike | None = None) -> list[Path]:
    """Write ``figures/<notebook>/<name>.{pdf,png}`` and ``<name>.json``; byte-stable for equal input.

    ``notebook`` defaults to `current_notebook` (the notebook's own name, in JupyterLab too).
    The sidecar holds ``config`` (must be JSON-serialisable), the commit and the ngl version,
    and no timestamps, so re-running an unchanged notebook changes no file.
    """
    _check_stem(name, "figure", "loss_shapes")
    bad = [f for f in formats if f not in ("pdf", "png", "svg")]
    if bad:
        raise ValueError(f"formats {bad} not supported; expected some of ['pdf', 'png', 'svg']")
    notebook = notebook or current_notebook()
    out_dir = _out_dir(notebook, directory)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        metadata = {"pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
                    "png": {"Software": None}, "svg": {"Date": None, "Creator": None}}[fmt]
        atomic_write(path, lambda tmp, fmt=fmt, metadata=metadata:
                     fig.savefig(tmp, format=fmt, dpi=300, metadata=metadata))
        paths.append(path)
    sidecar = {"figure": name, "notebook": notebook, "formats": list(formats),
               "size_in": [round(v, 3) for v in fig.get_size_inches()],
               "config": dict(config) if config else {}, "commit": _git_commit(),
               "ngl_version": ngl.__version__}
    side = write_text_atomic(out_dir / f"{name}.json",
                             json.dumps(sidecar, indent=2, sort_keys=True, default=str) + "\n")
    paths.append(side)
    return paths


def save_table(text: str, name: str, notebook: str | None = None, ext: str = "tex",
               directory: str | os.PathLike | None = None) -> Path:
    """Write a table (LaTeX, markdown, CSV text) to ``figures/<notebook>/<name>.<ext>`` atomically.

    Same place and naming rules as :func:`save_figure`, so ``\\input{figures/04_.../table.tex}``
    sits next to the figures it goes with.
    """
    _check_stem(name, "table", "downstream")
    if ext not in ("tex", "md", "csv", "txt"):
        raise ValueError(f"ext={ext!r}; expected 'tex', 'md', 'csv' or 'txt'")
    path = _out_dir(notebook, directory) / f"{name}.{ext}"
    return write_text_atomic(path, text if text.endswith("\n") else text + "\n")
