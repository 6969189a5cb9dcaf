"""Figures of the downstream grid (notebook 04): training curves and the comparison against CE.

Both read the tidy results of :func:`ngl.evaluate.grid.run_grid`; :func:`training_history`
flattens each run's per-epoch history into the rows :func:`plot_training_curves` draws.
:func:`mean_sd` (mean, standard deviation and count over seeds) and the labelling helpers
(:func:`value_label`, :func:`series_style`, :func:`legend_outside`) are shared with the other figures:
losses are labelled with their display names, every series gets its own line style and marker
(two losses with equal values stay visible), and legends sit outside the axes, off the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.legend import Legend

from ngl.evaluate.tables import DATASET_NAMES, found_names
from ngl.losses.registry import display_name
from ngl.ui.style import TEXT_WIDTH

__all__ = ["plot_downstream_comparison", "plot_training_curves", "training_history"]

RUN_KEYS = ("dataset", "model", "loss", "seed")
LOSS_COLUMNS = ("loss", "loss_name")  # columns whose values are loss names, drawn as display names
# (linestyle, marker) per series: a loss drawn exactly under another (CE and focal loss at the
# optimum p_true = 1) still shows its own dashes and marker; hollow markers let both shapes show.
SERIES_STYLES = (("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ((0, (5, 1)), "v"),
                 ((0, (3, 1, 1, 1, 1, 1)), "P"), ((0, (1, 1)), "X"), ((0, (8, 2, 2, 2)), "*"))


def value_label(column: str | None, value: object) -> str:
    """How a value of ``column`` is printed: a loss's display name for loss columns, else as is."""
    return display_name(str(value)) if column in LOSS_COLUMNS else str(value)


def series_style(k: int) -> dict:
    """Line style, marker and colour of the ``k``-th series, all distinct for the first eight.

    Later series (sparser dash patterns) are drawn higher (``zorder``): over two equal series
    the solid line underneath shows through the gaps of the dashed one on top.
    """
    ls, marker = SERIES_STYLES[k % len(SERIES_STYLES)]
    return {"ls": ls, "marker": marker, "color": f"C{k % 10}", "mfc": "none", "mew": 0.9,
            "zorder": 2.0 + 0.01 * k}


def legend_outside(ax, fontsize: str = "small", **kwargs) -> Legend | None:
    """The axes' legend to the right of the axes, where it cannot cover data.

    Constrained layout (the paper style, and every figure these functions create) shrinks the
    axes to make room, so the figure keeps its paper width. No labelled artists: no legend.
    """
    if not ax.get_legend_handles_labels()[1]:
        return None
    opts = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0,
            "frameon": False, "fontsize": fontsize, "handlelength": 2.5}
    return ax.legend(**{**opts, **kwargs})


def mean_sd(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """``mean``, ``std`` (0 for a single run) and ``count`` of ``value`` per ``by`` group."""
    g = df.groupby(by, sort=False)[value]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def training_history(results: pd.DataFrame, keys: Sequence[str] = RUN_KEYS) -> pd.DataFrame:
    """One row per (run, epoch): every finished run's ``history`` with the run's ``keys`` added.

    ``results`` is what :func:`ngl.evaluate.grid.run_grid` returns (one row per run, its
    ``history`` a list of per-epoch dicts such as ``epoch``, ``train_loss``, ``val_accuracy``).
    Runs whose ``status`` is not ``ok`` are left out; ``keys`` the results lack are skipped, and
    a key wins over a history field of the same name. The rows are the tidy input of
    :func:`plot_training_curves`.
    """
    if "history" not in results:
        raise ValueError(f"results have no 'history' column; columns are {list(results.columns)}")
    ok = results[results["status"] == "ok"] if "status" in results else results
    keys = [k for k in keys if k in results]
    rows = [{**h, **{k: run[k] for k in keys}} for run in ok[[*keys, "history"]].to_dict("records")
            if isinstance(run["history"], list) for h in run["history"]]
    return pd.DataFrame(rows, columns=None if rows else ["epoch", *keys])


def plot_training_curves(metrics: pd.DataFrame, columns: Sequence[str] | None = None,
                         hue: str | None = "loss", x: str = "epoch", axes=None) -> plt.Figure:
    """One panel per metric against ``x`` (epoch); one line per ``hue`` value (e.g. loss).

    ``metrics`` is tidy, one row per (run, epoch): ``epoch``, metric columns such as
    ``train_loss``, ``val_accuracy``, and optional ``loss`` / ``seed``. Several seeds of the same
    ``hue`` are averaged (line) with a band of +-1 standard deviation. Training-loss values of
    different losses are not comparable in scale (NGL sits near 11), so the ``train_loss`` panel
    normalises each curve by its first epoch. Losses are labelled with their display names, each
    ``hue`` value has its own line style and marker, and the legend sits right of the last panel.
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
        fig, axes = plt.subplots(1, len(columns), figsize=(min(TEXT_WIDTH, 1.0 + 2.4 * len(columns)), 2.2),
                                 squeeze=False, layout="constrained")
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes)
        fig = axes[0].figure
    groups = metrics.groupby(hue, sort=False) if hue is not None else [(None, metrics)]
    for k, (name, part) in enumerate(groups):
        style = series_style(k)
        for ax, col in zip(axes, columns, strict=False):
            cur = part.dropna(subset=[col]).sort_values(x)  # epochs without evaluation have NaN
            if col == "train_loss":
                first = (cur.groupby("seed")[col].transform("first") if "seed" in cur
                         else pd.Series(cur[col].iloc[0], index=cur.index))
                cur = cur.assign(**{col: cur[col] / first.where(first != 0, 1.0)})
            s = mean_sd(cur, [x], col).sort_values(x)
            ax.plot(s[x], s["mean"], ms=3, label=None if name is None else value_label(hue, name),
                    **style)
            if (s["count"] > 1).any():
                ax.fill_between(s[x], s["mean"] - s["std"], s["mean"] + s["std"], alpha=0.2, lw=0,
                                color=style["color"])
    for ax, col in zip(axes, columns, strict=False):
        label = "train loss / first epoch" if col == "train_loss" else col.replace("_", " ")
        ax.set(xlabel=x, ylabel=label)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if hue is not None:
        legend_outside(axes[-1])
    return fig


def plot_downstream_comparison(results: pd.DataFrame, metric: str = "test_accuracy",
                               reference: str | None = None, band: float = 0.5, ax=None,
                               order: Sequence[str] | None = None) -> plt.Figure:
    """Mean +- standard deviation over seeds of ``metric`` per dataset (x) and loss (points).

    ``results`` is tidy: columns ``dataset``, ``loss``, ``seed``, ``metric``. With
    ``reference="ce"`` each loss is shown as the difference to that loss on the same dataset in
    percentage points (accuracies in [0, 1] are scaled by 100), and the paper's "same as CE"
    band of +-``band`` points is shaded, as in the paper's table. Losses and datasets are printed
    with their display names; the legend sits right of the axes.
    """
    need = {"dataset", "loss", metric}
    if results is None or not len(results) or not need <= set(results.columns):
        raise ValueError(f"results must be a non-empty DataFrame with columns {sorted(need)} (+ seed)")
    df = results.copy()
    scale = 100.0 if df[metric].between(0, 1).all() else 1.0
    df[metric] = df[metric].astype(float) * scale
    datasets = list(dict.fromkeys(df["dataset"]))
    losses = list(order) if order is not None else list(dict.fromkeys(df["loss"]))
    every = list(losses)  # style index per loss, the same with or without a reference
    stats = mean_sd(df, ["dataset", "loss"], metric)
    if reference is not None:
        if reference not in set(df["loss"]):
            raise ValueError(f"reference loss {reference!r} not in results; losses are {losses}")
        ref = stats[stats["loss"] == reference].set_index("dataset")["mean"]
        stats["mean"] = stats["mean"] - stats["dataset"].map(ref)
        losses = [name for name in losses if name != reference]
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(TEXT_WIDTH, 2.2 + 0.9 * len(datasets)), 2.4),
                               layout="constrained")
    else:
        fig = ax.figure
    width = 0.8 / max(len(losses), 1)
    # a found loss (expression text) is "found #k" in the legend, its formula in a note below:
    # a 100-character label would squeeze the axes to nothing
    found = found_names(every)
    for k, name in enumerate(losses):
        s = stats[stats["loss"] == name].set_index("dataset").reindex(datasets)
        xs = np.arange(len(datasets)) - 0.4 + width * (k + 0.5)
        style = series_style(every.index(name))
        ax.errorbar(xs, s["mean"].to_numpy(), yerr=s["std"].to_numpy(), fmt=style["marker"],
                    color=style["color"], mfc="none", mew=0.9, ms=3.5, capsize=2, lw=0.8,
                    label=found.get(name) or display_name(name))
    ax.set_xticks(np.arange(len(datasets)), [DATASET_NAMES.get(d, d) for d in datasets],
                  rotation=20 if len(datasets) > 4 else 0)
    unit = " (%)" if scale == 100.0 else ""
    if reference is not None:
        shown = display_name(reference)
        ax.axhspan(-band, band, color="0.85", lw=0, zorder=0, label=f"±{band:g} of {shown}")
        ax.axhline(0, color="0.5", lw=0.6, zorder=0)
        ax.set_ylabel(f"{metric.replace('_', ' ')} − {shown}" + (" (points)" if scale == 100.0 else ""))
    else:
        ax.set_ylabel(metric.replace("_", " ") + unit)
    legend_outside(ax)
    notes = [f"{n}: {_short_formula(e)}" for e, n in found.items()]
    if notes:
        fig.text(0.01, 0.0, "\n".join(notes), fontsize="xx-small", color="0.3", ha="left",
                 va="top", transform=fig.transFigure, wrap=True)
    return fig


def _short_formula(text: str, n: int = 80) -> str:
    """A found loss for a figure note: 4 significant digits, at most ``n`` characters."""
    from ngl.gp.expression import LossExpression

    shown = LossExpression.parse(text).display(4)
    return shown if len(shown) <= n else shown[:n - 1] + "…"
