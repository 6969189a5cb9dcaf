"""Figures across searches and within one: several searches' progress overlaid with their labels
(:func:`plot_compare`), and accuracy against expression size with the Pareto front
(:func:`plot_pareto`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ngl.losses import display_name
from ngl.ui.plots_downstream import legend_outside, series_style
from ngl.ui.style import TEXT_WIDTH

__all__ = ["plot_compare", "plot_pareto"]


def plot_compare(frame: pd.DataFrame, ax=None) -> plt.Figure:
    """Best (solid) and median (dotted) search-validation accuracy per generation, one colour
    per search, each named once in the legend by its label; each search's references dashed in
    its colour. ``frame`` is :func:`ngl.compare`'s."""
    if frame is None or not len(frame):
        raise ValueError("nothing to compare: ngl.compare([...]) gave no rows")
    if ax is None:
        fig, ax = plt.subplots(figsize=(TEXT_WIDTH * 0.75, 2.6), layout="constrained")
    else:
        fig = ax.figure
    for k, (label, part) in enumerate(frame.groupby("label", sort=False)):
        style = series_style(k)
        colour = style["color"]
        ax.plot(part["generation"], part["best"], color=colour, marker=style["marker"], ms=3,
                lw=1.0, label=f"{label}: best")
        ax.plot(part["generation"], part["median"], color=colour, ls=":", lw=0.9,
                label=f"{label}: median")
        for ref, acc in (part["references"].iloc[0] or {}).items():
            ax.axhline(acc, color=colour, ls="--", lw=0.7, alpha=0.8,
                       label=f"{label}: {display_name(ref)} (reference)")
    ax.set(xlabel="generation", ylabel="search-validation accuracy")
    ax.xaxis.get_major_locator().set_params(integer=True)
    legend_outside(ax)
    return fig


def plot_pareto(front: pd.DataFrame, ax=None) -> plt.Figure:
    """Every distinct trained loss as a point (size, accuracy), the Pareto front joined as a
    step line and marked. ``front`` is ``SearchResult.pareto()``."""
    if front is None or not len(front):
        raise ValueError("no trained candidate yet: nothing to draw")
    if ax is None:
        fig, ax = plt.subplots(figsize=(TEXT_WIDTH / 2, 2.4), layout="constrained")
    else:
        fig = ax.figure
    rest, on = front[~front["on_front"]], front[front["on_front"]].sort_values("size")
    ax.scatter(rest["size"], 100 * rest["val_accuracy"], s=10, color="0.6", label="candidates")
    ax.step(on["size"], 100 * on["val_accuracy"], where="post", color="C0", lw=1.0)
    ax.scatter(on["size"], 100 * on["val_accuracy"], s=18, color="C0", zorder=3,
               label="Pareto front")
    ax.set(xlabel="expression size (nodes)", ylabel="search-validation acc. (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # node counts are whole
    ax.legend(fontsize="x-small")
    return fig
