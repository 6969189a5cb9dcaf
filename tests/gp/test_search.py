"""The GP search: configuration, a real tiny search, determinism, kill-and-resume, Dask, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ngl.fitness import TrainBudget
from ngl.gp import RunOptions, SearchSpec, load_result, resume
from ngl.gp import run_search as _run_search
from ngl.gp.expression import LossExpression
from ngl.gp.primitives import PrimitiveSet, preset
from ngl.io.records import read_json, read_rows
from ngl.losses import NGL_EXPRESSION

NGL_TEXT = NGL_EXPRESSION
COLS = ["generation", "index", "expression", "status", "cache_hit", "origin", "val_accuracy"]


def tiny(**kw) -> SearchSpec:
    # references and rescoring off: these tests are about the population (tests/gp/test_references.py
    # covers them), and the hall of fame keeps the search's own order
    base = dict(population_size=6, generations=2, n_train=240, n_val=120,
                budget=TrainBudget(steps=6, batch_size=32), seed_expressions=(NGL_TEXT,),
                references=(), rescore=0)
    base.update(kw)
    return SearchSpec(**base)


def run_search(spec, run_dir, chunk_size: int = 3, **kw):
    return _run_search(spec, run_dir, RunOptions(chunk_size=chunk_size), **kw)


def test_config_round_trips_and_hashes_stably():
    cfg = tiny()
    again = SearchSpec.from_json(cfg.to_json())
    assert again == cfg and again.key == cfg.key
    assert SearchSpec.from_dict({**cfg.to_dict(), "seed": 1}).key != cfg.key
    assert SearchSpec.from_dict({"primitive_set": "gplearn"}).primitive_set == preset("gplearn")


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"population_size": 1}, "population_size"),
        ({"elitism": 6}, "elitism"),
        ({"p_crossover": 0.9, "p_point_mutation": 0.5}, "sum to 1.550"),
        ({"dataset": "mnist"}, "dataset='mnist'"),
        ({"model": "vgg99"}, "model='vgg99'"),
        ({"seed_expressions": ("tanh(y_pred)",)}, "not in the primitive set"),
        ({"init_depth": (3, 2)}, "init_depth"),
        ({"equivalence": "fuzzy"}, "equivalence"),
    ],
)
def test_bad_config_is_a_clear_error(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny(**kw)


def test_unknown_config_field():
    with pytest.raises(ValueError, match=r"popsize = 3: unknown field"):
        SearchSpec.from_dict({"popsize": 3})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("search") / "run"
    summaries = []
    result = run_search(tiny(), run_dir, progress=False, callback=lambda s, _: summaries.append(s))
    return result, summaries


def test_search_records_every_candidate(finished):
    result, summaries = finished
    h = result.history
    assert result.complete and len(h) == 12
    assert sorted(zip(h.generation, h["index"], strict=True)) == [(g, i) for g in (0, 1) for i in range(6)]
    assert set(h.status) <= {"ok", "nonfinite", "rejected_no_prediction", "rejected_constant",
                             "rejected_nonfinite", "rejected_wrong_direction"}
    seed_row = h[(h.generation == 0) & (h["index"] == 0)].iloc[0]
    assert seed_row.origin == "seed" and seed_row.status == "ok" and 0 < seed_row.val_accuracy <= 1
    assert h[h.generation == 1].origin.isin(["elite", "crossover", "subtree_mutation",
                                             "hoist_mutation", "point_mutation", "reproduction"]).all()
    trained = h[(h.status == "ok") & ~h.cache_hit]
    assert trained.train_time_s.gt(0).all() and trained.val_ce.notna().all()
    assert h[h.status.str.startswith("rejected")].val_accuracy.isna().all()
    # the elite of generation 1 was already trained: a cache hit with the same accuracy
    elite = h[(h.generation == 1) & (h.origin == "elite")].iloc[0]
    assert elite.cache_hit and elite.val_accuracy == h[h.generation == 0].val_accuracy.max()
    assert [int(s["generation"]) for s in summaries] == [0, 1]


def test_summary_hall_of_fame_and_best(finished):
    result, _ = finished
    summ = result.generation_summary()
    assert list(summ.generation) == [0, 1]
    assert {"best", "median", "q25", "q75", "distinct_functions", "mean_size", "rejected",
            "cache_hits"} <= set(summ.columns)
    hof = result.hall_of_fame()
    assert hof.val_accuracy.is_monotonic_decreasing and hof.fingerprint.is_unique
    assert isinstance(result.best.expression, LossExpression)
    assert result.best.expression.key == hof.iloc[0].key
    assert [e.expression.key for e in result.entries()] == list(hof.key)


def test_same_seed_same_history(finished, tmp_path):
    result, _ = finished
    again = run_search(tiny(), tmp_path / "again", progress=False)
    pd.testing.assert_frame_equal(result.history[COLS], again.history[COLS])


def test_run_dir_with_another_config_is_refused(finished):
    result, _ = finished
    with pytest.raises(ValueError, match="another spec"):
        run_search(tiny(seed=5), result.run_dir, progress=False)


def test_rerunning_a_finished_search_trains_nothing(finished):
    result, _ = finished
    rows_before = len(read_rows(result.run_dir / "history.jsonl"))
    again = resume(result.run_dir, progress=False)
    assert len(read_rows(result.run_dir / "history.jsonl")) == rows_before
    pd.testing.assert_frame_equal(result.history[COLS], again.history[COLS])


@pytest.mark.slow
def test_kill_mid_generation_then_resume_matches_uninterrupted(tmp_path):
    # seed 3: generation 1 trains four candidates one chunk at a time, so there is a window of
    # three trainings after the first trained row (with seed 0 only the last candidate of
    # generation 1 trains, and the kill had to win a race against the checkpoint write)
    cfg = tiny(population_size=6, generations=2, seed=3,
               budget=TrainBudget(steps=25, batch_size=32))
    straight = run_search(cfg, tmp_path / "straight", chunk_size=1, progress=False)
    trained = straight.history[(straight.history["generation"] == 1)
                               & ~straight.history["cache_hit"].astype(bool)
                               & (straight.history["status"] == "ok")]
    assert len(trained) >= 2, "the premise: generation 1 trains more than one chunk"
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(cfg.to_json())
    killed_dir = tmp_path / "killed"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ngl", "search", "--config", str(cfg_file),
                             "--run-dir", str(killed_dir), "--chunk-size", "1", "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    killed_at = None
    try:
        while time.time() < deadline and proc.poll() is None:
            rows = read_rows(killed_dir / "history.jsonl")
            gen1 = [r for r in rows if r["generation"] == 1 and not r["cache_hit"]
                    and r["status"] == "ok"]
            if gen1:  # at least one chunk of generation 1 trained: we are mid-generation
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = len(rows)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert killed_at is not None, f"search ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    ckpt = read_json(killed_dir / "checkpoint.json")
    partial = [r for r in read_rows(killed_dir / "history.jsonl") if r["generation"] == 1]
    assert ckpt["generation"] == 1 and 0 < len(partial) < 6, "the kill did not land mid-generation"

    resumed = resume(killed_dir, progress=False)
    assert resumed.complete
    pd.testing.assert_frame_equal(resumed.history[COLS], straight.history[COLS])
    # nothing that was finished before the kill was trained again
    assert len(resumed.history) == 12


@pytest.mark.slow
def test_dask_local_cluster_executor_gives_the_same_result(finished, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        result = run_search(tiny(), tmp_path / "dask", executor=client.get_executor(), progress=False)
    ref, _ = finished
    pd.testing.assert_frame_equal(ref.history[COLS], result.history[COLS], check_exact=False,
                                  atol=1e-6)


def test_cli_show_and_example_config(finished, tmp_path, capsys):
    from ngl.__main__ import main

    result, _ = finished
    out = subprocess.run([sys.executable, "-m", "ngl", "show", str(result.run_dir)],
                         capture_output=True, text=True, check=True).stdout
    assert "hall of fame" in out and "complete: True" in out
    assert main(["example-spec"]) == 0
    assert SearchSpec.from_json(capsys.readouterr().out) == SearchSpec()
    assert main(["search", "--config", str(tmp_path / "no.json")]) == 2
    assert "no.json: no such file" in capsys.readouterr().err


def test_load_result_of_missing_dir_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no spec.json there"):
        load_result(tmp_path)


def test_primitive_set_restricts_the_search(tmp_path):
    pset = PrimitiveSet(operators=("add", "mul", "exp", "neg"), leaves=("y_pred", "y_real"),
                        const_range=(-1.0, 1.0))
    res = run_search(tiny(primitive_set=pset, seed_expressions=(), generations=1), tmp_path / "r",
                     progress=False)
    for text in res.history.expression:
        assert set(LossExpression.parse(text).operators) <= {"add", "mul", "exp", "neg"}
    assert json.loads((Path(tmp_path / "r") / "spec.json").read_text())["primitive_set"]["operators"] == \
        ["add", "mul", "exp", "neg"]


def test_interrupt_in_a_notebook_is_one_line_and_keeps_the_partial_run(tmp_path, monkeypatch,
                                                                       capsys):
    """Stopping the kernel in JupyterLab: no torch traceback, the partial result, and running
    again resumes; a script still gets the KeyboardInterrupt."""
    import ngl
    import ngl.api
    import ngl.fitness.population as population

    real, calls = population.PopulationPass.train, {"n": 0}

    def interrupted(self, batches, rng):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, batches, rng)

    cfg = tiny(population_size=4, generations=2)
    monkeypatch.setattr(population.PopulationPass, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):  # a script
        ngl.search(cfg, tmp_path / "script", chunk_size=1, progress=False)
    calls["n"] = 0
    monkeypatch.setattr(ngl.api, "_in_notebook", lambda: True)
    partial = ngl.search(cfg, tmp_path / "nb", chunk_size=1, progress=False)
    assert not partial.complete and len(partial.history) >= 1
    err = capsys.readouterr().err
    assert "stopped - run again to resume" in err and "Traceback" not in err
    monkeypatch.setattr(population.PopulationPass, "train", real)
    assert ngl.resume(tmp_path / "nb", progress=False).complete
