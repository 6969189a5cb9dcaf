"""Figures of a running or finished GP search: fitness, diversity and filter counts per generation.

:func:`plot_search_progress` draws the three panels from
:meth:`ngl.gp.search.SearchResult.generation_summary`; :class:`LivePlot` is a search callback that
redraws them in place while the search runs. The search's references (``SearchSpec.references``,
CE by default) are dashed horizontal lines on the fitness panel.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display
from matplotlib.ticker import MaxNLocator

from ngl.losses import display_name
from ngl.ui.style import TEXT_WIDTH

__all__ = ["LivePlot", "earlier_generations", "plot_search_progress", "plot_tuning",
           "reference_scores"]


def reference_scores(references) -> dict[str, float]:
    """``{label: search-validation accuracy}`` of a search's trained references, from a
    :class:`~ngl.gp.result.SearchResult`, its ``.references`` frame, a run directory or a dict."""
    if references is None:
        return {}
    if isinstance(references, Mapping):
        return {str(k): float(v) for k, v in references.items()}
    if not isinstance(references, pd.DataFrame):
        if not hasattr(references, "references"):  # a run directory
            from ngl.gp.result import load_result

            references = load_result(references)
        references = references.references
    ok = references[references["status"] == "ok"]
    return dict(zip(ok["loss"].astype(str), ok["fitness"].astype(float), strict=True))


def plot_search_progress(summary: pd.DataFrame, axes=None, references=None) -> plt.Figure:
    """Fitness (best, median, quartile band), diversity, tree size, rejected/cached per generation.

    ``references`` (``{label: accuracy}``, a ``SearchResult`` or its ``.references``; default:
    ``summary.attrs["references"]``, which :meth:`SearchResult.generation_summary` sets) are
    drawn as labelled dashed horizontal lines on the fitness panel.
    """
    if summary is None or not len(summary):
        raise ValueError("empty search summary: run at least one generation first")
    refs = reference_scores(summary.attrs.get("references") if references is None
                            else references)
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(TEXT_WIDTH, 2.5), layout="constrained")
    else:
        fig = axes[0].figure
    # legends sit above their panel, where they cannot cover the band, the lines or the bars
    above = {"loc": "lower left", "bbox_to_anchor": (0.0, 1.02), "borderaxespad": 0.0,
             "frameon": False, "fontsize": "small", "ncol": 2, "columnspacing": 1.0,
             "handlelength": 1.5}
    g = summary["generation"].to_numpy()
    ax = axes[0]
    ax.fill_between(g, summary["q25"], summary["q75"], alpha=0.25, lw=0, label="quartiles")
    ax.plot(g, summary["median"], marker=".", label="median")
    ax.plot(g, summary["best"], marker=".", label="best")
    for k, (label, acc) in enumerate(refs.items()):
        ax.axhline(acc, color=f"C{(k + 3) % 10}", ls="--", lw=0.9,
                   label=f"{display_name(label)} (reference)")
    ax.set(xlabel="generation", ylabel="validation accuracy")
    ax.legend(**above)
    ax = axes[1]
    ax.plot(g, summary["distinct_functions"], marker=".", label="distinct functions")
    ax.plot(g, summary["mean_size"], marker=".", label="mean tree size")
    ax.set(xlabel="generation", ylabel="count")
    ax.legend(**{**above, "ncol": 1})
    ax = axes[2]
    ax.bar(g - 0.2, summary["rejected"], width=0.4, label="rejected")
    ax.bar(g + 0.2, summary["cache_hits"], width=0.4, label="cache hits")
    ax.set(xlabel="generation", ylabel="candidates")
    ax.legend(**above)
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlim(g.min() - 0.6, g.max() + 0.6)  # one generation: a point in the middle
    return fig


def earlier_generations(run_dir, generation: int) -> list[dict]:
    """Summary rows of the generations before `generation` in a run directory, so a resumed
    search's live figure (`LivePlot`, `SearchRunner`) shows its whole history."""
    from ngl.gp.result import load_result, summarise_generations

    history = load_result(run_dir).history
    if not len(history):
        return []
    summary = summarise_generations(history[history["generation"] < generation])
    return summary.to_dict("records") if len(summary) else []


class LivePlot:
    """A search callback that redraws the progress figure in place, at most once per ``every`` s.

    Uses ``display(fig, display_id=True)`` and ``handle.update(fig)`` (no ipympl needed); outside
    a kernel it only keeps the summary rows.
    """

    def __init__(self, every: float = 1.0):
        self.every = every
        self.rows: list[dict] = []
        self.references: dict[str, float] = {}
        self._handle = None
        self._last = 0.0
        self.fig = None

    def __call__(self, summary: dict, search=None) -> None:
        if not self.rows and search is not None:
            # a resumed search: draw the generations it ran before, not just from here on
            self.rows = earlier_generations(search.run_dir, int(summary["generation"]))
        if not self.references and search is not None and search.spec.references:
            # trained before generation 0: on disk by the first callback
            self.references = reference_scores(search.run_dir)
        gen = summary.get("generation")
        self.rows = [r for r in self.rows if r.get("generation") != gen] + [dict(summary)]
        now = time.monotonic()
        if now - self._last < self.every and self._handle is not None:
            return
        self._last = now
        self.redraw()

    def redraw(self) -> None:
        if self.fig is None:
            self.fig, _ = plt.subplots(1, 3, figsize=(TEXT_WIDTH, 2.5), layout="constrained")
        for ax in self.fig.axes:
            ax.clear()
        plot_search_progress(pd.DataFrame(self.rows), axes=self.fig.axes,
                             references=self.references)
        if self._handle is None:
            self._handle = display(self.fig, display_id=True)
        else:
            self._handle.update(self.fig)

    def close(self) -> None:
        if self.fig is not None:
            plt.close(self.fig)


def plot_tuning(result, names: Sequence[str] | None = None,
                reference: Sequence[float | None] | None = None) -> plt.Figure:
    """A CMA-ES constant tuning run (:func:`ngl.tune_constants`): each tuned constant per
    evaluation and its generation mean, and best / median fitness per generation (the untuned
    start is generation -1, dashed).

    ``names`` labels the constants (default "constant 0", ...); ``reference`` draws a dotted
    line at a known value per constant (e.g. the paper's NGL alpha; None skips one).
    """
    h = result.history
    if not len(h):
        raise ValueError(f"{result.run_dir}: no evaluations yet")
    per = result.per_generation()
    n = len(h["constants"].iloc[0])
    names = list(names) if names is not None else [f"constant {k}" for k in range(n)]
    reference = list(reference) if reference is not None else [None] * n
    if len(names) != n or len(reference) != n:
        raise ValueError(f"names={names!r}, reference={reference!r}: expected {n} value(s), "
                         "one per tuned constant")
    fig, axes = plt.subplots(1, 2, figsize=(TEXT_WIDTH, 2.2), layout="constrained")
    ax = axes[0]
    for k in range(n):
        values = h["constants"].map(lambda c, k=k: c[k])
        ax.scatter(h["generation"], values, s=6, alpha=0.4, color=f"C{k}")
        ax.plot(per["generation"], per[f"c{k}"], color=f"C{k}", label=names[k])
        if reference[k] is not None:
            ax.axhline(reference[k], color=f"C{k}", ls=":", lw=0.8,
                       label=f"{names[k]} = {reference[k]:g}")
    ax.set_xlabel("CMA-ES generation")
    ax.set_ylabel("value")
    ax.legend(fontsize="x-small")
    ax = axes[1]
    ax.plot(per["generation"], 100 * per["best"], marker="o", ms=3, label="best")
    ax.plot(per["generation"], 100 * per["median"], label="median")
    ax.axhline(100 * result.start["val_accuracy"], color="0.5", ls="--", lw=0.8,
               label="untuned start")
    ax.set_xlabel("CMA-ES generation")
    ax.set_ylabel("search-val. acc. %")
    ax.legend(fontsize="x-small")
    for ax in axes:  # generations are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
