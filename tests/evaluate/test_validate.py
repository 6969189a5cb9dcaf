"""ngl.validate: held-out test accuracy of a search's found losses, statistics, transfer, fidelity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ngl
from ngl.data import load_cached
from ngl.evaluate import ValidateConfig, fidelity_correlation, load_validation, validate, verdicts
from ngl.evaluate.validate import plan_grids
from ngl.io.config import ConfigError
from ngl.io.records import read_rows
from ngl.train import TrainConfig

TINY_TRAIN = TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=4)


def _config(**kw) -> ValidateConfig:
    base = dict(top_k=2, seeds=(0, 1), model="small_cnn", train=TINY_TRAIN,
                transfer=(("digits", "dense_cnn"),), fidelity_top=3, fidelity_sample=2,
                device="cpu", bootstrap_resamples=200)
    return ValidateConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory) -> Path:
    """A finished quick search on digits (notebook 02's quick mode, smaller still)."""
    spec = ngl.SearchSpec(population_size=6, generations=2, dataset="digits", seed=0,
                          budget=ngl.TrainBudget(steps=15, batch_size=64))
    run_dir = tmp_path_factory.mktemp("search") / "run"
    ngl.search(spec, run_dir, device="cpu", progress=False)
    return run_dir


@pytest.fixture(scope="module")
def report(search_dir, tmp_path_factory):
    return validate(search_dir, _config(), tmp_path_factory.mktemp("val") / "out", progress=False)


# -- statistics against hand computations --------------------------------------------------------
def test_spearman_by_hand():
    # ranks differ by d = (-1, 1, -1, 1, 0): rho = 1 - 6 * 4 / (5 * 24) = 0.8
    out = fidelity_correlation(np.array([1, 2, 3, 4, 5.0]), np.array([2, 1, 4, 3, 5.0]),
                               resamples=500)
    assert out["rho"] == pytest.approx(0.8)
    assert out["n"] == 5
    assert out["ci_low"] <= 0.8 <= out["ci_high"] <= 1.0


def test_spearman_is_undefined_for_a_constant_side():
    out = fidelity_correlation(np.array([1, 2, 3.0]), np.array([0.5, 0.5, 0.5]))
    assert np.isnan(out["rho"]) and np.isnan(out["ci_low"])


def test_holm_and_verdicts_by_hand():
    # Holm on p = (0.01, 0.04, 0.03): sorted 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    table = pd.DataFrame({
        "loss": ["a", "b", "c", "ce", "ngl"],
        "delta": [1.2, 0.9, -0.3, 0.0, 0.7],
        "p_ttest": [0.01, 0.04, 0.03, np.nan, 0.02],
        "p_wilcoxon": [0.0625, 0.0625, 0.125, np.nan, 0.0625],
    })
    out = verdicts(table, ["a", "b", "c"], margin=0.5, alpha=0.05, baseline="ce").set_index("loss")
    assert out.loc[["a", "b", "c"], "p_holm"].tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert out.loc[["a", "b", "c"], "p_holm_wilcoxon"].tolist() == pytest.approx(
        [0.1875, 0.1875, 0.1875])
    assert out.loc["a", "verdict"] == "better"  # > +0.5 and Holm p = 0.03
    assert out.loc["b", "paper_rule"] == "better"  # Holm p = 0.06: not confirmed
    assert out.loc["b", "verdict"] == "not significant"
    assert out.loc["c", "paper_rule"] == "same" and out.loc["c", "verdict"] == "same"
    assert out.loc["ce", "verdict"] == "baseline"
    # a reference is one pre-specified comparison: its own p-value, no correction
    assert np.isnan(out.loc["ngl", "p_holm"]) and out.loc["ngl", "verdict"] == "better"


# -- the stage on a real (tiny) search -----------------------------------------------------------
def test_found_losses_are_the_hall_of_fame_and_references_follow(search_dir, report):
    hof = ngl.load(search_dir).hall_of_fame(2)
    assert report.found == hof["expression"].tolist()
    assert report.table["loss"].tolist() == [*report.found, "ce", "ngl", "focal(gamma=2.0)",
                                             "label_smoothing"]
    assert (report.table["n"] == 2).all()
    assert report.table.loc[report.table["loss"].isin(report.found), "search_fitness"].tolist() \
        == pytest.approx(hof["val_accuracy"].tolist())
    assert report.complete


def test_found_losses_carry_the_search_mean_over_its_seeds(search_dir, report):
    # by hand from the run files: the search's own row plus each rescoring row of that key
    history = read_rows(search_dir / "history.jsonl")
    rescores = read_rows(search_dir / "rescore.jsonl")
    plan = json.loads((report.out_dir / "plan.json").read_text())
    table = report.table.set_index("loss")
    rescored = 0
    for f in plan["found"]:
        own = [r for r in history if r["expression"] == f["expression"] and r["status"] == "ok"]
        key = own[0]["key"]
        extra = [r["val_accuracy"] for r in rescores
                 if r["kind"] == "candidate" and r["key"] == key]
        if not extra:
            assert "search_fitness_mean" not in f
            assert np.isnan(table.loc[f["expression"], "search_fitness_mean"])
            continue
        rescored += 1
        values = [own[0]["val_accuracy"], *extra]
        assert f["search_seeds"] == len(values) == 3
        assert f["search_fitness_mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert table.loc[f["expression"], "search_fitness_mean"] == pytest.approx(np.mean(values))
        assert f"| {100 * np.mean(values):.2f} |" in report.to_markdown()
    assert rescored == len(plan["found"])  # the top 2 of a rescore-3 search are all rescored
    assert "| search fitness, mean of seeds |" in report.to_markdown()
    assert table.loc[["ce", "ngl"], "search_fitness_mean"].isna().all()


@pytest.mark.parametrize(("field", "value"), [("search_fitness_mean", 7.5),
                                              ("search_fitness", "high"),
                                              ("search_seeds", 0)])
def test_a_hand_edited_plan_with_numbers_out_of_range_is_refused(report, tmp_path, field,
                                                                 value):
    out = tmp_path / "copy"
    out.mkdir()
    plan = json.loads((report.out_dir / "plan.json").read_text())
    plan["found"][0][field] = value
    (out / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ConfigError, match=rf"found\[0\]\.{field} = "):
        load_validation(out)


def test_numbers_come_from_the_held_out_test_split(report):
    data = load_cached("digits", None, None, None, None, 0)
    main = report.results[report.results["model"] == "small_cnn"]
    assert {r["test"] for r in main["sizes"]} == {len(data.y_test)}
    # the held-out test split is disjoint from everything the search trained or selected on
    train = {tuple(x.flatten().tolist()) for x in data.x_train}
    val = {tuple(x.flatten().tolist()) for x in data.x_val}
    test = [tuple(x.flatten().tolist()) for x in data.x_test]
    assert not any(t in train or t in val for t in test)


def test_paired_change_matches_the_rows_by_hand(report):
    rows = report.results
    for loss in report.found:
        mine = rows[(rows["loss"] == loss) & (rows["model"] == "small_cnn")].set_index("seed")
        ce = rows[(rows["loss"] == "ce") & (rows["model"] == "small_cnn")].set_index("seed")
        d = 100 * (mine["test_accuracy"] - ce["test_accuracy"])
        row = report.table.set_index("loss").loc[loss]
        assert row["delta"] == pytest.approx(d.mean())
        half = 12.706204736174703 * d.std(ddof=1) / np.sqrt(2)  # t_{0.975, 1}
        assert row["delta_ci_high"] == pytest.approx(d.mean() + half)


def test_transfer_columns_and_fidelity_points(report):
    wide = report.wide()
    assert {"digits/dense_cnn mean", "digits/dense_cnn delta"} <= set(wide.columns)
    assert wide["digits/dense_cnn mean"].notna().all()
    assert set(report.fidelity["source"]) <= {"hall_of_fame", "random"}
    assert len(report.fidelity) == report.fidelity_stats["n"] >= 3
    md = report.to_markdown()
    assert "found #1" in md and "digits/dense_cnn" in md and "Spearman" in md
    assert "\\toprule" in report.to_latex()


def test_report_reads_back_without_training(report):
    again = load_validation(report.out_dir)
    pd.testing.assert_frame_equal(again.table, report.table)
    assert again.fidelity_stats == report.fidelity_stats


def test_rerun_trains_nothing_and_another_config_is_refused(search_dir, report):
    before = len(read_rows(report.out_dir / "results.jsonl"))
    validate(search_dir, _config(), report.out_dir, progress=False)
    assert len(read_rows(report.out_dir / "results.jsonl")) == before
    with pytest.raises(ConfigError, match="another configuration"):
        validate(search_dir, _config(top_k=1), report.out_dir, progress=False)


def test_default_transfer_is_the_other_dataset_and_a_second_network():
    cfg = ValidateConfig(seeds=(0, 1))
    plan = {"dataset": "digits", "data_seed": 0, "found": [{"expression": "y_pred"}],
            "fidelity": []}
    assert list(plan_grids(cfg, plan)) == ["main", "transfer:fashion_mnist/dense_cnn",
                                          "transfer:digits/small_inception"]
    grid = plan_grids(cfg, plan)["transfer:fashion_mnist/dense_cnn"]
    assert grid.datasets == ("fashion_mnist",) and grid.losses[0] == "y_pred"


@pytest.mark.parametrize("bad, match", [
    ({"seeds": (0,)}, "at least 2"),
    ({"baseline": "nope"}, "baseline"),
    ({"transfer": ("mnist:small_cnn",)}, "transfer dataset"),
    ({"transfer": ("digits",)}, "dataset:model"),
    ({"model": "no_such_net"}, "model"),
])
def test_bad_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        ValidateConfig(**bad)


def test_config_round_trips():
    cfg = _config()
    assert ValidateConfig.from_json(cfg.to_json()) == cfg


# -- the command line, and kill -9 ---------------------------------------------------------------
def _cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "ngl", "validate", *args], capture_output=True,
                          text=True, env={**os.environ, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"},
                          **kw)


def test_cli_user_errors_are_one_line(search_dir, tmp_path):
    out = _cli([str(search_dir), "--seeds", "0,x", "--out", str(tmp_path / "v")])
    assert out.returncode == 2 and "--seeds" in out.stderr and "Traceback" not in out.stderr
    out = _cli([str(search_dir), "--transfer", "mnist:small_cnn", "--out", str(tmp_path / "v")])
    assert out.returncode == 2 and "mnist" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "v").exists()  # refused before anything is written


@pytest.mark.slow
def test_cli_survives_kill_minus_9_and_equals_an_uninterrupted_run(search_dir, tmp_path, report):
    cfg_file = tmp_path / "validate.json"
    cfg_file.write_text(_config().to_json())
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ngl", "validate", str(search_dir), "--config", str(cfg_file),
           "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env={**os.environ, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(read_rows(out / "results.jsonl")) >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    n_killed = len(read_rows(out / "results.jsonl"))
    assert 3 <= n_killed < len(report.results)
    done = _cli([str(search_dir), "--config", str(cfg_file), "--out", str(out), "--quiet"],
                timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "validation complete" in done.stdout and "found #1" in done.stdout
    rows = read_rows(out / "results.jsonl")
    keys = [r["cell_key"] for r in rows]
    assert len(keys) == len(set(keys))  # nothing doubled
    got = {r["cell_key"]: r["test_accuracy"] for r in rows}
    want = dict(zip(report.results["cell_key"], report.results["test_accuracy"], strict=True))
    assert got == want  # nothing lost, and the same numbers as the uninterrupted run
    assert json.loads((out / "report.json").read_text())["complete"] is True
    assert (out / "validation.png").exists() and (out / "fidelity.png").exists()


def test_a_search_with_nothing_trained_is_refused_before_anything_is_written(search_dir, tmp_path):
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("spec.json", "options.json"):
        shutil.copy(search_dir / name, empty / name)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="nothing to validate"):
        validate(empty, _config(), out, progress=False)
    assert not out.exists()
