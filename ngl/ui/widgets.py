"""ipywidgets front ends. Each is built by a function; callbacks call plain ``ngl`` code.

Widgets keep their state on a small object (``.value``) so a test can tick a box, click a
button and assert on the result without a kernel. Exceptions raised in callbacks are shown
in the widget's ``Output`` (JupyterLab would otherwise swallow them).
"""

from __future__ import annotations

import dataclasses
import functools
import html
import threading
import traceback
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import ipywidgets as W

from ngl.gp.primitives import LEAVES, OPERATORS, PrimitiveSet, preset
from ngl.gp.sampling import sample_expressions
from ngl.io.paths import search_run_dir

__all__ = ["PrimitiveSetPicker", "SearchConfigForm", "error_html", "error_text", "kept_fields",
           "primitive_set_picker", "search_config_form", "show_errors", "show_validation"]


def error_text(exc: BaseException) -> str:
    """The config's own message for ``exc``, one readable line per problem for pydantic errors."""
    try:
        from ngl.io.config import describe_error
    except ImportError:  # configs without the shared pydantic helpers
        return str(exc)
    return describe_error(exc)


def error_html(exc: BaseException | str) -> str:
    """A config's error message as red HTML, escaped (messages hold ``<``, ``'`` and newlines)."""
    text = exc if isinstance(exc, str) else error_text(exc)
    return f"<span style='color:#b00; white-space:pre-wrap'>{html.escape(text)}</span>"


def show_validation(status: W.HTML, build: Callable[[], object],
                    describe: Callable[[object], str]) -> BaseException | None:
    """Put ``describe(build())`` into ``status``, or the error that ``build`` raised, in red.

    The message is the config's own (``ValueError``; ``TypeError`` for a wrong type), so the
    form never needs bounds of its own that could drift from the config's validation. Returns
    the error (``None`` when valid) so a form can keep it.
    """
    try:
        value = build()
    except (ValueError, TypeError) as exc:
        status.value = error_html(exc)
        return exc
    status.value = describe(value)
    return None


def show_errors(out: W.Output) -> Callable:
    """Decorator for callbacks: an exception is printed into ``out`` instead of vanishing."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown to the user, not swallowed
                out.append_stderr(f"{type(exc).__name__}: {exc}\n")
                out.append_stderr("".join(traceback.format_exception(exc)[-3:]))
                return None

        return wrapper

    return deco


class PrimitiveSetPicker:
    """Tick operators and leaves, choose the constant range, sample random trees.

    ``.value`` is the current :class:`PrimitiveSet` (or ``None`` while the choice is invalid,
    with the reason shown); ``.widget`` is what a notebook displays; ``.samples`` holds the
    last sampled expressions.
    """

    def __init__(self, initial: PrimitiveSet | str = "paper", n_samples: int = 6, seed: int = 0):
        initial = preset(initial) if isinstance(initial, str) else initial
        self.op_boxes = {
            name: W.Checkbox(value=name in initial.operators, description=name, indent=False,
                             tooltip=OPERATORS[name].description,
                             layout=W.Layout(width="110px"))
            for name in OPERATORS
        }
        self.leaf_boxes = {
            name: W.Checkbox(value=name in initial.leaves, description=name, indent=False,
                             tooltip=LEAVES[name].description, layout=W.Layout(width="110px"))
            for name in LEAVES
        }
        self.use_constants = W.Checkbox(value=initial.const_range is not None,
                                        description="random constants", indent=False)
        lo, hi = initial.const_range or (-5.0, 5.0)
        # bounds wide enough for the given range: a slider clamps, and a tick elsewhere would
        # then silently shrink the constants of the returned set
        self.const_range = W.FloatRangeSlider(value=(lo, hi), min=min(-10.0, lo), max=max(10.0, hi),
                                              step=0.1, description="range", continuous_update=False)
        self.preset = W.Dropdown(options=["custom", "paper", "gplearn", "full"],
                                 value=initial.name if initial.name in ("paper", "gplearn", "full") else "custom",
                                 description="preset")
        self.n_samples = W.IntSlider(value=n_samples, min=1, max=20, description="samples")
        self.seed = W.IntText(value=seed, description="seed", layout=W.Layout(width="160px"))
        self.sample_button = W.Button(description="sample trees", icon="random")
        self.status = W.HTML()
        self.out = W.Output()
        self.value: PrimitiveSet | None = initial
        self.samples: list = []
        self._listeners: list[Callable[[PrimitiveSet | None], None]] = []
        self._syncing = False

        for box in [*self.op_boxes.values(), *self.leaf_boxes.values(), self.use_constants,
                    self.const_range]:
            box.observe(show_errors(self.out)(self._on_change), names="value")
        self.preset.observe(show_errors(self.out)(self._on_preset), names="value")
        self.sample_button.on_click(show_errors(self.out)(lambda _b: self.sample()))
        grid = lambda boxes: W.GridBox(list(boxes), layout=W.Layout(  # noqa: E731
            grid_template_columns="repeat(6, 115px)"))
        self.widget = W.VBox([
            self.preset,
            W.HTML("<b>Operators</b>"), grid(self.op_boxes.values()),
            W.HTML("<b>Leaves</b>"), grid(self.leaf_boxes.values()),
            W.HBox([self.use_constants, self.const_range]),
            self.status,
            W.HBox([self.n_samples, self.seed, self.sample_button]),
            self.out,
        ])
        self._update()

    def on_change(self, fn: Callable[[PrimitiveSet | None], None]) -> None:
        """Call ``fn(pset)`` whenever the selection changes (e.g. to redraw a plot)."""
        self._listeners.append(fn)

    def _selection(self) -> PrimitiveSet:
        return PrimitiveSet(
            operators=tuple(n for n, b in self.op_boxes.items() if b.value),
            leaves=tuple(n for n, b in self.leaf_boxes.items() if b.value),
            const_range=tuple(self.const_range.value) if self.use_constants.value else None,
            name=self.preset.value,
        )

    def _update(self) -> None:
        try:
            self.value = self._selection()
        except ValueError as exc:
            self.value = None
            self.status.value = f"<span style='color:#b00'>invalid selection: {exc}</span>"
        else:
            self.status.value = f"<code>{self.value.describe()}</code>"
        self.const_range.disabled = not self.use_constants.value
        for fn in self._listeners:
            fn(self.value)

    def _on_change(self, _change) -> None:
        if self._syncing:
            return
        if self.preset.value != "custom":
            self._syncing = True
            self.preset.value = "custom"
            self._syncing = False
        self._update()

    def _on_preset(self, change) -> None:
        if self._syncing or change["new"] == "custom":
            return
        p = preset(change["new"])
        self._syncing = True
        try:
            for n, b in self.op_boxes.items():
                b.value = n in p.operators
            for n, b in self.leaf_boxes.items():
                b.value = n in p.leaves
            self.use_constants.value = p.const_range is not None
            if p.const_range is not None:
                self.const_range.value = p.const_range
        finally:
            self._syncing = False
        self._update()

    def sample(self) -> list:
        """Sample random trees (ramped half-and-half) from the current set and show them."""
        if self.value is None:
            raise ValueError("the current selection is not a valid primitive set; see the message above")
        self.samples = sample_expressions(self.value, self.n_samples.value, seed=self.seed.value)
        self.out.clear_output()
        from IPython.display import Math

        for e in self.samples:
            self.out.append_display_data(Math(e.latex()))
            self.out.append_stdout(f"{e}    (size {e.size}, depth {e.depth})\n")
        return self.samples


def primitive_set_picker(initial: PrimitiveSet | str = "paper", n_samples: int = 6,
                         seed: int = 0) -> PrimitiveSetPicker:
    """Build the primitive-set picker; display ``picker.widget``, read ``picker.value``."""
    return PrimitiveSetPicker(initial, n_samples=n_samples, seed=seed)


def _option(options: Iterable[Hashable], value: Hashable, note: str = "kept") -> list:
    """Dropdown options that include ``value``: one the list lacks is added (labelled), never replaced."""
    opts: list = [(str(o), o) for o in dict.fromkeys(options)]
    if value not in dict(opts).values():
        opts.append((f"{value} ({note})", value))
    return opts


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 1] + "…"


def kept_fields(config: Any, shown: Iterable[str], nested: Iterable[str] = ()) -> dict[str, Any]:
    """Fields of ``config`` that the form does not show and that differ from the defaults.

    Read from ``to_dict()`` so new fields are listed without the form knowing them; ``nested``
    fields (e.g. ``budget``) are listed per sub-field (``budget.optimizer``). Shown on the form
    as a read-only line, so what passes through unseen is still visible.
    """
    mine = config.to_dict()
    try:
        default = type(config)().to_dict()
    except (ValueError, TypeError):  # no default instance: list every field
        default = {}
    shown, nested = set(shown), set(nested)
    kept: dict[str, Any] = {}
    for name, value in mine.items():
        if name in nested and isinstance(value, Mapping):
            sub_default = default.get(name) if isinstance(default.get(name), Mapping) else {}
            for sub, v in value.items():
                key = f"{name}.{sub}"
                if key not in shown and (sub not in sub_default or sub_default[sub] != v):
                    kept[key] = v
        elif name not in shown and (name not in default or default[name] != value):
            kept[name] = value
    return kept


def _short_label(value: Any, n: int = 40) -> str:
    text = str(value)
    return text if len(text) <= n else text[: n - 1] + "…"


def _kept_html(kept: Mapping[str, Any]) -> str:
    if not kept:
        return ""
    items = ", ".join(f"{k}={_short(v)}" for k, v in kept.items())
    return f"<small>kept from the config (not on this form): <code>{html.escape(items)}</code></small>"


class SearchConfigForm:
    """Widgets for the main search settings; ``.value`` is the ``SearchConfig`` they describe.

    An untouched form returns the config it was given (the same object): the form never
    rewrites a config to fit its widgets. Editing a widget replaces exactly that field
    (``dataclasses.replace``), every field not on the form passes through and is listed in
    ``.kept``; a value a dropdown lacks (e.g. model ``resnet18``) is added as an option.
    Numbers are unbounded text boxes: the bounds are ``SearchConfig``'s own. While the edits are
    invalid, ``.status`` shows the config's error message, ``.error`` holds it and ``.value``
    raises that error (a notebook cell reading it stops with the same message).
    """

    MODELS = ("small_cnn", "small_inception", "resnet_cifar")
    DEVICES = ("auto", "cpu", "cuda")
    SHOWN = ("population_size", "generations", "seed", "dataset", "model", "device", "budget.steps")

    def __init__(self, config=None, primitive_set: PrimitiveSet | None = None):
        from ngl.data.datasets import available_datasets
        from ngl.gp.search import SearchConfig

        cfg = config if config is not None else SearchConfig()
        self.base = cfg
        # an explicit primitive set is an edit like any widget's (applied by ``value``)
        self.primitive_set = primitive_set if primitive_set is not None else cfg.primitive_set
        self.population = W.IntText(value=cfg.population_size, description="population")
        self.generations = W.IntText(value=cfg.generations, description="generations")
        self.steps = W.IntText(value=cfg.budget.steps, description="train steps")
        self.seed = W.IntText(value=cfg.seed, description="seed")
        self.dataset = W.Dropdown(options=_option(available_datasets(), cfg.dataset), value=cfg.dataset,
                                  description="dataset")
        self.model = W.Dropdown(options=_option(self.MODELS, cfg.model), value=cfg.model, description="model")
        self.device = W.Dropdown(options=_option(self.DEVICES, cfg.device), value=cfg.device,
                                 description="device")
        self.fields: dict[str, W.ValueWidget] = {
            "population_size": self.population, "generations": self.generations, "seed": self.seed,
            "dataset": self.dataset, "model": self.model, "device": self.device}
        self.kept = W.HTML(_kept_html(kept_fields(cfg, self.SHOWN, nested=("budget",))))
        self.status = W.HTML()
        self.out = W.Output()
        self.error: str | None = None
        self.widget = W.VBox([W.HBox([self.population, self.generations]),
                              W.HBox([self.steps, self.seed]),
                              W.HBox([self.dataset, self.model, self.device]), self.kept,
                              self.status, self.out])
        for w in (*self.fields.values(), self.steps):
            w.observe(show_errors(self.out)(lambda _c: self._validate()), names="value")
        self._validate()

    def changes(self) -> dict[str, Any]:
        """The fields the form changed, as ``dataclasses.replace`` keywords (may raise for the budget)."""
        base = self.base
        changed = {name: w.value for name, w in self.fields.items() if w.value != getattr(base, name)}
        if self.steps.value != base.budget.steps:
            changed["budget"] = dataclasses.replace(base.budget, steps=self.steps.value)
        if self.primitive_set != base.primitive_set:
            changed["primitive_set"] = self.primitive_set
        return changed

    @property
    def value(self):
        """The given config with the edited fields replaced; raises the config's ``ValueError``."""
        changed = self.changes()
        return dataclasses.replace(self.base, **changed) if changed else self.base

    def _validate(self) -> None:
        exc = show_validation(self.status, lambda: self.value, lambda cfg: f"run key <code>{cfg.key}</code>")
        self.error = None if exc is None else error_text(exc)


def search_config_form(config=None, primitive_set: PrimitiveSet | None = None) -> SearchConfigForm:
    """Build the search-configuration form; read ``form.value`` for the ``SearchConfig``."""
    return SearchConfigForm(config, primitive_set)


# -- search runner, hall-of-fame browser, loss explorer ---------------------------------------
def _figure_png(fig, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib figure (no pyplot state involved: safe in a worker thread)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _new_figure(figsize):
    """A figure outside pyplot (nothing to close, nothing drawn twice by the inline backend)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


class SearchRunner:
    """Start, stop and resume a GP loss search from a notebook, with a live progress figure.

    The search runs in a background thread (``.thread``) so the kernel stays responsive and
    **Stop** works: it calls :meth:`GPSearch.request_stop`, the search stops after the chunk in
    progress, and the checkpoint keeps what was done; **Resume** continues from it
    (:func:`ngl.gp.search.resume`). ``.state`` is ``idle``, ``running``, ``stopping``, ``stopped``,
    ``finished`` or ``error``; ``.result`` the last :class:`SearchResult`; ``.rows`` the
    per-generation summaries; ``.image`` the live figure (PNG); errors land in ``.out``.
    """

    def __init__(self, config, run_dir=None, executor=None, plot_every: float = 1.0):
        from ngl.gp.search import SearchConfig
        if not isinstance(config, SearchConfig):
            raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else search_run_dir(config.key)
        self.executor = executor
        self.plot_every = plot_every
        self.search = None
        self.thread: threading.Thread | None = None
        self.result = None
        self.error: BaseException | None = None
        self.state = "idle"
        self.rows: list[dict] = []
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
    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

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
        from ngl.gp.search import load_result

        if (self.run_dir / "config.json").exists():
            try:
                res = load_result(self.run_dir)
            except (OSError, ValueError) as exc:
                self._set_state("idle", f"cannot read the existing run: {exc}")
                return
            self.result = res
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
        from ngl.gp.search import GPSearch

        return self._launch(lambda: GPSearch(self.config, self.run_dir, executor=self.executor,
                                             progress=False, callback=self._on_generation))

    def resume(self) -> threading.Thread:
        """Continue the search saved in ``run_dir`` (its own saved configuration) from its checkpoint."""
        from ngl.gp.search import GPSearch, SearchConfig
        from ngl.io.records import read_json

        cfg_path = self.run_dir / GPSearch.CONFIG
        if not cfg_path.exists():
            raise FileNotFoundError(f"nothing to resume: no search in {self.run_dir} yet; press start")
        config = SearchConfig.from_dict(read_json(cfg_path))
        return self._launch(lambda: GPSearch(config, self.run_dir, executor=self.executor,
                                             progress=False, callback=self._on_generation))

    def stop(self) -> None:
        """Ask the search to stop after the chunk in progress (the checkpoint keeps the rest)."""
        if not self.running or self.search is None:
            raise RuntimeError("no search is running")
        self.search.request_stop()
        self._set_state("stopping", "stops after the chunk in progress")

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background search (tests, scripts)."""
        if self.thread is not None:
            self.thread.join(timeout)

    def _launch(self, make_search) -> threading.Thread:
        if self.running:
            raise RuntimeError("a search is already running; stop it first")
        self.search = make_search()
        self.error = None
        self.rows = []
        self._set_state("running", "generation 1 ...")
        self.thread = threading.Thread(target=self._work, name="ngl-search", daemon=True)
        self.thread.start()
        return self.thread

    def _work(self) -> None:
        from ngl.gp.search import load_result

        try:
            self.result = self.search.run()
        except KeyboardInterrupt:  # raised by the search when stopped inside a generation
            self.result = load_result(self.run_dir)
        except Exception as exc:  # noqa: BLE001 - shown in the widget, the thread must not die silently
            self.error = exc
            self.out.append_stderr(f"{type(exc).__name__}: {exc}\n")
            self.out.append_stderr("".join(traceback.format_exception(exc)[-3:]))
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
        return f"val. accuracy {hof['val_accuracy'].iloc[0]:.4f}: <code>{hof['expression'].iloc[0]}</code>"

    def _on_generation(self, summary: dict, _search=None) -> None:
        import time

        self.rows.append(dict(summary))
        if self.state == "running":
            self._set_state("running", f"{len(self.rows)} of {self.search.config.generations} generations done")
        now = time.monotonic()
        if now - self._last_plot >= self.plot_every:
            self._last_plot = now
            self.redraw()

    def redraw(self) -> None:
        """Redraw the progress figure from ``.rows`` into ``.image``."""
        import pandas as pd

        from ngl.ui.viz import TEXT_WIDTH, plot_search_progress

        fig = _new_figure((TEXT_WIDTH, 2.2))
        plot_search_progress(pd.DataFrame(self.rows), axes=fig.subplots(1, 3))
        self.image.value = _figure_png(fig)


def search_runner(config, run_dir=None, executor=None, plot_every: float = 1.0) -> SearchRunner:
    """Build the start/stop/resume panel for a search; display ``runner.widget``."""
    return SearchRunner(config, run_dir, executor=executor, plot_every=plot_every)


class HallOfFameBrowser:
    """Pick a hall-of-fame loss and see its tree, its formula and its shape next to NGL and CE.

    ``.dropdown`` chooses the rank; ``.selected`` is the chosen :class:`LossExpression`;
    ``.shape_data`` the tidy data of the loss-shape figure (``viz.loss_shape_data``);
    ``.tree_image`` / ``.shape_image`` the figures as PNG; the formula and errors go to ``.out``.
    """

    def __init__(self, result, n: int | None = None, num_classes: int = 10,
                 references: tuple[str, ...] = ("ngl", "ce")):
        self.result = result
        self.hof = result.hall_of_fame(n)
        self.num_classes = num_classes
        self.references = references
        self.selected = None
        self.shape_data = None
        options = [(f"#{i + 1}  acc {row.val_accuracy:.4f}  size {row.size}:  {self._short(row.expression)}", i)
                   for i, row in enumerate(self.hof.itertuples())]
        self.dropdown = W.Dropdown(options=options or [("(no trained candidate yet)", -1)],
                                   description="candidate", layout=W.Layout(width="95%"))
        self.info = W.HTML()
        self.tree_image = W.Image(format="png", layout=W.Layout(max_width="480px"))
        self.shape_image = W.Image(format="png", layout=W.Layout(max_width="900px"))
        self.out = W.Output()
        self.dropdown.observe(show_errors(self.out)(lambda _c: self.show()), names="value")
        self.widget = W.VBox([self.dropdown, self.info, self.out, self.tree_image, self.shape_image])
        show_errors(self.out)(self.show)()

    @staticmethod
    def _short(text: str, n: int = 70) -> str:
        return text if len(text) <= n else text[: n - 1] + "…"

    def show(self) -> None:
        from IPython.display import Math

        from ngl.gp.expression import LossExpression
        from ngl.losses.registry import get_loss
        from ngl.ui.viz import TEXT_WIDTH, draw_tree, loss_shape_data, plot_loss_shapes, tree_layout

        self.out.outputs = ()
        i = self.dropdown.value
        if i is None or i < 0:
            self.info.value = "no candidate of this search trained successfully yet"
            return
        row = self.hof.iloc[i]
        expr = LossExpression.parse(row["expression"])
        self.selected = expr
        self.info.value = (f"rank {i + 1}: validation accuracy <b>{row['val_accuracy']:.4f}</b>, "
                           f"size {expr.size}, depth {expr.depth}, generation {int(row['generation'])}, "
                           f"born by {row['origin']}")
        self.out.append_display_data(Math(expr.latex()))
        self.out.append_stdout(f"{expr}\n")
        nodes, _ = tree_layout(expr)
        width = max(x for x, _, _ in nodes) + 1
        height = -min(y for _, y, _ in nodes) + 1
        fig = _new_figure((min(TEXT_WIDTH, 0.6 + 0.55 * width), 0.5 + 0.55 * height))
        draw_tree(expr, ax=fig.subplots(), formula=False)
        self.tree_image.value = _figure_png(fig)
        losses = {"candidate": expr.to_module(validate=False)}
        losses.update({name.upper(): get_loss(name) for name in self.references})
        self.shape_data = loss_shape_data(losses, num_classes=self.num_classes)
        fig = _new_figure((TEXT_WIDTH, 2.4))
        plot_loss_shapes(losses, num_classes=self.num_classes, axes=fig.subplots(1, 2))
        self.shape_image.value = _figure_png(fig)


def hall_of_fame_browser(result, n: int | None = None, num_classes: int = 10) -> HallOfFameBrowser:
    """Build the hall-of-fame browser for a :class:`SearchResult`; display ``browser.widget``."""
    return HallOfFameBrowser(result, n=n, num_classes=num_classes)


class LossExplorer:
    """Sliders for the constants of NGL (alpha), focal loss (gamma), label smoothing (epsilon) and
    the number of classes; every change redraws the loss shapes.

    ``.data`` is the tidy data of the last drawn figure (``viz.loss_shape_data``), ``.losses``
    the loss modules drawn, ``.image`` the figure (PNG); an optional expression box adds a loss
    of your own (e.g. a hall-of-fame formula).
    """

    def __init__(self, num_classes: int = 10, alpha: float | None = None, gamma: float = 2.0,
                 epsilon: float = 0.1, expression: str = ""):
        from ngl.losses.zoo import NGL_ALPHA

        style = {"description_width": "110px"}
        self.alpha = W.FloatSlider(value=NGL_ALPHA if alpha is None else alpha, min=0.0, max=5.0, step=0.01,
                                   description="NGL alpha", continuous_update=False, style=style,
                                   readout_format=".4f")
        self.gamma = W.FloatSlider(value=gamma, min=0.0, max=5.0, step=0.1, description="focal gamma",
                                   continuous_update=False, style=style)
        self.epsilon = W.FloatSlider(value=epsilon, min=0.0, max=0.5, step=0.01, description="smoothing eps",
                                     continuous_update=False, style=style)
        self.num_classes = W.IntSlider(value=num_classes, min=2, max=100, description="classes C",
                                       continuous_update=False, style=style)
        self.show = {name: W.Checkbox(value=True, description=name, indent=False,
                                      layout=W.Layout(width="150px"))
                     for name in ("CE", "NGL", "focal", "label smoothing")}
        self.expression = W.Text(value=expression, placeholder="own loss, e.g. exp(2 - y_pred*(1 + y_real))",
                                 description="expression", style=style, continuous_update=False,
                                 layout=W.Layout(width="95%"))
        self.info = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(max_width="900px"))
        self.out = W.Output()
        self.data = None
        self.losses: dict = {}
        for w in (self.alpha, self.gamma, self.epsilon, self.num_classes, self.expression,
                  *self.show.values()):
            w.observe(show_errors(self.out)(lambda _c: self.redraw()), names="value")
        self.widget = W.VBox([
            W.HBox([W.VBox([self.alpha, self.gamma]), W.VBox([self.epsilon, self.num_classes])]),
            W.HBox(list(self.show.values())), self.expression, self.info, self.image, self.out,
        ])
        show_errors(self.out)(self.redraw)()

    def current_losses(self) -> dict:
        """The loss modules for the current slider values (the ticked ones)."""
        from ngl.losses.registry import get_loss

        made = {
            "CE": lambda: get_loss("ce"),
            "NGL": lambda: get_loss("ngl", alpha=self.alpha.value),
            "focal": lambda: get_loss("focal", gamma=self.gamma.value),
            "label smoothing": lambda: get_loss("label_smoothing", epsilon=self.epsilon.value),
        }
        losses = {f"{name} ({self._param(name)})" if self._param(name) else name: make()
                  for name, make in made.items() if self.show[name].value}
        text = self.expression.value.strip()
        if text:
            from ngl.gp.expression import LossExpression

            losses[text if len(text) <= 30 else text[:29] + "…"] = LossExpression.parse(text).to_module(validate=False)
        if not losses:
            raise ValueError("tick at least one loss (or type an expression) to draw")
        return losses

    def _param(self, name: str) -> str:
        return {"NGL": f"α={self.alpha.value:.4g}", "focal": f"γ={self.gamma.value:.3g}",
                "label smoothing": f"ε={self.epsilon.value:.3g}"}.get(name, "")

    def redraw(self) -> None:
        from ngl.ui.viz import TEXT_WIDTH, loss_shape_data, plot_loss_shapes

        self.out.outputs = ()
        losses = self.current_losses()
        c = self.num_classes.value
        self.data = loss_shape_data(losses, num_classes=c)
        self.losses = losses
        fig = _new_figure((TEXT_WIDTH, 2.4))
        plot_loss_shapes(losses, num_classes=c, axes=fig.subplots(1, 2))
        self.image.value = _figure_png(fig)
        opt = self.data.loc[self.data.groupby("loss_name", sort=False)["loss"].idxmin()]
        self.info.value = "optimum p<sub>t</sub>: " + ", ".join(
            f"{r.loss_name} {r.p_true:.2f}" for r in opt.itertuples())


def loss_explorer(num_classes: int = 10, alpha: float | None = None, gamma: float = 2.0,
                  epsilon: float = 0.1, expression: str = "") -> LossExplorer:
    """Build the loss-shape explorer; display ``explorer.widget``, read ``explorer.data``."""
    return LossExplorer(num_classes, alpha=alpha, gamma=gamma, epsilon=epsilon, expression=expression)


__all__ += ["HallOfFameBrowser", "LossExplorer", "SearchRunner", "hall_of_fame_browser",
            "loss_explorer", "search_runner"]


# -- downstream table builder ---------------------------------------------------------------------
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


class TableBuilder:
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
    """

    SHOWN = ("datasets", "models", "losses", "seeds", "train.epochs")

    def __init__(self, results_path, datasets=None, models=("small_cnn", "small_inception",
                 "resnet_cifar"), losses=("ce", "ngl", "focal", "label_smoothing", "sce", "poly"),
                 base=None, executor=None):
        from ngl.data.datasets import available_datasets
        from ngl.evaluate.grid import GridConfig, loss_label

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

        def pick(options: Iterable, chosen: tuple, desc: str) -> W.SelectMultiple:
            opts = tuple(dict.fromkeys((*options, *chosen)))
            return W.SelectMultiple(options=[(_short_label(o), o) for o in opts], value=chosen,
                                    description=desc, rows=min(max(len(opts), 1), 6))

        self.datasets = pick(datasets or available_datasets(), b.datasets, "datasets")
        self.models = pick(models, b.models, "models")
        self.losses = pick(self.loss_specs, self._base_labels, "losses")
        self.seeds = W.Text(value=", ".join(str(s) for s in b.seeds), description="seeds",
                            continuous_update=False)
        self.n_seeds = W.IntText(value=len(b.seeds), description="n seeds")
        self.epochs = W.IntText(value=b.train.epochs, description="epochs")
        self.run_button = W.Button(description="Run grid", button_style="primary", icon="play")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="cells")
        self.kept = W.HTML(_kept_html(kept_fields(b, self.SHOWN, nested=("train",))))
        self.status = W.HTML()
        self.out = W.Output()
        self.table_out = W.Output()
        self.error: str | None = None
        self.results = None
        self.table = None
        self._syncing = False
        self.widget = W.VBox([W.HBox([self.datasets, self.models, self.losses]),
                              W.HBox([self.seeds, self.n_seeds, self.epochs]), self.kept,
                              W.HBox([self.run_button, self.progress, self.status]),
                              self.table_out, self.out])
        self.run_button.on_click(show_errors(self.out)(lambda _b: self.run()))
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
        exc = show_validation(self.status, lambda: self.value, lambda cfg: f"{cfg.n_cells} runs")
        self.error = None if exc is None else error_text(exc)

    def show_table(self, results) -> None:
        """Recompute the summary and replace what ``table_out`` shows."""
        from ngl.evaluate.tables import format_table, summarise

        self.results = results
        ok = results[results["status"] == "ok"] if "status" in results else results
        if ok.empty:
            return
        baseline = "ce" if "ce" in set(ok["loss"]) else None
        self.table = format_table(summarise(results, baseline=baseline), bold=("<b>", "</b>"))
        self.table_out.outputs = ()
        self.table_out.append_display_data(W.HTML(self.table.to_html(escape=False)))

    def run(self):
        """Run (or continue) the selected grid; return the results DataFrame."""
        from ngl.evaluate.grid import run_grid

        cfg = self.value
        self.progress.max, self.progress.value = cfg.n_cells, 0
        self.run_button.disabled = True

        def on_row(row, results):
            self.progress.value = len(results)
            self.show_table(results)

        try:
            results = run_grid(cfg, self.results_path, executor=self.executor, progress=False,
                               callback=on_row)
        finally:
            self.run_button.disabled = False
        self.progress.value = len(results)
        self.show_table(results)
        self.status.value = f"{len(results)} runs done; results in <code>{self.results_path}</code>"
        return results


def table_builder(results_path, datasets=None, models=("small_cnn", "small_inception", "resnet_cifar"),
                  losses=("ce", "ngl", "focal", "label_smoothing", "sce", "poly"), base=None,
                  executor=None) -> TableBuilder:
    """Build the downstream table builder; display ``tb.widget``, read ``tb.value``."""
    return TableBuilder(results_path, datasets=datasets, models=models, losses=losses, base=base,
                        executor=executor)


__all__ += ["TableBuilder", "parse_seeds", "resize_seeds", "table_builder"]
