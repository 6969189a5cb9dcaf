"""Population-batched fitness training must be the sequential reference, only faster."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ngl.fitness
import ngl.fitness.population as population
from ngl import LossExpression, get_loss
from ngl.data import load_dataset
from ngl.fitness import FitnessResult, TrainBudget, train_population, train_sequential
from ngl.fitness.cuda_graph import WARMUP_STEPS, replay
from ngl.fitness.folded import FoldedEngine, foldable, verify_folded
from ngl.losses import NGL_EXPRESSION
from ngl.models.networks import SmallCNN, build_model

BUDGET = TrainBudget(steps=6, batch_size=32, lr=1e-2)
METHODS = ["folded", "vmap"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data() -> SimpleNamespace:
    """A small digits slice: enough for real (if short) training, fast on 2 CPU cores."""
    d = load_dataset("digits")
    x_tr, y_tr, x_val, y_val = d.x_train, d.y_train, d.x_val, d.y_val
    return SimpleNamespace(x_train=x_tr[:256], y_train=y_tr[:256], x_val=x_val[:128],
                           y_val=y_val[:128])


def tiny_cnn() -> nn.Module:
    return SmallCNN(1, 10, 8, width=4)


def focal(gamma: float):
    def loss(z: Tensor, y: Tensor) -> Tensor:
        logp = torch.log_softmax(z, -1).gather(1, y[:, None]).squeeze(1)
        return (-((1 - logp.exp()) ** gamma) * logp).mean()

    return loss


class NanAfter:
    """CE for `k` calls, then NaN: a candidate that blows up mid-training."""

    def __init__(self, k: int) -> None:
        self.k, self.calls = k, 0

    def __call__(self, z: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        loss = F.cross_entropy(z, y)
        return loss * float("nan") if self.calls > self.k else loss


def nan_grad_loss(z: Tensor, y: Tensor) -> Tensor:
    """A finite loss value whose gradient is infinite (sqrt at 0)."""
    return F.cross_entropy(z, y) + (z - z.detach()).abs().sqrt().sum()


def losses() -> list:
    return [nn.CrossEntropyLoss(), nn.CrossEntropyLoss(label_smoothing=0.1), focal(2.0)]


def assert_close(a: list[FitnessResult], b: list[FitnessResult], n_val: int = 128,
                 rtol: float = 1e-4) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.status == y.status
        assert x.steps_done == y.steps_done
        assert abs(x.val_accuracy - y.val_accuracy) <= 1 / n_val + 1e-9
        for u, v in ((x.val_ce, y.val_ce), (x.final_train_loss, y.final_train_loss)):
            assert (math.isnan(u) and math.isnan(v)) or u == pytest.approx(v, rel=rtol, abs=1e-6)


def same(a: list[FitnessResult], b: list[FitnessResult]) -> bool:
    strip = [(r.val_accuracy, r.val_ce, r.status, r.final_train_loss, r.steps_done) for r in a]
    return strip == [(r.val_accuracy, r.val_ce, r.status, r.final_train_loss, r.steps_done)
                     for r in b]


@pytest.mark.parametrize("method", METHODS)
def test_batched_matches_sequential(data, method):
    seq = train_sequential(tiny_cnn, losses(), data, BUDGET, seed=0)
    pop = train_population(tiny_cnn, losses(), data, BUDGET, seed=0, method=method)
    assert_close(seq, pop)
    assert all(r.status == "ok" and r.steps_done == BUDGET.steps for r in pop)
    assert len({r.final_train_loss for r in pop}) == 3  # the losses really differ


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_other_optimizers_match(data, optimizer):
    budget = TrainBudget(steps=4, batch_size=32, lr=0.05, optimizer=optimizer, weight_decay=1e-2)
    seq = train_sequential(tiny_cnn, losses(), data, budget, seed=1)
    pop = train_population(tiny_cnn, losses(), data, budget, seed=1)
    assert_close(seq, pop)


def test_residual_network_folds_and_matches(data):
    def model_fn() -> nn.Module:
        return build_model("resnet_cifar", 1, 10, 8, depth=8, width=4)

    assert verify_folded(model_fn(), data.x_train[:8])
    budget = TrainBudget(steps=3, batch_size=32, lr=1e-2)
    seq = train_sequential(model_fn, losses()[:2], data, budget, seed=0)
    assert_close(seq, train_population(model_fn, losses()[:2], data, budget, seed=0))


def test_channel_concat_falls_back_to_vmap(data):
    """Inception's torch.cat along channels breaks the folded layout: auto must notice."""

    def model_fn() -> nn.Module:
        return build_model("small_inception", 1, 10, 8, width=2)

    assert foldable(model_fn()) and not verify_folded(model_fn(), data.x_train[:8])
    with pytest.raises(ValueError, match="cannot be folded"):
        train_population(model_fn, losses()[:1], data, BUDGET, seed=0, method="folded")
    budget = TrainBudget(steps=3, batch_size=32, lr=1e-2)
    seq = train_sequential(model_fn, losses()[:2], data, budget, seed=0)
    assert_close(seq, train_population(model_fn, losses()[:2], data, budget, seed=0))


def test_dropout_shares_masks_across_candidates(data):
    """Paper head (dropout): vmap path, one mask per step for everyone (CRN)."""

    def model_fn() -> nn.Module:
        return build_model("small_cnn", 1, 10, 8, width=4, head="paper")

    assert not foldable(model_fn())
    ce = nn.CrossEntropyLoss()
    pop = train_population(model_fn, [ce, ce, focal(1.0)], data, BUDGET, seed=0)
    assert_close(pop[:1], pop[1:2], rtol=1e-5)
    seq = train_sequential(model_fn, [ce, ce, focal(1.0)], data, BUDGET, seed=0)
    assert_close(seq, pop)


@pytest.mark.parametrize("model", ["small_cnn", "dense_cnn"])
def test_one_candidate_passes_train_the_plain_network_as_vmap_does(data, model):
    """Passes of one (the CPU default) run `SingleEngine`, the plain network on the stacked
    slices: dropout masks, BatchNorm statistics and the cosine schedule as in the sequential
    reference and in one vmap pass of all, and on through successive halving's regrouping."""
    from ngl.fitness import SuccessiveHalving
    from ngl.fitness.vmap import SingleEngine

    def model_fn() -> nn.Module:
        kw = {"width": 4, "head": "paper"} if model == "small_cnn" else {}
        return build_model(model, 1, 10, 8, **kw)

    assert not foldable(model_fn())
    ls = [nn.CrossEntropyLoss(), focal(1.0), focal(3.0)]
    budget = TrainBudget(steps=9, batch_size=32, lr=3e-3, schedule="cosine")
    single = train_population(model_fn, ls, data, budget, seed=2, max_population_per_pass=1)
    assert_close(train_sequential(model_fn, ls, data, budget, seed=2), single)
    assert_close(train_population(model_fn, ls, data, budget, seed=2,
                                  max_population_per_pass=None), single, rtol=1e-5)
    halve = SuccessiveHalving(eta=3, rungs=2)
    assert_close(train_population(model_fn, ls, data, budget, seed=2, halving=halve,
                                  max_population_per_pass=None),
                 train_population(model_fn, ls, data, budget, seed=2, halving=halve,
                                  max_population_per_pass=1), rtol=1e-5)
    with pytest.raises(ValueError, match="one candidate"):
        SingleEngine(model_fn(), 2)


def test_same_seed_identical_other_seed_differs(data):
    a = train_population(tiny_cnn, losses(), data, BUDGET, seed=3)
    b = train_population(tiny_cnn, losses(), data, BUDGET, seed=3)
    c = train_population(tiny_cnn, losses(), data, BUDGET, seed=4)
    assert same(a, b) and not same(a, c)
    s1 = train_sequential(tiny_cnn, losses()[:1], data, BUDGET, seed=3)
    s2 = train_sequential(tiny_cnn, losses()[:1], data, BUDGET, seed=3)
    assert same(s1, s2)


@pytest.mark.parametrize("method", METHODS)
def test_common_random_numbers(data, method):
    """Identical losses (even separate instances) get identical fitness: only the loss differs."""
    ce1, ce2 = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    res = train_population(tiny_cnn, [ce1, focal(2.0), ce2, ce1], data, BUDGET, seed=0,
                           method=method)
    # Equal up to the last bits: kernels may vectorise candidate blocks at different offsets.
    assert_close([res[0], res[0]], [res[2], res[3]], rtol=1e-5)
    assert res[0].final_train_loss != pytest.approx(res[1].final_train_loss, rel=1e-3)


def test_global_rng_untouched(data):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    train_population(tiny_cnn, losses()[:1], data, BUDGET, seed=0)
    train_sequential(tiny_cnn, losses()[:1], data, BUDGET, seed=0)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("method", METHODS)
def test_nonfinite_candidate_masked_others_unaffected(data, method):
    good = losses()
    with_bad = [good[0], NanAfter(3), good[1], nan_grad_loss, good[2]]
    pop = train_population(tiny_cnn, with_bad, data, BUDGET, seed=0, method=method)
    alone = train_population(tiny_cnn, good, data, BUDGET, seed=0, method=method)
    assert_close([pop[0], pop[2], pop[4]], alone, rtol=1e-5)

    bad = pop[1]
    assert (bad.status, bad.steps_done, bad.val_accuracy) == ("nonfinite", 3, 0.0)
    assert math.isnan(bad.val_ce) and math.isnan(bad.final_train_loss)
    grad_bad = pop[3]  # the loss is finite, its gradient is not: caught before the first update
    assert (grad_bad.status, grad_bad.steps_done) == ("nonfinite", 0)
    assert math.isfinite(grad_bad.final_train_loss)

    seq = train_sequential(tiny_cnn, [NanAfter(3), nan_grad_loss], data, BUDGET, seed=0)
    assert [(r.status, r.steps_done) for r in seq] == [("nonfinite", 3), ("nonfinite", 0)]


def test_dead_candidate_parameters_freeze(data):
    """After going non-finite, a candidate's stacked parameters stop changing."""
    snapshots: list[list[Tensor]] = []
    original_call = FoldedEngine.__call__

    def spy(self, x):
        snapshots.append([p.detach()[: p.shape[0] // self.pop].clone() for p in self.params])
        return original_call(self, x)

    bad = NanAfter(2)
    FoldedEngine.__call__ = spy
    try:
        train_population(tiny_cnn, [bad], data, BUDGET, seed=0, method="folded")
    finally:
        FoldedEngine.__call__ = original_call
    train_steps = snapshots[: BUDGET.steps]
    assert not all(torch.equal(a, b) for a, b in zip(train_steps[0], train_steps[2], strict=True))
    for later in train_steps[3:]:
        assert all(torch.equal(a, b) for a, b in zip(train_steps[2], later, strict=True))


def test_constant_loss_keeps_initial_weights(data):
    ce = nn.CrossEntropyLoss()
    const = [lambda z, y: torch.tensor(1.5), lambda z, y: 0 * z.sum() + 1.5]
    seq = train_sequential(tiny_cnn, [ce, *const], data, BUDGET, seed=0)
    pop = train_population(tiny_cnn, [ce, *const], data, BUDGET, seed=0)
    assert_close(seq, pop)
    assert pop[1].final_train_loss == 1.5 and pop[1].status == "ok"
    assert_close([pop[1]], [pop[2]], rtol=1e-5)


def test_chunking_does_not_change_results(data):
    ls = [*losses(), focal(0.5)]
    whole = train_population(tiny_cnn, ls, data, BUDGET, seed=0)
    for chunk in (1, 3):
        assert_close(whole, train_population(tiny_cnn, ls, data, BUDGET, seed=0,
                                             max_population_per_pass=chunk), rtol=1e-5)


def test_budget_validation():
    for bad in (dict(steps=-1), dict(steps=1.5), dict(batch_size=0), dict(batch_size=True),
                dict(lr=0.0), dict(lr=float("nan")), dict(weight_decay=-1.0),
                dict(momentum=1.0), dict(optimizer="rmsprop"), dict(eval_batch_size=0)):
        with pytest.raises(ValueError, match="TrainBudget"):
            TrainBudget(**bad)
    assert TrainBudget().steps == 200
    with pytest.raises(AttributeError):
        TrainBudget().steps = 3  # frozen


def test_argument_errors(data):
    with pytest.raises(ValueError, match="max_population_per_pass"):
        train_population(tiny_cnn, losses(), data, BUDGET, seed=0, max_population_per_pass=0)
    with pytest.raises(ValueError, match="method"):
        train_population(tiny_cnn, losses(), data, BUDGET, seed=0, method="magic")
    with pytest.raises(ValueError, match="scalar"):
        train_population(tiny_cnn, [lambda z, y: z.sum(1)], data, BUDGET, seed=0)
    with pytest.raises(TypeError, match="callable"):
        train_sequential(tiny_cnn, ["ce"], data, BUDGET, seed=0)
    assert train_population(tiny_cnn, [], data, BUDGET, seed=0) == []


def test_zero_steps_and_result_dict(data):
    res = train_population(tiny_cnn, losses()[:1], data, TrainBudget(steps=0), seed=0)[0]
    seq = train_sequential(tiny_cnn, losses()[:1], data, TrainBudget(steps=0), seed=0)[0]
    assert res.steps_done == 0 and res.status == "ok"
    assert res.val_accuracy == pytest.approx(seq.val_accuracy)
    d = res.to_dict()
    assert set(d) == {"val_accuracy", "val_ce", "train_time_s", "status", "final_train_loss",
                      "steps_done", "rung", "rung_accuracies", "rung_ces"}
    assert d["rung"] is None and d["rung_accuracies"] == () and d["rung_ces"] == ()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(data):
    budget = TrainBudget(steps=4, batch_size=32, lr=1e-2)
    cpu = train_population(tiny_cnn, losses(), data, budget, seed=0)
    gpu = train_population(tiny_cnn, losses(), data, budget, seed=0, device="cuda")
    assert_close(cpu, gpu, rtol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replay_matches_eager(data):
    budget = TrainBudget(steps=8, batch_size=32, lr=1e-2)
    eager = train_population(tiny_cnn, losses(), data, budget, seed=0, device="cuda")
    graph = train_population(tiny_cnn, losses(), data, budget, seed=0, device="cuda",
                             cuda_graph=True)
    assert_close(eager, graph, rtol=1e-4)


def test_cuda_graph_flag_is_ignored_on_cpu(data):
    budget = TrainBudget(steps=3, batch_size=32)
    a = train_population(tiny_cnn, losses()[:2], data, budget, seed=0)
    b = train_population(tiny_cnn, losses()[:2], data, budget, seed=0, cuda_graph=True)
    assert [r.val_accuracy for r in a] == [r.val_accuracy for r in b]


def test_auto_pass_size_is_cache_sized_on_cpu(data, monkeypatch):
    seen: list[int] = []
    original = population.PopulationPass.__init__

    def spy(self, run, ids):
        seen.append(len(ids))
        return original(self, run, ids)

    monkeypatch.setattr(population.PopulationPass, "__init__", spy)
    n = population.CPU_PASS_SIZE + 1
    train_population(tiny_cnn, (losses() * n)[:n], data, BUDGET, seed=0)
    assert seen == [population.CPU_PASS_SIZE, 1]
    assert population.default_pass_size("cuda") is None
    seen.clear()
    train_population(tiny_cnn, (losses() * n)[:n], data, BUDGET, seed=0,
                     max_population_per_pass=None)
    assert seen == [n]
    with pytest.raises(ValueError, match="'auto'"):
        train_population(tiny_cnn, losses(), data, BUDGET, seed=0, max_population_per_pass="all")


def test_cuda_graph_refuses_validating_losses_before_anything_runs(data, monkeypatch):
    """Target validation syncs with the host, which CUDA-graph capture forbids: refused up
    front (on CPU too, where the flag is otherwise ignored), naming the loss and the fix."""
    built: list[int] = []

    def model_fn() -> nn.Module:
        built.append(1)
        return tiny_cnn()

    monkeypatch.setattr(population.PopulationPass, "train", lambda *a, **k: pytest.fail("trained"))

    class Wrapper(nn.Module):  # a validating loss inside a user's module is found too
        def __init__(self) -> None:
            super().__init__()
            self.inner = get_loss("ngl")

        def forward(self, z: Tensor, y: Tensor) -> Tensor:
            return self.inner(z, y)

    text = NGL_EXPRESSION
    for bad in (get_loss("ngl"), LossExpression.parse(text).to_module(), Wrapper()):
        with pytest.raises(ValueError, match=r"candidate 1 .*validate=False") as err:
            train_population(model_fn, [nn.CrossEntropyLoss(), bad], data, BUDGET, seed=0,
                             cuda_graph=True)
        assert type(bad).__name__ in str(err.value) or "NGL" in str(err.value)
    assert built == []
    # the search's own compiled modules (validate=False) and torch's losses are accepted
    monkeypatch.undo()
    ok = [nn.CrossEntropyLoss(), LossExpression.parse(text).to_module(validate=False),
          get_loss("ngl", validate=False)]
    res = train_population(tiny_cnn, ok, data, TrainBudget(steps=2, batch_size=32), seed=0,
                           cuda_graph=True)
    assert [r.status for r in res] == ["ok"] * 3


def test_public_names_are_the_objects_of_their_modules():
    """The split kept one object per name: ngl.fitness re-exports, it does not copy."""
    import ngl.fitness.budget as budget
    import ngl.fitness.reference as reference

    for mod, names in ((budget, ("TrainBudget", "FitnessResult", "LossFn")),
                       (reference, ("train_sequential",)),
                       (population, ("train_population", "CPU_PASS_SIZE", "default_pass_size"))):
        for name in names:
            assert getattr(mod, name) is getattr(ngl.fitness, name), name


def test_replay_with_nothing_after_the_warmup_runs_every_step_eagerly():
    """Too few batches to record a graph: each step runs once, in order, and CUDA is not used
    (so this path works on a CPU-only machine)."""
    batches = torch.arange(2 * WARMUP_STEPS).view(WARMUP_STEPS, 2)
    seen: list[list[int]] = []
    replay(lambda idx: seen.append(idx.tolist()), batches, torch.device("cpu"))
    assert seen == batches.tolist()
    seen.clear()
    replay(lambda idx: seen.append(idx.tolist()), batches[:0], torch.device("cpu"))
    assert seen == []


def test_replay_warms_up_captures_once_and_replays_the_rest(monkeypatch):
    """The capture/replay sequence, with torch.cuda's stream and graph calls faked on CPU: the
    first WARMUP_STEPS batches run eagerly on a side stream, one step is recorded on a static
    index tensor, and each later batch is copied into that tensor before a replay."""
    events: list[tuple[str, list[int]]] = []
    phase = ["eager"]
    captured: list[Tensor] = []

    class FakeGraph:
        def replay(self) -> None:
            events.append(("replay", captured[0].tolist()))

    @contextlib.contextmanager
    def in_phase(name: str, *_: object):
        phase[0] = name
        yield
        phase[0] = "eager"

    fake_stream = SimpleNamespace(wait_stream=lambda other: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: fake_stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: fake_stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: in_phase("warmup"))
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", lambda g: in_phase("capture"))

    def step(idx: Tensor) -> None:
        if phase[0] == "capture":
            captured.append(idx)
        events.append((phase[0], idx.tolist()))

    batches = torch.arange(2 * (WARMUP_STEPS + 2)).view(WARMUP_STEPS + 2, 2)
    replay(step, batches, torch.device("cpu"))
    rows = batches.tolist()
    assert events == ([("warmup", r) for r in rows[:WARMUP_STEPS]] + [("capture", rows[0])]
                      + [("replay", r) for r in rows[WARMUP_STEPS:]])
    assert captured[0] is not batches[0]  # a copy: replays must not write into the batches


@pytest.mark.slow
def test_compiled_folded_network_matches_eager(data, monkeypatch):
    """``compile=True``: the folded network goes through torch.compile, results as eager."""
    real, compiled = torch.compile, []

    def counting(model, **kw):
        compiled.append(type(model).__name__)
        return real(model, **kw)

    monkeypatch.setattr(torch, "compile", counting)
    budget = TrainBudget(steps=4, batch_size=32, lr=1e-2)
    eager = train_population(tiny_cnn, losses(), data, budget, seed=0, method="folded")
    comp = train_population(tiny_cnn, losses(), data, budget, seed=0, method="folded",
                            compile=True, max_population_per_pass=None)
    assert compiled == ["SmallCNN"]
    assert_close(eager, comp, rtol=1e-3)
    with pytest.raises(ValueError, match="do not combine"):
        train_population(tiny_cnn, losses(), data, budget, seed=0, compile=True,
                         cuda_graph=True)
