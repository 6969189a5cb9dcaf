"""Successive halving inside batched training: the compute shrinks, survivors stay exact.

The independent reference is `train_sequential` (one plain model at a time) run with the
budget cut at each rung: the search's budget has a constant learning rate and a prefix-stable
batch order, so a candidate stopped at a rung must score what a plain run of that many steps
scores, and a survivor must end where an uninterrupted run ends.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
from torch import Tensor, nn

import ngl.fitness.population as population
from ngl import FocalLoss
from ngl.data import load_dataset
from ngl.fitness import SuccessiveHalving, TrainBudget, train_population, train_sequential
from ngl.models.networks import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

BUDGET = TrainBudget(steps=9, batch_size=32, lr=1e-2)
HALVING = SuccessiveHalving(eta=3, rungs=3)  # rungs at 1, 3 and 9 steps
N_VAL = 128


@pytest.fixture(scope="module")
def data() -> SimpleNamespace:
    d = load_dataset("digits")
    return SimpleNamespace(x_train=d.x_train[:256], y_train=d.y_train[:256],
                           x_val=d.x_val[:N_VAL], y_val=d.y_val[:N_VAL])


tiny_cnn = functools.partial(build_model, "small_cnn", 1, 10, 8, width=4)


def nine_losses() -> list:
    """Nine different losses: the rung scores differ, so the selection is visible."""
    return ([nn.CrossEntropyLoss(label_smoothing=s) for s in (0.0, 0.1, 0.3, 0.6)]
            + [FocalLoss(gamma=g, validate=False) for g in (0.5, 1.0, 2.0, 4.0)]
            + [nn.MultiMarginLoss()])


def test_rung_steps_and_survivors_by_hand():
    assert SuccessiveHalving().rung_steps(100) == (11, 33, 100)
    assert SuccessiveHalving(eta=2, rungs=4).rung_steps(80) == (10, 20, 40, 80)
    assert [HALVING.survivors(n) for n in (1, 2, 3, 4, 9, 16)] == [1, 1, 1, 2, 3, 6]


def test_budget_too_short_for_the_rungs_is_refused(data):
    with pytest.raises(ValueError, match=r"rungs at \[0, 1, 4\] steps.*budget.steps >= 5"):
        train_population(tiny_cnn, nine_losses()[:2], data, TrainBudget(steps=4), seed=0,
                         halving=HALVING)
    with pytest.raises(TypeError, match="SuccessiveHalving"):
        train_population(tiny_cnn, nine_losses()[:2], data, BUDGET, seed=0, halving=3)


@pytest.mark.parametrize("method", ["folded", "vmap"])
@pytest.mark.parametrize("pass_size", [None, 2])
def test_stopped_candidates_score_their_rung_and_survivors_end_exact(data, method, pass_size):
    losses = nine_losses()
    res = train_population(tiny_cnn, losses, data, BUDGET, seed=0, method=method,
                           max_population_per_pass=pass_size, halving=HALVING)
    stops = HALVING.rung_steps(BUDGET.steps)
    # the rule: at each rung the best ceil(n/3) by score go on (ties: lower CE, then order)
    active = list(range(9))
    for k in range(2):
        assert all(len(res[c].rung_accuracies) == len(res[c].rung_ces) > k for c in active)
        ranked = sorted(active, key=lambda c: (-res[c].rung_accuracies[k],
                                               res[c].rung_ces[k], c))
        active = sorted(ranked[: HALVING.survivors(len(active))])
        assert sorted(c for c in range(9) if res[c].rung > k) == active
    assert [sum(r.rung == k for r in res) for k in range(3)] == [6, 2, 1]
    for r in res:
        assert r.status == "ok" and r.steps_done == stops[r.rung]
        assert r.val_accuracy == r.rung_accuracies[-1]
    # independent reference: plain models trained for exactly each rung's steps
    for k, steps in enumerate(stops):
        cut = TrainBudget(steps=steps, batch_size=BUDGET.batch_size, lr=BUDGET.lr)
        who = [c for c in range(9) if res[c].rung >= k]
        ref = train_sequential(tiny_cnn, [losses[c] for c in who], data, cut, seed=0)
        for c, want in zip(who, ref, strict=True):
            assert abs(res[c].rung_accuracies[k] - want.val_accuracy) <= 1 / N_VAL + 1e-9
            assert res[c].rung_ces[k] == pytest.approx(want.val_ce, rel=1e-4)
            if res[c].rung == k:  # where it stopped: the whole record is that run's
                assert res[c].val_ce == pytest.approx(want.val_ce, rel=1e-4)
                assert res[c].final_train_loss == pytest.approx(want.final_train_loss, rel=1e-4)


def test_the_compute_really_shrinks(data, monkeypatch):
    """Each step runs a batched network of only the candidates still in the running."""
    seen: list[int] = []
    real = population.PopulationPass.step

    def spy(self, idx):
        seen.append(self.pop)
        return real(self, idx)

    monkeypatch.setattr(population.PopulationPass, "step", spy)
    train_population(tiny_cnn, nine_losses(), data, BUDGET, seed=0, method="folded",
                     max_population_per_pass=None, halving=HALVING)
    assert seen == [9] * 1 + [3] * 2 + [1] * 6  # 9 + 6 + 6 = 21 candidate-steps, not 81
    seen.clear()
    train_population(tiny_cnn, nine_losses(), data, BUDGET, seed=0, method="folded",
                     max_population_per_pass=2, halving=HALVING)
    assert seen == [2, 2, 2, 2, 1] + [2, 2, 1, 1] + [1] * 6


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_optimizer_state_moves_with_the_survivors(data, optimizer):
    """Momentum / Adam moments travel with the candidate: a survivor ends where an
    uninterrupted batched run ends (a reset optimizer state would not)."""
    budget = TrainBudget(steps=9, batch_size=32, lr=0.05, optimizer=optimizer, weight_decay=1e-2)
    losses = nine_losses()
    full = train_population(tiny_cnn, losses, data, budget, seed=1, max_population_per_pass=3)
    cut = train_population(tiny_cnn, losses, data, budget, seed=1, max_population_per_pass=3,
                           halving=HALVING)
    winner = next(c for c in range(9) if cut[c].rung == 2)
    assert cut[winner].val_ce == pytest.approx(full[winner].val_ce, rel=1e-4)
    assert cut[winner].final_train_loss == pytest.approx(full[winner].final_train_loss, rel=1e-4)


def test_dropout_stream_continues_across_rungs(data):
    """vmap with dropout: the masks after a rung are the ones the uninterrupted run draws."""

    def model_fn() -> nn.Module:
        return build_model("small_cnn", 1, 10, 8, width=4, head="paper")

    losses = nine_losses()[:4]
    halving = SuccessiveHalving(eta=2, rungs=2)  # 4 candidates: rungs at 4 (or 5) and 9 steps
    full = train_population(model_fn, losses, data, BUDGET, seed=0)
    cut = train_population(model_fn, losses, data, BUDGET, seed=0, halving=halving,
                           max_population_per_pass=3)
    survivors = [c for c in range(4) if cut[c].rung == 1]
    assert len(survivors) == 2
    for c in survivors:
        assert cut[c].val_ce == pytest.approx(full[c].val_ce, rel=1e-4)
        assert cut[c].steps_done == 9


def test_a_nonfinite_candidate_stops_and_never_survives(data):
    def nan_loss(z: Tensor, y: Tensor) -> Tensor:
        return z.sum() * float("nan")

    losses = [nan_loss, *nine_losses()[:3]]
    res = train_population(tiny_cnn, losses, data, BUDGET, seed=0, halving=HALVING)
    assert res[0].status == "nonfinite" and res[0].rung == 0 and res[0].steps_done == 0
    assert res[0].val_accuracy == 0.0
    assert sum(r.rung == 2 for r in res) == 1 and res[0].rung_accuracies == (0.0,)


def test_progress_hears_each_candidate_finish(data):
    seen: list[int] = []
    train_population(tiny_cnn, nine_losses(), data, BUDGET, seed=0, max_population_per_pass=None,
                     halving=HALVING, progress=seen.append)
    assert seen == [6, 2, 1]  # stopped at rung 0, stopped at rung 1, the one that finished
    seen.clear()
    train_population(tiny_cnn, nine_losses()[:5], data, TrainBudget(steps=2, batch_size=32),
                     seed=0, max_population_per_pass=2, progress=seen.append)
    assert seen == [2, 2, 1]


def test_equal_accuracies_at_a_rung_go_to_the_lower_cross_entropy(data):
    """Two candidates that predict alike after one step (same accuracy) but differ in CE:
    the cut keeps the one with the lower validation CE, whatever their order."""
    ce, sharp = nn.CrossEntropyLoss(), nn.CrossEntropyLoss(label_smoothing=0.9)
    budget = TrainBudget(steps=4, batch_size=32, lr=1e-4)  # too little to change predictions
    halving = SuccessiveHalving(eta=2, rungs=2)  # rungs at 2 and 4 steps
    for losses in ([ce, sharp], [sharp, ce]):
        res = train_population(tiny_cnn, losses, data, budget, seed=0, halving=halving)
        assert res[0].rung_accuracies[0] == res[1].rung_accuracies[0]
        winner = min(range(2), key=lambda c: res[c].rung_ces[0])
        assert res[winner].rung == 1 and res[1 - winner].rung == 0
