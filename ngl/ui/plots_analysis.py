"""Figures of why NGL works (notebook 05): calibration, optimum confidence, gradient scale, sensitivity.

Each draws a table of :mod:`ngl.evaluate` (or tidy results over seeds for
:func:`plot_sensitivity`); the computing lives there, the drawing here. Losses are labelled with
their display names, each loss has its own line style and marker (CE and focal loss share every
optimum, p_true = 1), and legends sit right of the axes, off the data.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ngl.losses.registry import display_name
from ngl.ui.plots_downstream import legend_outside, mean_sd, series_style, value_label
from ngl.ui.style import COLUMN_WIDTH, TEXT_WIDTH

__all__ = ["plot_gradient_scale", "plot_optimum_confidence", "plot_reliability_diagram",
           "plot_sensitivity"]


def plot_reliability_diagram(diagrams: Mapping[str, pd.DataFrame], axes=None,
                             min_count: int = 1) -> plt.Figure:
    """One panel per entry of ``diagrams`` (name -> :func:`ngl.evaluate.calibration.reliability_diagram_data`).

    Filled bars: accuracy per confidence bin; red outlines: the bin's mean confidence; the
    diagonal is perfect calibration; the title gives the ECE (and the entry's display name). Bins
    with fewer than ``min_count`` samples are left out; the legend sits right of the last panel.
    """
    if not diagrams:
        raise ValueError("no reliability diagrams given")
    n = len(diagrams)
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(min(TEXT_WIDTH, 1.0 + 1.9 * n), 2.0), sharey=True,
                                 squeeze=False, layout="constrained")
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes)
        fig = axes[0].figure
    for k, (ax, (name, d)) in enumerate(zip(axes, diagrams.items(), strict=False)):
        first = k == 0  # one legend entry per kind of mark, not one per panel
        d = d[d["count"] >= min_count]
        width = (d["bin_upper"] - d["bin_lower"]).to_numpy()
        ax.bar(d["bin_lower"], d["accuracy"], width=width, align="edge", color="C0",
               edgecolor="white", lw=0.3, label="accuracy" if first else None)
        ax.bar(d["bin_lower"], d["confidence"], width=width, align="edge", fill=False,
               edgecolor="C3", lw=0.8, label="mean confidence" if first else None)
        ax.plot([0, 1], [0, 1], color="0.4", lw=0.8, ls="--", label="perfect calibration" if first else None)
        ece = float((d["fraction"] * d["gap"].abs()).sum())
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence",
               title=f"{display_name(str(name))}\nECE {ece:.3f}")
        ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])  # five ticks collide in a 1.5-inch panel
    axes[0].set_ylabel("accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                    frameon=False, fontsize="small")
    return fig


def plot_optimum_confidence(table: pd.DataFrame, ax=None) -> plt.Figure:
    """Optimum true-class probability against the number of classes (log x), one line per loss.

    ``table`` is :func:`ngl.evaluate.loss_properties.optimum_table`; the dotted grey line is the
    uniform ``1/C``. Losses with equal optima (CE and focal: 1 for every C) lie on one another, so
    each has its own line style and hollow marker, dashed lines drawn over solid ones.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3), layout="constrained")
    else:
        fig = ax.figure
    for k, (name, part) in enumerate(table.groupby("loss", sort=False)):
        part = part.sort_values("num_classes")
        ax.plot(part["num_classes"], part["p_true"], ms=4, label=display_name(str(name)),
                **series_style(k))
    u = table.drop_duplicates("num_classes").sort_values("num_classes")
    ax.plot(u["num_classes"], u["uniform"], color="0.5", ls=":", lw=0.8, label="uniform 1/C",
            zorder=1.5)
    ax.set(xscale="log", ylim=(0, 1.05), xlabel="number of classes C",
           ylabel=r"optimum $p_{\mathrm{true}}$")
    legend_outside(ax)
    return fig


def plot_gradient_scale(table: pd.DataFrame, ax=None, reference_power: float | None = 2.0) -> plt.Figure:
    """Gradient norm relative to CE against the number of classes (log-log), per loss and point.

    ``table`` is :func:`ngl.evaluate.loss_properties.gradient_scale_table`. ``reference_power`` draws a
    ``C^-k`` guide through the first NGL-like point (None: no guide). Colour and marker tell the
    loss, the line style the point (solid: uniform, dashed: trained); the legend sits right of
    the axes.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3), layout="constrained")
    else:
        fig = ax.figure
    styles = {"uniform": "-", "trained": "--"}
    losses = list(dict.fromkeys(table["loss"]))
    for j, ((name, at), part) in enumerate(table.groupby(["loss", "at"], sort=False)):
        style = series_style(losses.index(name))
        style["zorder"] += 0.001 * j
        style["ls"] = styles.get(str(at), ":")
        part = part.sort_values("num_classes")
        ax.plot(part["num_classes"], part["ratio"], ms=3, label=f"{display_name(str(name))} ({at})",
                **style)
    if reference_power is not None and len(table):
        c = np.array(sorted(table["num_classes"].unique()), dtype=float)
        ax.plot(c, (c[0] / c) ** reference_power, color="0.6", lw=0.8, ls=":",
                label=rf"$\propto C^{{-{reference_power:g}}}$")
    ax.set(xscale="log", yscale="log", xlabel="number of classes C",
           ylabel=r"$\|\partial L/\partial z\|$ / CE's")
    legend_outside(ax, fontsize="x-small")
    return fig


def plot_sensitivity(results: pd.DataFrame, x: str, y: str = "test_accuracy", hue: str | None = None,
                     ax=None, reference: float | None = None, categorical: bool | None = None,
                     ylabel: str | None = None, baseline: tuple[str, float] | None = None,
                     ) -> plt.Figure:
    """Mean +- standard deviation over seeds of ``y`` against ``x`` (one line/points per ``hue``).

    Numeric ``x`` draws lines; categorical ``x`` (e.g. optimizer names) draws offset points.
    ``reference`` draws a vertical line at that x (e.g. the paper's alpha); ``baseline`` =
    ``(name, y)`` a labelled horizontal line (e.g. CE's mean accuracy), so that it joins the
    legend, which sits right of the axes. Loss names (``hue="loss"``) print as display names.
    """
    if results is None or not len(results) or x not in results or y not in results:
        raise ValueError(f"results must be a non-empty DataFrame with columns {x!r} and {y!r}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3), layout="constrained")
    else:
        fig = ax.figure
    if categorical is None:
        categorical = not pd.api.types.is_numeric_dtype(results[x])
    groups = results.groupby(hue, sort=False) if hue is not None else [(None, results)]
    cats = list(dict.fromkeys(results[x])) if categorical else []
    n = len(groups) if hue is not None else 1
    for k, (name, part) in enumerate(groups):
        s = mean_sd(part, [x], y)
        label = None if name is None else value_label(hue, name)
        style = series_style(k)
        if categorical:
            s = s.set_index(x).reindex(cats)
            xs = np.arange(len(cats)) + (k - (n - 1) / 2) * 0.15
            ax.errorbar(xs, s["mean"], yerr=s["std"], fmt=style["marker"], color=style["color"],
                        mfc="none", mew=0.9, ms=3.5, capsize=2, lw=0.8, label=label)
        else:
            s = s.sort_values(x)
            ax.plot(s[x], s["mean"], ms=3, label=label, **style)
            if (s["count"] > 1).any():
                ax.fill_between(s[x], s["mean"] - s["std"], s["mean"] + s["std"], alpha=0.2, lw=0,
                                color=style["color"])
    if categorical:
        ax.set_xticks(np.arange(len(cats)), [value_label(x, c) for c in cats])
    if reference is not None:
        ax.axvline(reference, color="0.5", lw=0.7, ls="--")
    if baseline is not None:
        ax.axhline(baseline[1], color="0.3", lw=0.8, ls=":", label=display_name(str(baseline[0])))
    ax.set(xlabel=x.replace("_", " "), ylabel=ylabel or y.replace("_", " "))
    legend_outside(ax)
    return fig
