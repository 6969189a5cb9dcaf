"""The fitness budget's learning-rate schedule, checked against torch's own scheduler.

The independent reference is a plain training loop written here with
``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=steps)`` stepped once per step: the
engines must train exactly that (the sequential reference bit for bit, the batched engines
to float rounding), with and without successive halving.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ngl.data import load_dataset
from ngl.fitness import SuccessiveHalving, TrainBudget, train_population, train_sequential
from ngl.fitness.common import batch_indices
from ngl.gp import SearchSpec
from ngl.models.networks import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

COSINE = TrainBudget(steps=9, batch_size=32, lr=2e-2, schedule="cosine")
tiny_cnn = functools.partial(build_model, "small_cnn", 1, 10, 8, width=4)


@pytest.fixture(scope="module")
def data() -> SimpleNamespace:
    d = load_dataset("digits")
    return SimpleNamespace(x_train=d.x_train[:256], y_train=d.y_train[:256],
                           x_val=d.x_val[:128], y_val=d.y_val[:128])


def by_hand(data: SimpleNamespace, loss: nn.Module, budget: TrainBudget, seed: int) -> float:
    """Validation accuracy of one plain model trained with torch's CosineAnnealingLR."""
    torch.manual_seed(seed)
    model = tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=budget.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=budget.steps)
    batches = batch_indices(len(data.x_train), budget, seed, torch.device("cpu"))
    torch.manual_seed(seed)
    model.train()
    for idx in batches:
        opt.zero_grad()
        loss(model(data.x_train[idx]), data.y_train[idx]).backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        return float((model(data.x_val).argmax(-1) == data.y_val).float().mean())


def test_lr_at_is_the_closed_form_and_torchs_scheduler():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=COSINE.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=COSINE.steps)
    for t in range(COSINE.steps):
        assert COSINE.lr_at(t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        assert COSINE.lr_at(t) == pytest.approx(
            COSINE.lr * (1 + math.cos(math.pi * t / COSINE.steps)) / 2, rel=1e-12)
        opt.step()
        sched.step()
    assert TrainBudget(lr=0.3).lr_at(57) == 0.3  # constant by default


def test_sequential_reference_trains_torchs_cosine_schedule(data):
    losses = [nn.CrossEntropyLoss(), nn.CrossEntropyLoss(label_smoothing=0.2)]
    got = train_sequential(tiny_cnn, losses, data, COSINE, seed=3)
    for loss, r in zip(losses, got, strict=True):
        assert r.val_accuracy == by_hand(data, loss, COSINE, seed=3)
    constant = train_sequential(tiny_cnn, losses, data,
                                TrainBudget(steps=9, batch_size=32, lr=2e-2), seed=3)
    assert [r.val_ce for r in constant] != [r.val_ce for r in got]  # the schedule acts


@pytest.mark.parametrize("method", ["folded", "vmap"])
def test_batched_engines_follow_the_schedule(data, method):
    losses = [nn.CrossEntropyLoss(), nn.CrossEntropyLoss(label_smoothing=0.2),
              nn.MultiMarginLoss()]
    seq = train_sequential(tiny_cnn, losses, data, COSINE, seed=0)
    pop = train_population(tiny_cnn, losses, data, COSINE, seed=0, method=method,
                           max_population_per_pass=2)
    for a, b in zip(seq, pop, strict=True):
        assert abs(a.val_accuracy - b.val_accuracy) <= 1 / 128 + 1e-9
        assert a.val_ce == pytest.approx(b.val_ce, rel=1e-4)
        assert a.final_train_loss == pytest.approx(b.final_train_loss, rel=1e-4)


def test_halving_survivors_end_on_the_whole_schedule(data):
    losses = [nn.CrossEntropyLoss(label_smoothing=s) for s in (0.0, 0.1, 0.3, 0.6)]
    res = train_population(tiny_cnn, losses, data, COSINE, seed=0,
                           halving=SuccessiveHalving(eta=2, rungs=2))
    full = train_sequential(tiny_cnn, losses, data, COSINE, seed=0)
    survivors = [c for c, r in enumerate(res) if r.rung == 1]
    assert len(survivors) == 2
    for c in survivors:
        assert res[c].steps_done == COSINE.steps
        assert res[c].val_ce == pytest.approx(full[c].val_ce, rel=1e-4)


def test_cuda_graph_with_sgd_and_a_schedule_is_refused_before_training(data):
    budget = TrainBudget(steps=9, batch_size=32, optimizer="sgd", schedule="cosine")
    with pytest.raises(ValueError, match="cuda_graph=True with schedule='cosine' needs"):
        train_population(tiny_cnn, [F.cross_entropy], data, budget, seed=0, cuda_graph=True)


def test_a_constant_schedule_keeps_the_spec_key_of_older_searches():
    """The committed CPU finding's search was written before the field existed; its rows carry
    the key the old code computed, which the spec read back must still give."""
    import json
    from pathlib import Path

    import ngl

    run_dir = Path(__file__).parents[2] / "findings" / "cpu" / "search"
    first = json.loads((run_dir / "history.jsonl").read_text().splitlines()[0])
    result = ngl.load(run_dir)
    assert result.spec.budget.schedule == "constant"
    assert result.spec.key == first["run"]
    constant = SearchSpec(budget=TrainBudget(steps=100, batch_size=128))
    assert constant.key != SearchSpec().key  # the default is cosine since the calibration


def test_keys_written_before_the_new_fields_are_kept():
    """Keys computed by ngl before ``schedule``/``references``/``rescore`` existed (the commit
    before them, run once to get these strings): the same searches and tunings, spelt with
    the new fields off, still hash to them, so their folders are found and continued."""
    import ngl
    from ngl.gp.tune import TuneSpec

    # the defaults of those days: small_cnn, 100 constant-rate steps (before the calibration)
    before = {"model": "small_cnn", "budget": TrainBudget(steps=100, batch_size=128)}
    old = ngl.SearchSpec(references=(), rescore=0, **before)
    assert old.key == "df8df9976ae5"
    assert ngl.SearchSpec(references=(), rescore=0, halving=ngl.SuccessiveHalving(),
                          **before).key == "c4b4dc509539"
    tune = TuneSpec(expression=ngl.NGL_EXPRESSION, search=ngl.SearchSpec(**before),
                    constants=(0,))
    assert tune.key == "025904e66f50"  # tuning never used the fields: any value keeps the key
