"""Downstream evaluation grids: every (dataset, model, loss, seed) cell trained once, resumable.

    from ngl.evaluate import GridConfig, run_grid
    from ngl.train import TrainConfig

    cfg = GridConfig(datasets=("fashion_mnist",), models=("dense_cnn",),
                     losses=("ce", "ngl", {"name": "focal", "gamma": 2}, "label_smoothing"),
                     seeds=(0, 1, 2), train=TrainConfig(epochs=2, batch_size=128))
    df = run_grid(cfg, "runs/downstream/results.jsonl")

Each finished cell appends one row to a JSON-lines file (:mod:`ngl.io.records`): the cell's
settings, final and per-epoch metrics, time, torch/ngl versions and ``status`` (``ok``,
``nonfinite`` or ``error``). Re-running the same grid skips every cell that already has an
``ok``/``nonfinite`` row (a cell is identified by a hash of everything that defines it), and a
cell that was interrupted mid-training continues from its per-epoch checkpoint. Cells run
through any ``concurrent.futures.Executor`` (``distributed.Client(...).get_executor()`` for a
Dask cluster); :func:`run_cell` is the plain, picklable function each executor task calls.

Losses are given as a registered name (``"ce"``, ``"ngl"``, ``"focal"``...), a dict with a
``name`` and keyword arguments (``{"name": "focal", "gamma": 2}``; an optional ``label`` names
the table row), or loss-expression text (``"exp(2.4092 - y_pred*(1 + y_real)) - ..."``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, as_completed
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import torch
from pydantic import BeforeValidator, Field, PlainSerializer
from pydantic.dataclasses import dataclass as pydantic_dataclass
from tqdm.auto import tqdm

from ngl.data import load_cached
from ngl.io.config import (
    STRICT,
    ConfigMixin,
    OneOrMany,
    check_device,
    require_available,
    resolve_device,
)
from ngl.io.runs import Rows, RunFolder, remove_stale_temps, versions
from ngl.io.schemas import FINISHED, ResultRow
from ngl.losses import build_loss_spec, loss_spec_label, loss_specs_field
from ngl.models import build_model
from ngl.train import TrainConfig, train_model

__all__ = ["GridConfig", "run_grid", "run_cell", "grid_cells", "loss_label", "load_results", "results_rows", "results_folder", "in_cell_order",
           "DONE_STATUSES"]

DONE_STATUSES = FINISHED


# the loss-spec rules are shared with a search's references (ngl.gp sits below this layer)
loss_label = loss_spec_label
build_loss = build_loss_spec


def _model_kwargs(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), v) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(sorted(tuple(kv) for kv in value))
    return value


@pydantic_dataclass(frozen=True, config=STRICT)
class GridConfig(ConfigMixin):
    """A downstream grid: datasets x models x losses x seeds, all trained with ``train``.

    ``n_train``/``n_val``/``n_test`` take stratified subsets (``None``: whole split) for quick
    runs; the split itself is drawn once with ``data_seed`` and shared by every seed and loss,
    so the seeds vary initial weights, batch order and augmentation only (and pair across
    losses: seed s of CE and seed s of NGL start from the same weights).
    ``device="auto"`` picks CUDA when available. ``head="paper"`` uses the authors' dense head.
    ``score_test=False`` never evaluates the test split: its rows hold validation scores only
    (a fidelity calibration chooses a proxy without looking at the numbers a finding reports).
    """

    datasets: Annotated[tuple[str, ...], OneOrMany] = ("digits",)
    models: Annotated[tuple[str, ...], OneOrMany] = ("dense_cnn",)
    losses: Annotated[tuple[str | dict[str, Any], ...], loss_specs_field("losses")] = ("ce", "ngl")
    seeds: Annotated[tuple[Annotated[int, Field(ge=0, lt=2**32)], ...], OneOrMany] = (0, 1, 2)
    train: TrainConfig = field(default_factory=TrainConfig)
    n_train: Annotated[int, Field(ge=1, le=10**9)] | None = None
    n_val: Annotated[int, Field(ge=1, le=10**9)] | None = None
    n_test: Annotated[int, Field(ge=1, le=10**9)] | None = None
    data_seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    data_root: str | None = None
    head: Literal["linear", "paper"] = "linear"
    device: str = "auto"
    model_kwargs: Annotated[tuple[tuple[str, Any], ...], BeforeValidator(_model_kwargs),
                            PlainSerializer(dict)] = ()
    # False: the test split is never evaluated (a calibration chooses on validation data only)
    score_test: bool = True

    RUN_OPTIONS = ("device", "data_root")  # how it runs: not in the key (cells never had them)

    def __post_init__(self) -> None:
        for name in ("datasets", "models", "seeds", "losses"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        labels = [loss_label(s) for s in self.losses]
        if len(set(labels)) != len(labels):
            raise ValueError(f"loss labels must be unique, got {labels}; add a 'label' to a dict spec")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be unique, got {list(self.seeds)}")
        check_device(self.device)

    def __hash__(self) -> int:  # dict loss specs are not hashable: hash the canonical JSON
        return hash(self.key)

    def _keyed(self, d: dict) -> dict:
        """A grid that scores the test split (``score_test=True``, as every grid before the
        field existed) keeps the key it would have had without the field."""
        return {k: v for k, v in d.items() if not (k == "score_test" and v is True)}

    @property
    def n_cells(self) -> int:
        return len(self.datasets) * len(self.models) * len(self.losses) * len(self.seeds)

    def resolved_device(self) -> str:
        return resolve_device(self.device)


def _cell_key(cell: Mapping) -> str:
    ident = {k: cell[k] for k in ("dataset", "model", "loss_spec", "seed", "train", "n_train",
                                  "n_val", "n_test", "data_seed", "head", "model_kwargs")}
    if cell.get("score_test", True) is False:  # cells that score the test split keep their keys
        ident["score_test"] = False
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def grid_cells(config: GridConfig) -> list[dict]:
    """The cells of a grid as plain dicts (what :func:`run_cell` gets), in a stable order.

    Order: dataset, then seed, then model, then loss, so a partially finished grid already
    holds complete, paired comparisons for its first seeds.
    """
    cells = []
    for dataset in config.datasets:
        for seed in config.seeds:
            for model in config.models:
                for spec in config.losses:
                    cell = {
                        "dataset": dataset, "model": model, "loss": loss_label(spec),
                        "loss_spec": spec, "seed": seed, "train": config.train.to_dict(),
                        "n_train": config.n_train, "n_val": config.n_val, "n_test": config.n_test,
                        "data_seed": config.data_seed, "data_root": config.data_root,
                        "head": config.head, "model_kwargs": dict(config.model_kwargs),
                        "device": config.device, "score_test": config.score_test,
                    }
                    cell["cell_key"] = _cell_key(cell)
                    cells.append(cell)
    return cells


def run_cell(cell: Mapping, checkpoint_dir: str | None = None, progress: bool = False) -> dict:
    """Train one cell and return its result row (a plain, picklable function for executors).

    Exceptions become a row with ``status="error"`` and the message, so one broken loss does not
    sink a grid; such cells are retried when the grid is run again.
    """
    cell = dict(cell)
    device = resolve_device(cell.get("device", "auto"))
    row = {k: cell[k] for k in ("cell_key", "dataset", "model", "loss", "loss_spec", "seed",
                                "n_train", "n_val", "n_test", "data_seed", "head")}
    row["train"] = cell["train"]
    row.update(versions())
    row["device"] = device
    t0 = time.perf_counter()
    try:
        data = load_cached(cell["dataset"], cell.get("data_root"), cell["n_train"], cell["n_val"],
                           cell["n_test"], cell["data_seed"])
        if cell.get("score_test", True) is False:
            data = dataclasses.replace(data, x_test=data.x_test[:0], y_test=data.y_test[:0])
        c, h, _w = data.input_shape
        torch.manual_seed(cell["seed"])  # initial weights: same for every loss at this seed
        model = build_model(cell["model"], c, data.num_classes, h, head=cell["head"],
                            **cell.get("model_kwargs", {}))
        loss = build_loss(cell["loss_spec"])
        ckpt = (Path(checkpoint_dir) / f"{cell['cell_key']}.pt") if checkpoint_dir else None
        result = train_model(model, loss, data, TrainConfig.from_dict(cell["train"]),
                             seed=cell["seed"], device=device, checkpoint_path=ckpt,
                             progress=progress)
        row.update(result)
        row["num_classes"] = data.num_classes
        row["data_source"] = data.source  # the folder the data was read from
        row["sizes"] = {s: len(getattr(data, f"y_{s}")) for s in ("train", "val", "test")}
    except Exception as exc:  # noqa: BLE001 - recorded in the row, retried on the next run
        row["status"] = "error"
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc()[-2000:]
    row["wall_s"] = time.perf_counter() - t0
    return row


def short_loss_label(label: str, n: int = 32) -> str:
    """A loss label for a progress bar or a log line: a found loss's formula tidied (4
    significant digits) and cut to ``n`` characters; a short label as it is."""
    if len(label) <= n:
        return label
    from ngl.gp.expression import LossExpression

    with contextlib.suppress(ValueError, KeyError):  # a user's label: cut as it is
        label = LossExpression.parse(label).display(4)
    return label if len(label) <= n else label[:n - 1] + "…"


def results_rows(path: str | os.PathLike) -> Rows:
    """A grid's results file as kernel rows: one per cell key, the last written counting (an
    error row is replaced by its retry)."""
    return Rows(Path(path), lambda r: r["cell_key"], what="grid cell's row", keep="last",
                schema=ResultRow, final=lambda r: r["status"] in DONE_STATUSES,
                compare=("status", "val_accuracy", "test_accuracy", "val_ce", "test_ce"))


def results_folder(path: str | os.PathLike) -> RunFolder:
    """The folder of a results file, locked by ``<file>.lock`` beside it."""
    path = Path(path)
    return RunFolder(path.parent, f"results file {path.name} in", lock_name=f"{path.name}.lock",
                     dedicated=False)


def load_results(path: str | os.PathLike, config: GridConfig | None = None,
                 latest: bool = True) -> pd.DataFrame:
    """The results file as a DataFrame, every row checked (:class:`ngl.io.schemas.ResultRow`).

    ``latest``: one row per cell, its result (``ok``/``nonfinite``) over an error row, two
    different results for one cell refused; else every row as written. With ``config``, only
    the cells of that grid are returned.
    """
    table = results_rows(path)
    rows = table.read() if latest else table.raw()
    if config is not None:
        rows = in_cell_order(rows, [config])
    return pd.DataFrame(rows)


def in_cell_order(rows: list[dict], configs: list[GridConfig]) -> list[dict]:
    """The rows of the cells of ``configs``, in the grids' cell order (not the file's, which
    a resumed or parallel run, or an edit that swaps lines, changes); others dropped."""
    order: dict[str, int] = {}
    for config in configs:
        for c in grid_cells(config):
            order.setdefault(c["cell_key"], len(order))
    mine = [r for r in rows if r.get("cell_key") in order]
    return sorted(mine, key=lambda r: order[r["cell_key"]])  # stable: a cell's rows keep order


def _clean_checkpoints(folder: Path, cells: list[dict], finished: set) -> None:
    """On start, under the lock: a finished cell's epoch checkpoint (left by a kill between its
    row and the clean-up) and a killed checkpoint write's temp file are removed; only the names
    of this grid's cells are touched."""
    if not folder.is_dir():
        return
    keys = {c["cell_key"] for c in cells}
    for key in finished & keys:
        (folder / f"{key}.pt").unlink(missing_ok=True)
    remove_stale_temps(folder, lambda name: name.removesuffix(".pt") in keys)


def run_grid(config: GridConfig, results_path: str | os.PathLike,
             executor: Executor | None = None, progress: bool = True,
             callback: Callable[[dict, pd.DataFrame], None] | None = None,
             checkpoint_dir: str | os.PathLike | None = None, retry_errors: bool = True,
             should_stop: Callable[[], bool] | None = None) -> pd.DataFrame:
    """Train every cell of ``config`` not yet in ``results_path``; return the grid's results.

    Rows are appended as cells finish. ``callback(row, results)`` is called after each (e.g. to
    redraw a table); ``results`` is the grid's DataFrame so far. Per-epoch checkpoints live in
    ``checkpoint_dir`` (default: ``<results stem>_checkpoints/`` next to the results file) and are
    removed once a cell's row is written. ``retry_errors=False`` also skips cells whose last row
    is an ``error``. The results file is locked while the grid runs (``<file>.lock``).
    ``should_stop()`` is asked before each cell starts: once it says yes, no new cell starts, the
    cells in progress finish and write their rows, and the results so far are returned (a widget's
    stop button; running the grid again continues with the cells not done).
    """
    results_path = Path(results_path)
    require_available(config.resolved_device())  # one line, before anything is written
    with results_folder(results_path).lock():
        return _run_grid_locked(config, results_path, executor, progress, callback,
                                checkpoint_dir, retry_errors, should_stop)


def _run_grid_locked(config: GridConfig, results_path: Path, executor: Executor | None,
                     progress: bool, callback: Callable[[dict, pd.DataFrame], None] | None,
                     checkpoint_dir: str | os.PathLike | None, retry_errors: bool,
                     should_stop: Callable[[], bool] | None = None) -> pd.DataFrame:
    if checkpoint_dir is None:
        checkpoint_dir = results_path.with_name(results_path.stem + "_checkpoints")
    checkpoint_dir = str(checkpoint_dir)
    cells = grid_cells(config)
    done_statuses = DONE_STATUSES if retry_errors else (*DONE_STATUSES, "error")
    rows = results_rows(results_path)
    done = rows.done(lambda r: r.get("status") in done_statuses)
    _clean_checkpoints(Path(checkpoint_dir), cells, rows.done(lambda r: r["status"] in DONE_STATUSES))
    todo = [c for c in cells if c["cell_key"] not in done]

    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), disable=not progress,
               desc="grid cells")

    def finish(row: dict) -> None:
        rows.append([row])
        if row["status"] in DONE_STATUSES:
            Path(checkpoint_dir, f"{row['cell_key']}.pt").unlink(missing_ok=True)
        bar.update(1)
        acc = row.get("test_accuracy")
        bar.set_postfix_str(f"{row['dataset']}/{row['model']}/{short_loss_label(row['loss'])}"
                            f"/s{row['seed']}: "
                            f"{row['status']}" + (f" {acc:.4f}" if acc is not None else ""))
        if callback is not None:
            callback(row, load_results(results_path, config))

    def stopping() -> bool:
        return should_stop is not None and bool(should_stop())

    try:
        if executor is None:
            for cell in todo:
                if stopping():
                    break
                finish(run_cell(cell, checkpoint_dir))
        else:
            futures = [executor.submit(run_cell, cell, checkpoint_dir) for cell in todo]
            for fut in as_completed(futures):
                if fut.cancelled():
                    continue
                finish(fut.result())
                if stopping():  # cells not started yet are dropped; running ones still finish
                    for other in futures:
                        other.cancel()
    finally:
        bar.close()
    return load_results(results_path, config)
