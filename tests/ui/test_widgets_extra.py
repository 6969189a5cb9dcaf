"""Search runner, hall-of-fame browser, loss explorer and the new figures, driven without a kernel."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from ngl.fitness import TrainBudget
from ngl.gp import RunOptions, SearchSpec, load_result
from ngl.losses import NGL_EXPRESSION
from ngl.losses.zoo import NGL_ALPHA
from ngl.ui import (
    hall_of_fame_browser,
    latest_search,
    loss_explorer,
    plot_downstream_comparison,
    plot_training_curves,
    save_figure,
    search_runner,
    training_history,
)

PNG = b"\x89PNG"


def tiny_config(**kw) -> SearchSpec:
    base = dict(population_size=4, generations=1, budget=TrainBudget(steps=3, batch_size=16),
                n_train=100, n_val=50, dataset="digits", seed_expressions=(NGL_EXPRESSION,))
    base.update(kw)
    return SearchSpec(**base)


OPTIONS = RunOptions(device="cpu", chunk_size=2)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("search") / "run"
    runner = search_runner(tiny_config(), run_dir, OPTIONS, plot_every=0.0)
    assert runner.state == "idle" and runner.resume_button.disabled
    runner.start_button.click()
    assert runner.thread is not None
    runner.join(120)
    return runner


def test_search_runner_start_runs_in_a_thread_to_the_end(finished_run):
    runner = finished_run
    assert not runner.running
    assert runner.state == "finished", (runner.status.value, runner.out.outputs)
    assert not runner.out.outputs  # no error shown
    assert runner.result.complete and len(runner.result.history) == 4
    assert len(runner.rows) == 1 and runner.image.value.tobytes().startswith(PNG)
    assert "finished" in runner.status.value
    assert not runner.start_button.disabled and runner.stop_button.disabled


def test_search_runner_shows_an_existing_run_and_reports_errors(finished_run, tmp_path):
    again = search_runner(tiny_config(), finished_run.run_dir)
    assert "existing run" in again.status.value and again.image.value.tobytes().startswith(PNG)
    assert not again.resume_button.disabled
    fresh = search_runner(tiny_config(), tmp_path / "empty")
    fresh.resume_button.click()  # nothing to resume: message in the Output, no exception
    assert any("nothing to resume" in o.get("text", "") for o in fresh.out.outputs)
    fresh.stop_button.disabled = False
    fresh.stop_button.click()
    assert any("no search is running" in o.get("text", "") for o in fresh.out.outputs)


def test_search_runner_stop_then_resume_completes(tmp_path):
    cfg = tiny_config(generations=3)
    runner = search_runner(cfg, tmp_path / "run", OPTIONS, plot_every=0.0)
    stopped = []

    def stop_after_first(summary, search):  # deterministic: stop once generation 0 is done
        runner._on_generation(summary, search)
        if not stopped:
            stopped.append(True)
            runner.stop_button.click()

    runner.start()
    runner.search.callback = stop_after_first
    runner.join(120)
    assert runner.state == "stopped", runner.out.outputs
    part = load_result(runner.run_dir)
    assert not part.complete and part.history["generation"].max() == 0
    runner.resume_button.click()
    assert "generation 2 of 3" in runner.status.value  # not "generation 1" after a resume
    runner.join(120)
    assert runner.state == "finished", runner.out.outputs
    assert sorted(runner.result.history["generation"].unique()) == [0, 1, 2]
    # the live figure's rows cover the whole history, generation 0 included
    assert [int(r["generation"]) for r in runner.rows] == [0, 1, 2]


def test_search_runner_wait_returns_the_result_of_the_background_search(finished_run, tmp_path):
    """The cells after notebook 02's panel read ``runner.wait()``: the finished search's result,
    also for a runner that was never started on a finished run; a fresh one says press start."""
    done = finished_run.wait()
    pd.testing.assert_frame_equal(done.history, load_result(finished_run.run_dir).history)
    assert search_runner(tiny_config(), finished_run.run_dir).wait().complete
    with pytest.raises(RuntimeError, match="press start"):
        search_runner(tiny_config(), tmp_path / "none").wait()


def test_interrupting_wait_stops_the_search_with_one_line(tmp_path, capsys):
    """A real interrupt (SIGINT, what JupyterLab's stop button sends the kernel) while ``wait()``
    waits stops the search after the chunk in progress, says "stopped - run again to resume"
    (no traceback), and start continues it. (Python 3.11 takes a thread interrupted in
    ``join()`` for finished: wait() must not rely on it.)"""
    import signal
    import threading
    import time

    spec = tiny_config(population_size=4, generations=4, budget=TrainBudget(steps=60, batch_size=16))
    runner = search_runner(spec, tmp_path / "run", OPTIONS, plot_every=0.0)
    runner.start()
    main = threading.main_thread().ident
    timer = threading.Timer(1.0, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    part = runner.wait()
    timer.join()
    err = capsys.readouterr().err
    assert "stopped - run again to resume" in err and "Traceback" not in err
    assert not runner.running and runner.state == "stopped"
    assert not part.complete
    time.sleep(1.0)  # the search really stopped: nothing is added afterwards
    assert len(load_result(runner.run_dir).history) == len(part.history)
    runner.start()
    assert runner.wait().complete
    assert sorted(runner.result.history["generation"].unique()) == [0, 1, 2, 3]


def test_hall_of_fame_browser_switches_candidates(finished_run):
    result = finished_run.result
    browser = hall_of_fame_browser(result)
    hof = result.hall_of_fame()
    assert len(browser.dropdown.options) == len(hof) >= 1
    assert str(browser.selected) == hof["expression"].iloc[0]
    assert browser.tree_image.value.tobytes().startswith(PNG) and browser.shape_image.value.tobytes().startswith(PNG)
    assert set(browser.shape_data["loss_name"]) == {"candidate", "NGL", "CE"}
    kinds = [o["output_type"] for o in browser.out.outputs]
    assert "display_data" in kinds and "text/latex" in browser.out.outputs[kinds.index("display_data")]["data"]
    if len(hof) > 1:
        browser.dropdown.value = 1
        assert str(browser.selected) == hof["expression"].iloc[1]


def test_hall_of_fame_browser_marks_losses_below_chance(finished_run):
    result = load_result(finished_run.run_dir)
    h = result.history.copy()
    ok = h.index[h["status"] == "ok"]
    h.loc[ok, "val_accuracy"] = 0.05  # every trained loss at or below chance (10 classes)
    h.loc[ok[-1], "val_accuracy"] = float(np.float32(0.1))  # exactly chance, as float32 stores it
    h.loc[ok[0], "val_accuracy"] = 0.5
    result.history = h
    browser = hall_of_fame_browser(result, num_classes=10)
    labels = [label for label, _ in browser.dropdown.options]
    assert "BELOW CHANCE" not in labels[0] and all("BELOW CHANCE" in x for x in labels[1:])
    if len(labels) > 1:
        browser.dropdown.value = 1
        assert "below chance" in browser.info.value


def test_a_notebook_says_which_search_it_shows(finished_run, capsys):
    from ngl.ui.browsers import search_or_tiny

    spec = load_result(finished_run.run_dir).spec
    assert search_or_tiny(finished_run.run_dir) == finished_run.run_dir
    line = capsys.readouterr().out
    assert f"showing search {spec.key} (given): {spec.dataset}" in line
    assert f"population {spec.population_size} x {spec.generations} generations" in line


def test_search_picker_lists_every_run_and_says_which_one_is_shown(finished_run, tmp_path,
                                                                    monkeypatch):
    """Notebook 03 shows the latest run by default, names it (key, config), lists the others, and
    after another pick says to re-run the cells below until they show it."""
    import shutil

    from ngl.ui import search_picker

    monkeypatch.setenv("NGL_RUNS_DIR", str(tmp_path))
    old = tmp_path / "search" / "old"
    new = tmp_path / "search" / "new"
    shutil.copytree(finished_run.run_dir, old)
    shutil.copytree(finished_run.run_dir, new)
    os.utime(old / "history.jsonl", (1e9, 1e9))  # old changed first: new is the latest
    spec = load_result(new).spec
    picker = search_picker(quick=True)
    assert picker.value == new
    assert [v for _label, v in picker.dropdown.options] == [str(new), str(old)]
    label = picker.dropdown.options[0][0]
    assert label.startswith(spec.key) and f"{spec.population_size} x {spec.generations}" in label
    assert "4 candidates, complete" in label
    assert f"showing search {spec.key} (chosen): digits" in picker.info.value
    assert picker.shown() == new and "re-run" not in picker.info.value
    picker.dropdown.value = str(old)
    assert picker.value == old and "re-run the cells below" in picker.info.value
    assert picker.shown() == old and "re-run" not in picker.info.value
    # a run given from elsewhere is chosen and listed, never replaced by the latest one
    elsewhere = search_picker(finished_run.run_dir)
    assert elsewhere.value == finished_run.run_dir
    assert len(elsewhere.dropdown.options) == 3


def test_hall_of_fame_browser_without_trained_candidates(finished_run):
    empty = load_result(finished_run.run_dir)
    empty.history = empty.history.iloc[0:0]
    browser = hall_of_fame_browser(empty)
    assert browser.selected is None and "no candidate" in browser.info.value


def test_latest_search_is_the_run_whose_history_changed_last(finished_run, tmp_path, monkeypatch):
    assert latest_search(finished_run.run_dir.parent) == finished_run.run_dir  # a real run directory
    for age, name in ((5, "pre_0_1"), (10, "new"), (20, "middle"), (0, "no_config")):
        run = tmp_path / "search" / name
        run.mkdir(parents=True)
        (run / "history.jsonl").write_text("")
        # not search directories, ignored however new: no spec, or ngl before 0.1's config.json
        if name != "no_config":
            (run / ("config.json" if name == "pre_0_1" else "spec.json")).write_text("{}")
        os.utime(run / "history.jsonl", (1e9 - age, 1e9 - age))
    (tmp_path / "search" / "stray.jsonl").write_text("")
    assert latest_search(tmp_path / "search") == tmp_path / "search" / "new"
    assert latest_search(str(tmp_path / "search")) == tmp_path / "search" / "new"
    assert latest_search(tmp_path / "missing") is None
    monkeypatch.setenv("NGL_RUNS_DIR", str(tmp_path))  # default: runs/search/
    assert latest_search() == tmp_path / "search" / "new"
    monkeypatch.setenv("NGL_RUNS_DIR", str(tmp_path / "empty"))
    assert latest_search() is None


def test_loss_explorer_redraws_on_sliders():
    ex = loss_explorer(num_classes=10)
    d0 = ex.data
    assert set(d0["loss_name"]) == {"CE", f"NGL (α={NGL_ALPHA:.4g})", "focal (γ=2)", "label smoothing (ε=0.1)"}
    ngl0 = d0[d0["loss_name"].str.startswith("NGL")]
    p_opt = ngl0["p_true"].iloc[int(ngl0["loss"].argmin())]
    assert 0.3 < p_opt < 0.5  # NGL's interior optimum near 0.39 for C = 10
    ex.alpha.value = 1.0
    ngl1 = ex.data[ex.data["loss_name"].str.startswith("NGL")]
    assert ngl1["loss_name"].iloc[0] == "NGL (α=1)"
    assert not np.allclose(ngl0["loss"].to_numpy(), ngl1["loss"].to_numpy())
    ex.num_classes.value = 2
    assert "C = 2" not in ex.info.value and ex.image.value.tobytes().startswith(PNG)
    ex.show["focal"].value = False
    assert not any(n.startswith("focal") for n in ex.data["loss_name"])
    ex.expression.value = "1 - y_pred*y_real"
    assert "1 - y_pred*y_real" in set(ex.data["loss_name"])
    ex.expression.value = "y_pred +"  # a typo is reported, and the old figure is gone: it
    assert any(o.get("name") == "stderr" for o in ex.out.outputs)  # no longer shows the input
    assert ex.image.value.tobytes() == b"" and ex.data is None and "nothing drawn" in ex.info.value
    ex.expression.value = "exp(y_real)"  # no y_pred: one line that says so, no torch internals
    text = "".join(o.get("text", "") for o in ex.out.outputs)
    assert "does not use y_pred" in text and "Traceback" not in text and "File " not in text
    ex.expression.value = "1 - y_pred"  # fixed: drawn again
    assert "1 - y_pred" in set(ex.data["loss_name"]) and ex.image.value.tobytes().startswith(PNG)


# -- figures --------------------------------------------------------------------------------
def test_training_curves_average_seeds_and_normalise_loss():
    rows = [{"epoch": e, "loss": loss, "seed": s, "train_loss": base * (1 + s) / (e + 1),
             "val_accuracy": acc + 0.01 * e + 0.002 * s}
            for loss, base, acc in (("ce", 2.0, 0.8), ("ngl", 11.0, 0.82)) for s in (0, 1) for e in range(3)]
    fig = plot_training_curves(pd.DataFrame(rows))
    ax_loss, ax_acc = fig.axes
    assert ax_loss.get_ylabel() == "train loss / first epoch"
    np.testing.assert_allclose(ax_loss.lines[0].get_ydata(), [1, 1 / 2, 1 / 3])
    np.testing.assert_allclose(ax_acc.lines[1].get_ydata(), [0.821, 0.831, 0.841])
    assert [t.get_text() for t in ax_acc.get_legend().get_texts()] == ["CE", "NGL"]  # display names
    plt.close(fig)
    with pytest.raises(ValueError, match="epoch"):
        plot_training_curves(pd.DataFrame({"step": [1]}))


def test_downstream_comparison_means_errorbars_and_delta():
    df = pd.DataFrame([{"dataset": d, "loss": loss, "seed": s, "test_accuracy": acc + 0.01 * s}
                       for d, off in (("cifar10", 0.0), ("fashion_mnist", 0.05))
                       for loss, acc in (("ce", 0.80 + off), ("ngl", 0.82 + off)) for s in (0, 1, 2)])
    fig = plot_downstream_comparison(df)
    ax = fig.axes[0]
    ce, ngl = ax.containers  # one ErrorbarContainer per loss: (data line, caps, bars)
    np.testing.assert_allclose(ce.lines[0].get_ydata(), [81.0, 86.0])
    np.testing.assert_allclose(ngl.lines[0].get_ydata(), [83.0, 88.0])
    assert ce.has_yerr and ax.lines[0].get_ydata()[0] == pytest.approx(81.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["CIFAR-10", "Fashion-MNIST"]
    plt.close(fig)
    fig = plot_downstream_comparison(df, reference="ce")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [2.0, 2.0])
    assert ax.get_ylabel().endswith("− CE (points)")
    plt.close(fig)
    with pytest.raises(ValueError, match="reference"):
        plot_downstream_comparison(df, reference="focal")


def test_training_history_flattens_the_finished_runs_of_a_grid():
    def history(acc):
        return [{"epoch": e, "train_loss": 2.0 / (e + 1), "val_accuracy": acc + 0.01 * e} for e in range(3)]

    results = pd.DataFrame([
        {"dataset": "digits", "model": "small_cnn", "loss": "ce", "seed": 0, "status": "ok",
         "history": history(0.8)},
        {"dataset": "digits", "model": "small_cnn", "loss": "ngl", "seed": 1, "status": "ok",
         "history": history(0.9)},
        {"dataset": "digits", "model": "small_cnn", "loss": "sce", "seed": 0, "status": "error",
         "history": None},
        {"dataset": "digits", "model": "small_cnn", "loss": "focal", "seed": 0, "status": "nonfinite",
         "history": history(0.1)},
    ])
    curves = training_history(results)
    assert list(curves.columns) == ["epoch", "train_loss", "val_accuracy", "dataset", "model", "loss",
                                    "seed"]
    assert len(curves) == 6 and list(curves["loss"]) == ["ce"] * 3 + ["ngl"] * 3
    assert list(curves["seed"]) == [0, 0, 0, 1, 1, 1] and list(curves["epoch"]) == [0, 1, 2] * 2
    np.testing.assert_allclose(curves["val_accuracy"], [0.8, 0.81, 0.82, 0.9, 0.91, 0.92])
    fig = plot_training_curves(curves, columns=["train_loss", "val_accuracy"])
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["CE", "NGL"]
    plt.close(fig)
    assert list(training_history(results.iloc[2:3]).columns) == ["epoch", "dataset", "model", "loss",
                                                                 "seed"]
    assert len(training_history(results.drop(columns=["status", "model"]))) == 9
    with pytest.raises(ValueError, match="history"):
        training_history(results.drop(columns=["history"]))


def test_new_figures_export(tmp_path):
    df = pd.DataFrame({"epoch": [0, 1], "val_accuracy": [0.5, 0.6]})
    fig = plot_training_curves(df, hue=None)
    paths = save_figure(fig, "curves", notebook="test", directory=tmp_path)
    assert [p.suffix for p in paths] == [".pdf", ".png", ".json"]
    plt.close(fig)


def test_live_plot_of_a_resumed_search_shows_every_generation(tmp_path):
    """Resumed after generation 0: the plot has generations 0, 1, 2, not just 1 and 2."""
    from ngl.gp import GPSearch, resume
    from ngl.ui import LivePlot, plot_search_progress

    def stop_after_first(_summary, search):
        search.request_stop()

    spec = tiny_config(generations=3)
    GPSearch(spec, tmp_path / "run", RunOptions(chunk_size=4), progress=False,
             callback=stop_after_first).run()
    assert not load_result(tmp_path / "run").complete
    live = LivePlot(every=0.0)
    resume(tmp_path / "run", progress=False, callback=live)
    assert [int(r["generation"]) for r in live.rows] == [0, 1, 2]
    fig = plot_search_progress(pd.DataFrame(live.rows[:1]))  # one generation: sensible axes
    assert fig.axes[0].get_xlim() == pytest.approx((-0.6, 0.6))
    live.close()
    plt.close(fig)
