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

from ngl.io.paths import figures_dir, repo_root
from ngl.losses.registry import per_sample_losses

__all__ = [
    "COLUMN_WIDTH",
    "TEXT_WIDTH",
    "set_style",
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
        vals = per_sample_losses(loss, logits, target)
        (grad,) = torch.autograd.grad(vals.sum(), p, retain_graph=True)
        v = vals.detach().numpy()
        span = float(v.max() - v.min())
        norm = (v - v.min()) / span if span > 0 else np.zeros_like(v)
        rows.append(pd.DataFrame({"loss_name": name, "p_true": p.detach().numpy(), "loss": v,
                                  "dloss_dp": grad.numpy(), "normalised": norm}))
    return pd.concat(rows, ignore_index=True)


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
    from ngl.gp.expression import LossExpression

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


# -- training curves and downstream comparison ------------------------------------------------
def _mean_sd(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    g = df.groupby(by, sort=False)[value]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def plot_training_curves(metrics: pd.DataFrame, columns: Sequence[str] | None = None,
                         hue: str | None = "loss", x: str = "epoch", axes=None) -> plt.Figure:
    """One panel per metric against ``x`` (epoch); one line per ``hue`` value (e.g. loss).

    ``metrics`` is tidy, one row per (run, epoch): ``epoch``, metric columns such as
    ``train_loss``, ``val_accuracy``, and optional ``loss`` / ``seed``. Several seeds of the same
    ``hue`` are averaged (line) with a band of +-1 standard deviation. Training-loss values of
    different losses are not comparable in scale (NGL sits near 11), so the ``train_loss`` panel
    normalises each curve by its first epoch.
    """
    if metrics is None or not len(metrics):
        raise ValueError("no metrics: expected a DataFrame with one row per (run, epoch)")
    if x not in metrics:
        raise ValueError(f"metrics has no {x!r} column; columns are {list(metrics.columns)}")
    if hue is not None and hue not in metrics:
        hue = None
    skip = {x, hue, "seed", "run", "dataset", "model"}
    if columns is None:  # the usual ones of ngl.train.loop's per-epoch history, else every numeric column
        columns = [c for c in ("train_loss", "val_accuracy", "test_accuracy") if c in metrics] or [
            c for c in metrics.columns if c not in skip and pd.api.types.is_numeric_dtype(metrics[c])]
    missing = [c for c in columns if c not in metrics]
    if missing or not columns:
        raise ValueError(f"metric columns {missing or columns} not found; columns are {list(metrics.columns)}")
    if axes is None:
        fig, axes = plt.subplots(1, len(columns), figsize=(min(TEXT_WIDTH, 2.4 * len(columns)), 2.2),
                                 squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes)
        fig = axes[0].figure
    groups = metrics.groupby(hue, sort=False) if hue is not None else [(None, metrics)]
    for name, part in groups:
        for ax, col in zip(axes, columns, strict=False):
            cur = part.dropna(subset=[col]).sort_values(x)  # epochs without evaluation have NaN
            if col == "train_loss":
                first = (cur.groupby("seed")[col].transform("first") if "seed" in cur
                         else pd.Series(cur[col].iloc[0], index=cur.index))
                cur = cur.assign(**{col: cur[col] / first.where(first != 0, 1.0)})
            s = _mean_sd(cur, [x], col).sort_values(x)
            (line,) = ax.plot(s[x], s["mean"], marker=".", label=None if name is None else str(name))
            if (s["count"] > 1).any():
                ax.fill_between(s[x], s["mean"] - s["std"], s["mean"] + s["std"], alpha=0.2, lw=0,
                                color=line.get_color())
    for ax, col in zip(axes, columns, strict=False):
        label = "train loss / first epoch" if col == "train_loss" else col.replace("_", " ")
        ax.set(xlabel=x, ylabel=label)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if hue is not None:
        axes[-1].legend(frameon=False, fontsize="small")
    return fig


def plot_downstream_comparison(results: pd.DataFrame, metric: str = "test_accuracy",
                               reference: str | None = None, band: float = 0.5, ax=None,
                               order: Sequence[str] | None = None) -> plt.Figure:
    """Mean +- standard deviation over seeds of ``metric`` per dataset (x) and loss (points).

    ``results`` is tidy: columns ``dataset``, ``loss``, ``seed``, ``metric``. With
    ``reference="ce"`` each loss is shown as the difference to that loss on the same dataset in
    percentage points (accuracies in [0, 1] are scaled by 100), and the paper's "same as CE"
    band of +-``band`` points is shaded, as in the paper's table.
    """
    need = {"dataset", "loss", metric}
    if results is None or not len(results) or not need <= set(results.columns):
        raise ValueError(f"results must be a non-empty DataFrame with columns {sorted(need)} (+ seed)")
    df = results.copy()
    scale = 100.0 if df[metric].between(0, 1).all() else 1.0
    df[metric] = df[metric].astype(float) * scale
    datasets = list(dict.fromkeys(df["dataset"]))
    losses = list(order) if order is not None else list(dict.fromkeys(df["loss"]))
    stats = _mean_sd(df, ["dataset", "loss"], metric)
    if reference is not None:
        if reference not in set(df["loss"]):
            raise ValueError(f"reference loss {reference!r} not in results; losses are {losses}")
        ref = stats[stats["loss"] == reference].set_index("dataset")["mean"]
        stats["mean"] = stats["mean"] - stats["dataset"].map(ref)
        losses = [name for name in losses if name != reference]
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(TEXT_WIDTH, 1.2 + 0.9 * len(datasets)), 2.4))
    else:
        fig = ax.figure
    width = 0.8 / max(len(losses), 1)
    for k, name in enumerate(losses):
        s = stats[stats["loss"] == name].set_index("dataset").reindex(datasets)
        xs = np.arange(len(datasets)) - 0.4 + width * (k + 0.5)
        ax.errorbar(xs, s["mean"].to_numpy(), yerr=s["std"].to_numpy(), fmt="o", ms=3.5, capsize=2,
                    lw=0.8, label=name)
    ax.set_xticks(np.arange(len(datasets)), datasets, rotation=20 if len(datasets) > 4 else 0)
    unit = " (%)" if scale == 100.0 else ""
    if reference is not None:
        ax.axhspan(-band, band, color="0.85", lw=0, zorder=0, label=f"±{band:g} of {reference}")
        ax.axhline(0, color="0.5", lw=0.6, zorder=0)
        ax.set_ylabel(f"{metric.replace('_', ' ')} − {reference}" + (" (points)" if scale == 100.0 else ""))
    else:
        ax.set_ylabel(metric.replace("_", " ") + unit)
    ax.legend(frameon=False, fontsize="small", ncols=min(len(losses) + 1, 4))
    return fig


__all__ += ["plot_search_progress", "LivePlot", "plot_training_curves", "plot_downstream_comparison"]


# -- tables next to the figures ----------------------------------------------------------------
def save_table(text: str, name: str, notebook: str | None = None, ext: str = "tex",
               directory: str | os.PathLike | None = None) -> Path:
    """Write a table (LaTeX, markdown, CSV text) to ``figures/<notebook>/<name>.<ext>`` atomically.

    Same place and naming rules as :func:`save_figure`, so ``\\input{figures/04_.../table.tex}``
    sits next to the figures it goes with.
    """
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"table name {name!r} must be a plain file stem such as 'downstream'")
    if ext not in ("tex", "md", "csv", "txt"):
        raise ValueError(f"ext={ext!r}; expected 'tex', 'md', 'csv' or 'txt'")
    notebook = notebook or os.environ.get("NGL_NOTEBOOK") or "misc"
    out_dir = Path(directory) if directory is not None else figures_dir() / notebook
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.{ext}"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)
    return path


__all__ += ["save_table"]


# -- why NGL works (notebook 05, data from ngl.evaluate.analysis) ----------------------------------------
def plot_reliability_diagram(diagrams: Mapping[str, pd.DataFrame], axes=None,
                             min_count: int = 1) -> plt.Figure:
    """One panel per entry of ``diagrams`` (name -> :func:`ngl.evaluate.analysis.reliability_diagram_data`).

    Filled bars: accuracy per confidence bin; red outlines: the bin's mean confidence; the
    diagonal is perfect calibration; the title gives the ECE. Bins with fewer than ``min_count`` samples are left out.
    """
    if not diagrams:
        raise ValueError("no reliability diagrams given")
    n = len(diagrams)
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(min(TEXT_WIDTH, 1.9 * n), 2.0), sharey=True,
                                 squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes)
        fig = axes[0].figure
    for ax, (name, d) in zip(axes, diagrams.items(), strict=False):
        d = d[d["count"] >= min_count]
        width = (d["bin_upper"] - d["bin_lower"]).to_numpy()
        ax.bar(d["bin_lower"], d["accuracy"], width=width, align="edge", color="C0",
               edgecolor="white", lw=0.3, label="accuracy")
        ax.bar(d["bin_lower"], d["confidence"], width=width, align="edge", fill=False,
               edgecolor="C3", lw=0.8, label="mean confidence")
        ax.plot([0, 1], [0, 1], color="0.4", lw=0.8, ls="--")
        ece = float((d["fraction"] * d["gap"].abs()).sum())
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=f"{name}\nECE {ece:.3f}")
    axes[0].set_ylabel("accuracy")
    return fig


def plot_optimum_confidence(table: pd.DataFrame, ax=None) -> plt.Figure:
    """Optimum true-class probability against the number of classes (log x), one line per loss.

    ``table`` is :func:`ngl.evaluate.analysis.optimum_table`; the dotted line is the uniform ``1/C``.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
    else:
        fig = ax.figure
    for name, part in table.groupby("loss", sort=False):
        part = part.sort_values("num_classes")
        ax.plot(part["num_classes"], part["p_true"], marker="o", ms=3, label=str(name))
    u = table.drop_duplicates("num_classes").sort_values("num_classes")
    ax.plot(u["num_classes"], u["uniform"], color="0.5", ls=":", lw=0.8, label="uniform 1/C")
    ax.set(xscale="log", ylim=(0, 1.05), xlabel="number of classes C",
           ylabel=r"optimum $p_{\mathrm{true}}$")
    ax.legend(frameon=False, fontsize="small")
    return fig


def plot_gradient_scale(table: pd.DataFrame, ax=None, reference_power: float | None = 2.0) -> plt.Figure:
    """Gradient norm relative to CE against the number of classes (log-log), per loss and point.

    ``table`` is :func:`ngl.evaluate.analysis.gradient_scale_table`. ``reference_power`` draws a
    ``C^-k`` guide through the first NGL-like point (None: no guide).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
    else:
        fig = ax.figure
    styles = {"uniform": "-", "trained": "--"}
    k = 0
    colors: dict[str, str] = {}
    for (name, at), part in table.groupby(["loss", "at"], sort=False):
        if name not in colors:
            colors[name] = f"C{k}"
            k += 1
        part = part.sort_values("num_classes")
        ax.plot(part["num_classes"], part["ratio"], marker="o", ms=3, color=colors[name],
                ls=styles.get(str(at), ":"), label=f"{name} ({at})")
    if reference_power is not None and len(table):
        c = np.array(sorted(table["num_classes"].unique()), dtype=float)
        ax.plot(c, (c[0] / c) ** reference_power, color="0.6", lw=0.8, ls=":",
                label=rf"$\propto C^{{-{reference_power:g}}}$")
    ax.set(xscale="log", yscale="log", xlabel="number of classes C",
           ylabel=r"$\|\partial L/\partial z\|$ / CE's")
    ax.legend(frameon=False, fontsize="x-small")
    return fig


def plot_sensitivity(results: pd.DataFrame, x: str, y: str = "test_accuracy", hue: str | None = None,
                     ax=None, reference: float | None = None, categorical: bool | None = None,
                     ylabel: str | None = None) -> plt.Figure:
    """Mean +- standard deviation over seeds of ``y`` against ``x`` (one line/points per ``hue``).

    Numeric ``x`` draws lines; categorical ``x`` (e.g. optimizer names) draws offset points.
    ``reference`` draws a vertical line at that x (e.g. the paper's alpha).
    """
    if results is None or not len(results) or x not in results or y not in results:
        raise ValueError(f"results must be a non-empty DataFrame with columns {x!r} and {y!r}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
    else:
        fig = ax.figure
    if categorical is None:
        categorical = not pd.api.types.is_numeric_dtype(results[x])
    groups = results.groupby(hue, sort=False) if hue is not None else [(None, results)]
    cats = list(dict.fromkeys(results[x])) if categorical else []
    n = len(groups) if hue is not None else 1
    for k, (name, part) in enumerate(groups):
        s = _mean_sd(part, [x], y)
        label = None if name is None else str(name)
        if categorical:
            s = s.set_index(x).reindex(cats)
            xs = np.arange(len(cats)) + (k - (n - 1) / 2) * 0.15
            ax.errorbar(xs, s["mean"], yerr=s["std"], fmt="o", ms=3.5, capsize=2, lw=0.8, label=label)
        else:
            s = s.sort_values(x)
            (line,) = ax.plot(s[x], s["mean"], marker="o", ms=3, label=label)
            if (s["count"] > 1).any():
                ax.fill_between(s[x], s["mean"] - s["std"], s["mean"] + s["std"], alpha=0.2, lw=0,
                                color=line.get_color())
    if categorical:
        ax.set_xticks(np.arange(len(cats)), [str(c) for c in cats])
    if reference is not None:
        ax.axvline(reference, color="0.5", lw=0.7, ls="--")
    ax.set(xlabel=x.replace("_", " "), ylabel=ylabel or y.replace("_", " "))
    if hue is not None:
        ax.legend(frameon=False, fontsize="small")
    return fig


__all__ += ["plot_reliability_diagram", "plot_optimum_confidence", "plot_gradient_scale",
            "plot_sensitivity"]
