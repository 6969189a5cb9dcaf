"""Run the downstream grid from a notebook (notebook 04): pick it, run it, watch the table grow.

:class:`TableBuilder` is the form (datasets, models, losses, seeds) with a Run button;
:class:`LiveTable` is a :func:`ngl.evaluate.grid.run_grid` callback that redraws the summary
table in place after every finished run. Both summarise the runs finished so far with
:func:`summary_so_far`.
"""

from __future__ import annotations

import dataclasses
import html
import threading
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as W
import pandas as pd
from IPython.display import Markdown, display

from ngl.data import available_datasets, missing_dataset
from ngl.evaluate import DATASET_NAMES, format_table, summarise, to_markdown
from ngl.evaluate.grid import GridConfig, loss_label, run_grid
from ngl.losses.registry import display_name
from ngl.ui.widget_kit import (
    Background,
    InBackground,
    error_text,
    kept_fields,
    kept_html,
    report_error,
    short_label,
    show_errors,
    show_validation,
)

__all__ = ["LiveTable", "TableBuilder", "parse_seeds", "resize_seeds", "summary_so_far",
           "table_builder"]


def summary_so_far(results: pd.DataFrame, baseline: str | None = "ce") -> pd.DataFrame | None:
    """:func:`ngl.evaluate.tables.summarise` of a grid's results while it runs.

    ``None`` while no run has finished (``status == "ok"``); the change against ``baseline``
    only once the baseline has a finished run (until then there is nothing to compare with).
    """
    ok = results[results["status"] == "ok"] if "status" in results else results
    if ok.empty:
        return None
    return summarise(results, baseline=baseline if baseline in set(ok["loss"]) else None)


class LiveTable:
    """A :func:`ngl.evaluate.grid.run_grid` callback: the summary table, redrawn in place.

    Shows ``placeholder`` when built, then the markdown table of :func:`summary_so_far` after
    every finished run (``display(..., display_id=True)`` and ``handle.update``; no widget
    needed, so it also shows in a static copy of the notebook). ``.summary`` and ``.markdown``
    hold the latest table.
    """

    def __init__(self, baseline: str | None = "ce",
                 placeholder: str = "*waiting for the first run...*"):
        self.baseline = baseline
        self.summary: pd.DataFrame | None = None
        self.markdown = placeholder
        self._handle = None
        self._show()

    def __call__(self, _row, results: pd.DataFrame) -> None:
        summary = summary_so_far(results, self.baseline)
        if summary is None:
            return
        self.summary = summary
        self.markdown = to_markdown(summary)
        self._show()

    def _show(self) -> None:
        obj = Markdown(self.markdown)
        if self._handle is None:  # outside a kernel display() prints and returns no handle
            self._handle = display(obj, display_id=True)
        else:
            self._handle.update(obj)


def _merge(base: tuple, selected: Iterable) -> tuple:
    """``selected`` in the base's order, newly selected items after them (option order)."""
    chosen = tuple(selected)
    kept = tuple(b for b in base if b in chosen)
    return kept + tuple(c for c in chosen if c not in kept)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"3, 7, 11"`` -> ``(3, 7, 11)``; commas and/or spaces separate; a non-integer raises."""
    items = [t for t in text.replace(",", " ").split() if t]
    try:
        return tuple(int(t) for t in items)
    except ValueError:
        raise ValueError(f"seeds {text!r}: expected integers such as '0, 1, 2'") from None


def resize_seeds(seeds: tuple[int, ...], n: int) -> tuple[int, ...]:
    """The first ``n`` of ``seeds``, or ``seeds`` followed by the next unused integers."""
    if n <= len(seeds):
        return seeds[: max(n, 0)]
    extra, nxt = [], max(seeds, default=-1) + 1
    while len(seeds) + len(extra) < n:
        if nxt not in seeds:
            extra.append(nxt)
        nxt += 1
    return (*seeds, *extra)


class TableBuilder(InBackground):
    """Pick datasets, models, losses and seeds, run the grid, watch the table grow.

    ``.value`` is the :class:`ngl.evaluate.grid.GridConfig` of the current selection. An untouched
    form returns ``base`` itself; an edit replaces exactly its field, and every field not on the
    form (training settings but epochs, subset sizes, data seed, head, device, model kwargs)
    passes through and is listed in ``.kept``. Base losses the option list lacks (dict specs,
    expression text), datasets and models are added as options, never dropped. ``.seeds`` is a
    text box (``"3, 7, 11"``); ``.n_seeds`` resizes it (first n, or more after the largest).
    Bounds are ``GridConfig``'s own: while the selection is invalid ``.status`` shows its error,
    ``.error`` holds it and ``.value`` raises it. The Run button calls
    :func:`ngl.evaluate.grid.run_grid` (finished cells in ``results_path`` are skipped) and after
    every finished cell redraws ``table_out`` with :func:`ngl.evaluate.tables.format_table`; ``.results``
    and ``.table`` hold the latest DataFrames. Errors are shown in ``out``.

    **Run grid** trains in a background thread (:meth:`start`), so the kernel stays free while
    the table grows; **stop** lets the cell in progress finish and starts no other (its rows are
    kept; Run grid again continues with the cells not done). :meth:`run` is the same work in the
    calling thread (scripts, tests). ``.state``: ``idle``, ``running``, ``stopping``,
    ``stopped``, ``finished`` or ``error``.
    """

    SHOWN = ("datasets", "models", "losses", "seeds", "train.epochs")

    def __init__(self, results_path, datasets=None, models=("dense_cnn", "small_cnn", "small_inception",
                 "resnet_cifar"), losses=("ce", "ngl", "focal", "label_smoothing", "sce", "poly"),
                 base=None, executor=None):
        self.results_path = results_path
        self.executor = executor
        self.base = base if base is not None else GridConfig()
        b = self.base
        # losses are chosen by label (unique within a grid); the spec behind a label is the
        # base's own when it has one, so dict specs and expressions pass through intact
        self.loss_specs: dict[str, Any] = {}
        for spec in (*b.losses, *losses):
            self.loss_specs.setdefault(loss_label(spec), spec)
        self._base_labels = tuple(loss_label(s) for s in b.losses)

        def pick(options: Iterable, chosen: tuple, desc: str,
                 note: Callable[[Any], str] = lambda _o: "") -> W.SelectMultiple:
            opts = tuple(dict.fromkeys((*options, *chosen)))
            return W.SelectMultiple(options=[(short_label(o) + note(o), o) for o in opts],
                                    value=chosen, description=desc, rows=min(max(len(opts), 1), 6))

        # datasets whose files are not on this machine are marked before anyone picks them
        self.missing = {d: why for d in dict.fromkeys((*(datasets or available_datasets()),
                                                       *b.datasets))
                        if (why := missing_dataset(d, b.data_root)) is not None}
        self.datasets = pick(datasets or available_datasets(), b.datasets, "datasets",
                             lambda d: " (files not found)" if d in self.missing else "")
        self.models = pick(models, b.models, "models")
        self.losses = pick(self.loss_specs, self._base_labels, "losses")
        self.seeds = W.Text(value=", ".join(str(s) for s in b.seeds), description="seeds",
                            continuous_update=False)
        self.n_seeds = W.IntText(value=len(b.seeds), description="n seeds")
        self.epochs = W.IntText(value=b.train.epochs, description="epochs")
        self.run_button = W.Button(description="Run grid", button_style="primary", icon="play")
        self.stop_button = W.Button(description="stop", button_style="danger", icon="stop",
                                    disabled=True)
        self.background = Background("ngl-grid")
        self.state = "idle"
        self._stop = threading.Event()
        self.progress = W.IntProgress(value=0, min=0, max=1, description="cells")
        self.kept = W.HTML(kept_html(kept_fields(b, self.SHOWN, nested=("train",))))
        self.status = W.HTML()
        self.failures = W.HTML()  # failed runs and why, where the user looks
        self.out = W.Output()
        self.table_out = W.Output()
        self.error: str | None = None
        self.results = None
        self.table = None
        self._syncing = False
        self.widget = W.VBox([W.HBox([self.datasets, self.models, self.losses]),
                              W.HBox([self.seeds, self.n_seeds, self.epochs]), self.kept,
                              W.HBox([self.run_button, self.stop_button, self.progress,
                                      self.status]),
                              self.failures, self.table_out, self.out])
        self.run_button.on_click(show_errors(self.out)(lambda _b: self.start()))
        self.stop_button.on_click(show_errors(self.out)(lambda _b: self.stop()))
        self.n_seeds.observe(show_errors(self.out)(self._on_n_seeds), names="value")
        self.seeds.observe(show_errors(self.out)(self._on_seeds), names="value")
        for w in (self.datasets, self.models, self.losses, self.epochs):
            w.observe(show_errors(self.out)(lambda _c: self._describe()), names="value")
        self._describe()

    def _on_n_seeds(self, change) -> None:
        if self._syncing:
            return
        try:
            current = parse_seeds(self.seeds.value)
        except ValueError:
            current = self.base.seeds
        self._syncing = True
        try:
            self.seeds.value = ", ".join(str(s) for s in resize_seeds(current, change["new"]))
        finally:
            self._syncing = False
        self._describe()

    def _on_seeds(self, change) -> None:
        if self._syncing:
            return
        try:
            n = len(parse_seeds(change["new"]))
        except ValueError:
            n = None
        if n is not None:
            self._syncing = True
            try:
                self.n_seeds.value = n
            finally:
                self._syncing = False
        self._describe()

    def changes(self) -> dict[str, Any]:
        """The fields the form changed, as ``dataclasses.replace`` keywords (may raise)."""
        b = self.base
        changed: dict[str, Any] = {}
        for name in ("datasets", "models"):
            picked = _merge(getattr(b, name), getattr(self, name).value)
            if picked != getattr(b, name):
                changed[name] = picked
        labels = _merge(self._base_labels, self.losses.value)
        if labels != self._base_labels:
            changed["losses"] = tuple(self.loss_specs[label] for label in labels)
        seeds = parse_seeds(self.seeds.value)
        if seeds != b.seeds:
            changed["seeds"] = seeds
        if self.epochs.value != b.train.epochs:
            changed["train"] = dataclasses.replace(b.train, epochs=self.epochs.value)
        return changed

    @property
    def value(self):
        """``base`` with the edited fields replaced; raises the config's ``ValueError``."""
        changed = self.changes()
        return dataclasses.replace(self.base, **changed) if changed else self.base

    def _describe(self) -> None:
        def ok(cfg) -> str:
            text = f"{cfg.n_cells} runs"
            gone = [d for d in cfg.datasets if d in self.missing]
            if gone:
                text += "; <b style='color:#b00'>files not found for " + ", ".join(
                    f"{d}</b> ({html.escape(self.missing[d])})" for d in gone)
            return text

        exc = show_validation(self.status, lambda: self.value, ok)
        self.error = None if exc is None else error_text(exc)

    def show_failures(self, results) -> None:
        """Failed runs (status "error") and their messages, grouped by what failed."""
        if results is None or not len(results) or "status" not in results:
            self.failures.value = ""
            return
        bad = results[results["status"] == "error"]
        if not len(bad):
            self.failures.value = ""
            return
        error = bad["error"] if "error" in bad else pd.Series("(no message)", index=bad.index)
        lines = []  # one line per (dataset, model, message): a missing dataset fails every loss alike
        for (ds, model, msg), grp in bad.assign(error=error.fillna("(no message)")).groupby(
                ["dataset", "model", "error"], sort=False):
            losses = ", ".join(dict.fromkeys(display_name(str(x)) for x in grp["loss"]))
            seeds = ", ".join(str(s) for s in sorted(set(grp["seed"])))
            lines.append(f"<li>{html.escape(f'{ds} / {model} / {losses} (seeds {seeds})')}: "
                         f"<code>{html.escape(str(msg))}</code></li>")
        self.failures.value = (f"<b style='color:#b00'>{len(bad)} of {len(results)} runs failed"
                               f"</b><ul>{''.join(lines)}</ul>")

    def show_table(self, results) -> None:
        """Recompute the summary and replace what ``table_out`` shows."""
        self.results = results
        summary = summary_so_far(results)
        if summary is None:
            return
        # what people read: display names (CE, Label smoothing, Fashion-MNIST), not keys
        self.table = format_table(summary, bold=("<b>", "</b>")).rename(
            index=display_name, columns=lambda c: DATASET_NAMES.get(c, c))
        self.table_out.outputs = ()
        self.table_out.append_display_data(W.HTML(self.table.to_html(escape=False)))

    def start(self) -> threading.Thread:
        """Run (or continue) the selected grid in a background thread; the kernel stays free."""
        if self.running:
            raise RuntimeError("the grid is already running; stop it first")
        cfg = self.value  # an invalid selection raises here, before anything runs
        self._begin(cfg)
        return self.background.start(lambda: self._work(cfg), "the grid is already running")

    def stop(self) -> None:
        """Start no further cell; the one in progress finishes and keeps its row."""
        if not self.running:
            raise RuntimeError("no grid is running")
        self._stop.set()
        self.state = "stopping"
        self.stop_button.disabled = True
        self.status.value = "stopping: the run in progress finishes first"

    def run(self):
        """Run (or continue) the selected grid in this thread; return the results DataFrame."""
        cfg = self.value
        self._begin(cfg)
        try:
            return self._grid(cfg)
        except BaseException:
            self.state = "error"
            raise
        finally:
            self._end()

    def _begin(self, cfg) -> None:
        self._stop.clear()
        self.state = "running"
        self.progress.max, self.progress.value = cfg.n_cells, 0
        self.run_button.disabled = True
        self.stop_button.disabled = False
        self.status.value = f"running {cfg.n_cells} runs (finished runs are skipped) ..."

    def _end(self) -> None:
        self.run_button.disabled = False
        self.stop_button.disabled = True

    def _work(self, cfg) -> None:
        try:
            self._grid(cfg)
        except Exception as exc:  # noqa: BLE001 - shown in the widget; a thread must not die silently
            self.state = "error"
            self.status.value = f"<b style='color:#b00'>stopped by an error</b>: {html.escape(error_text(exc))}"
            report_error(self.out, exc)
        finally:
            self._end()

    def _grid(self, cfg):
        def on_row(row, results):
            self.progress.value = len(results)
            self.show_table(results)
            self.show_failures(results)
            self.status.value = f"running: {len(results)} of {cfg.n_cells} runs done ..."

        results = run_grid(cfg, self.results_path, executor=self.executor, progress=False,
                           callback=on_row, should_stop=self._stop.is_set)
        self.progress.value = len(results)
        self.show_table(results)
        self.show_failures(results)
        failed = int((results["status"] == "error").sum()) if "status" in results else 0
        stopped = len(results) < cfg.n_cells
        self.state = "stopped" if stopped else "finished"
        self.status.value = (
            f"{len(results) - failed} runs done"
            + (f", <b style='color:#b00'>{failed} failed</b> (below)" if failed else "")
            + (f"; <b>stopped</b>: {cfg.n_cells - len(results)} not run yet (Run grid continues)"
               if stopped else "")
            + f"; results in <code>{self.results_path}</code>")
        return results


def table_builder(results_path, datasets=None, models=("dense_cnn", "small_cnn", "small_inception", "resnet_cifar"),
                  losses=("ce", "ngl", "focal", "label_smoothing", "sce", "poly"), base=None,
                  executor=None) -> TableBuilder:
    """Build the downstream table builder; display ``tb.widget``, read ``tb.value``."""
    return TableBuilder(results_path, datasets=datasets, models=models, losses=losses, base=base,
                        executor=executor)
