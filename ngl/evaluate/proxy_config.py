"""The configuration of a fidelity calibration (:mod:`ngl.evaluate.proxy_calibration`): the
proxies, the panel's make-up, the target training, and the key of a proxy's rows."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, PlainValidator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ngl.data import available_datasets
from ngl.evaluate.grid import (
    GridConfig,
    build_loss,
    loss_label,
)
from ngl.evaluate.validate import DEFAULT_TRAIN
from ngl.fitness import TrainBudget
from ngl.gp.primitives import PrimitiveSet, preset
from ngl.gp.spec import SearchSpec, primitive_set_from
from ngl.io.config import STRICT, AsTuple, ConfigError, ConfigMixin
from ngl.io.paths import runs_dir
from ngl.io.runs import Rows
from ngl.io.schemas import ProxyRow
from ngl.losses import loss_specs_field
from ngl.models import available_models
from ngl.train import TrainConfig

__all__ = ["Proxy", "CalibrationConfig", "DEFAULT_PROXIES", "PANEL_REFERENCES",
           "PLAIN_LOSSES", "calibration_dir", "proxy_of", "config_for", "proxy_key",
           "proxy_rows"]

PANEL_REFERENCES: tuple[str | dict[str, Any], ...] = (
    "ce", "ngl", {"name": "focal", "gamma": 2.0}, "label_smoothing", "poly", "sce")
"""The registry's reference losses every panel holds."""

PLAIN_LOSSES: dict[str, str] = {
    "squared error": "(y_pred - y_real)*(y_pred - y_real)",
    "absolute error": "sqrt((y_pred - y_real)*(y_pred - y_real))",  # sqrt is sqrt|x|
}
"""Plain expression losses on probabilities (Brier-like and L1), name -> expression text."""


@pydantic_dataclass(frozen=True, config=STRICT)
class Proxy(ConfigMixin):
    """One candidate fitness: what a search with this ``model``, ``budget`` and ``n_train``
    (search-train subset; ``None``: the calibration's ``n_train``) would score a loss."""

    name: str
    model: str = "small_cnn"
    budget: TrainBudget = field(default_factory=lambda: TrainBudget(steps=100, batch_size=128))
    n_train: Annotated[int, Field(ge=1)] | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("proxy name must not be empty")
        if self.n_train is not None and self.n_train < 1:
            raise ValueError(f"n_train={self.n_train}: expected >= 1")
        if self.model not in available_models():
            raise ValueError(f"model={self.model!r}: expected one of {available_models()[:8]}...")


def proxy_of(spec: SearchSpec, name: str = "this search") -> Proxy:
    """The fitness of search ``spec`` as a proxy (its model, budget and search-train size)."""
    if spec.halving is not None:
        raise ConfigError("a spec with successive halving ranks by rung, not by one budget's "
                          "score; calibrate its budget without halving")
    return Proxy(name=name, model=spec.model, budget=spec.budget, n_train=spec.n_train)


def config_for(spec: SearchSpec, **fields: Any) -> CalibrationConfig:
    """A calibration on ``spec``'s data (dataset, subset sizes, data seed, seed and primitive
    set), with ``spec``'s own fitness as the first proxy unless ``proxies`` are given."""
    base = {"dataset": spec.dataset, "n_train": spec.n_train, "n_val": spec.n_val,
            "data_seed": spec.data_seed, "seed": spec.seed, "primitive_set": spec.primitive_set,
            "proxies": (proxy_of(spec),)}
    return CalibrationConfig(**{**base, **fields})


def _proxy(name: str, model: str, steps: int, schedule: str = "constant") -> Proxy:
    return Proxy(name=name, model=model,
                 budget=TrainBudget(steps=steps, batch_size=128, schedule=schedule))


DEFAULT_PROXIES: tuple[Proxy, ...] = (
    _proxy("small_cnn 100", "small_cnn", 100),  # the search's default before calibration
    _proxy("small_cnn 300 cos", "small_cnn", 300, "cosine"),
    _proxy("dense_cnn 100", "dense_cnn", 100),
    _proxy("dense_cnn 100 cos", "dense_cnn", 100, "cosine"),
    _proxy("dense_cnn 300 cos", "dense_cnn", 300, "cosine"),
)
"""The proxies a calibration compares unless told otherwise: the old default, longer and
annealed small_cnn, and the downstream model itself at search budgets."""


def _proxies(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(Proxy.from_dict(v) if isinstance(v, dict) else v for v in value)
    return value


@pydantic_dataclass(frozen=True, config=STRICT)
class CalibrationConfig(ConfigMixin):
    """A fidelity calibration (JSON round-trips; its key names the output folder).

    ``n_train``/``n_val``/``data_seed`` are the search's subset sizes and data seed: every proxy
    trains on that search-train subset (unless it names its own ``n_train``) and every score,
    the target's too, is taken on that search-validation subset. ``seed`` is the proxies'
    training seed (a search's ``seed``: common random numbers for every loss). Where it runs
    (device, data folder, chunk size) is given to :func:`calibrate` and never changes the
    key: a calibration moved from CPU to GPU continues in the same folder.
    """

    dataset: str = "digits"
    n_train: Annotated[int, Field(ge=1)] | None = None
    n_val: Annotated[int, Field(ge=1)] | None = None
    data_seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    references: Annotated[tuple[str | dict[str, Any], ...],
                          loss_specs_field("references")] = PANEL_REFERENCES
    plain_losses: bool = True
    random_trees: Annotated[int, Field(ge=0)] = 6
    primitive_set: Annotated[PrimitiveSet, PlainValidator(primitive_set_from),
                             PlainSerializer(lambda p: p.to_dict())] = field(
        default_factory=lambda: preset("paper"))
    tree_seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    run_dir: str | None = None
    search_top: Annotated[int, Field(ge=0)] = 3
    search_sample: Annotated[int, Field(ge=0)] = 3
    proxies: Annotated[tuple[Proxy, ...], BeforeValidator(_proxies)] = DEFAULT_PROXIES
    target_model: str = "dense_cnn"
    target_train: TrainConfig = field(default_factory=lambda: DEFAULT_TRAIN)
    target_seeds: Annotated[tuple[Annotated[int, Field(ge=0)], ...],
                            AsTuple] = (0, 1)
    rho_min: Annotated[float, Field(ge=-1, le=1)] = 0.8
    rho_low_min: Annotated[float, Field(ge=-1, le=1)] = 0.5
    bootstrap_resamples: Annotated[int, Field(ge=100, le=100_000)] = 2000

    def __post_init__(self) -> None:
        if self.dataset not in available_datasets():
            raise ValueError(f"dataset={self.dataset!r}: expected one of {available_datasets()}")
        if self.target_model not in available_models():
            raise ValueError(f"target_model={self.target_model!r}: expected one of "
                             f"{available_models()[:8]}...")
        if len(self.target_seeds) < 2 or len(set(self.target_seeds)) != len(self.target_seeds):
            raise ValueError(f"target_seeds={list(self.target_seeds)}: expected at least 2 "
                             "distinct seeds (one seed's ranking is partly noise)")
        if not self.proxies:
            raise ValueError("proxies must not be empty")
        names = [p.name for p in self.proxies]
        if len(set(names)) != len(names):
            raise ValueError(f"proxy names must be unique, got {names}")
        labels = [loss_label(r) for r in self.references]
        if len(set(labels)) != len(labels):
            raise ValueError(f"reference labels must be unique, got {labels}")
        for i, ref in enumerate(self.references):  # refused now, not as error rows later
            try:
                build_loss(ref)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"references[{i}]={ref!r}: {exc}") from None

    def target_grid(self, panel: list[dict], device: str = "auto",
                    data_root: str | None = None) -> GridConfig:
        """The target as a grid: every panel loss x target seed, validation scores only."""
        return GridConfig(
            datasets=(self.dataset,), models=(self.target_model,),
            losses=tuple(p["loss_spec"] for p in panel), seeds=self.target_seeds,
            train=self.target_train, n_train=None, n_val=self.n_val, data_seed=self.data_seed,
            data_root=None if self.dataset == "digits" else data_root, device=device,
            score_test=False)


def calibration_dir(config: CalibrationConfig) -> Path:
    """Default output folder: ``runs/calibrate/<config key>``."""
    return runs_dir() / "calibrate" / config.key



def proxy_key(config: CalibrationConfig, proxy: Proxy) -> str:
    """What decides a proxy's scores: the proxy and the calibration's data and seed (not its
    name, so renaming a proxy keeps its rows)."""
    d = proxy.to_dict()
    d.pop("name")
    d.update(dataset=config.dataset, n_train=proxy.n_train or config.n_train,
             n_val=config.n_val, data_seed=config.data_seed, seed=config.seed)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def proxy_rows(out: str | os.PathLike) -> Rows:
    """``proxies.jsonl`` of a calibration folder: one row per (proxy key, panel loss), the first
    written counting."""
    return Rows(Path(out) / "proxies.jsonl", lambda r: (r["proxy_key"], r["loss"]),
                what="proxy score's row", schema=ProxyRow, compare=("status", "val_accuracy"))
