"""The search-throughput benchmark refuses to report when two ways score a loss differently."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_search_throughput",
                                                  BENCH / "search_throughput.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def run(rows: list[tuple]) -> dict:
    cols = ["key", "status", "val_accuracy", "steps_done", "cache_hit", "rung"]
    return {"history": pd.DataFrame(rows, columns=cols)}


def test_two_ways_that_score_a_loss_differently_disagree(bench):
    a = run([("k1", "ok", 0.90, 100, False, None), ("k2", "ok", 0.50, 100, False, None)])
    same = run([("k1", "ok", 0.90 + 1 / 100, 100, False, None)])  # within 2 of 100 samples
    off = run([("k2", "ok", 0.60, 100, False, None)])
    dead = run([("k1", "nonfinite", 0.0, 7, False, None)])
    assert bench.disagreements({"a": a, "b": same}, 100, n_val=100)[0] == []
    problems, worst = bench.disagreements({"a": a, "b": off}, 100, n_val=100)
    assert len(problems) == 1 and "k2" in problems[0] and worst == pytest.approx(0.1)
    assert "status" in bench.disagreements({"a": a, "b": dead}, 100, n_val=100)[0][0]


def test_only_full_budget_rows_of_a_halving_run_are_compared(bench):
    a = run([("k1", "ok", 0.90, 100, False, None)])
    cut = run([("k1", "ok", 0.30, 11, False, 0)])  # stopped at rung 0: not a full-budget score
    assert bench.disagreements({"a": a, "halving": cut}, 100, n_val=100)[0] == []
    cached = run([("k1", "ok", 0.10, 100, True, None)])  # a cache hit is not a new training
    assert bench.disagreements({"a": a, "c": cached}, 100, n_val=100)[0] == []
