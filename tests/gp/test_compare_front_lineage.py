"""Comparing searches, the Pareto front and the lineage of a found loss (issue 23), checked
against the history itself and a brute-force front."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import ngl
from ngl.fitness import TrainBudget
from ngl.gp import RunOptions, SearchSpec, load_result, run_search
from ngl.gp.front import pareto_front
from ngl.losses import NGL_EXPRESSION
from ngl.ui import plot_compare, plot_pareto

SPEC = SearchSpec(population_size=6, generations=3, n_train=120, n_val=60,
                  budget=TrainBudget(steps=3, batch_size=32), seed_expressions=(NGL_EXPRESSION,),
                  seed=5, rescore=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    run_search(SPEC, root / "a", RunOptions(chunk_size=6), progress=False)
    run_search(dataclasses.replace(SPEC, seed=6), root / "b",
               RunOptions(chunk_size=6), progress=False)
    return root / "a", root / "b"


def _brute_front(sizes, accs) -> list[bool]:
    """Non-dominated: no other point at most as large and at least as accurate, better in one."""
    out = []
    for i in range(len(sizes)):
        dominated = any(sizes[j] <= sizes[i] and accs[j] >= accs[i]
                        and (sizes[j] < sizes[i] or accs[j] > accs[i]) for j in range(len(sizes)))
        out.append(not dominated)
    return out


def test_the_front_matches_a_brute_force_one():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 25))
        df = pd.DataFrame({"key": [f"k{i}" for i in range(n)], "expression": "x",
                           "size": rng.integers(1, 8, n), "status": "ok", "generation": 0,
                           "val_accuracy": rng.integers(0, 6, n) / 5})
        front = pareto_front(df)
        brute = _brute_front(front["size"].tolist(), front["val_accuracy"].tolist())
        # of equal points the front keeps one (the first): compare the distinct points
        on = front[front["on_front"]]
        got = set(zip(on["size"], on["val_accuracy"], strict=True))
        want = set(zip(front.loc[brute, "size"], front.loc[brute, "val_accuracy"], strict=True))
        assert got == want


def test_pareto_of_a_search_and_its_figure(runs):
    res = load_result(runs[0])
    front = res.pareto()
    ok = res.evaluated[res.evaluated["status"] == "ok"]
    assert set(front["key"]) == set(ok["key"]) and front["key"].is_unique
    best = front.loc[front["val_accuracy"].idxmax()]
    assert front.loc[front["val_accuracy"] == best["val_accuracy"], "on_front"].any()
    fig = plot_pareto(front)
    xs, ys = fig.axes[0].collections[1].get_offsets().T  # the marked front
    assert sorted(xs) == sorted(front.loc[front["on_front"], "size"])


def test_lineage_follows_the_stored_parents(runs):
    res = load_result(runs[0])
    lin = res.lineage()
    h = res.history
    assert lin["depth"].iloc[0] == 0 and lin["key"].iloc[0] == res.best.expression.key
    for _, r in lin.iterrows():  # each ancestor is in the history where the lineage says
        row = h[(h["generation"] == r["generation"]) & (h["key"] == r["key"])]
        assert len(row) and row["origin"].iloc[0] == r["origin"]
        for p in r["parents"]:
            assert p in set(h.loc[h["generation"] == r["generation"] - 1, "key"])
    assert lin["depth"].is_monotonic_increasing and len(lin) >= 1
    assert lin["status"].iloc[0] == "ok"  # a rejected ancestor says so (no accuracy)


def test_compare_gives_a_labelled_tidy_frame_and_figure(runs):
    frame = ngl.compare({"NGL seed 5": runs[0], "NGL seed 6": runs[1]})
    assert list(frame["label"].unique()) == ["NGL seed 5", "NGL seed 6"]
    assert len(frame) == 2 * SPEC.generations
    a = load_result(runs[0]).generation_summary()
    assert frame.loc[frame["label"] == "NGL seed 5", "best"].tolist() == a["best"].tolist()
    fig = plot_compare(frame)
    labels = [t.get_text() for leg in [*fig.legends, *(a.get_legend() for a in fig.axes)]
              if leg for t in leg.get_texts()]
    assert labels.count("NGL seed 5: best") == 1 and labels.count("NGL seed 6: best") == 1


def test_compare_tells_the_same_setting_apart(runs):
    frame = ngl.compare([runs[0], runs[0]])
    assert frame["label"].nunique() == 2 and frame["label"].iloc[-1].endswith("(2)")
