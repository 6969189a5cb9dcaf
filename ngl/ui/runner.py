"""Run a GP loss search from a notebook: start, stop and resume it, with a live progress figure.

The search runs in a background thread so the kernel stays responsive; the widget only calls
:class:`ngl.gp.search.GPSearch` and reads its checkpoint, so what it runs is what the command
line runs.
"""

from __future__ import annotations

import contextlib
import html
import json
import sys
import threading
import time
from pathlib import Path

import ipywidgets as W
import pandas as pd

from ngl.gp import GPSearch, RunOptions, SearchSpec, load_result, read_run_files
from ngl.io.paths import search_run_dir
from ngl.ui.plots_search import earlier_generations, plot_search_progress, reference_scores
from ngl.ui.style import TEXT_WIDTH
from ngl.ui.widget_kit import (
    Background,
    InBackground,
    figure_png,
    new_figure,
    report_error,
    show_errors,
)

__all__ = ["SearchRunner", "search_runner"]


class SearchRunner(InBackground):
    """Start, stop and resume a GP loss search from a notebook, with a live progress figure.

    The search runs in a background thread (``.thread``) so the kernel stays responsive and
    **Stop** works: it calls :meth:`GPSearch.request_stop`, the search stops after the chunk in
    progress, and the checkpoint keeps what was done; **Resume** continues from it
    (:func:`ngl.gp.search.resume`). ``.state`` is ``idle``, ``running``, ``stopping``, ``stopped``,
    ``finished`` or ``error``; ``.result`` the last :class:`SearchResult`; ``.rows`` the
    per-generation summaries; ``.references`` the search's reference scores (dashed lines in
    the figure); ``.image`` the live figure (PNG); errors land in ``.out``.
    """

    def __init__(self, spec: SearchSpec, run_dir=None, options: RunOptions | None = None,
                 executor=None, plot_every: float = 1.0):
        if not isinstance(spec, SearchSpec):
            raise TypeError(f"spec must be a SearchSpec, got {type(spec).__name__}")
        self.spec = spec
        self.options = options if options is not None else RunOptions()
        self.run_dir = Path(run_dir) if run_dir is not None else search_run_dir(spec.key)
        self.executor = executor
        self.plot_every = plot_every
        self.search = None
        self.background = Background("ngl-search")
        self.result = None
        self.error: BaseException | None = None
        self.state = "idle"
        self.rows: list[dict] = []
        self.references: dict[str, float] = {}
        self._last_plot = 0.0
        self.start_button = W.Button(description="start", icon="play", button_style="success")
        self.stop_button = W.Button(description="stop", icon="stop", button_style="danger", disabled=True)
        self.resume_button = W.Button(description="resume", icon="forward")
        self.status = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(max_width="900px"))
        self.out = W.Output()
        self.start_button.on_click(show_errors(self.out)(lambda _b: self.start()))
        self.stop_button.on_click(show_errors(self.out)(lambda _b: self.stop()))
        self.resume_button.on_click(show_errors(self.out)(lambda _b: self.resume()))
        self.widget = W.VBox([
            W.HBox([self.start_button, self.stop_button, self.resume_button]),
            self.status, self.image, self.out,
        ])
        self._show_existing()

    # -- state ---------------------------------------------------------------------------------
    def _set_state(self, state: str, detail: str = "") -> None:
        self.state = state
        busy = state in ("running", "stopping")
        self.start_button.disabled = busy
        self.resume_button.disabled = busy or not (self.run_dir / "checkpoint.json").exists()
        self.stop_button.disabled = state != "running"
        colour = {"error": "#b00", "finished": "#070", "stopped": "#a60"}.get(state, "#333")
        self.status.value = (f"<b style='color:{colour}'>{state}</b> &nbsp; {detail} "
                             f"<br><code>{self.run_dir}</code>")

    def _show_existing(self) -> None:
        if (self.run_dir / "spec.json").exists():
            try:
                res = load_result(self.run_dir)
            except (OSError, ValueError) as exc:
                self._set_state("idle", f"cannot read the existing run: {exc}")
                return
            self.result = res
            self.references = reference_scores(res)
            summary = res.generation_summary()
            self.rows = summary.to_dict("records") if len(summary) else []
            if self.rows:
                self.redraw()
            done = "complete" if res.complete else "partial: resume continues it"
            self._set_state("idle", f"existing run, {len(res.history)} candidates ({done})")
        else:
            self._set_state("idle", "no run yet")

    # -- actions -------------------------------------------------------------------------------
    def start(self) -> threading.Thread:
        """Run (or continue) the search for ``config`` in ``run_dir`` in a background thread."""
        return self._launch(lambda: GPSearch(self.spec, self.run_dir, self.options,
                                             executor=self.executor,
                                             progress=False, callback=self._on_generation))

    def resume(self) -> threading.Thread:
        """Continue the search saved in ``run_dir`` (its own saved spec) from its checkpoint."""
        if not (self.run_dir / "spec.json").exists():
            raise FileNotFoundError(f"nothing to resume: no search in {self.run_dir} yet; press start")
        files = read_run_files(self.run_dir)
        return self._launch(lambda: GPSearch(files.spec, self.run_dir, self.options,
                                             executor=self.executor,
                                             progress=False, callback=self._on_generation))

    def stop(self) -> None:
        """Ask the search to stop after the chunk in progress (the checkpoint keeps the rest)."""
        if not self.running or self.search is None:
            raise RuntimeError("no search is running")
        self.search.request_stop()
        self._set_state("stopping", "stops after the chunk in progress")

    def wait(self):
        """The search's result once the background search ends (the cells after the panel).

        Waits while it runs (the kernel is busy meanwhile; the panel's buttons answer again
        when this returns). Interrupting the kernel here stops the search after the chunk in
        progress and returns what is done, with one line: "stopped - run again to resume".
        With no search started, the run directory's result (a finished run needs no start);
        raises when there is none.
        """
        if self.thread is None:
            if not (self.run_dir / "history.jsonl").exists():
                raise RuntimeError(f"no search in {self.run_dir} yet: press start "
                                   "(or set AUTOSTART = True) first")
            self.result = load_result(self.run_dir)
            return self.result
        try:  # interruptible waits on the done event (see Background), never Thread.join()
            while not self.background.wait(0.2):
                pass
        except KeyboardInterrupt:
            if self.running and self.search is not None:
                self.search.request_stop()
                self._set_state("stopping", "stops after the chunk in progress")
            with contextlib.suppress(KeyboardInterrupt):  # a second one: stop waiting
                self.background.wait()
            kept = load_result(self.run_dir)
            print(f"stopped - run again to resume ({len(kept.history)} candidates kept in "
                  f"{self.run_dir})", file=sys.stderr)
            return kept
        if self.error is not None:
            raise RuntimeError(f"the search stopped with an error: {self.error}") from self.error
        return self.result

    def _launch(self, make_search) -> threading.Thread:
        if self.running:
            raise RuntimeError("a search is already running; stop it first")
        self.search = make_search()
        self.error = None
        self.rows = self._finished_generations()  # a resumed run plots its whole history
        self._set_state("running", f"generation {len(self.rows) + 1} of "
                                   f"{self.search.spec.generations} ...")
        return self.background.start(self._search, "a search is already running; stop it first")

    def _search(self) -> None:
        try:
            self.result = self.search.run()
        except KeyboardInterrupt:  # raised by the search when stopped inside a generation
            self.result = load_result(self.run_dir)
        except Exception as exc:  # noqa: BLE001 - shown in the widget, the thread must not die silently
            self.error = exc
            report_error(self.out, exc)
            self._set_state("error", "see the message below")
            return
        if self.rows:
            self.redraw()
        n = len(self.result.history)
        if self.result.complete:
            self._set_state("finished", f"{n} candidates; best {self._best_text()}")
        else:
            self._set_state("stopped", f"{n} candidates so far; resume continues from the checkpoint")

    def _best_text(self) -> str:
        hof = self.result.hall_of_fame(1)
        if not len(hof):
            return "(none trained)"
        best = hof.iloc[0]
        score = f"val. accuracy {best['val_accuracy']:.4f}"
        if pd.notna(best.get("fitness_mean")) and pd.notna(best.get("fitness_std")):
            score += (f" (rescored: {best['fitness_mean']:.4f} ± {best['fitness_std']:.4f} over "
                      f"{int(best['n_seeds'])} seeds)")
        return f"{score}: <code>{html.escape(best['formula'])}</code>"

    def _finished_generations(self) -> list[dict]:
        """Summaries of the generations the run directory already finished (none for a new run)."""
        ckpt = self.run_dir / "checkpoint.json"
        if not ckpt.exists():
            return []
        try:
            return earlier_generations(self.run_dir, int(json.loads(ckpt.read_text())["generation"]))
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _on_generation(self, summary: dict, search=None) -> None:
        if not self.references and search is not None and search.spec.references:
            self.references = reference_scores(search.run_dir)  # trained before generation 0
        gen = summary.get("generation")
        self.rows = [r for r in self.rows if r.get("generation") != gen] + [dict(summary)]
        if self.state == "running":
            self._set_state("running", f"{len(self.rows)} of {self.search.spec.generations} generations done")
        now = time.monotonic()
        if now - self._last_plot >= self.plot_every:
            self._last_plot = now
            self.redraw()

    def redraw(self) -> None:
        """Redraw the progress figure from ``.rows`` into ``.image``."""
        fig = new_figure((TEXT_WIDTH, 2.5))
        plot_search_progress(pd.DataFrame(self.rows), axes=fig.subplots(1, 3),
                             references=self.references)
        self.image.value = figure_png(fig)


def search_runner(spec: SearchSpec, run_dir=None, options: RunOptions | None = None,
                  executor=None, plot_every: float = 1.0, **option_keywords) -> SearchRunner:
    """Build the start/stop/resume panel for a search; display ``runner.widget``.

    Run options as ``ngl.search`` takes them (``device="cuda", chunk_size=32``...), or a
    `RunOptions` object; keywords replace its fields."""
    options = (options if options is not None else RunOptions()).replaced(**option_keywords)
    return SearchRunner(spec, run_dir, options, executor=executor, plot_every=plot_every)
