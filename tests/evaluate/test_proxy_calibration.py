"""Fidelity calibration: rho checked by hand on the rows, a bad proxy not recommended, resume.

The independent references: the JSON-lines rows read back with ``json`` and the statistics
computed with scipy here; the proxy scores against a plain ``train_sequential`` run; the
recommendation rule on a hand-built score table.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ngl.data import load_cached
from ngl.evaluate.proxy_calibration import (
    CalibrationConfig,
    Proxy,
    calibrate,
    load_calibration,
    proxy_table,
)
from ngl.fitness import TrainBudget, train_sequential
from ngl.io.config import ConfigError
from ngl.losses import get_loss
from ngl.models import build_model
from ngl.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = CalibrationConfig(
    dataset="digits", n_train=300, n_val=150, references=("ce", "ngl", "sce"), random_trees=2,
    proxies=(Proxy(name="zero steps", budget=TrainBudget(steps=0, batch_size=64)),
             Proxy(name="small 20", budget=TrainBudget(steps=20, batch_size=64, lr=3e-3))),
    target_train=TrainConfig(epochs=2, batch_size=64, schedule="cosine"),
    bootstrap_resamples=300)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "straight"
    return calibrate(CONFIG, out, device="cpu", progress=False), out


def test_rho_and_regret_match_a_hand_computation_on_the_rows(straight):
    report, out = straight
    assert report.complete
    panel = json.loads((out / "plan.json").read_text())["panel"]
    assert len(panel) == 3 + 2 + 2
    target: dict[str, list[float]] = {}
    for r in rows(out / "target.jsonl"):
        assert r["status"] in ("ok", "nonfinite")
        assert "test_accuracy" not in r  # the test split was never evaluated
        target.setdefault(r["loss"], []).append(r["val_accuracy"] if r["status"] == "ok" else 0.0)
    assert all(len(v) == 2 for v in target.values())
    proxy = {r["loss"]: r["val_accuracy"] for r in rows(out / "proxies.jsonl")
             if r["proxy"] == "small 20"}
    losses = [p["loss"] for p in panel]
    x = np.array([proxy[lo] for lo in losses])
    y = np.array([np.mean(target[lo]) for lo in losses])
    row = report.table.set_index("proxy").loc["small 20"]
    assert row["rho"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert row["tau"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert row["rho_low"] <= row["rho"] <= row["rho_high"]
    assert row["regret1"] == pytest.approx(y.max() - y[np.lexsort((y, -x))[0]], abs=1e-12)
    assert row["candidate_steps"] == 20


def test_a_proxy_built_to_be_bad_is_not_recommended(straight):
    report, _ = straight
    zero = report.table.set_index("proxy").loc["zero steps"]
    # zero steps: every loss scores the initial network's accuracy -- no ranking at all
    assert math.isnan(zero["rho"]) and zero["note"] == "constant: no ranking"
    assert not zero["holds"] and not zero["recommended"]
    assert report.recommended != "zero steps"
    scores = report.scores["zero steps"]
    assert scores.nunique() == 1


def test_proxy_scores_are_what_a_plain_training_run_gives(straight):
    report, _ = straight
    data = load_cached("digits", None, 300, 150, None, 0)
    c, h, _ = data.input_shape
    budget = CONFIG.proxies[1].budget
    ref = train_sequential(lambda: build_model("small_cnn", c, data.num_classes, h),
                           [get_loss("ce"), get_loss("sce")], data, budget, seed=CONFIG.seed)
    s = report.scores.set_index("loss")["small 20"]
    assert abs(s["ce"] - ref[0].val_accuracy) <= 1 / 150 + 1e-9
    assert abs(s["sce"] - ref[1].val_accuracy) <= 1 / 150 + 1e-9


def test_the_target_scores_the_search_validation_images(straight):
    """The target's validation split is the proxies' search-validation subset, image for image."""
    from ngl.evaluate.grid import grid_cells

    report, out = straight
    panel = json.loads((out / "plan.json").read_text())["panel"]
    cell = grid_cells(CONFIG.target_grid(panel))[0]
    target = load_cached("digits", None, cell["n_train"], cell["n_val"], None, cell["data_seed"])
    search = load_cached("digits", None, CONFIG.n_train, CONFIG.n_val, None, CONFIG.data_seed)
    assert target.x_val.shape == search.x_val.shape
    assert bool((target.x_val == search.x_val).all()) and bool((target.y_val == search.y_val).all())
    assert len(target.y_train) > len(search.y_train)  # the target trains on the whole split


def test_the_recommendation_is_the_cheapest_proxy_that_holds():
    cfg = CalibrationConfig(proxies=(Proxy(name="cheap bad"), Proxy(name="dear good"),
                                     Proxy(name="cheap good")), bootstrap_resamples=300)
    y = np.linspace(0.1, 0.95, 12)
    rng = np.random.default_rng(0)
    scores = pd.DataFrame({"target": y, "cheap bad": rng.permutation(y), "dear good": y + 0.01,
                           "cheap good": y - 0.02})
    t = proxy_table(cfg, scores, {"cheap bad": (0.1, 100), "dear good": (5.0, 300),
                                  "cheap good": (1.0, 100)}).set_index("proxy")
    assert t.loc["dear good", "rho"] == 1.0 and t.loc["dear good", "holds"]
    assert not t.loc["cheap bad", "holds"]
    assert t["recommended"].sum() == 1 and t.loc["cheap good", "recommended"]
    none = proxy_table(cfg, scores.assign(**{"dear good": rng.permutation(y),
                                             "cheap good": rng.permutation(y)}), {})
    assert not none["recommended"].any()


def test_stopped_then_continued_equals_uninterrupted(straight, tmp_path):
    report, out = straight
    calls = {"n": 0}

    def stop_soon() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    part = calibrate(CONFIG, tmp_path / "c", device="cpu", progress=False, should_stop=stop_soon)
    assert not part.complete and part.recommended is None
    assert "incomplete" in part.verdict
    done = calibrate(CONFIG, tmp_path / "c", device="cpu", progress=False)
    assert done.complete
    for name in ("proxies.jsonl", "target.jsonl"):
        a = sorted((r.get("proxy_key", ""), r.get("cell_key", ""), r["loss"], r["val_accuracy"])
                   for r in rows(out / name))
        b = sorted((r.get("proxy_key", ""), r.get("cell_key", ""), r["loss"], r["val_accuracy"])
                   for r in rows(tmp_path / "c" / name))
        assert a == b  # nothing doubled, nothing lost, the same numbers
    timing = ["seconds_per_candidate"]  # wall time, the one thing that may differ
    pd.testing.assert_frame_equal(done.table.drop(columns=timing),
                                  report.table.drop(columns=timing))
    again = load_calibration(tmp_path / "c")
    pd.testing.assert_frame_equal(again.scores, report.scores)


@pytest.mark.slow
def test_sigkill_mid_calibration_then_rerun_matches(straight, tmp_path):
    report, out = straight
    cfg_file = tmp_path / "cal.json"
    cfg_file.write_text(CONFIG.to_json())
    dst = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ngl", "calibrate", "--config", str(cfg_file), "--out", str(dst),
           "--device", "cpu", "--chunk-size", "1", "--quiet"]
    proc = subprocess.Popen(cmd, env={**os.environ, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            path = dst / "proxies.jsonl"
            if path.exists() and len(rows(path)) >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done = calibrate(CONFIG, dst, device="cpu", progress=False, chunk_size=1)
    assert done.complete
    keys = [(r["proxy_key"], r["loss"]) for r in rows(dst / "proxies.jsonl")]
    assert len(keys) == len(set(keys)) == 2 * 7
    pd.testing.assert_frame_equal(done.scores, report.scores)


def test_bad_configs_are_refused_before_anything_is_written(tmp_path, capsys):
    from ngl.__main__ import main

    bad = [({"references": ["ce", {"name": "focal", "gammma": 2}]}, "references\\[1\\]"),
           ({"references": ["ce", "exp(y_pred +"]}, "references\\[1\\]"),
           ({"target_seeds": [0]}, "at least 2"),
           ({"proxies": [{"name": "a"}, {"name": "a"}]}, "unique"),
           ({"proxies": [{"name": "a", "model": "resnet9000"}]}, "resnet9000")]
    for fields, pattern in bad:
        with pytest.raises(ConfigError, match=pattern):
            CalibrationConfig.from_dict(fields)
        f = tmp_path / "c.json"
        f.write_text(json.dumps(fields))
        assert main(["calibrate", "--config", str(f), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "c.json" in err
        assert not (tmp_path / "o").exists()


def test_a_folder_of_another_configuration_is_refused(straight, tmp_path):
    _, out = straight
    other = CalibrationConfig.from_dict({**CONFIG.to_dict(), "random_trees": 1})
    with pytest.raises(ConfigError, match="another configuration"):
        calibrate(other, out, device="cpu", progress=False)


def test_cli_help_and_example_config(capsys):
    from ngl.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["calibrate", "--help"])
    assert exc.value.code == 0
    assert "--proxies-only" in capsys.readouterr().out
    assert main(["example-calibration-config"]) == 0
    assert CalibrationConfig.from_json(capsys.readouterr().out) == CalibrationConfig()
