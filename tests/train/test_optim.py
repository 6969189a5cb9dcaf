"""One optimizer builder for every loop: it is torch's optimizer, and "sgd" means the same
optimizer in the search, downstream training, segmentation, ImageNet and the analysis sweeps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import ngl.evaluate.sensitivity as A
from ngl.data import load_dataset
from ngl.evaluate import imagenet
from ngl.evaluate.segmentation import VOID, TinySegNet, make_shapes, train_segmentation
from ngl.fitness import TrainBudget, train_population, train_sequential
from ngl.losses.registry import get_loss
from ngl.models.networks import build_model
from ngl.train.loop import TrainConfig, train_model
from ngl.train.optim import all_finite, build_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


def _quadratic_steps(opt_factory, steps: int = 5) -> list[torch.Tensor]:
    """Parameters after `steps` updates on a fixed, non-trivial objective (same grads for all)."""
    g = torch.Generator().manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3, generator=g))
    b = nn.Parameter(torch.randn(3, generator=g))
    a = torch.randn(4, 3, generator=g)
    opt = opt_factory([w, b])
    for _ in range(steps):
        opt.zero_grad()
        loss = ((w - a) ** 2 * torch.arange(1.0, 13.0).view(4, 3)).sum() + (b ** 3).sum()
        loss.backward()
        opt.step()
    return [w.detach().clone(), b.detach().clone()]


@pytest.mark.parametrize("nesterov", [False, True])
def test_builder_sgd_takes_torch_sgd_steps(nesterov):
    ours = _quadratic_steps(lambda p: build_optimizer(p, optimizer="sgd", lr=0.01, momentum=0.9,
                                                      weight_decay=1e-2, nesterov=nesterov))
    torch_ = _quadratic_steps(lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9,
                                                        weight_decay=1e-2, nesterov=nesterov))
    other = _quadratic_steps(lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9,
                                                       weight_decay=1e-2, nesterov=not nesterov))
    assert all(torch.equal(x, y) for x, y in zip(ours, torch_, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(ours, other, strict=True))


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_builder_adam_family_takes_torch_steps(name, cls):
    ours = _quadratic_steps(lambda p: build_optimizer(p, optimizer=name, lr=0.05, weight_decay=0.1))
    ref = _quadratic_steps(lambda p: cls(p, lr=0.05, weight_decay=0.1))
    assert all(torch.equal(x, y) for x, y in zip(ours, ref, strict=True))


def test_builder_refuses_what_it_cannot_honour():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer(p, optimizer="rmsprop", lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        build_optimizer(p, optimizer="adam", lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        build_optimizer(p, optimizer="sgd", lr=0.1, momentum=0.0, nesterov=True)


def test_all_finite():
    ok = torch.ones(3)
    assert bool(all_finite(torch.tensor(1.0), [ok, None]))
    assert not bool(all_finite(torch.tensor(float("nan")), [ok]))
    assert not bool(all_finite(torch.tensor(1.0), [ok, torch.tensor([0.0, float("inf")])]))


# -- every loop builds the same optimizer ---------------------------------------------------------
class _Recorded:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []


def _record(monkeypatch, stop: type[BaseException] | None = None) -> _Recorded:
    """Replace torch's optimizer classes by subclasses that record their hyperparameters."""
    rec = _Recorded()
    for name in ("SGD", "Adam", "AdamW"):
        base = getattr(torch.optim, name)

        def init(self, *args, _base=base, _name=name, **kwargs):
            _base.__init__(self, *args, **kwargs)
            rec.seen.append((_name, {k: v for k, v in self.defaults.items()}))
            if stop is not None:
                raise stop

        monkeypatch.setattr(torch.optim, name, type(name, (base,), {"__init__": init}))
    return rec


def _digits():
    return load_dataset("digits").subset(64, 32, 32, seed=0)


SETTINGS = [dict(optimizer="sgd", lr=0.05, momentum=0.8, weight_decay=1e-3, nesterov=False),
            dict(optimizer="sgd", lr=0.05, momentum=0.8, weight_decay=1e-3, nesterov=True),
            dict(optimizer="adam", lr=1e-3, weight_decay=1e-3),
            dict(optimizer="adamw", lr=1e-3, weight_decay=1e-2)]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s['optimizer']}"
                         f"{'-nesterov' if s.get('nesterov') else ''}")
def test_search_and_downstream_training_build_the_same_optimizer(monkeypatch, settings):
    data = _digits()
    rec = _record(monkeypatch)

    def model_fn() -> nn.Module:
        return build_model("small_cnn", 1, 10, 8, width=4)

    train_model(model_fn(), nn.CrossEntropyLoss(), data,
                TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=1, **settings),
                progress=False)
    budget = TrainBudget(steps=1, batch_size=32, **settings)
    train_population(model_fn, [nn.CrossEntropyLoss()], data, budget, seed=0)
    train_sequential(model_fn, [nn.CrossEntropyLoss()], data, budget, seed=0)

    assert len(rec.seen) == 3
    downstream, population, sequential = rec.seen
    assert downstream == population == sequential
    name, defaults = downstream
    assert name == {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[settings["optimizer"]]
    assert defaults["lr"] == settings["lr"] and defaults["weight_decay"] == settings["weight_decay"]
    if name == "SGD":  # what was asked for, not what one of the loops assumed
        assert defaults["nesterov"] is settings["nesterov"]
        assert defaults["momentum"] == settings["momentum"]


def test_segmentation_uses_the_builder(monkeypatch):
    x, y = make_shapes(8, size=8, seed=0)
    rec = _record(monkeypatch)
    for nesterov in (False, True):
        torch.manual_seed(0)
        train_segmentation(TinySegNet(1, 3, width=2), get_loss("ngl", ignore_index=VOID),
                           x[:4], y[:4], x[4:], y[4:], num_classes=3, epochs=1, batch_size=4,
                           lr=0.01, optimizer="sgd", momentum=0.9, nesterov=nesterov,
                           progress=False)
    assert [(n, d["nesterov"], d["momentum"]) for n, d in rec.seen] == [("SGD", False, 0.9),
                                                                        ("SGD", True, 0.9)]
    rec.seen.clear()
    train_segmentation(TinySegNet(1, 3, width=2), get_loss("ngl", ignore_index=VOID), x[:4],
                       y[:4], x[4:], y[4:], num_classes=3, epochs=1, batch_size=4, progress=False)
    assert [n for n, _ in rec.seen] == ["Adam"]  # the default stays Adam


class _Built(Exception):
    """Raised by the recording optimizer: the recipe got as far as its optimizer."""


@pytest.mark.parametrize("flags,nesterov", [([], True), (["--no-nesterov"], False),
                                            (["--nesterov", "--momentum", "0.5"], True)])
def test_imagenet_recipe_nesterov_is_an_explicit_flag(monkeypatch, tmp_path, flags, nesterov):
    rec = _record(monkeypatch, stop=_Built)
    with pytest.raises(_Built):
        imagenet.main(["--fake-data", "--fake-size", "4", "--model", "resnet18",
                       "--image-size", "32", "--epochs", "1", "--steps", "1", "--batch-size", "2",
                       "--workers", "0", "--num-classes", "4", "--optimizer", "sgd",
                       "--out", str(tmp_path), *flags])
    (name, defaults), = rec.seen
    assert name == "SGD" and defaults["nesterov"] is nesterov
    assert defaults["momentum"] == (0.5 if "0.5" in flags else 0.9)


def test_analysis_optimizer_sweep_asks_for_nesterov_sgd(monkeypatch):
    seen: dict[str, object] = {}

    def fake_train(loss, data, config, seed=0, **kw):
        seen[(config.optimizer, config.lr)] = config
        return {"test_accuracy": 0.5, "status": "ok"}

    monkeypatch.setattr(A, "train_and_evaluate", fake_train)
    A.optimizer_sweep(SimpleNamespace(num_classes=10), losses=("ce",),
                      optimizers={"sgd": ("sgd", 0.05, False), "adam": ("adam", 1e-3, False)})
    assert seen[("sgd", 0.05)].nesterov is True and seen[("sgd", 0.05)].momentum == 0.9
    assert seen[("adam", 1e-3)].nesterov is False


def test_search_budget_and_downstream_training_share_one_settings_class():
    """One definition of the shared training settings and one Nesterov rule: a field of the
    base is a field of both, with the same default, and both refuse the same bad Nesterov."""
    import dataclasses

    from ngl.fitness import TrainBudget
    from ngl.train import TrainConfig
    from ngl.train.optim import TrainSettings, nesterov_problem

    shared = {f.name: f.default for f in dataclasses.fields(TrainSettings)}
    assert set(shared) == {"optimizer", "lr", "weight_decay", "momentum", "nesterov",
                           "batch_size", "eval_batch_size"}
    for cls in (TrainBudget, TrainConfig):
        assert issubclass(cls, TrainSettings)
        assert {f.name: f.default for f in dataclasses.fields(cls) if f.name in shared} == shared
        with pytest.raises(ValueError, match=rf"{cls.__name__}\.nesterov=True needs optimizer='sgd'"):
            cls(optimizer="adam", nesterov=True)
        with pytest.raises(ValueError, match="momentum > 0"):
            cls(optimizer="sgd", momentum=0.0, nesterov=True)
        assert cls(optimizer="sgd", nesterov=True).nesterov
    assert nesterov_problem("sgd", 0.9, True) is None
    with pytest.raises(ValueError, match="momentum > 0"):
        build_optimizer([torch.zeros(1, requires_grad=True)], optimizer="sgd", lr=0.1,
                        momentum=0.0, nesterov=True)
