"""The downstream training loop: metrics, determinism, resume after an interruption, NaN guard."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torchvision
from torch import nn

import ngl.losses.registry
from ngl.data import DataSplits, load_dataset
from ngl.evaluate import imagenet
from ngl.evaluate.grid import GridConfig, grid_cells, run_cell
from ngl.losses.registry import get_loss
from ngl.models.networks import build_model
from ngl.train.loop import TrainConfig, augment_batch, evaluate, train_model


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 small cores shared with other jobs: oversubscription is slower
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").subset(240, 80, 80, seed=0)


def fresh_model(seed=0):
    torch.manual_seed(seed)
    return build_model("small_cnn", 1, 10, 8, width=8)


CFG = TrainConfig(epochs=3, batch_size=32, lr=1e-2, random_crop=1, hflip=True, schedule="cosine",
                  eval_every=1)


def test_config_validates_and_round_trips():
    assert TrainConfig.from_dict(CFG.to_dict()) == CFG
    assert CFG.key == TrainConfig.from_dict(CFG.to_dict()).key
    assert CFG.key != dataclasses.replace(CFG, lr=2e-3).key
    for bad in ({"optimizer": "rmsprop"}, {"schedule": "step"}, {"epochs": 0}, {"lr": -1.0},
                {"random_crop": -1}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"epochz": 3})


def test_training_learns_and_records_every_epoch(digits):
    cfg = dataclasses.replace(CFG, random_crop=0, hflip=False)
    res = train_model(fresh_model(), get_loss("ce"), digits, cfg, seed=0, progress=False)
    assert res["status"] == "ok" and res["epochs_run"] == 3 and len(res["history"]) == 3
    assert res["steps"] == 3 * 8
    h = res["history"]
    assert [r["epoch"] for r in h] == [1, 2, 3]
    for key in ("train_loss", "val_accuracy", "val_top5", "val_ce", "test_accuracy", "test_top5"):
        assert all(key in r for r in h), key
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert res["test_accuracy"] > 0.25  # chance is 0.1 (80 test samples, 24 steps)
    assert res["test_accuracy"] == h[-1]["test_accuracy"]
    assert res["best_val_accuracy"] == max(r["val_accuracy"] for r in h)
    # cosine schedule: lr recorded at the end of each epoch shrinks
    assert h[0]["lr"] > h[1]["lr"] > h[2]["lr"]


def test_same_seed_same_result_other_seed_differs(digits):
    a = train_model(fresh_model(), get_loss("ngl"), digits, CFG, seed=3, progress=False)
    b = train_model(fresh_model(), get_loss("ngl"), digits, CFG, seed=3, progress=False)
    c = train_model(fresh_model(), get_loss("ngl"), digits, CFG, seed=4, progress=False)
    assert a["history"] == b["history"]
    assert a["history"] != c["history"]


def test_interrupted_run_resumes_to_the_same_result(digits, tmp_path):
    cfg = dataclasses.replace(CFG, schedule="plateau", plateau_patience=0, plateau_factor=0.5)
    straight_model = fresh_model()
    straight = train_model(straight_model, get_loss("focal"), digits, cfg, seed=1, progress=False)

    ckpt = tmp_path / "run.pt"

    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(fresh_model(), get_loss("focal"), digits, cfg, seed=1, progress=False,
                    checkpoint_path=ckpt, callback=interrupt)
    assert ckpt.exists()
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2 and isinstance(state["generator"], list)

    resumed_model = fresh_model(seed=99)  # different initial weights: must be overwritten
    resumed = train_model(resumed_model, get_loss("focal"), digits, cfg, seed=1, progress=False,
                          checkpoint_path=ckpt)
    assert resumed["resumed_from_epoch"] == 2
    for key in ("epoch", "train_loss", "lr", "val_accuracy", "test_accuracy", "val_ce"):
        assert [r[key] for r in resumed["history"]] == [r[key] for r in straight["history"]]
    for (k, v), (_, w) in zip(straight_model.state_dict().items(),
                              resumed_model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    # a checkpoint of another configuration is refused, not silently mixed in
    with pytest.raises(ValueError, match="another run"):
        train_model(fresh_model(), get_loss("focal"), digits, CFG, seed=1, progress=False,
                    checkpoint_path=ckpt)
    # running a finished checkpoint again trains nothing
    again = train_model(fresh_model(), get_loss("focal"), digits, cfg, seed=1, progress=False,
                        checkpoint_path=ckpt)
    assert again["history"] == resumed["history"] and again["steps"] == resumed["steps"]


class Exploding(nn.Module):
    def forward(self, logits, target):
        return logits.sum() * float("nan")


def test_nonfinite_loss_stops_the_run(digits):
    res = train_model(fresh_model(), Exploding(), digits, CFG, seed=0, progress=False)
    assert res["status"] == "nonfinite"
    assert res["steps"] == 0 and res["epochs_run"] == 1
    assert "test_accuracy" not in res
    assert res["history"][0]["status"] == "nonfinite"


def test_evaluate_matches_hand_computed_metrics():
    class Fixed(nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits[x[:, 0, 0, 0].long()]

    logits = torch.tensor([[3.0, 2, 1, 0, -1, -2], [0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    y = torch.tensor([0, 0, 2])
    x = torch.arange(3).float().reshape(3, 1, 1, 1)
    m = evaluate(Fixed(logits), x, y, batch_size=2)
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["top5"] == pytest.approx(2 / 3)  # sample 1: class 0 ranks last of 6
    ce = torch.nn.functional.cross_entropy(logits, y).item()
    assert m["ce"] == pytest.approx(ce, rel=1e-6)
    assert "top5" not in evaluate(Fixed(logits[:, :3]), x, y)


def test_augmentation_crops_and_flips_with_the_generator():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    flip_only = TrainConfig(hflip=True)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, flip_only, g)
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    crop = TrainConfig(random_crop=2)
    out = augment_batch(x, crop, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    again = augment_batch(x, crop, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    # every crop is a shifted window of the zero-padded image
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, a:a + 4, b:b + 4] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert augment_batch(x, TrainConfig(), g) is x


def test_works_on_a_tiny_handmade_split():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 4, 4, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    data = DataSplits("toy", 2, x[:24], y[:24], x[24:32], y[24:32], x[32:], y[32:])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    res = train_model(model, get_loss("ngl"), data, TrainConfig(epochs=2, batch_size=8,
                      optimizer="sgd", lr=0.1), seed=0, progress=False)
    assert res["status"] == "ok" and "top5" not in res["history"][-1]


# -- non-finite gradients of a finite loss ---------------------------------------------------------
def sqrt_bomb(z: torch.Tensor) -> torch.Tensor:
    """0 in value, +inf in gradient: d sqrt(u)/du at u = 0 (u = z - z.detach() is 0 but not constant)."""
    return torch.sqrt(z - z.detach()).sum()


class GradBomb(nn.Module):
    """Cross entropy for `k` calls, then the same value with an infinite gradient.

    At the bad call it snapshots the parameters of `model`: the weights before that step.
    """

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        self.model, self.k, self.calls, self.before = [model], k, 0, None

    def forward(self, logits, target):
        self.calls += 1
        value = torch.nn.functional.cross_entropy(logits, target)
        if self.calls <= self.k:
            return value
        self.before = [p.detach().clone() for p in self.model[0].parameters()]
        return value + sqrt_bomb(logits)


def test_sqrt_bomb_is_finite_with_an_infinite_gradient():
    z = torch.randn(3, 4, requires_grad=True)
    value = torch.nn.functional.cross_entropy(z, torch.tensor([0, 1, 2])) + sqrt_bomb(z)
    value.backward()
    assert torch.isfinite(value) and torch.isinf(z.grad).all()


def test_finite_loss_with_infinite_gradient_takes_no_step(digits):
    model = fresh_model()
    bomb = GradBomb(model, k=2)
    cfg = dataclasses.replace(CFG, random_crop=0, hflip=False)
    res = train_model(model, bomb, digits, cfg, seed=0, progress=False)
    assert res["status"] == "nonfinite" and res["steps"] == 2 and bomb.calls == 3
    after = [p.detach() for p in model.parameters()]
    assert all(torch.isfinite(p).all() for p in after)
    assert all(torch.equal(a, b) for a, b in zip(bomb.before, after, strict=True))


# -- the ImageNet recipe follows the same policy ----------------------------------------------------
IMAGENET_SMOKE = ["--fake-data", "--fake-size", "8", "--model", "resnet18", "--image-size", "32",
                  "--epochs", "1", "--steps", "2", "--batch-size", "4", "--workers", "0",
                  "--num-classes", "4"]


def test_imagenet_recipe_takes_no_step_with_an_infinite_gradient(monkeypatch, tmp_path, capsys):
    class Bomb(nn.Module):
        def forward(self, logits, target):
            return torch.nn.functional.cross_entropy(logits, target) + sqrt_bomb(logits)

    initial: dict[str, torch.Tensor] = {}
    real_get_model = torchvision.models.get_model

    def get_model(*args, **kwargs):
        model = real_get_model(*args, **kwargs)
        initial.update({k: v.detach().clone() for k, v in model.named_parameters()})
        return model

    monkeypatch.setattr(torchvision.models, "get_model", get_model)
    monkeypatch.setattr(ngl.losses.registry, "get_loss", lambda name, **kw: Bomb())
    rc = imagenet.main([*IMAGENET_SMOKE, "--out", str(tmp_path)])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 2 and row["status"] == "nonfinite"
    state = torch.load(next(tmp_path.glob("*.pt")), weights_only=True)["model"]
    assert initial and all(torch.equal(state[k], v) for k, v in initial.items())


# -- corrupt checkpoints ------------------------------------------------------------------------------
def _garbage(path, digits):
    path.write_bytes(b"\x00garbage, not a checkpoint\xff" * 10)


def _truncated(path, digits):
    cfg = dataclasses.replace(CFG, epochs=1, random_crop=0, hflip=False)
    train_model(fresh_model(), get_loss("ce"), digits, cfg, seed=0, progress=False,
                checkpoint_path=path)
    path.write_bytes(path.read_bytes()[:200])


def _other_model(path, digits):
    """A readable checkpoint of the same config and seed, but of a wider network."""
    cfg = dataclasses.replace(CFG, epochs=1, random_crop=0, hflip=False)
    torch.manual_seed(0)
    other = build_model("small_cnn", 1, 10, 8, width=12)
    train_model(other, get_loss("ce"), digits, cfg, seed=0, progress=False, checkpoint_path=path)
    state = torch.load(path, weights_only=True)
    state["config"] = dataclasses.replace(cfg, epochs=2).to_dict()  # looks like our run's
    torch.save(state, path)


def _bare_state_dict(path, digits):
    """Some other program's checkpoint: a plain model state_dict, no run state."""
    torch.save(build_model("small_cnn", 1, 10, 8, width=12).state_dict(), path)


@pytest.mark.parametrize("damage", [_garbage, _truncated, _other_model, _bare_state_dict])
def test_unloadable_checkpoint_is_moved_aside_and_the_run_starts_over(digits, tmp_path, damage):
    cfg = dataclasses.replace(CFG, epochs=2, random_crop=0, hflip=False)
    ckpt = tmp_path / "run.pt"
    damage(ckpt, digits)
    bad_bytes = ckpt.read_bytes()
    straight = train_model(fresh_model(), get_loss("ce"), digits, cfg, seed=0, progress=False)
    with pytest.warns(RuntimeWarning, match=r"run\.pt cannot be loaded"):
        res = train_model(fresh_model(), get_loss("ce"), digits, cfg, seed=0, progress=False,
                          checkpoint_path=ckpt)
    assert res["status"] == "ok" and res["resumed_from_epoch"] is None
    assert res["history"] == straight["history"]  # exactly a run without the bad file
    aside = list(tmp_path.glob("run.pt.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bad_bytes
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2  # a good checkpoint again


def test_grid_cell_with_a_corrupt_checkpoint_trains(tmp_path):
    cell = grid_cells(GridConfig(losses=("ce",), seeds=(0,), n_train=120, n_val=40, n_test=40,
                                 train=TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=2),
                                 model_kwargs={"width": 4}, device="cpu"))[0]
    bad = tmp_path / f"{cell['cell_key']}.pt"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.warns(RuntimeWarning, match=cell["cell_key"]):
        row = run_cell(cell, checkpoint_dir=str(tmp_path))
    assert row["status"] == "ok", row.get("error")
    assert row["steps"] == 2
    aside = list(tmp_path.glob(f"{cell['cell_key']}.pt.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"PK\x03\x04 truncated zip"
