"""Config forms return what they were given: untouched exactly, edited field by field.

Notebooks 02 and 04 run whatever ``form.value`` returns, so a form that rewrote a config to fit
its widgets (a model it does not list, a step count above a slider's max, dict loss specs,
chosen seeds) would silently run something else than was asked.
"""

from __future__ import annotations

import dataclasses
import html

import pandas as pd
import pytest

import ngl.ui.downstream
from ngl.evaluate import summarise, to_markdown
from ngl.evaluate.grid import GridConfig
from ngl.fitness import TrainBudget
from ngl.gp import SearchSpec
from ngl.gp.primitives import PrimitiveSet, preset
from ngl.losses import NGL_EXPRESSION
from ngl.train.loop import TrainConfig
from ngl.ui import (
    LiveTable,
    error_text,
    parse_seeds,
    primitive_set_picker,
    resize_seeds,
    search_spec_form,
    summary_so_far,
    table_builder,
)

NGL_TEXT = NGL_EXPRESSION


def _has(cls, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(cls)}


def _with_new_fields(budget_or_train, **kw):
    """Fields being added elsewhere (``nesterov``), set to a non-default value when they exist."""
    if _has(type(budget_or_train), "nesterov"):
        kw["nesterov"] = True
    return dataclasses.replace(budget_or_train, **kw) if kw else budget_or_train


def search_configs() -> list[SearchSpec]:
    budget = _with_new_fields(TrainBudget(steps=5000, batch_size=64, lr=0.05, optimizer="sgd",
                                          momentum=0.8, weight_decay=5e-4))
    extra = {"data_seed": 4}
    big = SearchSpec(primitive_set=preset("full"), population_size=200, generations=300, seed=7,
                       p_crossover=0.5, p_subtree_mutation=0.2, p_point_mutation=0.15,
                       p_hoist_mutation=0.0, elitism=5, tournament_size=7,
                       seed_expressions=(NGL_TEXT,), dataset="cifar10",
                       n_train=1000, n_val=500, model="resnet_cifar", budget=budget,
                       max_depth=10, init_depth=(3, 5), equivalence="gradient", probe_size=32,
                       **extra)
    return [
        big,
        dataclasses.replace(big, model="resnet18", primitive_set=preset("gplearn"),
                            seed_expressions=("y_pred*y_real - y_pred",)),
        SearchSpec(population_size=2, generations=1, budget=TrainBudget(steps=0), elitism=0),
    ]


@pytest.mark.parametrize("cfg", search_configs(), ids=["resnet_cifar", "resnet18", "minimal"])
def test_untouched_search_form_returns_the_config_exactly(cfg):
    form = search_spec_form(cfg)
    assert form.value == cfg
    assert form.value.key == cfg.key and form.value.to_dict() == cfg.to_dict()
    assert form.error is None and cfg.key in form.status.value


def test_search_form_shows_what_its_widgets_do_not_list():
    cfg = search_configs()[1]
    form = search_spec_form(cfg)
    assert form.model.value == "resnet18" and form.model.label == "resnet18 (kept)"
    cfg = search_configs()[0]
    form = search_spec_form(cfg)
    assert form.value == cfg
    assert (form.population.value, form.generations.value, form.steps.value) == (200, 300, 5000)
    for shown in ("budget.optimizer=&#x27;sgd&#x27;", "probe_size=32", "n_train=1000", "elitism=5",
                  "primitive_set", "seed_expressions", "p_crossover=0.5"):
        assert shown in form.kept.value, shown
    assert "budget.steps" not in form.kept.value and "population_size" not in form.kept.value


@pytest.mark.parametrize(("widget", "field", "new"), [
    ("population", "population_size", 40), ("generations", "generations", 12), ("seed", "seed", 0),
    ("dataset", "dataset", "digits"), ("model", "model", "small_cnn"),
])
def test_search_form_edit_changes_exactly_that_field(widget, field, new):
    cfg = search_configs()[1]
    form = search_spec_form(cfg)
    getattr(form, widget).value = new
    assert form.value == dataclasses.replace(cfg, **{field: new})
    assert form.value.to_dict() == {**cfg.to_dict(), field: new}


def test_search_form_steps_edit_changes_only_the_budget_steps():
    cfg = search_configs()[0]
    form = search_spec_form(cfg)
    form.steps.value = 7
    assert form.value == dataclasses.replace(cfg, budget=dataclasses.replace(cfg.budget, steps=7))
    assert form.value.to_dict()["budget"] == {**cfg.to_dict()["budget"], "steps": 7}
    form.steps.value = 5000  # back to the start: the config itself again
    assert form.value == cfg and form.value.key == cfg.key


def test_search_form_primitive_set_argument_is_an_edit_of_that_field():
    cfg = search_configs()[2]
    form = search_spec_form(cfg, primitive_set=preset("gplearn"))
    assert form.value == dataclasses.replace(cfg, primitive_set=preset("gplearn"))


def _config_error(build) -> ValueError:
    """The config's own error for an invalid value."""
    with pytest.raises(ValueError) as info:
        build()
    return info.value


@pytest.mark.parametrize(("widget", "new", "build"), [
    ("population", 1, lambda c: dataclasses.replace(c, population_size=1)),
    ("population", 5, lambda c: dataclasses.replace(c, population_size=5)),  # elitism 5 needs > 5
    ("generations", 0, lambda c: dataclasses.replace(c, generations=0)),
    ("steps", -1, lambda c: dataclasses.replace(c.budget, steps=-1)),
    ("seed", -3, lambda c: dataclasses.replace(c, seed=-3)),
])
def test_search_form_invalid_edit_shows_the_config_error_and_value_raises(widget, new, build):
    cfg = search_configs()[0]
    error = _config_error(lambda: build(cfg))
    form = search_spec_form(cfg)
    getattr(form, widget).value = new
    assert getattr(form, widget).value == new  # not clamped by the widget
    with pytest.raises(ValueError) as info:
        form.value  # noqa: B018 - the property is what notebooks read
    assert str(info.value) == str(error)
    shown = error_text(error)  # the config's message, one line per problem
    assert html.escape(shown) in form.status.value and "#b00" in form.status.value
    assert form.error == shown
    getattr(form, widget).value = getattr(search_spec_form(cfg), widget).value
    assert form.error is None and form.value == cfg


# -- table builder ---------------------------------------------------------------------------------
def grid() -> GridConfig:
    train = _with_new_fields(TrainConfig(optimizer="sgd", lr=0.1, momentum=0.8, epochs=500,
                                         batch_size=256, schedule="plateau", random_crop=4, hflip=True))
    return GridConfig(datasets=("digits", "fashion_mnist", "cifar10"), models=("small_cnn", "resnet18"),
                      losses=("ce", {"name": "focal", "gamma": 2}, NGL_TEXT,
                              {"name": "ngl", "alpha": 2.0, "label": "ngl-a2"}),
                      seeds=(3, 7, 11), train=train, n_train=1000, n_val=200, data_seed=5,
                      data_root="/data", head="paper", device="cpu", model_kwargs={"width": 8})


def builder(tmp_path, cfg=None, **kw):
    return table_builder(tmp_path / "r.jsonl", base=cfg or grid(), **kw)


def test_untouched_table_builder_returns_the_grid_exactly(tmp_path):
    cfg = grid()
    tb = builder(tmp_path)
    assert tb.value == cfg
    assert tb.value.to_dict() == cfg.to_dict()
    assert tb.error is None and f"{cfg.n_cells} runs" in tb.status.value
    small = GridConfig(seeds=(5,), losses=({"name": "focal", "gamma": 0.5},))
    tb = builder(tmp_path, small, datasets=("digits",), models=("small_cnn",), losses=("ce",))
    assert tb.value == small and tb.value.to_dict() == small.to_dict()


def test_table_builder_shows_what_its_options_lack(tmp_path):
    tb = builder(tmp_path, datasets=("digits",))
    assert tb.seeds.value == "3, 7, 11" and tb.n_seeds.value == 3 and tb.epochs.value == 500
    assert set(tb.losses.value) == {"ce", "focal(gamma=2)", NGL_TEXT, "ngl-a2"}
    assert "resnet18" in tb.models.value and set(tb.datasets.value) == {"digits", "fashion_mnist", "cifar10"}
    for shown in ("train.optimizer=&#x27;sgd&#x27;", "data_seed=5", "head=&#x27;paper&#x27;",
                  "model_kwargs", "n_train=1000", "train.hflip=True"):
        assert shown in tb.kept.value, shown
    assert "train.epochs" not in tb.kept.value and "seeds" not in tb.kept.value


@pytest.mark.parametrize(("edit", "field", "expected"), [
    (lambda tb: setattr(tb.datasets, "value", ("digits", "cifar10")), "datasets", ("digits", "cifar10")),
    (lambda tb: setattr(tb.models, "value", ("small_cnn", "resnet18", "small_inception")), "models",
     ("small_cnn", "resnet18", "small_inception")),
    (lambda tb: setattr(tb.losses, "value", (*tb.losses.value, "sce")), "losses",
     (*grid().losses, "sce")),
    (lambda tb: setattr(tb.losses, "value", ("ce", "ngl-a2")), "losses",
     (grid().losses[0], grid().losses[3])),
    (lambda tb: setattr(tb.seeds, "value", "1 2,4"), "seeds", (1, 2, 4)),
    (lambda tb: setattr(tb.n_seeds, "value", 2), "seeds", (3, 7)),
    (lambda tb: setattr(tb.n_seeds, "value", 5), "seeds", (3, 7, 11, 12, 13)),
    (lambda tb: setattr(tb.epochs, "value", 20), "train", dataclasses.replace(grid().train, epochs=20)),
], ids=["datasets", "models", "add-loss", "drop-losses", "seeds-text", "fewer-seeds", "more-seeds",
        "epochs"])
def test_table_builder_edit_changes_exactly_that_field(tmp_path, edit, field, expected):
    cfg = grid()
    tb = builder(tmp_path)
    edit(tb)
    assert tb.value == dataclasses.replace(cfg, **{field: expected})
    want = dataclasses.replace(cfg, **{field: expected}).to_dict()
    assert tb.value.to_dict() == want
    assert {k for k in want if want[k] != cfg.to_dict()[k]} == {field}


def test_table_builder_seed_box_and_count_stay_in_step(tmp_path):
    tb = builder(tmp_path)
    tb.seeds.value = "0, 9"
    assert tb.n_seeds.value == 2
    tb.n_seeds.value = 3
    assert tb.seeds.value == "0, 9, 10"
    assert parse_seeds("3,7 11") == (3, 7, 11) and resize_seeds((5, 6), 4) == (5, 6, 7, 8)
    assert resize_seeds((3, 1), 3) == (3, 1, 4) and resize_seeds((), 2) == (0, 1)


@pytest.mark.parametrize(("edit", "build"), [
    (lambda tb: setattr(tb.seeds, "value", "3, 3"), lambda c: dataclasses.replace(c, seeds=(3, 3))),
    (lambda tb: setattr(tb.seeds, "value", "3, -1"), lambda c: dataclasses.replace(c, seeds=(3, -1))),
    (lambda tb: setattr(tb.n_seeds, "value", 0), lambda c: dataclasses.replace(c, seeds=())),
    (lambda tb: setattr(tb.epochs, "value", 0), lambda c: dataclasses.replace(c.train, epochs=0)),
    (lambda tb: setattr(tb.losses, "value", ()), lambda c: dataclasses.replace(c, losses=())),
    (lambda tb: setattr(tb.models, "value", ()), lambda c: dataclasses.replace(c, models=())),
    (lambda tb: setattr(tb.seeds, "value", "3, x"), lambda c: parse_seeds("3, x")),
], ids=["duplicate-seed", "negative-seed", "no-seeds", "epochs-0", "no-losses", "no-models", "not-an-int"])
def test_table_builder_invalid_edit_shows_the_config_error_and_value_raises(tmp_path, edit, build):
    cfg = grid()
    error = _config_error(lambda: build(cfg))
    tb = builder(tmp_path)
    edit(tb)
    with pytest.raises(ValueError) as info:
        tb.value  # noqa: B018 - the property is what notebooks read
    assert str(info.value) == str(error)
    shown = error_text(error)  # the config's message, one line per problem
    tb.run_button.click()  # nothing runs; the same message lands in the visible Output
    assert any(shown in o.get("text", "") for o in tb.out.outputs)
    assert not any("Traceback" in o.get("text", "") for o in tb.out.outputs)
    assert tb.results is None
    assert html.escape(shown) in tb.status.value and "#b00" in tb.status.value
    assert tb.error == shown


# -- primitive-set picker --------------------------------------------------------------------------
def test_picker_keeps_a_constant_range_beyond_the_slider_default():
    wide = PrimitiveSet(operators=("add", "mul"), const_range=(-20.0, 15.5))
    picker = primitive_set_picker(wide)
    assert picker.value == wide and picker.const_range.value == (-20.0, 15.5)
    picker.op_boxes["sub"].value = True  # an edit elsewhere leaves the constants alone
    assert picker.value == PrimitiveSet(operators=("add", "mul", "sub"), const_range=(-20.0, 15.5))


# -- live table (notebook 04's run_grid callback) --------------------------------------------------
def grid_results(losses=("ce", "ngl"), failed=()) -> pd.DataFrame:
    rows = [{"dataset": "digits", "model": "small_cnn", "loss": loss, "seed": s, "status": "ok",
             "test_accuracy": 0.8 + 0.01 * i + 0.002 * s}
            for i, loss in enumerate(losses) for s in (0, 1)]
    rows += [{"dataset": "digits", "model": "small_cnn", "loss": loss, "seed": 0,
              "status": "nonfinite", "test_accuracy": float("nan")} for loss in failed]
    return pd.DataFrame(rows)


def test_summary_so_far_waits_for_a_finished_run_and_for_the_baseline():
    assert summary_so_far(grid_results(losses=(), failed=("ngl",))) is None
    no_ce = summary_so_far(grid_results(losses=("ngl",)))
    assert no_ce.attrs["baseline"] is None and no_ce["delta"].isna().all()
    results = grid_results(failed=("focal",))
    pd.testing.assert_frame_equal(summary_so_far(results), summarise(results, baseline="ce"))
    assert summary_so_far(results, baseline=None).attrs["baseline"] is None


def test_live_table_redraws_the_summary_in_place(monkeypatch):
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj.data))

    def display(obj, display_id=False):
        assert display_id is True
        shown.append(("display", obj.data))
        return Handle()

    monkeypatch.setattr(ngl.ui.downstream, "display", display)
    live = LiveTable()
    assert shown == [("display", "*waiting for the first run...*")] and live.summary is None
    live(None, grid_results(losses=(), failed=("ngl",)))  # nothing finished: placeholder stays
    assert len(shown) == 1 and live.markdown == "*waiting for the first run...*"
    results = grid_results()
    live(results.iloc[-1].to_dict(), results)
    want = summarise(results, baseline="ce")
    pd.testing.assert_frame_equal(live.summary, want)
    assert shown[-1] == ("update", to_markdown(want)) == ("update", live.markdown)
    assert len(shown) == 2


def test_table_builder_marks_missing_datasets_and_shows_why_runs_failed(tmp_path, monkeypatch):
    """A dataset without files is marked before it is picked; its failed runs and the reason
    appear in the widget, not only in results.jsonl."""
    empty = tmp_path / "no_data"
    empty.mkdir()
    monkeypatch.setenv("NGL_DATA_DIR", str(empty))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/ngl copy either
    cfg = GridConfig(datasets=("digits", "cifar10"), models=("small_cnn",), losses=("ce",),
                     seeds=(0, 1), train=TrainConfig(epochs=1, batch_size=64), n_train=120,
                     n_val=60, n_test=60, model_kwargs={"width": 4})
    tb = table_builder(tmp_path / "r.jsonl", base=cfg, datasets=("digits", "cifar10"),
                       models=("small_cnn",), losses=("ce",))
    labels = dict((v, label) for label, v in tb.datasets.options)
    assert labels["cifar10"] == "cifar10 (files not found)" and labels["digits"] == "digits"
    assert "files not found for cifar10" in tb.status.value
    results = tb.run()
    assert (results["status"] == "error").sum() == 2
    assert "2 of 4 runs failed" in tb.failures.value
    assert "cifar10 / small_cnn / CE (seeds 0, 1)" in tb.failures.value
    assert "FileNotFoundError" in tb.failures.value
    assert "2 runs done" in tb.status.value and "2 failed" in tb.status.value
