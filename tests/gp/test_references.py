"""References beside every search and rescoring of its winners (the winner's curse).

The CE reference is checked against an independent run of the reference loop with torch's own
cross entropy; the rescoring statistics against numpy on the rows of ``rescore.jsonl``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import ngl.gp.search as search_module
import ngl.gp.side as side_module
from ngl.__main__ import main
from ngl.data import load_cached
from ngl.fitness import SuccessiveHalving, TrainBudget, train_sequential
from ngl.gp import (
    GPSearch,
    RunDirError,
    RunOptions,
    SearchSpec,
    load_result,
    read_run_files,
    rescore_seed,
    resume,
    run_search,
)
from ngl.io.records import append_rows, read_rows
from ngl.losses import NGL_EXPRESSION
from ngl.models import build_model

ROOT = Path(__file__).resolve().parents[2]
FOCAL = {"name": "focal", "gamma": 2, "label": "focal2"}


def tiny(**kw) -> SearchSpec:
    base = dict(population_size=4, generations=2, n_train=200, n_val=100,
                budget=TrainBudget(steps=10, batch_size=64, lr=3e-2),
                seed_expressions=(NGL_EXPRESSION,), references=("ce", FOCAL), rescore=2,
                rescore_seeds=2, seed=1)
    base.update(kw)
    return SearchSpec(**base)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("refs") / "run"
    return run_search(tiny(), run_dir, RunOptions(chunk_size=2), progress=False)


# -- the spec -------------------------------------------------------------------------------------
def test_default_spec_has_a_ce_reference_and_rescores_the_top_three():
    spec = SearchSpec()
    assert spec.references == ("ce",) and spec.rescore == 3 and spec.rescore_seeds == 2
    again = SearchSpec.from_json(tiny().to_json())
    assert again == tiny() and again.key == tiny().key and hash(again) == hash(tiny())
    assert again.references == ("ce", {"gamma": 2, "label": "focal2", "name": "focal"})


@pytest.mark.parametrize(("refs", "pattern"), [
    (("ce", "crossentropee"), r"references\[1\]='crossentropee': unknown loss"),
    (({"name": "focal", "gama": 2},), r"references\[0\]=.*unexpected keyword argument 'gama'"),
    (("exp(y_pred",), r"references\[0\]='exp\(y_pred': unbalanced parentheses"),
    (("ce", {"name": "ce"}), r"references: labels must be unique"),
])
def test_bad_reference_is_refused_with_one_line(refs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny(references=refs)


@pytest.mark.parametrize(("kw", "pattern"), [({"rescore": -1}, "rescore"),
                                             ({"rescore_seeds": 0}, "rescore_seeds")])
def test_bad_rescore_settings_are_refused(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny(**kw)


def test_bad_reference_in_a_spec_file_writes_nothing(tmp_path, capsys):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({**tiny().to_dict(), "references": ["ce", "nope_loss"]}))
    run_dir = tmp_path / "run"
    assert main(["search", "--spec", str(spec_file), "--run-dir", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "references[1]='nope_loss'" in err
    assert "spec.json" in err and not run_dir.exists()


# -- references -----------------------------------------------------------------------------------
def test_ce_reference_equals_an_independent_run(searched):
    spec = searched.spec
    data = load_cached(spec.dataset, None, spec.n_train, spec.n_val, None, spec.data_seed)
    c, h, _w = data.input_shape
    model_fn = functools.partial(build_model, spec.model, c, data.num_classes, h)
    [ref] = train_sequential(model_fn, [torch.nn.CrossEntropyLoss()], data, spec.budget,
                             seed=spec.seed)
    refs = searched.references.set_index("loss")
    assert list(searched.references.columns) == ["loss", "fitness", "val_ce", "status"]
    assert list(refs.index) == ["ce", "focal2"] and (refs["status"] == "ok").all()
    assert ref.val_accuracy > 0.15  # above chance (0.1): the comparison means something
    assert refs.loc["ce", "fitness"] == pytest.approx(ref.val_accuracy, abs=1e-6)
    # the population engine (a folded pass with focal) agrees with the reference loop up to
    # float rounding, grown over 10 steps at lr 3e-2
    assert refs.loc["ce", "val_ce"] == pytest.approx(ref.val_ce, rel=1e-3)


def test_references_never_enter_the_history(searched):
    spec, h = searched.spec, searched.history
    assert searched.complete and len(h) == spec.population_size * spec.generations
    assert "ce" not in set(h["expression"]) and "focal2" not in set(h["expression"])
    rows = read_rows(searched.run_dir / "references.jsonl")
    assert [r["loss"] for r in rows] == ["ce", "focal2"]
    assert rows[1]["loss_spec"] == {"gamma": 2, "label": "focal2", "name": "focal"}
    for r in rows:
        assert r["run"] == spec.key and r["split"] == "search_validation"
        assert r["steps_done"] == spec.budget.steps and r["train_time_s"] > 0
        assert r["seed"] == spec.seed


def test_delta_ce_is_accuracy_minus_the_ce_reference(searched):
    hof = searched.hall_of_fame()
    ce = searched.references.set_index("loss").loc["ce", "fitness"]
    np.testing.assert_allclose(hof["delta_ce"], hof["val_accuracy"] - ce)
    assert searched.ce_reference == "ce"
    # CE under another label or an alias is still the CE reference; focal alone is not
    for refs, expected in [((FOCAL, {"name": "cross_entropy", "label": "base"}), "base"),
                           ((FOCAL,), None)]:
        other = dataclasses.replace(searched, spec=tiny(references=refs))
        assert other.ce_reference == expected


def test_summary_carries_the_references_for_the_plots(searched):
    attrs = searched.generation_summary().attrs["references"]
    assert set(attrs) == {"ce", "focal2"}
    assert attrs["ce"] == searched.references.set_index("loss").loc["ce", "fitness"]


# -- rescoring ------------------------------------------------------------------------------------
def test_rescore_plan_is_the_search_top_k_with_documented_seeds(searched):
    spec = searched.spec
    plan = json.loads((searched.run_dir / "rescore_plan.json").read_text())
    assert plan["seeds"] == [rescore_seed(spec.seed, 1), rescore_seed(spec.seed, 2)]
    assert len(set(plan["seeds"]) | {spec.seed}) == 3
    top = searched._search_ranking().head(spec.rescore)
    assert [c["key"] for c in plan["candidates"]] == list(top["key"])
    assert [r["loss"] for r in plan["references"]] == ["ce", "focal2"]
    rows = read_rows(searched.run_dir / "rescore.jsonl")
    assert len(rows) == (spec.rescore + 2) * spec.rescore_seeds
    assert all(r["run"] == spec.key and r["status"] in ("ok", "nonfinite") for r in rows)


def test_rescore_mean_and_std_equal_numpy_on_the_rows(searched):
    spec = searched.spec
    rows = read_rows(searched.run_dir / "rescore.jsonl")
    plan = json.loads((searched.run_dir / "rescore_plan.json").read_text())
    planned = [c["key"] for c in plan["candidates"]]
    hof = searched.hall_of_fame()
    ce = {spec.seed: searched.references.set_index("loss").loc["ce", "fitness"]}
    ce.update({r["seed"]: r["val_accuracy"] for r in rows
               if r["kind"] == "reference" and r["loss"] == "ce"})
    for _, entry in hof.iterrows():
        if entry["key"] not in planned:
            assert math.isnan(entry["fitness_mean"]) and pd.isna(entry["n_seeds"])
            continue
        by_seed = {spec.seed: entry["val_accuracy"]}
        by_seed.update({r["seed"]: r["val_accuracy"] for r in rows
                        if r["kind"] == "candidate" and r["key"] == entry["key"]})
        values = np.array(list(by_seed.values()))
        assert entry["n_seeds"] == 3
        assert entry["fitness_mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert entry["fitness_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        paired = [v - ce[s] for s, v in by_seed.items()]
        assert entry["delta_ce_mean"] == pytest.approx(np.mean(paired), abs=1e-12)
    # the rescored entries first, by their mean; the others follow in the search's order
    head = hof.head(len(planned))
    assert set(head["key"]) == set(planned)
    assert head["fitness_mean"].is_monotonic_decreasing
    rest = searched._search_ranking()
    rest = list(rest[~rest["key"].isin(planned)]["key"])
    assert list(hof["key"].iloc[len(planned):]) == rest[:len(hof) - len(planned)]
    entries = searched.entries()
    assert [e.expression.key for e in entries] == list(hof["key"])
    assert searched.best.fitness_mean == pytest.approx(head["fitness_mean"].iloc[0])
    assert entries[-1].fitness_mean is None or entries[-1].expression.key in planned


def test_rerunning_a_finished_search_trains_nothing(searched):
    files = ["history.jsonl", "references.jsonl", "rescore.jsonl", "rescore_plan.json"]
    before = {f: (searched.run_dir / f).read_bytes() for f in files}
    again = resume(searched.run_dir, progress=False)
    assert again.complete
    assert {f: (searched.run_dir / f).read_bytes() for f in files} == before


def test_show_prints_references_delta_ce_and_mean_std(searched, capsys):
    assert main(["show", str(searched.run_dir)]) == 0
    out = capsys.readouterr().out
    assert "references (trained once" in out and "focal2" in out
    assert "delta_ce" in out and "mean ± std" in out and " ± " in out
    assert "complete: True" in out


def test_search_is_complete_only_once_rescoring_is_done(searched, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(searched.run_dir, run_dir)
    (run_dir / "search.lock").unlink(missing_ok=True)
    lines = (run_dir / "rescore.jsonl").read_text().splitlines(keepends=True)
    # killed after the first chunks (chunk_size=2: a chunk's rows are written at once)
    (run_dir / "rescore.jsonl").write_text("".join(lines[:4]))
    partial = load_result(run_dir)
    assert not partial.complete and not partial.rescore_done
    # not reranked before rescoring is done: the search's own order
    assert list(partial.hall_of_fame()["key"]) == \
        list(partial._search_ranking()["key"].head(len(partial.hall_of_fame())))
    done = resume(run_dir, progress=False)
    assert done.complete
    cols = ["kind", "key", "loss", "seed", "val_accuracy", "val_ce", "status"]
    pd.testing.assert_frame_equal(done.rescores[cols], searched.rescores[cols])


def test_with_halving_only_entries_of_the_last_rung_are_rescored(tmp_path):
    halving = SuccessiveHalving(eta=3, rungs=2, bracket=3)  # rungs at 3 and 9 steps
    spec = tiny(halving=halving, budget=TrainBudget(steps=9, batch_size=64, lr=3e-2),
                population_size=6, generations=1, references=("ce",), rescore=3,
                rescore_seeds=1)
    res = run_search(spec, tmp_path / "halving", RunOptions(chunk_size=3), progress=False)
    assert res.complete
    plan = res.rescore_plan
    last = res.history[res.history["rung"] == 1]
    assert plan["candidates"] and {c["key"] for c in plan["candidates"]} <= set(last["key"])
    rows = read_rows(tmp_path / "halving" / "rescore.jsonl")
    assert all(r["steps_done"] == 9 for r in rows if r["status"] == "ok")  # the whole budget
    hof = res.hall_of_fame()
    assert hof["rung"].head(len(plan["candidates"])).eq(1).all()


@pytest.mark.parametrize("name", ["references.jsonl", "rescore.jsonl"])
def test_rows_of_another_spec_are_refused(searched, tmp_path, name):
    run_dir = tmp_path / "run"
    shutil.copytree(searched.run_dir, run_dir)
    (run_dir / "search.lock").unlink(missing_ok=True)
    row = read_rows(run_dir / name)[0]
    append_rows(run_dir / name, [{**row, "run": "0123456789ab"}])
    before = (run_dir / name).read_bytes()
    with pytest.raises(RunDirError, match=rf"{name} holds rows of another spec"):
        load_result(run_dir)
    with pytest.raises(RunDirError, match="rows of another spec"):
        resume(run_dir, progress=False)
    assert (run_dir / name).read_bytes() == before


def test_references_and_rescoring_can_be_off(tmp_path):
    spec = tiny(references=(), rescore=0, generations=1)
    res = run_search(spec, tmp_path / "off", RunOptions(chunk_size=4), progress=False)
    assert res.complete and res.references.empty
    assert list(res.references.columns) == ["loss", "fitness", "val_ce", "status"]
    assert not (tmp_path / "off" / "references.jsonl").exists()
    assert not (tmp_path / "off" / "rescore.jsonl").exists()
    hof = res.hall_of_fame()
    assert hof["delta_ce"].isna().all() and "fitness_mean" not in hof


# -- run directories written before the fields existed -------------------------------------------
def _strip_new_fields(run_dir: Path) -> None:
    saved = json.loads((run_dir / "spec.json").read_text())
    for k in ("references", "rescore", "rescore_seeds"):
        saved.pop(k, None)
    (run_dir / "spec.json").write_text(json.dumps(saved, indent=2))


def test_old_spec_without_the_fields_resumes_with_the_same_key(tmp_path):
    spec = tiny(references=(), rescore=0, generations=2)
    run_dir = tmp_path / "old"
    done = run_search(spec, run_dir, RunOptions(chunk_size=4), progress=False)
    key = done.spec.key
    _strip_new_fields(run_dir)
    (run_dir / "checkpoint.json").unlink()  # rebuilt by replaying the GP from the history
    lines = (run_dir / "history.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "history.jsonl").write_text("".join(lines[:5]))  # killed mid-generation 1
    files = read_run_files(run_dir)
    assert files.spec.references == () and files.spec.rescore == 0 and files.spec.key == key
    again = resume(run_dir, progress=False)
    assert again.complete and again.spec.key == key
    pd.testing.assert_frame_equal(again.history[["generation", "index", "expression",
                                                 "val_accuracy"]],
                                  done.history[["generation", "index", "expression",
                                                "val_accuracy"]])
    assert not (run_dir / "references.jsonl").exists()


def test_findings_search_loads_and_resumes_with_its_key(tmp_path, monkeypatch):
    """findings/cpu/search was written before references and rescoring existed."""
    src = ROOT / "findings" / "cpu" / "search"
    if not (src / "spec.json").exists():
        pytest.skip("findings/cpu/search is not in this checkout")
    run_dir = tmp_path / "search"
    shutil.copytree(src, run_dir)
    saved = json.loads((run_dir / "spec.json").read_text())
    assert "references" not in saved and "rescore" not in saved
    rows = read_rows(run_dir / "history.jsonl")
    res = load_result(run_dir)
    assert res.spec.references == () and res.spec.rescore == 0
    assert res.spec.key == rows[0]["run"] and res.complete and len(res.history) == len(rows)
    assert res.hall_of_fame()["delta_ce"].isna().all() and res.references.empty
    # resume: fashion_mnist is not on this machine and nothing needs training; the GP is
    # replayed from the history (no checkpoint there), which checks every recorded candidate
    monkeypatch.setattr(search_module, "load_search_data",
                        lambda *a, **k: types.SimpleNamespace(num_classes=10))

    def no_training(*a, **k):
        raise AssertionError("a finished old search trained something")

    monkeypatch.setattr(search_module, "evaluate_chunk", no_training)
    monkeypatch.setattr(side_module, "evaluate_losses", no_training)  # references, rescoring
    again = GPSearch(res.spec, run_dir, res.options, progress=False).run()
    assert again.complete and again.spec.key == rows[0]["run"]
    assert json.loads((run_dir / "checkpoint.json").read_text())["spec_key"] == rows[0]["run"]
    assert read_rows(run_dir / "history.jsonl") == rows


# -- figures --------------------------------------------------------------------------------------
def _dashed(ax) -> dict[str, float]:
    return {line.get_label(): float(line.get_ydata()[0]) for line in ax.get_lines()
            if line.get_linestyle() == "--"}


def test_fitness_plots_draw_each_reference_as_a_labelled_dashed_line(searched):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ngl.ui import search_runner
    from ngl.ui.plots_search import LivePlot, plot_search_progress

    accs = searched.references.set_index("loss")["fitness"]
    want = {"CE (reference)": accs["ce"], "focal2 (reference)": accs["focal2"]}
    # notebooks 02 and 03: plot_search_progress(result.generation_summary())
    fig = plot_search_progress(searched.generation_summary())
    assert _dashed(fig.axes[0]) == pytest.approx(want)
    assert want.keys() <= set(fig.axes[0].get_legend_handles_labels()[1])
    plt.close(fig)
    # the live figure of ngl.search(..., callback=LivePlot()) reads them from the run directory
    live = LivePlot(every=0.0)
    summary = searched.generation_summary()
    live(summary.iloc[-1].to_dict(), GPSearch(searched.spec, searched.run_dir))
    assert _dashed(live.fig.axes[0]) == pytest.approx(want)
    live.close()
    # notebook 02's panel
    runner = search_runner(searched.spec, searched.run_dir)
    assert runner.references == pytest.approx(dict(accs))


def test_the_paper_table_carries_the_mean_over_seeds_when_rescored(searched):
    """The hall of fame is ranked by the rescored mean: the LaTeX table shows it beside the
    one-seed score (alone, that score would carry the winner's curse into a paper)."""
    result = searched
    tex = result.to_latex(include_chance=True)
    assert "mean of seeds" in tex
    for e in result.entries():
        if e.fitness_mean is not None:
            assert f"{100 * e.fitness_mean:.2f}" in tex
