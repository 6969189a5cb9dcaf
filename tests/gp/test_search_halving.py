"""Successive halving in the search: rung records, the selection rule, cache and exact resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import ngl.fitness.population as population
from ngl.fitness import SuccessiveHalving, TrainBudget
from ngl.gp import RunDirError, RunOptions, SearchSpec, load_result, resume, run_search
from ngl.gp.search import selection_scores
from ngl.io.config import ConfigError
from ngl.losses import NGL_EXPRESSION

COLS = ["generation", "index", "expression", "status", "cache_hit", "origin", "parents",
        "val_accuracy", "fitness", "rung", "steps_done"]
HALVING = SuccessiveHalving(eta=3, rungs=2, bracket=3)  # rungs at 3 and 9 steps


def spec(**kw) -> SearchSpec:
    # references and rescoring off: the rung order of the hall of fame and the pass counts
    # below are the population's (tests/gp/test_references.py covers halving with rescoring)
    base = dict(population_size=6, generations=2, n_train=240, n_val=120, seed=5,
                budget=TrainBudget(steps=9, batch_size=32), seed_expressions=(NGL_EXPRESSION,),
                halving=HALVING, references=(), rescore=0)
    base.update(kw)
    return SearchSpec(**base)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("halving") / "straight"
    return run_search(spec(), run_dir, RunOptions(chunk_size=3), progress=False)


def test_rows_record_the_rung_and_its_scores(straight):
    h = straight.history
    trained = h[~h["cache_hit"] & h["status"].isin(["ok", "nonfinite"])]
    assert len(trained) >= 4
    stops = HALVING.rung_steps(9)
    for _, r in trained.iterrows():
        assert r["rung"] in (0, 1)
        if r["status"] == "ok":
            assert r["steps_done"] == stops[int(r["rung"])]
            assert len(r["rung_accuracies"]) == r["rung"] + 1
            assert r["rung_accuracies"][-1] == r["val_accuracy"]
    # in every chunk of 3 trained candidates exactly ceil(3/3) = 1 reaches the end
    for _gen, rows in trained.groupby("generation"):
        ranks = rows.sort_values("index")
        chunks = [ranks.iloc[k:k + 3] for k in range(0, len(ranks), 3)]
        assert all((c["rung"] == 1).sum() == 1 for c in chunks if (c["status"] == "ok").all())
    # cache hits take over the trained candidate's rung and score
    for _, r in h[h["cache_hit"]].iterrows():
        src = h[(h["key"] == r["cache_of"]) & ~h["cache_hit"]].iloc[0]
        assert (r["rung"], r["val_accuracy"]) == (src["rung"], src["val_accuracy"])


def test_fewer_candidate_steps_than_the_full_budget(straight):
    h = straight.history
    trained = h[~h["cache_hit"] & h["status"].isin(["ok", "nonfinite"])]
    # by hand: a chunk of n trains n candidates 3 steps and ceil(n/3) of them 6 more
    want = 0
    for _, rows in trained.groupby("generation"):
        for k in range(0, len(rows), 3):
            n = len(rows.iloc[k:k + 3])
            want += 3 * n + 6 * -(-n // 3)
    assert (trained["status"] == "ok").all()
    assert trained["steps_done"].sum() == want < 9 * len(trained)


def test_selection_ranks_the_rung_reached_first():
    rows = [{"fitness": 0.9, "rung": 0}, {"fitness": 0.5, "rung": 1},
            {"fitness": -1.0, "rung": None}, {"fitness": 0.6, "rung": 1}]
    with_halving = selection_scores(rows, spec())
    assert list(np.argsort(-with_halving)) == [3, 1, 0, 2]
    without = selection_scores(rows, spec(halving=None))
    assert list(np.argsort(-without)) == [0, 3, 1, 2]


def test_hall_of_fame_puts_candidates_that_reached_the_end_first(straight):
    hof = straight.hall_of_fame()
    reached = hof["rung"].tolist()
    assert reached == sorted(reached, reverse=True) and reached[0] == 1
    top = hof[hof["rung"] == 1]["val_accuracy"].tolist()
    assert top == sorted(top, reverse=True)


def test_resume_after_a_kill_in_the_middle_of_a_rung_is_exact(straight, tmp_path, monkeypatch):
    """Interrupted while the second chunk of generation 1 trains its second rung: the chunk
    is the unit of resume, so it is retrained and the run ends as the uninterrupted one."""
    real = population.PopulationPass.train
    calls = {"n": 0}
    stop_at = None

    def spy(self, batches, rng):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt("killed mid-rung")
        return real(self, batches, rng)

    # every chunk (<= 3 candidates: one pass) trains twice: rung 0, then its survivor to rung 1
    h = straight.history
    trained = h[~h["cache_hit"] & h["status"].isin(["ok", "nonfinite"])]
    chunks0 = -(-int((trained["generation"] == 0).sum()) // 3)
    assert (trained["generation"] == 1).sum() > 0
    stop_at = 2 * chunks0 + 2  # generation 1, first chunk, its second rung
    monkeypatch.setattr(population.PopulationPass, "train", spy)
    run_dir = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_search(spec(), run_dir, RunOptions(chunk_size=3), progress=False)
    partial = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    assert calls["n"] == stop_at
    assert not any(r["generation"] == 1 and r["status"] == "ok" and not r["cache_hit"]
                   for r in partial)
    monkeypatch.setattr(population.PopulationPass, "train", real)
    resumed = resume(run_dir, progress=False)
    assert resumed.complete
    pd.testing.assert_frame_equal(resumed.history[COLS], straight.history[COLS])


def test_a_budget_too_short_for_the_rungs_is_one_line():
    with pytest.raises(ValueError, match=r"halving: rungs=3, eta=3 on 4 steps gives rungs at "
                                         r"\[0, 1, 4\] steps.*budget.steps >= 5"):
        SearchSpec(budget=TrainBudget(steps=4), halving=SuccessiveHalving())
    assert SearchSpec(budget=TrainBudget(steps=5), halving=SuccessiveHalving())  # 1, 2, 5
    with pytest.raises(ConfigError, match="halving"):
        SearchSpec.from_dict({"halving": {"eta": 1}})


def test_a_search_without_halving_keeps_its_key():
    """The key of the committed CPU finding's search (findings/cpu), written before the field."""
    from pathlib import Path

    saved = json.loads((Path(__file__).parents[2] / "findings/cpu/search_spec.json").read_text())
    assert "halving" not in saved
    # written before references and rescoring too: read as off, as ngl.load does
    saved = {**saved, "references": [], "rescore": 0}
    assert SearchSpec.from_dict(saved).key == "fb06424ff92f"
    assert SearchSpec.from_dict({**saved, "halving": {"eta": 3, "rungs": 3}}).key != "fb06424ff92f"


@pytest.mark.parametrize("halving", [SuccessiveHalving(eta=2, rungs=2, bracket=4), None],
                         ids=["halving", "no_halving"])
def test_chunk_size_does_not_change_the_history(tmp_path, halving):
    """The bracket is the spec's: chunk sizes 2, 4 and 8 give the same rows (which candidates
    survive each rung, every score), with halving and without."""
    sp = spec(population_size=10, generations=2, seed_expressions=(), halving=halving,
              budget=TrainBudget(steps=8, batch_size=32))
    histories = [run_search(sp, tmp_path / f"chunk{c}", RunOptions(chunk_size=c),
                            progress=False).history[COLS] for c in (2, 4, 8)]
    trained = histories[0][~histories[0]["cache_hit"].astype(bool)
                           & (histories[0]["status"] == "ok")]
    assert len(trained) >= 5  # more than one bracket of 4: the chunk sizes cut them differently
    if halving is not None:
        assert set(trained["rung"]) == {0, 1}
    for other in histories[1:]:
        pd.testing.assert_frame_equal(other, histories[0], check_exact=False, atol=1e-6)


def test_a_halving_search_from_before_the_bracket_continues_only_with_its_brackets(tmp_path):
    """Written before ``halving.bracket`` existed (no bracket in spec.json) with chunk size 3:
    its brackets held 3 candidates, so continuing it under the default bracket of 16 would
    mix two selection regimes. It loads; continuing it is refused in one line."""
    old_spec = spec(halving=SuccessiveHalving(eta=3, rungs=2))
    run_dir = tmp_path / "old"
    run_search(old_spec, run_dir, RunOptions(chunk_size=16), progress=False)
    saved = json.loads((run_dir / "spec.json").read_text())
    del saved["halving"]["bracket"]
    (run_dir / "spec.json").write_text(json.dumps(saved))
    assert load_result(run_dir).spec == old_spec  # bracket 16, and the same key as before
    assert resume(run_dir, progress=False).complete  # it ran with chunks of 16: fine
    options = json.loads((run_dir / "options.json").read_text())
    (run_dir / "options.json").write_text(json.dumps({**options, "chunk_size": 3}))
    with pytest.raises(RunDirError) as err:
        resume(run_dir, progress=False)
    assert "\n" not in str(err.value) and "halving.bracket=3" in str(err.value)
    assert len(load_result(run_dir).history) == old_spec.population_size * old_spec.generations


def test_load_result_of_a_halving_run(straight):
    again = load_result(straight.run_dir)
    assert again.spec.halving == HALVING


def test_the_progress_bar_advances_within_a_chunk(tmp_path, monkeypatch):
    """One chunk per generation (notebook 02's setting): the bar still moves per candidate and
    ends at the population size."""
    import ngl.gp.search as search_module

    bars: list[list[int]] = []

    class Bar:
        def __init__(self, *a, **k):
            self.steps: list[int] = []
            bars.append(self.steps)

        def update(self, n=1):
            self.steps.append(int(n))

        def close(self):
            pass

    monkeypatch.setattr(search_module, "tqdm", Bar)
    run_search(spec(generations=1, population_size=6, seed_expressions=(),
                    halving=SuccessiveHalving(eta=3, rungs=2, bracket=6)), tmp_path / "r",
               RunOptions(chunk_size=6), progress=False)
    steps = bars[0]
    assert sum(steps) == 6 and len([s for s in steps if s > 0]) >= 2, steps
