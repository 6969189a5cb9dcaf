"""The paper's protocol as presets: the paper's numbers, refusals, and a few real steps of each model.

The few-steps runs read a tiny CIFAR-10 written here in the official python-pickle format (the
same format as ``tests/data/test_data.py``'s fake files, with enough images per class for the
default 10 % validation hold-out), so ``run_cell`` goes through the real loader.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from torch import nn

import ngl.evaluate.grid as grid_module
from ngl.evaluate import (
    PAPER_DATASETS,
    PAPER_LOSSES,
    PAPER_PRESETS,
    PAPER_TRAIN,
    GridConfig,
    grid_cells,
    paper_preset,
    run_cell,
)
from ngl.losses import get_loss
from ngl.models import build_model
from ngl.train import TrainConfig

NAMES = ("paper_resnet50", "paper_inception_v3", "paper_both")


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_is_a_valid_grid_that_round_trips(name):
    cfg = paper_preset(name)
    assert isinstance(cfg, GridConfig) and cfg == PAPER_PRESETS[name]
    assert GridConfig.from_json(cfg.to_json()) == cfg
    assert GridConfig.from_dict(cfg.to_dict()) == cfg
    assert set(PAPER_PRESETS) == set(NAMES)
    for spec in cfg.losses:  # every loss builds
        assert isinstance(get_loss(spec), nn.Module)
    assert len(grid_cells(cfg)) == cfg.n_cells


@pytest.mark.parametrize("name", NAMES)
def test_presets_hold_the_papers_numbers(name):
    cfg = paper_preset(name)
    t = cfg.train
    assert t == PAPER_TRAIN
    assert (t.optimizer, t.lr, t.batch_size, t.epochs) == ("adam", 1e-3, 128, 200)
    assert (t.schedule, t.plateau_factor, t.plateau_patience, t.min_lr) == ("plateau", 0.2, 5, 1e-4)
    assert (t.zoom, t.shift, t.hflip, t.random_crop, t.weight_decay) == (0.2, 0.1, True, 0, 0.0)
    assert cfg.head == "paper" and cfg.seeds == (0, 1, 2, 3, 4)
    assert cfg.losses == PAPER_LOSSES == ("ce", "ngl", "focal", "sce")
    assert cfg.datasets == PAPER_DATASETS == ("fashion_mnist", "cifar10", "cifar100")
    expected = {"paper_resnet50": ("resnet50",), "paper_inception_v3": ("inception_v3",),
                "paper_both": ("resnet50", "inception_v3")}[name]
    assert cfg.models == expected


def test_overrides_change_exactly_the_fields_named():
    base = PAPER_PRESETS["paper_both"]
    cfg = paper_preset("paper_both", dataset="cifar10", seeds=(0,), data_root="/data")
    assert cfg == dataclasses.replace(base, datasets=("cifar10",), seeds=(0,), data_root="/data")
    assert paper_preset("paper_both", datasets=["cifar10", "cifar100"]).datasets == ("cifar10", "cifar100")
    # a dict changes only those fields of the paper's TrainConfig; a TrainConfig is used as given
    short = paper_preset("paper_resnet50", train={"epochs": 20})
    assert short.train == dataclasses.replace(PAPER_TRAIN, epochs=20)
    assert paper_preset("paper_resnet50", train=TrainConfig()).train == TrainConfig()
    # the CE + L2 recipe of the module docstring is a valid grid with its own row label
    l2 = paper_preset("paper_both", dataset="cifar10", losses=({"name": "ce", "label": "ce_l2"},),
                      train={"weight_decay": 2e-4})
    assert [c["loss"] for c in grid_cells(l2)][:1] == ["ce_l2"] and l2.train.weight_decay == 2e-4
    assert PAPER_PRESETS["paper_both"] == base  # nothing shared was modified


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize(("kw", "words"), [
    ({"epochz": 3}, ["paper_preset('paper_both')", "unknown override", "epochz", "GridConfig", "seeds"]),
    ({"train": {"zooom": 0.3}}, ["paper_both", "unknown train field", "zooom", "TrainConfig", "zoom"]),
    ({"train": {"zoom": 1.5}}, ["paper_both", "train.zoom", "1.5", "less than 1"]),
    ({"train": 5}, ["paper_both", "train must be a TrainConfig or a dict"]),
    ({"seeds": ()}, ["paper_both", "seeds must not be empty"]),
    ({"head": "dense"}, ["paper_both", "head", "'paper'"]),
    ({"dataset": "cifar10", "datasets": ("cifar100",)}, ["paper_both", "dataset= or datasets="]),
])
def test_bad_overrides_are_refused_in_one_line(kw, words):
    with pytest.raises(ValueError) as exc:
        paper_preset("paper_both", **kw)
    text = one_line(exc)
    for w in words:
        assert w in text, (w, text)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError) as exc:
        paper_preset("paper_vgg16")
    text = one_line(exc)
    assert "paper_vgg16" in text and all(n in text for n in NAMES)


# -- a few real steps on a tiny CIFAR-10 -----------------------------------------------------------
def write_tiny_cifar10(directory: Path, per_class: int = 2, n_test: int = 20) -> Path:
    """The five training batches, test batch and meta file of ``cifar-10-batches-py``.

    Each training batch holds ``per_class`` images of every class (so 10 % of the 5 batches is
    one validation image per class); pixels are random with a per-class brightness.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def rows(labels: np.ndarray) -> np.ndarray:
        noise = rng.integers(0, 64, (len(labels), 3072))
        return (noise + 16 * labels[:, None]).astype(np.uint8)

    def dump(name: str, obj: dict) -> None:  # bytes keys, protocol 2: as in the official files
        (directory / name).write_bytes(pickle.dumps({k.encode(): v for k, v in obj.items()},
                                                    protocol=2))

    for b in range(1, 6):
        labels = np.repeat(np.arange(10), per_class)
        dump(f"data_batch_{b}", {"batch_label": f"training batch {b} of 5",
                                 "labels": labels.tolist(), "data": rows(labels)})
    test = np.arange(n_test) % 10
    dump("test_batch", {"labels": test.tolist(), "data": rows(test)})
    dump("batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                          "num_cases_per_batch": 10 * per_class, "num_vis": 3072})
    return directory


def paper_head_of(model: nn.Module) -> nn.Sequential:
    """The one Flatten-BN-Dense(128)-Drop-BN-Dense(64)-Drop-BN-Dense(C) block of ``model``."""
    found = [m for m in model.modules() if isinstance(m, nn.Sequential) and len(m) == 11
             and isinstance(m[0], nn.Flatten)]
    assert len(found) == 1, [type(m).__name__ for m in found]
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "model"), [("paper_resnet50", "resnet50"),
                                             ("paper_inception_v3", "inception_v3")])
def test_a_few_steps_of_each_paper_model_run(tmp_path, monkeypatch, name, model):
    root = write_tiny_cifar10(tmp_path / "cifar-10-batches-py")
    train = {"epochs": 1, "max_steps_per_epoch": 2, "batch_size": 8, "eval_batch_size": 16}
    cfg = paper_preset(name, dataset="cifar10", losses=("ngl",), seeds=(0,), train=train,
                       data_root=str(root), n_train=16, n_val=10, n_test=10, device="cpu")
    assert cfg.train.zoom == 0.2 and cfg.train.schedule == "plateau"  # the paper's, kept
    built: list[nn.Module] = []

    def keep(*args, **kwargs):  # the network the cell trains, kept for a look at its head
        built.append(build_model(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(grid_module, "build_model", keep)
    (cell,) = grid_cells(cfg)
    t0 = time.perf_counter()
    row = run_cell(cell)
    assert row["status"] == "ok", row.get("traceback", row.get("error"))
    assert time.perf_counter() - t0 < 60
    assert (row["model"], row["head"], row["loss"], row["dataset"]) == (model, "paper", "ngl", "cifar10")
    assert row["steps"] == 2 and row["epochs_run"] == 1 and 0 <= row["test_accuracy"] <= 1
    assert row["sizes"] == {"train": 16, "val": 10, "test": 10} and row["num_classes"] == 10
    assert row["train"]["zoom"] == 0.2 and row["train"]["shift"] == 0.1 and row["train"]["hflip"]

    # the network that cell trained carries the authors' head
    (net,) = built
    head = paper_head_of(net)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Flatten, nn.BatchNorm1d, nn.Linear, nn.ReLU, nn.Dropout, nn.BatchNorm1d,
                     nn.Linear, nn.ReLU, nn.Dropout, nn.BatchNorm1d, nn.Linear]
    dense = [(m.in_features, m.out_features) for m in head if isinstance(m, nn.Linear)]
    assert [d[1] for d in dense] == [128, 64, 10] and dense[1][0] == 128 and dense[2][0] == 64
    assert all(m.p == 0.5 for m in head if isinstance(m, nn.Dropout))
