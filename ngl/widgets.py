"""ipywidgets front ends. Each is built by a function; callbacks call plain ``ngl`` code.

Widgets keep their state on a small object (``.value``) so a test can tick a box, click a
button and assert on the result without a kernel. Exceptions raised in callbacks are shown
in the widget's ``Output`` (JupyterLab would otherwise swallow them).
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable

import ipywidgets as W

from ngl.primitives import LEAVES, OPERATORS, PrimitiveSet, preset, sample_expressions

__all__ = ["PrimitiveSetPicker", "SearchConfigForm", "primitive_set_picker", "search_config_form",
           "show_errors"]


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
        self.const_range = W.FloatRangeSlider(value=(lo, hi), min=-10.0, max=10.0, step=0.1,
                                              description="range", continuous_update=False)
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


class SearchConfigForm:
    """Widgets for the main search settings; ``.value`` builds a validated ``SearchConfig``."""

    def __init__(self, config=None, primitive_set: PrimitiveSet | None = None):
        from ngl.data import available_datasets
        from ngl.search import SearchConfig

        cfg = config or SearchConfig()
        self.base = cfg
        self.primitive_set = primitive_set or cfg.primitive_set
        self.population = W.IntSlider(value=cfg.population_size, min=2, max=256, description="population")
        self.generations = W.IntSlider(value=cfg.generations, min=1, max=100, description="generations")
        self.steps = W.IntSlider(value=cfg.budget.steps, min=1, max=5000, description="train steps")
        self.dataset = W.Dropdown(options=available_datasets(), value=cfg.dataset, description="dataset")
        self.model = W.Dropdown(options=["small_cnn", "small_inception", "resnet_cifar"],
                                value=cfg.model if cfg.model in ("small_cnn", "small_inception", "resnet_cifar")
                                else "small_cnn", description="model")
        self.device = W.Dropdown(options=["auto", "cpu", "cuda"], value=cfg.device, description="device")
        self.seed = W.IntText(value=cfg.seed, description="seed")
        self.status = W.HTML()
        self.widget = W.VBox([W.HBox([self.population, self.generations]),
                              W.HBox([self.steps, self.seed]),
                              W.HBox([self.dataset, self.model, self.device]), self.status])
        for w in (self.population, self.generations, self.steps, self.dataset, self.model,
                  self.device, self.seed):
            w.observe(lambda _c: self._validate(), names="value")
        self._validate()

    @property
    def value(self):
        import dataclasses

        return dataclasses.replace(
            self.base, primitive_set=self.primitive_set, population_size=self.population.value,
            generations=self.generations.value, dataset=self.dataset.value, model=self.model.value,
            device=self.device.value, seed=self.seed.value,
            budget=dataclasses.replace(self.base.budget, steps=self.steps.value),
            elitism=min(self.base.elitism, self.population.value - 1),
        )

    def _validate(self) -> None:
        try:
            cfg = self.value
        except ValueError as exc:
            self.status.value = f"<span style='color:#b00'>{exc}</span>"
        else:
            self.status.value = f"run key <code>{cfg.key}</code>"


def search_config_form(config=None, primitive_set: PrimitiveSet | None = None) -> SearchConfigForm:
    """Build the search-configuration form; read ``form.value`` for the ``SearchConfig``."""
    return SearchConfigForm(config, primitive_set)
