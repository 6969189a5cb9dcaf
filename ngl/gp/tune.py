"""Tune the constants of a loss expression with CMA-ES (the ``cmaes`` package's ask/tell).

GP finds a loss's *structure*; its constants are whatever the ephemeral constants and mutations
left (NGL's 2.4092 looks tuned). GLO and TaylorGLO tune them with CMA-ES; so does
:func:`tune_constants`: each CMA-ES generation asks for ``population_size`` constant vectors,
the expression is rewritten with each, and all of them train as **one population-batched pass**
(:func:`ngl.gp.worker.evaluate_chunk`, the search's own fitness) with the search's data, model,
budget and seeds, so every evaluation shares the search's common random numbers and a tuned
fitness is comparable to the search's.

Resumable and exact: one row per evaluation is appended to ``history.jsonl`` when its
generation's pass finishes, then the CMA-ES state (its RNG included) is written atomically as
JSON to ``checkpoint.json`` (:mod:`ngl.gp.tune_state`; no pickle: a run folder is untrusted).
A killed run restarts from the last checkpoint; a generation whose rows were written but not
checkpointed is re-asked (the restored RNG gives the same vectors) and its rows
reused, not retrained. Generation ``-1`` is the expression as given (the untuned start).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from cmaes import CMA
from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from tqdm.auto import tqdm

from ngl.gp.expression import LossExpression
from ngl.gp.spec import RunOptions, SearchSpec
from ngl.gp.tune_state import cma_from_json, cma_to_json
from ngl.gp.worker import evaluate_chunk
from ngl.io.config import STRICT, AsTuple, ConfigError, ConfigMixin, require_available
from ngl.io.paths import runs_dir
from ngl.io.records import SEAL, read_json, unseal, write_json_atomic
from ngl.io.runs import SITTINGS, Rows, RunFolder, RunFolderError, config_diff
from ngl.io.schemas import TuneRow

__all__ = ["TuneSpec", "TuneResult", "tune_constants", "with_constants", "load_tuning",
           "tuning_folder"]

CHECKPOINT = "checkpoint.json"
"""The CMA-ES state after the last finished generation (JSON; ngl 0.1 wrote checkpoint.pkl)."""

Fitness = Callable[[list[str]], list[dict]]
"""``fitness(texts) -> rows`` with at least ``val_accuracy`` and ``status`` per text."""


def with_constants(expression: LossExpression, indices: Sequence[int],
                   values: Sequence[float]) -> LossExpression:
    """``expression`` with its ``indices``-th constants (in prefix order) set to ``values``."""
    positions = [i for i, n in enumerate(expression.program) if isinstance(n, float)]
    program = list(expression.program)
    for k, v in zip(indices, values, strict=True):
        program[positions[k]] = float(v)
    return LossExpression(tuple(program))


@pydantic_dataclass(frozen=True, config=STRICT)
class TuneSpec(ConfigMixin):
    """What a tuning run is (its hash names the run directory).

    ``search`` supplies data, model, training budget, seeds and the constant range (its primitive
    set's ``const_range``, or ``bounds``); ``constants`` picks which constants of ``expression``
    are tuned (indices in prefix order; ``None``: all). ``sigma`` is CMA-ES's initial step size
    (``None``: a sixth of the bounds' width); ``population_size`` ``None`` is CMA-ES's default
    ``4 + 3 ln(n)``.
    """

    expression: str
    search: SearchSpec
    constants: Annotated[tuple[Annotated[int, Field(ge=0)], ...], AsTuple] | None = None
    generations: Annotated[int, Field(ge=1)] = 8
    population_size: Annotated[int, Field(ge=2)] | None = None
    sigma: Annotated[float, Field(gt=0)] | None = None
    bounds: Annotated[tuple[float, float], AsTuple] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0

    @property
    def key(self) -> str:
        """The hash of this spec with the search's fields that tuning never uses left out
        (:meth:`SearchSpec.key_dict`), so tuning folders written before those fields existed
        keep their names."""
        d = {**self.to_dict(), "search": self.search.key_dict(fitness_only=True)}
        text = json.dumps(d, sort_keys=True, allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def __post_init__(self) -> None:
        if self.search.halving is not None:
            raise ValueError("search.halving: tuning trains every evaluation to the full budget "
                             "and compares them as such; give a spec with halving=None, e.g. "
                             "dataclasses.replace(spec, halving=None)")
        expr = LossExpression.parse(self.expression)
        n = len(expr.constants)
        if n == 0:
            raise ValueError(f"expression={self.expression!r} has no constants to tune")
        idx = self.indices(n)
        if not idx or len(set(idx)) != len(idx) or max(idx) >= n:
            raise ValueError(f"constants={list(self.constants or ())}: expected distinct indices "
                             f"below {n} (the expression's constants: {list(expr.constants)})")
        lo, hi = self.resolved_bounds()
        if not lo < hi:
            raise ValueError(f"bounds={[lo, hi]}: expected low < high")
        outside = [expr.constants[i] for i in idx if not lo <= expr.constants[i] <= hi]
        if outside:
            raise ValueError(f"constants {outside} of the expression lie outside bounds "
                             f"{[lo, hi]}; widen bounds")

    def indices(self, n: int | None = None) -> tuple[int, ...]:
        if self.constants is not None:
            return tuple(self.constants)
        n = len(LossExpression.parse(self.expression).constants) if n is None else n
        return tuple(range(n))

    def resolved_bounds(self) -> tuple[float, float]:
        if self.bounds is not None:
            return self.bounds
        cr = self.search.primitive_set.const_range
        if cr is None:
            raise ValueError("the search's primitive set has no const_range: give bounds")
        return cr


@dataclass
class TuneResult:
    """The evaluations of a tuning run: ``history`` (one row per evaluation), start and best."""

    spec: TuneSpec
    run_dir: Path
    history: pd.DataFrame
    complete: bool

    @property
    def start(self) -> dict:
        return self.history[self.history["generation"] == -1].iloc[0].to_dict()

    @property
    def best(self) -> dict:
        """The best evaluation (ties: the earliest)."""
        h = self.history.sort_values(["val_accuracy", "generation", "index"],
                                     ascending=[False, True, True])
        return h.iloc[0].to_dict()

    @property
    def best_expression(self) -> LossExpression:
        return LossExpression.parse(self.best["expression"])

    def per_generation(self) -> pd.DataFrame:
        """Best / median fitness and the mean of each tuned constant per generation."""
        h = self.history
        rows = []
        for g, part in h.groupby("generation"):
            consts = np.array(part["constants"].tolist(), dtype=float)
            rows.append({"generation": int(g), "best": part["val_accuracy"].max(),
                         "median": part["val_accuracy"].median(),
                         **{f"c{k}": consts[:, k].mean() for k in range(consts.shape[1])}})
        return pd.DataFrame(rows)


def _fitness_of(spec: TuneSpec, options: RunOptions) -> Fitness:
    def fitness(texts: list[str]) -> list[dict]:
        return evaluate_chunk(spec.search.to_dict(), options.to_dict(), texts)

    return fitness


def tune_constants(expression: str | LossExpression, search: SearchSpec,
                   run_dir: str | os.PathLike | None = None, *, constants: Sequence[int] | None = None,
                   generations: int = 8, population_size: int | None = None,
                   sigma: float | None = None, bounds: tuple[float, float] | None = None,
                   seed: int = 0, options: RunOptions | None = None, progress: bool = True,
                   fitness: Fitness | None = None) -> TuneResult:
    """Tune ``expression``'s constants with CMA-ES on ``search``'s fitness; resumable.

    Maximises search-validation accuracy (CMA-ES minimises its negative; a non-finite candidate
    scores 0, as in the search). ``run_dir`` defaults to ``runs/tune/<TuneSpec key>``; running
    the same spec again continues it. ``fitness`` replaces training (for tests and other
    objectives): ``fitness(texts) -> [{"val_accuracy": ..., "status": ...}, ...]``.
    """
    spec = TuneSpec(expression=str(expression), search=search,
                    constants=None if constants is None else tuple(constants),
                    generations=generations, population_size=population_size, sigma=sigma,
                    bounds=bounds, seed=seed)
    options = options or RunOptions()
    if fitness is None:  # trained here: the device must exist (one line, nothing written)
        require_available(options.resolved_device())
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / "tune" / spec.key
    folder = tuning_folder(run_dir)
    old = _read_spec(folder)
    if old is not None and old.key != spec.key:  # the key is what decides the tuning
        raise ConfigError(f"{folder.spec_path}: this folder tunes another spec (key {old.key}, "
                          f"asked {spec.key}: {config_diff(old.to_dict(), spec.to_dict())}); "
                          "use another run_dir")
    with folder.lock():
        history = _history(folder).read()
        folder.freeze(spec.to_dict())
        folder.record_sitting(options.to_dict(), own_fitness=fitness is not None)
        # a caller's own objective is any number; the search's fitness is an accuracy
        split = "search_validation" if fitness is None else "own_objective"
        _run(spec, run_dir, fitness or _fitness_of(spec, options), progress, history, split)
    return load_tuning(run_dir)


def tuning_folder(run_dir: str | os.PathLike) -> RunFolder:
    """A tuning run's folder as the run kernel sees it (``tune_spec.json`` frozen in it)."""
    return RunFolder(Path(run_dir), "tuning directory", "tune_spec.json", "tune.lock")


def _history(folder: RunFolder) -> Rows:
    """``history.jsonl``: one row per (generation, index), the first written counting (a
    generation re-asked after a kill between its rows and the checkpoint is written again)."""
    return folder.rows("history.jsonl", lambda r: (r["generation"], r["index"]),
                       what="evaluation's row", schema=TuneRow,
                       compare=("constants", "status", "val_accuracy"))


def _read_spec(folder: RunFolder) -> TuneSpec | None:
    return folder.read_spec(TuneSpec.from_dict, "tuning spec", "use another run_dir")


def _rows(gen: int, values: list[np.ndarray], texts: list[str], results: list[dict],
          split: str) -> list[dict]:
    rows = []
    for i, (x, t, r) in enumerate(zip(values, texts, results, strict=True)):
        acc, status = float(r["val_accuracy"]), r["status"]
        if not math.isfinite(acc):  # a non-finite candidate scores 0, as in the search
            acc, status = 0.0, "nonfinite"
        rows.append({"generation": gen, "index": i, "constants": [float(v) for v in x],
                     "expression": t, "val_accuracy": acc, "status": status, "split": split})
    return rows


def _run(spec: TuneSpec, run_dir: Path, fitness: Fitness, progress: bool,
         rows_so_far: list[dict], split: str) -> None:
    expr = LossExpression.parse(spec.expression)
    idx = spec.indices()
    lo, hi = spec.resolved_bounds()
    table = _history(tuning_folder(run_dir))
    history: dict[int, list[dict]] = {}
    for r in rows_so_far:
        history.setdefault(r["generation"], []).append(r)
    x0 = np.array([expr.constants[i] for i in idx], dtype=float)
    cma = CMA(mean=x0, sigma=spec.sigma or (hi - lo) / 6,
              bounds=np.array([[lo, hi]] * len(idx)), seed=spec.seed,
              population_size=spec.population_size)
    done = -1
    # without a checkpoint (lost, or a 0.1 folder's checkpoint.pkl, never opened) generations
    # are re-asked from the seed and their recorded rows reused: the same state, exactly
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists():
        cma, done = _read_checkpoint(ckpt_path, spec, cma)
    if -1 not in history:  # the untuned start, scored with the same fitness
        x0 = np.array([expr.constants[i] for i in idx], dtype=float)
        table.append(_rows(-1, [x0], [str(expr)], fitness([str(expr)]), split))
    bar = tqdm(total=spec.generations, initial=done + 1, disable=not progress,
               desc="CMA-ES generations")
    try:
        for gen in range(done + 1, spec.generations):
            xs = [cma.ask() for _ in range(cma.population_size)]
            texts = [str(with_constants(expr, idx, x)) for x in xs]
            kept = {r["index"]: r for r in history.get(gen, []) if r["index"] < len(xs)}
            if any(not np.allclose(r["constants"], xs[i], rtol=0, atol=1e-12)
                   for i, r in kept.items()):
                raise ConfigError(f"{run_dir}/history.jsonl: generation {gen} holds other "
                                  "constants than the restored CMA-ES asks for; the folder was "
                                  "written by another run")
            if len(kept) != len(xs):
                # trained as one pass (common random numbers); a row already written (a torn
                # generation) is kept as it is, and CMA-ES is told the kept value
                t0 = time.perf_counter()
                fresh = _rows(gen, xs, texts, fitness(texts), split)
                new = [r for r in fresh if r["index"] not in kept]
                for r in new:
                    r["wall_s"] = (time.perf_counter() - t0) / len(fresh)
                table.append(new)
                kept.update({r["index"]: r for r in new})
            rows = [kept[i] for i in range(len(xs))]
            cma.tell([(x, -float(r["val_accuracy"])) for x, r in zip(xs, rows, strict=True)])
            write_json_atomic(ckpt_path, {"generation": gen, "spec_key": spec.key,
                                          "cma": cma_to_json(cma)}, sealed=True)
            bar.update(1)
            bar.set_postfix_str(f"best {max(r['val_accuracy'] for r in rows):.4f}")
    finally:
        bar.close()


def _read_checkpoint(path: Path, spec: TuneSpec, fresh: CMA) -> tuple[CMA, int]:
    """The saved optimiser and its last finished generation, checked (see
    :func:`ngl.gp.tune_state.cma_from_json`); a damaged file is one line saying what to do."""
    what_to_do = (f"move {path.name} aside and run again: the state is then rebuilt exactly by "
                  "re-asking CMA-ES over the recorded rows")
    try:
        ckpt = read_json(path)
        if not isinstance(ckpt, dict) or set(ckpt) - {SEAL} != {"generation", "spec_key", "cma"}:
            raise ValueError("expected {generation, spec_key, cma}")
        gen = ckpt["generation"]
        if type(gen) is not int or not 0 <= gen < spec.generations:
            raise ValueError(f"generation = {gen!r}: expected 0..{spec.generations - 1}")
        if ckpt["spec_key"] != spec.key:
            raise ValueError(f"spec_key = {ckpt['spec_key']!r}, tune_spec.json has {spec.key}")
        cma = cma_from_json(ckpt["cma"], fresh)
        unseal(ckpt, required=(path.parent / SITTINGS).exists())  # last: the above say more
        return cma, gen
    except (ValueError, OSError) as exc:
        raise RunFolderError(f"{path} is not a valid tuning checkpoint ({exc}); "
                             f"{what_to_do}") from None


def load_tuning(run_dir: str | os.PathLike) -> TuneResult:
    """A tuning run read back (finished or not), without training anything."""
    run_dir = Path(run_dir)
    folder = tuning_folder(run_dir)
    spec = _read_spec(folder)
    if spec is None:
        raise FileNotFoundError(f"no tuning run in {run_dir}: tune_spec.json is missing")
    # a re-asked generation written twice (kill between rows and checkpoint) counts once
    history = pd.DataFrame(_history(folder).read())
    if len(history):
        history = history.sort_values(["generation", "index"]).reset_index(drop=True)
    complete = bool(len(history)) and int(history["generation"].max()) == spec.generations - 1 \
        and (history["generation"] == spec.generations - 1).sum() == (
            history[history["generation"] == 0].shape[0])
    return TuneResult(spec, run_dir, history, complete)
