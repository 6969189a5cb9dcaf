"""Figures: paper style, loss shapes, expression trees, and byte-stable export for LaTeX.

Sizes are in column widths (a single column is about 3.4 in, a full page width about 7 in),
fonts are embedded as TrueType (``pdf.fonttype = 42``) so journals accept the PDFs, and
:func:`save_figure` writes PDF + 300 dpi PNG + a JSON sidecar that says how it was made.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = [
    "COLUMN_WIDTH",
    "TEXT_WIDTH",
    "set_style",
    "figures_dir",
    "save_figure",
    "loss_shape_data",
    "plot_loss_shapes",
    "tree_layout",
    "draw_tree",
]

COLUMN_WIDTH = 3.4  # inches, one column of a two-column paper
TEXT_WIDTH = 7.0  # inches, full text width


def set_style(style: str = "paper") -> None:
    """Apply the figure style: ``paper`` (small fonts, TrueType, constrained layout) or ``notebook``."""
    import seaborn as sns

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


def _repo_root(start: Path) -> Path | None:
    for p in [start, *start.parents]:
        if (p / "pyproject.toml").exists() and (p / "ngl").is_dir():
            return p
    return None


def figures_dir() -> Path:
    """Where figures go: ``$NGL_FIGURES_DIR``, else the repository's ``figures/``, else ``./figures``."""
    env = os.environ.get("NGL_FIGURES_DIR")
    if env:
        return Path(env)
    root = _repo_root(Path.cwd().resolve())
    return (root / "figures") if root is not None else Path.cwd() / "figures"


def _git_commit() -> str | None:
    root = _repo_root(Path(__file__).resolve().parent)
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def save_figure(fig: plt.Figure, name: str, notebook: str | None = None,
                config: Mapping | None = None, formats: Sequence[str] = ("pdf", "png"),
                directory: str | os.PathLike | None = None) -> list[Path]:
    """Write ``figures/<notebook>/<name>.{pdf,png}`` and ``<name>.json``; byte-stable for equal input.

    ``notebook`` defaults to ``$NGL_NOTEBOOK`` (set by the notebook runner) or ``misc``.
    The sidecar holds ``config`` (must be JSON-serialisable), the commit and the ngl version,
    and no timestamps, so re-running an unchanged notebook changes no file.
    """
    import ngl

    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"figure name {name!r} must be a plain file stem such as 'loss_shapes'")
    bad = [f for f in formats if f not in ("pdf", "png", "svg")]
    if bad:
        raise ValueError(f"formats {bad} not supported; expected some of ['pdf', 'png', 'svg']")
    notebook = notebook or os.environ.get("NGL_NOTEBOOK") or "misc"
    out_dir = Path(directory) if directory is not None else figures_dir() / notebook
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        metadata = {"pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
                    "png": {"Software": None}, "svg": {"Date": None, "Creator": None}}[fmt]
        tmp = path.with_name(path.name + ".tmp")
        fig.savefig(tmp, format=fmt, dpi=300, metadata=metadata)
        os.replace(tmp, path)
        paths.append(path)
    sidecar = {"figure": name, "notebook": notebook, "formats": list(formats),
               "size_in": [round(v, 3) for v in fig.get_size_inches()],
               "config": dict(config) if config else {}, "commit": _git_commit(),
               "ngl_version": ngl.__version__}
    side = out_dir / f"{name}.json"
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, side)
    paths.append(side)
    return paths


# -- loss shapes ----------------------------------------------------------------------------
def loss_shape_data(losses: Mapping[str, nn.Module], num_classes: int = 10,
                    n_points: int = 199) -> pd.DataFrame:
    """Loss and its slope against the true-class probability, the other classes sharing the rest.

    One tidy row per (loss, p_true): ``loss``, ``dloss_dp`` (derivative along that path) and
    ``normalised`` (loss rescaled to [0, 1] per loss, since NGL's values sit near 11 and must
    not share an axis with CE's as if comparable).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} must be >= 2")
    if not losses:
        raise ValueError("no losses given; pass a mapping such as {'NGL': get_loss('ngl')}")
    p = torch.linspace(0.0, 1.0, n_points + 2, dtype=torch.float64)[1:-1].requires_grad_(True)
    rest = ((1 - p) / (num_classes - 1)).unsqueeze(1).expand(-1, num_classes - 1)
    logits = torch.log(torch.cat([p.unsqueeze(1), rest], dim=1))
    target = torch.zeros(len(p), dtype=torch.long)
    rows = []
    for name, loss in losses.items():
        p.grad = None
        vals = _per_sample(loss, logits, target)
        (grad,) = torch.autograd.grad(vals.sum(), p, retain_graph=True)
        v = vals.detach().numpy()
        span = float(v.max() - v.min())
        norm = (v - v.min()) / span if span > 0 else np.zeros_like(v)
        rows.append(pd.DataFrame({"loss_name": name, "p_true": p.detach().numpy(), "loss": v,
                                  "dloss_dp": grad.numpy(), "normalised": norm}))
    return pd.concat(rows, ignore_index=True)


def _per_sample(loss: nn.Module, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    old = getattr(loss, "reduction", None)
    if old is None:
        raise ValueError(f"loss {loss!r} has no 'reduction' attribute; use an ngl loss module")
    loss.reduction = "none"
    try:
        return loss(logits, target)
    finally:
        loss.reduction = old


def plot_loss_shapes(losses: Mapping[str, nn.Module], num_classes: int = 10, axes=None,
                     n_points: int = 199) -> plt.Figure:
    """Two panels: normalised loss and its slope against p_true, with each loss's optimum marked."""
    df = loss_shape_data(losses, num_classes, n_points)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(TEXT_WIDTH, 2.4))
    else:
        fig = axes[0].figure
    for name, part in df.groupby("loss_name", sort=False):
        (line,) = axes[0].plot(part["p_true"], part["normalised"], label=name)
        i = int(part["loss"].to_numpy().argmin())
        axes[0].plot(part["p_true"].iloc[i], part["normalised"].iloc[i], "o", ms=3,
                     color=line.get_color())
        axes[1].plot(part["p_true"], part["dloss_dp"], label=name, color=line.get_color())
    axes[0].set(xlabel=r"true-class probability $p_t$", ylabel="loss (normalised to [0, 1])",
                title=f"C = {num_classes}")
    axes[1].set(xlabel=r"true-class probability $p_t$", ylabel=r"$\partial L / \partial p_t$",
                yscale="symlog")
    axes[1].axhline(0, color="0.6", lw=0.6)
    axes[0].legend(frameon=False, fontsize="small")
    return fig


# -- expression trees ------------------------------------------------------------------------
def tree_layout(expr) -> tuple[list[tuple[float, float, str]], list[tuple[int, int]]]:
    """Node positions ``(x, y, label)`` and edges for an expression tree (leaves spaced evenly)."""
    nodes: list[tuple[float, float, str]] = []
    edges: list[tuple[int, int]] = []
    next_x = [0.0]

    def place(t: tuple, depth: int) -> int:
        node, kids = t
        label = f"{node:.4g}" if isinstance(node, float) else str(node)
        idx = len(nodes)
        nodes.append((0.0, -float(depth), label))
        if not kids:
            nodes[idx] = (next_x[0], -float(depth), label)
            next_x[0] += 1.0
            return idx
        kid_ids = [place(k, depth + 1) for k in kids]
        xs = [nodes[k][0] for k in kid_ids]
        nodes[idx] = ((min(xs) + max(xs)) / 2, -float(depth), label)
        edges.extend((idx, k) for k in kid_ids)
        return idx

    place(expr._tree(), 0)
    return nodes, edges


_LEAF_COLOURS = {"y_pred": "#cfe2f3", "y_real": "#d9ead3", "logits": "#fce5cd", "log_pred": "#ead1dc"}


def draw_tree(expr, ax=None, formula: bool = True) -> plt.Figure:
    """Draw an expression tree with matplotlib alone (no graphviz needed), formula as title."""
    from ngl.expression import LossExpression

    expr = LossExpression.parse(expr) if isinstance(expr, str) else expr
    nodes, edges = tree_layout(expr)
    width = max(x for x, _, _ in nodes) + 1
    height = -min(y for _, y, _ in nodes) + 1
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(TEXT_WIDTH, 0.6 + 0.55 * width), 0.5 + 0.55 * height))
    else:
        fig = ax.figure
    for a, b in edges:
        ax.plot([nodes[a][0], nodes[b][0]], [nodes[a][1], nodes[b][1]], color="0.45", lw=0.8, zorder=1)
    for x, y, label in nodes:
        colour = _LEAF_COLOURS.get(label, "#eeeeee" if label[0].isdigit() or label[0] == "-" else "white")
        ax.text(x, y, label, ha="center", va="center", fontsize=7, zorder=2,
                bbox={"boxstyle": "round,pad=0.25", "fc": colour, "ec": "0.3", "lw": 0.6})
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-height + 0.5, 0.6)
    ax.axis("off")
    if formula:
        ax.set_title(f"${expr.latex()}$", fontsize=8)
    return fig


# -- search figures ---------------------------------------------------------------------------
def plot_search_progress(summary: pd.DataFrame, axes=None) -> plt.Figure:
    """Fitness (best, median, quartile band), diversity, tree size, rejected/cached per generation."""
    if summary is None or not len(summary):
        raise ValueError("empty search summary: run at least one generation first")
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(TEXT_WIDTH, 2.2))
    else:
        fig = axes[0].figure
    g = summary["generation"].to_numpy()
    ax = axes[0]
    ax.fill_between(g, summary["q25"], summary["q75"], alpha=0.25, lw=0, label="quartiles")
    ax.plot(g, summary["median"], marker=".", label="median")
    ax.plot(g, summary["best"], marker=".", label="best")
    ax.set(xlabel="generation", ylabel="validation accuracy")
    ax.legend(frameon=False, fontsize="small")
    ax = axes[1]
    ax.plot(g, summary["distinct_functions"], marker=".", label="distinct functions")
    ax.plot(g, summary["mean_size"], marker=".", label="mean tree size")
    ax.set(xlabel="generation", ylabel="count")
    ax.legend(frameon=False, fontsize="small")
    ax = axes[2]
    ax.bar(g - 0.2, summary["rejected"], width=0.4, label="rejected")
    ax.bar(g + 0.2, summary["cache_hits"], width=0.4, label="cache hits")
    ax.set(xlabel="generation", ylabel="candidates")
    ax.legend(frameon=False, fontsize="small")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


class LivePlot:
    """A search callback that redraws the progress figure in place, at most once per ``every`` s.

    Uses ``display(fig, display_id=True)`` and ``handle.update(fig)`` (no ipympl needed); outside
    a kernel it only keeps the summary rows.
    """

    def __init__(self, every: float = 1.0):
        self.every = every
        self.rows: list[dict] = []
        self._handle = None
        self._last = 0.0
        self.fig = None

    def __call__(self, summary: dict, _search=None) -> None:
        import time

        self.rows.append(dict(summary))
        now = time.monotonic()
        if now - self._last < self.every and self._handle is not None:
            return
        self._last = now
        self.redraw()

    def redraw(self) -> None:
        from IPython.display import display

        if self.fig is None:
            self.fig, _ = plt.subplots(1, 3, figsize=(TEXT_WIDTH, 2.2))
        for ax in self.fig.axes:
            ax.clear()
        plot_search_progress(pd.DataFrame(self.rows), axes=self.fig.axes)
        if self._handle is None:
            self._handle = display(self.fig, display_id=True)
        else:
            self._handle.update(self.fig)

    def close(self) -> None:
        if self.fig is not None:
            plt.close(self.fig)
