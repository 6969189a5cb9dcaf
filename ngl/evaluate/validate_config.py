"""What a validation is (`ValidateConfig`): which found losses and references, seeds, the
downstream model and training, transfer pairs, fidelity; its default folder."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ngl.data import available_datasets
from ngl.evaluate.grid import loss_label
from ngl.evaluate.paper import SAME_AS_CE_BAND
from ngl.gp.result import SearchResult
from ngl.io.config import STRICT, ConfigMixin, OneOrMany, check_device
from ngl.io.paths import folder_of, runs_dir
from ngl.losses import loss_specs_field
from ngl.models import available_models
from ngl.train import TrainConfig

__all__ = ["ValidateConfig", "DEFAULT_TRAIN", "DEFAULT_REFERENCES", "validation_dir"]

DEFAULT_TRAIN = TrainConfig(epochs=4, batch_size=128, lr=1e-3, optimizer="adam",
                            schedule="cosine")
"""Downstream default: with ``dense_cnn`` about 91.2 % CE test accuracy on Fashion-MNIST in about
4.5 minutes on a 2-core CPU (``benchmarks/downstream_default.py``)."""

DEFAULT_REFERENCES: tuple[str | dict[str, Any], ...] = (
    "ce", "ngl", {"name": "focal", "gamma": 2.0}, "label_smoothing")

_SEEDS = Annotated[tuple[Annotated[int, Field(ge=0, lt=2**32)], ...], OneOrMany]


def _pairs(value: Any) -> Any:
    """``"digits:dense_cnn"`` or ``["digits", "dense_cnn"]`` -> ``("digits", "dense_cnn")``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"transfer entry {item!r}: expected 'dataset:model'")
            item = parts
        out.append(tuple(item))
    return tuple(out)


@pydantic_dataclass(frozen=True, config=STRICT)
class ValidateConfig(ConfigMixin):
    """How a search's finding is validated (JSON round-trips; its key names the output folder).

    ``dataset``/``data_seed`` default to the search's (``None``), so the held-out test split is
    the one the search never saw. ``transfer`` lists extra (dataset, model) pairs; ``None``
    means the other bundled dataset (digits <-> Fashion-MNIST) with ``model``, and
    ``small_inception`` on the search's dataset; ``()`` turns transfer off. Fidelity uses the
    top ``fidelity_top`` hall-of-fame entries plus ``fidelity_sample`` other trained candidates
    drawn at random (``fidelity_top=0`` and ``fidelity_sample=0``: off), each trained with
    ``fidelity_seeds``. ``margin`` is the paper's "same as CE" band in percentage points.
    """

    top_k: Annotated[int, Field(ge=1, le=10_000)] = 5
    references: Annotated[tuple[str | dict[str, Any], ...],
                          loss_specs_field("references")] = DEFAULT_REFERENCES
    baseline: str = "ce"
    seeds: _SEEDS = (0, 1, 2, 3, 4)
    model: str = "dense_cnn"
    train: TrainConfig = field(default_factory=lambda: DEFAULT_TRAIN)
    dataset: str | None = None
    data_seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None
    n_train: Annotated[int, Field(ge=1, le=10**9)] | None = None
    n_val: Annotated[int, Field(ge=1, le=10**9)] | None = None
    n_test: Annotated[int, Field(ge=1, le=10**9)] | None = None
    transfer: Annotated[tuple[tuple[str, str], ...] | None, BeforeValidator(_pairs)] = None
    fidelity_top: Annotated[int, Field(ge=0, le=10_000)] = 10
    fidelity_sample: Annotated[int, Field(ge=0, le=10_000)] = 10
    fidelity_seeds: _SEEDS = (0,)
    margin: Annotated[float, Field(ge=0, le=100)] = SAME_AS_CE_BAND
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    bootstrap_resamples: Annotated[int, Field(ge=100, le=100_000)] = 2000
    data_root: str | None = None
    device: str = "auto"

    RUN_OPTIONS = ("device", "data_root")  # how it runs: not in the key nor in "the same config"

    def __post_init__(self) -> None:
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={list(self.seeds)}: expected at least 2 distinct seeds "
                             "(paired tests need pairs; the paper uses 5)")
        if len(set(self.fidelity_seeds)) != len(self.fidelity_seeds) or not self.fidelity_seeds:
            raise ValueError(f"fidelity_seeds={list(self.fidelity_seeds)}: expected distinct seeds")
        if self.baseline not in [loss_label(r) for r in self.references]:
            raise ValueError(f"baseline={self.baseline!r} is not among references "
                             f"{[loss_label(r) for r in self.references]}")
        if self.dataset is not None and self.dataset not in available_datasets():
            raise ValueError(f"dataset={self.dataset!r}: expected one of {available_datasets()}")
        models = available_models()
        for d, m in [("", self.model), *(self.transfer or ())]:
            if d and d not in available_datasets():
                raise ValueError(f"transfer dataset {d!r}: expected one of {available_datasets()}")
            if m not in models:
                raise ValueError(f"model {m!r}: expected one of {models[:8]}...")
        check_device(self.device)


def validation_dir(result: SearchResult, config: ValidateConfig) -> Path:
    """Default output folder: ``runs/validate/<search key>/<config key>``."""
    return folder_of(runs_dir() / "validate" / result.spec.key, config)
