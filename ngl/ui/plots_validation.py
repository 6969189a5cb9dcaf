"""Figures of a validated finding: paired changes against CE with CIs, and search fidelity.

:func:`plot_validation` draws each loss's paired change in held-out test accuracy against the
baseline with its 95 % interval (one panel per (dataset, model): the main one, then transfer);
:func:`plot_fidelity` draws search fitness against held-out accuracy with Spearman's rho.
Both take a :class:`ngl.evaluate.validate.ValidationReport`.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ngl.evaluate.validate import ValidationReport
from ngl.losses.registry import display_name
from ngl.ui.style import TEXT_WIDTH

__all__ = ["plot_validation", "plot_fidelity"]


def _panel(ax: plt.Axes, part: pd.DataFrame, names: dict[str, str], margin: float,
           title: str) -> None:
    part = part[part["delta"].notna()].reset_index(drop=True)
    y = np.arange(len(part))[::-1]
    lo = (part["delta"] - part["delta_ci_low"]).fillna(0).to_numpy()
    hi = (part["delta_ci_high"] - part["delta"]).fillna(0).to_numpy()
    colors = ["C0" if n in names else "C7" for n in part["loss"]]
    ax.axvspan(-margin, margin, color="0.92", zorder=0, label=f"±{margin:g} (paper: same)")
    ax.axvline(0, color="0.4", lw=0.8)
    for yi, d, a, b, c in zip(y, part["delta"], lo, hi, colors, strict=True):
        ax.errorbar([d], [yi], xerr=[[a], [b]], fmt="none", ecolor=c, capsize=2, lw=1)
    ax.scatter(part["delta"], y, c=colors, s=14, zorder=3)
    ax.set_yticks(y, [names.get(n, display_name(n)) for n in part["loss"]])  # "NGL", not "ngl"
    ax.set_title(title, fontsize="small")
    ax.set_xlabel("Δ test accuracy vs CE (pp, paired)")


def plot_validation(report: ValidationReport) -> plt.Figure:
    """Paired change to the baseline (mean, 95 % CI) per loss; one panel per (dataset, model)."""
    parts = [(f"{report.plan['dataset']}/{report.config.model}\n(held-out test)", report.table)]
    for (d, m), part in report.transfer.groupby(["dataset", "model"], sort=False):
        parts.append((f"transfer:\n{d}/{m}", part))
    parts = [(t, p) for t, p in parts if len(p) and p["delta"].notna().any()]
    if not parts:
        raise ValueError(f"{report.out_dir}: no finished pairs with the baseline yet")
    fig, axes = plt.subplots(1, len(parts), figsize=(TEXT_WIDTH, 1.0 + 0.3 * len(parts[0][1])),
                             sharey=True, squeeze=False, layout="constrained")
    names = report.names()
    for ax, (title, part) in zip(axes[0], parts, strict=True):
        _panel(ax, part, names, report.config.margin, title)
    band = getattr(report, "band_images", lambda: None)()  # a report-like object may lack it
    if band:  # the band is a handful of test images: the figure says so
        images, n = band
        fig.text(0.01, 0.0, f"±{report.config.margin:g} pp band = {images:.1f} test images "
                 f"(n_test = {n})", fontsize="x-small", color="0.35", ha="left", va="bottom")
    return fig


def plot_fidelity(report: ValidationReport) -> plt.Figure:
    """Search fitness (cheap budget) vs held-out test accuracy (full budget), with Spearman rho."""
    pts = report.fidelity
    if not len(pts):
        raise ValueError(f"{report.out_dir}: no fidelity runs finished yet")
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH / 2, 2.6), layout="constrained")
    for source, marker in (("hall_of_fame", "o"), ("random", "^")):
        sub = pts[pts["source"] == source]
        if len(sub):
            ax.scatter(100 * sub["search_fitness"], 100 * sub["test_accuracy"], marker=marker,
                       s=18, label=source.replace("_", " "))
    fs = report.fidelity_stats

    def f(v: float) -> str:
        return "–" if math.isnan(v) else f"{v:.2f}"

    ax.set_title(f"Spearman ρ = {f(fs['rho'])} [{f(fs['ci_low'])}, {f(fs['ci_high'])}], "
                 f"n = {fs['n']}", fontsize="small")
    ax.set_xlabel("search fitness (search-validation acc. %)")
    ax.set_ylabel("held-out test acc. %")
    ax.legend(fontsize="x-small")
    return fig
