"""Figures of a fidelity calibration: what each proxy costs against how well it ranks losses.

:func:`plot_calibration_cost` puts one point per proxy at its cost per candidate (seconds, log
axis) and its Spearman rho against the target, with the bootstrap 95 % interval and the
recommendation thresholds; :func:`plot_calibration_scatter` draws, per proxy, every panel
loss at (proxy score, target score). Both take a
:class:`ngl.evaluate.proxy_calibration.CalibrationReport`.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

from ngl.evaluate.proxy_calibration import CalibrationReport
from ngl.ui.style import TEXT_WIDTH

__all__ = ["plot_calibration_cost", "plot_calibration_scatter", "KIND_MARKERS",
           "KIND_COLORS"]

KIND_MARKERS = {"reference": "o", "plain": "s", "random": "^", "search": "D"}
KIND_COLORS = {"reference": "C0", "plain": "C2", "random": "C3", "search": "C1"}
"""Marker and colour per kind of panel loss (registry reference, plain expression, random tree, search)."""


def _f(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.2f}"


def plot_calibration_cost(report: CalibrationReport) -> plt.Figure:
    """Cost per candidate (s, log) vs Spearman rho with its 95 % CI; the recommended proxy is
    filled, the thresholds are dashed lines."""
    t = report.table
    t = t[t["rho"].notna() & t["seconds_per_candidate"].notna()]
    if not len(t):
        raise ValueError(f"{report.out_dir}: no proxy has a defined rho yet")
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH / 2, 2.6), layout="constrained")
    cfg = report.config
    ax.axhline(cfg.rho_min, color="0.5", ls="--", lw=0.8, label=f"ρ ≥ {cfg.rho_min:g}")
    ax.axhline(cfg.rho_low_min, color="0.7", ls=":", lw=0.8,
               label=f"lower bound > {cfg.rho_low_min:g}")
    for k, (_, r) in enumerate(t.iterrows()):
        lo = r["rho"] - r["rho_low"] if not math.isnan(r["rho_low"]) else 0.0
        hi = r["rho_high"] - r["rho"] if not math.isnan(r["rho_high"]) else 0.0
        color = f"C{k % 10}"
        ax.errorbar([r["seconds_per_candidate"]], [r["rho"]], yerr=[[lo], [hi]], fmt="o",
                    color=color, mfc=color if r["recommended"] else "none", capsize=2, ms=5,
                    lw=1, label=r["proxy"] + (" (recommended)" if r["recommended"] else ""))
    ax.set_xscale("log")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("cost per candidate (s)")
    ax.set_ylabel("Spearman ρ vs target")
    ax.set_title(f"{cfg.dataset}: proxy vs {cfg.target_model}, {cfg.target_train.epochs} epochs",
                 fontsize="small")
    ax.legend(fontsize="xx-small", loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0, frameon=False)
    return fig


def plot_calibration_scatter(report: CalibrationReport, columns: int = 3) -> plt.Figure:
    """Per proxy: each panel loss at (proxy's search-validation accuracy, target's), in %."""
    s = report.scores
    proxies = [p.name for p in report.config.proxies
               if p.name in s and s[[p.name, "target"]].notna().all(axis=1).any()]
    if not proxies:
        raise ValueError(f"{report.out_dir}: no loss has both a proxy and a target score yet")
    cols = min(columns, len(proxies))
    rows = -(-len(proxies) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(TEXT_WIDTH, 2.1 * rows), squeeze=False,
                             layout="constrained", sharey=True)
    stats = report.table.set_index("proxy")
    for ax, name in zip(axes.flat, proxies, strict=False):
        for kind, marker in KIND_MARKERS.items():
            sub = s[(s["kind"] == kind) & s[[name, "target"]].notna().all(axis=1)]
            if len(sub):
                ax.scatter(100 * sub[name], 100 * sub["target"], marker=marker, s=16,
                           facecolors="none", edgecolors=KIND_COLORS[kind], label=kind)
        r = stats.loc[name]
        ax.set_title(f"{name}: ρ = {_f(r['rho'])} [{_f(r['rho_low'])}, {_f(r['rho_high'])}]",
                     fontsize="x-small")
        ax.set_xlabel("proxy acc. % (search-val.)", fontsize="x-small")
    for ax in axes[:, 0]:
        ax.set_ylabel("target acc. % (search-val.)", fontsize="x-small")
    for ax in list(axes.flat)[len(proxies):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize="x-small", frameon=False)
    return fig
