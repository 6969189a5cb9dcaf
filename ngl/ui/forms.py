"""Forms that build the configs of the search: the primitive-set picker and the search config form.

Each keeps its state on a small object (``.value``) so a test can tick a box and assert on the
result without a kernel. A form never rewrites a config to fit its widgets: an untouched form
returns the config it was given, an edit replaces exactly its field, and the bounds are the
config's own (its error message is shown while the edits are invalid).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as W
from IPython.display import Math

from ngl.data import available_datasets
from ngl.gp.primitives import LEAVES, OPERATORS, PrimitiveSet, preset
from ngl.gp.sampling import sample_expressions
from ngl.gp.spec import SearchSpec
from ngl.ui.widget_kit import (
    error_text,
    kept_fields,
    kept_html,
    option_list,
    show_errors,
    show_validation,
)

__all__ = ["PrimitiveSetPicker", "SearchSpecForm", "primitive_set_picker", "search_spec_form"]


class PrimitiveSetPicker:
    """Tick operators and leaves, choose the constant range, sample random trees.

    ``.value`` is the current :class:`PrimitiveSet` (or ``None`` while the choice is invalid,
    with the reason shown); ``.widget`` is what a notebook displays; ``.samples`` holds the
    last sampled expressions. With ``save_to``, every valid choice is saved there at once (the
    status says so), and ``initial=None`` starts from the saved choice, so running the
    notebook again does not replace a custom set with a preset.
    """

    def __init__(self, initial: PrimitiveSet | str | None = "paper", n_samples: int = 6,
                 seed: int = 0, save_to: str | os.PathLike | None = None):
        self.save_to = Path(save_to) if save_to is not None else None
        if initial is None:  # the saved choice if there is one: re-running never resets it
            initial = (PrimitiveSet.load(self.save_to)
                       if self.save_to is not None and self.save_to.exists() else "paper")
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
            if self.save_to is not None:
                self.value.save(self.save_to)
                self.status.value += f"<br>saved to <code>{self.save_to}</code>"
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
        # one assignment of the whole output (no clear_output message that could arrive after
        # it and blank it, as it did in JupyterLab): the same seed shows the same, complete trees
        shown = []
        for e in self.samples:
            shown.append({"output_type": "display_data", "metadata": {},
                          "data": {"text/latex": Math(e.latex())._repr_latex_(),
                                   "text/plain": e.display()}})
            shown.append({"output_type": "stream", "name": "stdout",
                          "text": f"{e.display()}    (size {e.size}, depth {e.depth})\n"})
        self.out.outputs = tuple(shown)
        return self.samples


def primitive_set_picker(initial: PrimitiveSet | str | None = "paper", n_samples: int = 6,
                         seed: int = 0,
                         save_to: str | os.PathLike | None = None) -> PrimitiveSetPicker:
    """Build the primitive-set picker; display ``picker.widget``, read ``picker.value``."""
    return PrimitiveSetPicker(initial, n_samples=n_samples, seed=seed, save_to=save_to)


class SearchSpecForm:
    """Widgets for the main search settings; ``.value`` is the ``SearchSpec`` they describe.

    How the search runs (device, chunk size, CUDA graphs) is not part of the spec and not on
    this form: it goes to ``ngl.search`` or the search runner. An untouched form returns the spec it was given (the same object): the form never
    rewrites a config to fit its widgets. Editing a widget replaces exactly that field
    (``dataclasses.replace``), every field not on the form passes through and is listed in
    ``.kept``; a value a dropdown lacks (e.g. model ``resnet18``) is added as an option.
    Numbers are unbounded text boxes: the bounds are ``SearchSpec``'s own. While the edits are
    invalid, ``.status`` shows the config's error message, ``.error`` holds it and ``.value``
    raises that error (a notebook cell reading it stops with the same message).
    """

    MODELS = ("dense_cnn", "small_cnn", "small_inception", "resnet_cifar")
    SHOWN = ("population_size", "generations", "seed", "dataset", "model", "budget.steps")

    def __init__(self, config=None, primitive_set: PrimitiveSet | None = None):
        cfg = config if config is not None else SearchSpec()
        self.base = cfg
        # an explicit primitive set is an edit like any widget's (applied by ``value``)
        self.primitive_set = primitive_set if primitive_set is not None else cfg.primitive_set
        self.population = W.IntText(value=cfg.population_size, description="population")
        self.generations = W.IntText(value=cfg.generations, description="generations")
        self.steps = W.IntText(value=cfg.budget.steps, description="train steps")
        self.seed = W.IntText(value=cfg.seed, description="seed")
        self.dataset = W.Dropdown(options=option_list(available_datasets(), cfg.dataset), value=cfg.dataset,
                                  description="dataset")
        self.model = W.Dropdown(options=option_list(self.MODELS, cfg.model), value=cfg.model, description="model")
        self.fields: dict[str, W.ValueWidget] = {
            "population_size": self.population, "generations": self.generations, "seed": self.seed,
            "dataset": self.dataset, "model": self.model}
        self.kept = W.HTML(kept_html(kept_fields(cfg, self.SHOWN, nested=("budget",))))
        self.status = W.HTML()
        self.out = W.Output()
        self.error: str | None = None
        self.widget = W.VBox([W.HBox([self.population, self.generations]),
                              W.HBox([self.steps, self.seed]),
                              W.HBox([self.dataset, self.model]), self.kept,
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
        exc = show_validation(self.status, lambda: self.value, lambda spec: f"spec key <code>{spec.key}</code>")
        self.error = None if exc is None else error_text(exc)


def search_spec_form(spec=None, primitive_set: PrimitiveSet | None = None) -> SearchSpecForm:
    """Build the search-spec form; read ``form.value`` for the ``SearchSpec``."""
    return SearchSpecForm(spec, primitive_set)
