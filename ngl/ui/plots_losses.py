"""What a loss looks like: its shape against the true-class probability, and its expression tree.

:func:`loss_shape_data` is the tidy data behind :func:`plot_loss_shapes` (notebooks 01, 03 and
the loss explorer); :func:`tree_layout` places the nodes that :func:`draw_tree` draws with
matplotlib alone (no graphviz needed).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import SymmetricalLogLocator
from torch import nn

from ngl.gp.expression import as_expression
from ngl.losses.registry import as_loss_module, display_name, per_sample_losses
from ngl.ui.plots_downstream import legend_outside, series_style
from ngl.ui.style import TEXT_WIDTH

__all__ = ["draw_tree", "loss_shape_data", "plot_loss_shapes", "tree_layout"]


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
        vals = per_sample_losses(as_loss_module(loss), logits, target)
        (grad,) = torch.autograd.grad(vals.sum(), p, retain_graph=True)
        v = vals.detach().numpy()
        span = float(v.max() - v.min())
        norm = (v - v.min()) / span if span > 0 else np.zeros_like(v)
        rows.append(pd.DataFrame({"loss_name": name, "p_true": p.detach().numpy(), "loss": v,
                                  "dloss_dp": grad.numpy(), "normalised": norm}))
    return pd.concat(rows, ignore_index=True)


class _FittingSymlogLocator(SymmetricalLogLocator):
    """Symlog ticks thinned until their labels fit the axis.

    Matplotlib's default puts a tick on every decade (up to 15 labels on a 2-inch axis when a found
    loss's slope spans 10 decades) and ``±10^0`` next to ``0``; here every other, third, ...
    decade is kept, and ticks crowding ``0`` are dropped, until labels are at least
    ``1.6 x`` their font size apart on screen.
    """

    def tick_values(self, vmin: float, vmax: float):
        if self.axis is None:
            return super().tick_values(vmin, vmax)
        lo, hi = sorted(self.axis.get_view_interval())
        col = 1 if self.axis.axis_name == "y" else 0
        trans = self.axis.axes.transData
        size = self.axis.get_major_ticks(1)[0].label1.get_size()  # points
        gap = 1.6 * size * self.axis.figure.dpi / 72

        def px(values) -> np.ndarray:
            xy = np.zeros((len(values), 2))
            xy[:, col] = values
            return trans.transform(xy)[:, col]

        for n in range(15, 1, -1):
            self.numticks = n
            ticks = np.asarray(super().tick_values(vmin, vmax))
            shown = ticks[(ticks >= lo) & (ticks <= hi)]
            if lo <= 0 <= hi:  # keep 0, drop its crowding neighbours
                shown = shown[(shown == 0) | (np.abs(px(shown) - px([0.0])[0]) >= gap)]
            if len(shown) < 2 or np.diff(np.sort(px(shown))).min() >= gap:
                return shown
        return ticks


def plot_loss_shapes(losses: Mapping[str, nn.Module], num_classes: int = 10, axes=None,
                     n_points: int = 199) -> plt.Figure:
    """Two panels: normalised loss and its slope against p_true, with each loss's optimum marked.

    Losses are labelled with their display names and drawn with their own line style (a found
    expression equal to NGL lies exactly on NGL); the optimum marker has the loss's own shape.
    The legend sits right of the slope panel.
    """
    df = loss_shape_data(losses, num_classes, n_points)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(TEXT_WIDTH, 2.4), layout="constrained")
    else:
        fig = axes[0].figure
    for k, (name, part) in enumerate(df.groupby("loss_name", sort=False)):
        style = series_style(k)
        marker = style.pop("marker")
        label = display_name(str(name))
        axes[0].plot(part["p_true"], part["normalised"], label=label, **style)
        i = int(part["loss"].to_numpy().argmin())
        axes[0].plot(part["p_true"].iloc[i], part["normalised"].iloc[i], ms=4,
                     **{**style, "marker": marker, "ls": "none"})
        axes[1].plot(part["p_true"], part["dloss_dp"], label=label, **style)
    axes[0].set(xlabel=r"true-class probability $p_t$", ylabel="loss (normalised to [0, 1])",
                title=f"C = {num_classes}")
    axes[1].set(xlabel=r"true-class probability $p_t$", ylabel=r"$\partial L / \partial p_t$")
    axes[1].set_yscale("symlog", linthresh=1.0)  # decades from 10^0 on: evenly spaced ticks
    axes[1].yaxis.set_major_locator(_FittingSymlogLocator(axes[1].yaxis.get_transform()))
    axes[1].axhline(0, color="0.6", lw=0.6)
    legend_outside(axes[1])
    return fig


# -- expression trees ----------------------------------------------------------------------------
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

    place(as_expression(expr)._tree(), 0)
    return nodes, edges


_LEAF_COLOURS = {"y_pred": "#cfe2f3", "y_real": "#d9ead3", "logits": "#fce5cd", "log_pred": "#ead1dc"}


def draw_tree(expr, ax=None, formula: bool = True) -> plt.Figure:
    """Draw an expression tree with matplotlib alone (no graphviz needed), formula as title."""
    expr = as_expression(expr)
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

