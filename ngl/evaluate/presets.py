"""The paper's own downstream protocol as ready-made grids (for a GPU and the real datasets).

    from ngl.evaluate import paper_preset, run_grid

    cfg = paper_preset("paper_both", dataset="cifar10")   # 2 models x 4 losses x 5 seeds
    df = run_grid(cfg, "runs/paper/results.jsonl")

    quick = paper_preset("paper_resnet50", dataset="cifar10", seeds=(0,), train={"epochs": 20})

:data:`PAPER_PRESETS` maps each name to its :class:`~ngl.evaluate.grid.GridConfig`;
:func:`paper_preset` returns one with any ``GridConfig`` field overridden.

What comes from the paper -- the authors' early README (:data:`ngl.evaluate.PAPER_CITATION`) as
summarised in the project's paper notes, ``paper.md``: section "Downstream evaluation protocol",
lines 50-61, and the results table, lines 63-81:

* Models (lines 51-53, 64): ResNet50 and InceptionV3 trained from scratch (torchvision's
  ``resnet50`` and ``inception_v3``, ``weights=None``), "results averaged over both models"
  (``paper_both``).
* Head (lines 51-53): the top replaced by Flatten-BN-Dense(128, relu)-Dropout(0.5)-BN-Dense(64,
  relu)-Dropout(0.5)-BN-Dense(C) (``head="paper"``, :func:`ngl.models.paper_head`; the final
  softmax is in the losses).
* Runs (lines 53, 64): each model trained 5 times per dataset (``seeds=(0, 1, 2, 3, 4)``).
* Baselines (lines 55-56): CE, focal loss and SCE (Wang et al. 2019) against NGL
  (``losses=("ce", "ngl", "focal", "sce")``); CE + L2 is a training setting, see below.
* The authors' example script (lines 58-61; InceptionV3 on CIFAR-100): Adam with lr 1e-3, batch
  128, 200 epochs, ReduceLROnPlateau on validation accuracy (factor 0.2, patience 5, min lr
  1e-4), zoom 0.2, shifts 0.1, horizontal flips (``TrainConfig(zoom=0.2, shift=0.1,
  hflip=True)``, Keras-style: see :func:`ngl.train.augment_batch`), and 10 % of the training set
  held out for validation -- which :func:`ngl.data.load_dataset` already does for Fashion-MNIST
  and CIFAR (the plateau schedule watches that split; test accuracy is reported separately).
* Datasets (lines 67, 79-81): of the paper's seven, the ones :mod:`ngl.data` reads --
  Fashion-MNIST, CIFAR-10 and CIFAR-100 (:data:`PAPER_DATASETS`). Malaria, PCam, Colorectal
  Histology and Caltech 101 have no loader here.

What is not known, and what the presets therefore choose (line 58: "Optimizer, learning rate,
epochs, splits of the table: not known"):

* Whether the table used the example script's recipe at all (optimizer, lr, 200 epochs): the
  presets assume it did, for every dataset and both models.
* Focal, SCE and L2 settings (line 56): the ``ngl.losses`` defaults (focal ``gamma=2``; SCE
  ``a=0.1, b=1``, Wang et al.'s CIFAR-10 values).
* Input size: the example upsampled 32x32 to 256x256 for InceptionV3 (line 59); here
  :func:`ngl.models.build_model` upsamples only to the smallest size a network accepts (80 px for
  ``inception_v3``) and runs ``resnet50`` on 32 px with a CIFAR stem (3x3 stride-1 first
  convolution, no max-pool). Normalisation is per-channel mean/std of the training split.
* Framework details the README does not give: Keras' ReduceLROnPlateau uses an absolute
  ``min_delta``, torch's a relative threshold (1e-4 both); initialisation and BatchNorm momentum
  follow torch; mixed precision (``TrainConfig.amp``) is on for CUDA.

CE + L2 (a baseline row of the table) differs from CE in training, not in the loss, and a grid
has one training config; run it as a second grid whose row is labelled ``ce_l2`` (the seeds pair
with the CE runs). The L2 factor is not known; Keras' ``kernel_regularizer=l2(l)`` adds
``l * |w|^2`` to the loss, i.e. Adam ``weight_decay = 2 l`` (applied here to every parameter)::

    l2 = paper_preset("paper_both", dataset="cifar10",
                      losses=({"name": "ce", "label": "ce_l2"},), train={"weight_decay": 2e-4})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from ngl.evaluate.grid import GridConfig
from ngl.io.config import ConfigError, describe_error
from ngl.train import TrainConfig

__all__ = ["PAPER_PRESETS", "PAPER_DATASETS", "PAPER_LOSSES", "PAPER_TRAIN", "paper_preset"]

#: The paper's datasets that :mod:`ngl.data` can load (the default of every preset).
PAPER_DATASETS: tuple[str, ...] = ("fashion_mnist", "cifar10", "cifar100")
#: CE, NGL and the paper's loss baselines (CE + L2 is a training setting: see the module doc).
PAPER_LOSSES: tuple[str, ...] = ("ce", "ngl", "focal", "sce")
#: The authors' example script: Adam 1e-3, batch 128, 200 epochs, plateau 0.2 / 5 / 1e-4, zoom
#: 0.2, shifts 0.1, horizontal flips.
PAPER_TRAIN = TrainConfig(
    optimizer="adam", lr=1e-3, batch_size=128, epochs=200,
    schedule="plateau", plateau_factor=0.2, plateau_patience=5, min_lr=1e-4,
    zoom=0.2, shift=0.1, hflip=True,
)  # fmt: skip


def _preset(*models: str) -> GridConfig:
    return GridConfig(datasets=PAPER_DATASETS, models=models, losses=PAPER_LOSSES,
                      seeds=(0, 1, 2, 3, 4), train=PAPER_TRAIN, head="paper", device="auto")


#: Preset name -> grid (read-only). ``paper_both`` is the table's protocol: both models.
PAPER_PRESETS: Mapping[str, GridConfig] = MappingProxyType({
    "paper_resnet50": _preset("resnet50"),
    "paper_inception_v3": _preset("inception_v3"),
    "paper_both": _preset("resnet50", "inception_v3"),
})

_GRID_FIELDS = tuple(f.name for f in dataclasses.fields(GridConfig))
_TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def paper_preset(name: str, dataset: str | Sequence[str] | None = None,
                 **overrides: Any) -> GridConfig:
    """The grid of preset ``name`` (see :data:`PAPER_PRESETS`), with ``GridConfig`` fields overridden.

    ``dataset`` is one dataset name or several (the same as ``datasets=``; default
    :data:`PAPER_DATASETS`). Any other ``GridConfig`` field can be overridden by keyword
    (``seeds=(0,)``, ``data_root=...``, ``n_train=...``, ``device="cuda"``...). ``train`` takes a
    :class:`~ngl.train.TrainConfig` (used as given) or a dict of ``TrainConfig`` fields to change
    in the preset's (``train={"epochs": 20}`` keeps the paper's optimizer, schedule and
    augmentation). An unknown preset, an unknown field or an invalid value is a ``ValueError``
    of one line naming it and what is expected.
    """
    if name not in PAPER_PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PAPER_PRESETS)}")
    where = f"paper_preset({name!r})"
    unknown = sorted(set(overrides) - set(_GRID_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown override(s) {', '.join(unknown)}; expected GridConfig "
                         f"fields: {', '.join(_GRID_FIELDS)}")
    if dataset is not None:
        if "datasets" in overrides:
            raise ValueError(f"{where}: give dataset= or datasets=, not both")
        overrides["datasets"] = dataset
    base = PAPER_PRESETS[name]
    train = overrides.get("train")
    if "train" in overrides and not isinstance(train, TrainConfig | Mapping):
        raise ValueError(f"{where}: train must be a TrainConfig or a dict of TrainConfig fields "
                         f"to change, got {type(train).__name__}")
    if isinstance(train, Mapping):
        bad = sorted(set(train) - set(_TRAIN_FIELDS))
        if bad:
            raise ValueError(f"{where}: unknown train field(s) {', '.join(map(str, bad))}; "
                             f"expected TrainConfig fields: {', '.join(_TRAIN_FIELDS)}")
        overrides["train"] = _replace(base.train, dict(train), f"{where}: train.")
    return _replace(base, overrides, f"{where}: ")


def _replace(config: Any, changes: dict[str, Any], prefix: str) -> Any:
    """``dataclasses.replace`` whose validation errors are one :class:`ConfigError` line."""
    try:
        return dataclasses.replace(config, **changes)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, prefix)) from None
    except (ValueError, TypeError) as exc:  # __post_init__ checks (empty lists, duplicate seeds)
        raise ConfigError(f"{prefix}{exc}") from None
