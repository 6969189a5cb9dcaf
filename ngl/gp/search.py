"""The GP loss search: gplearn trees, tournament selection, batched fitness, checkpoint/resume.

One generation: sanity-filter every candidate on a probe batch (rejects are never trained),
look each up in the equivalence cache (functionally equal losses are trained once), train
the rest population-batched (``ngl.fitness.population``) through any ``concurrent.futures.Executor``,
append one history row per candidate as soon as its chunk finishes, then select and vary
(gplearn's crossover and subtree/hoist/point mutation) and checkpoint population + RNG.

All candidates of the whole search start from the same initial weights and see the same
batches (common random numbers), so fitness differences come from the loss alone and cached
results stay valid across generations. A killed run resumes from its last checkpoint and,
chunk by chunk, reuses what the history already holds: it reaches the same result as an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PlainSerializer, PlainValidator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ngl.data.datasets import available_datasets
from ngl.fitness.population import TrainBudget
from ngl.gp.executors import InProcessExecutor
from ngl.gp.expression import MAX_DEPTH, MAX_SIZE, LossExpression
from ngl.gp.primitives import PrimitiveSet, preset
from ngl.gp.sanity import check_candidate, make_probe
from ngl.io.config import (
    STRICT,
    AsTuple,
    ConfigError,
    ConfigMixin,
    check_device,
    load_config_file,
    require_available,
)
from ngl.io.paths import search_run_dir
from ngl.io.records import append_rows, exclusive_lock, read_rows, write_json_atomic
from ngl.models.networks import available_models

__all__ = ["SearchConfig", "SearchResult", "GPSearch", "run_search", "resume", "load_result",
           "evaluate_chunk", "RunDirError", "run_dir_lock", "config_diff"]


def _primitive_set(value: Any) -> PrimitiveSet:
    """A PrimitiveSet, a preset name, or the dict that ``PrimitiveSet.to_dict`` writes."""
    if isinstance(value, PrimitiveSet):
        return value
    if isinstance(value, str):
        return preset(value)
    if isinstance(value, dict):
        return PrimitiveSet.from_dict(value)
    raise ValueError(f"expected a PrimitiveSet, a preset name or its dict, got {value!r}")


Probability = Annotated[float, Field(ge=0, le=1)]


@pydantic_dataclass(frozen=True, config=STRICT)
class SearchConfig(ConfigMixin):
    """Everything that determines a search; saved with the run, hashed to name its directory.

    ``seed`` drives the GP (initial trees, selection, variation) and the training of every
    candidate (initial weights, batches); ``data_seed`` alone draws the search-train /
    search-validation split, so changing the GP seed never changes the data.
    """

    primitive_set: Annotated[PrimitiveSet, PlainValidator(_primitive_set),
                             PlainSerializer(lambda p: p.to_dict())] = field(
        default_factory=lambda: preset("paper"))
    population_size: Annotated[int, Field(ge=2)] = 16
    generations: Annotated[int, Field(ge=1)] = 5
    seed: Annotated[int, Field(ge=0)] = 0
    data_seed: Annotated[int, Field(ge=0)] = 0
    # variation (the rest of the probability mass is plain reproduction)
    p_crossover: Probability = 0.7
    p_subtree_mutation: Probability = 0.1
    p_hoist_mutation: Probability = 0.05
    p_point_mutation: Probability = 0.1
    p_point_replace: Probability = 0.05
    tournament_size: Annotated[int, Field(ge=1)] = 3
    elitism: Annotated[int, Field(ge=0)] = 1
    parsimony_coefficient: Annotated[float, Field(ge=0)] = 0.001
    init_depth: Annotated[tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]],
                          AsTuple] = (2, 4)
    # stored populations are re-parsed: limits beyond the parser's would make them unreadable
    max_depth: Annotated[int, Field(ge=1, le=MAX_DEPTH)] = 8
    max_size: Annotated[int, Field(ge=1, le=MAX_SIZE)] = 40
    seed_expressions: Annotated[tuple[str, ...], AsTuple] = ()
    # fitness
    dataset: str = "digits"
    data_root: str | None = None
    n_train: Annotated[int, Field(ge=1)] | None = None
    n_val: Annotated[int, Field(ge=1)] | None = None
    model: str = "small_cnn"
    budget: TrainBudget = field(default_factory=lambda: TrainBudget(steps=100, batch_size=128))
    device: str = "auto"
    chunk_size: Annotated[int, Field(ge=1)] = 16
    cuda_graph: bool = False  # replay each training step as a CUDA graph (CUDA only; ~21x at P=64)
    # sanity filter and equivalence cache
    probe_size: Annotated[int, Field(ge=1)] = 64
    equivalence: Literal["value_and_gradient", "gradient", "none"] = "value_and_gradient"
    hall_of_fame_size: Annotated[int, Field(ge=1)] = 10

    def __post_init__(self) -> None:
        if self.elitism >= self.population_size:
            raise ValueError(f"elitism={self.elitism}: expected 0 <= elitism < "
                             f"population_size ({self.population_size})")
        probs = [self.p_crossover, self.p_subtree_mutation, self.p_hoist_mutation,
                 self.p_point_mutation]
        if sum(probs) > 1 + 1e-9:
            raise ValueError(f"variation probabilities (p_crossover, p_subtree_mutation, "
                             f"p_hoist_mutation, p_point_mutation) sum to {sum(probs):.3f}; "
                             "expected <= 1")
        lo, hi = self.init_depth
        if not lo <= hi <= self.max_depth:
            raise ValueError(f"init_depth={list(self.init_depth)}: expected "
                             f"1 <= low <= high <= max_depth ({self.max_depth})")
        if self.dataset not in available_datasets():
            raise ValueError(f"dataset={self.dataset!r}: expected one of "
                             f"{available_datasets()}")
        if self.model not in available_models():
            raise ValueError(f"model={self.model!r}: expected one of "
                             f"{available_models()[:8]}...")
        check_device(self.device)
        if self.cuda_graph and self.device == "cpu":
            raise ValueError("cuda_graph=True needs a CUDA device, got device='cpu'")
        for text in self.seed_expressions:
            LossExpression.parse(text, self.primitive_set)  # raises with the position of the problem

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


# -- fitness evaluation (runs in a worker; everything it needs travels in plain arguments) ---
@functools.lru_cache(maxsize=2)
def _load_data(dataset: str, root: str | None, n_train: int | None, n_val: int | None,
               seed: int, device: str):
    """The search's data on its device, once per worker process."""
    from ngl.data.datasets import load_cached

    return load_cached(dataset, root, n_train, n_val, None, seed).to(device)


def evaluate_chunk(config: dict, texts: Sequence[str]) -> list[dict]:
    """Train the candidate losses ``texts`` together; a plain, picklable function for executors."""
    from ngl.fitness.population import train_population
    from ngl.models.networks import build_model

    cfg = SearchConfig.from_dict(config)
    device = cfg.resolved_device()
    data = _load_data(cfg.dataset, cfg.data_root, cfg.n_train, cfg.n_val, cfg.data_seed, device)
    c, h, _w = data.input_shape
    model_fn = functools.partial(build_model, cfg.model, c, data.num_classes, h)
    losses = [LossExpression.parse(t).to_module(validate=False) for t in texts]
    results = train_population(model_fn, losses, data, cfg.budget, seed=cfg.seed, device=device,
                               cuda_graph=cfg.cuda_graph)
    return [r.to_dict() for r in results]


# -- results ---------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """What a search produced: the tidy history, per-generation summary and hall of fame."""

    config: SearchConfig
    run_dir: Path
    history: pd.DataFrame
    complete: bool

    @property
    def evaluated(self) -> pd.DataFrame:
        """Rows whose loss was trained or taken from the cache (not rejected)."""
        h = self.history
        return h[h["status"].isin(["ok", "nonfinite"])] if len(h) else h

    def hall_of_fame(self, n: int | None = None) -> pd.DataFrame:
        """Best distinct losses by validation accuracy (ties: smaller tree first)."""
        ok = self.evaluated
        if not len(ok):
            return ok
        ok = ok[ok["status"] == "ok"].sort_values(["val_accuracy", "size", "generation"],
                                                  ascending=[False, True, True])
        ok = ok.drop_duplicates("fingerprint").drop_duplicates("key")
        return ok.head(n or self.config.hall_of_fame_size).reset_index(drop=True)

    @property
    def best(self) -> LossExpression:
        hof = self.hall_of_fame(1)
        if not len(hof):
            raise ValueError(f"no candidate of {self.run_dir} trained successfully yet")
        return LossExpression.parse(hof.iloc[0]["expression"])

    def generation_summary(self) -> pd.DataFrame:
        return summarise_generations(self.history)


def summarise_generations(history: pd.DataFrame) -> pd.DataFrame:
    """One row per generation: fitness quantiles, diversity, tree size, rejected/cached counts."""
    if not len(history):
        return pd.DataFrame()
    rows = []
    for gen, part in history.groupby("generation"):
        acc = part.loc[part["status"] == "ok", "val_accuracy"].astype(float)
        rows.append({
            "generation": int(gen),
            "candidates": len(part),
            "best": acc.max() if len(acc) else math.nan,
            "q75": acc.quantile(0.75) if len(acc) else math.nan,
            "median": acc.median() if len(acc) else math.nan,
            "q25": acc.quantile(0.25) if len(acc) else math.nan,
            "distinct_functions": part["fingerprint"].nunique(),
            "distinct_expressions": part["key"].nunique(),
            "mean_size": part["size"].mean(),
            "rejected": int(part["status"].str.startswith("rejected").sum()),
            "nonfinite": int((part["status"] == "nonfinite").sum()),
            "cache_hits": int(part["cache_hit"].sum()),
            "trained": int((~part["cache_hit"] & part["status"].isin(["ok", "nonfinite"])).sum()),
            "train_time_s": float(part.loc[~part["cache_hit"], "train_time_s"].fillna(0).sum()),
        })
    return pd.DataFrame(rows)


# -- the search ------------------------------------------------------------------------------
def _rng_to_json(rng: np.random.RandomState) -> list:
    name, keys, pos, has_gauss, cached = rng.get_state()
    return [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]


def _rng_from_json(state: list) -> np.random.RandomState:
    rng = np.random.RandomState()
    name, keys, pos, has_gauss, cached = state
    rng.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return rng


class GPSearch:
    """A resumable search in ``run_dir`` (default ``runs/search/<config key>``).

    ``callback(summary_row, search)`` is called after each generation (live plots);
    ``executor`` is any ``concurrent.futures.Executor`` (default: in-process).
    """

    HISTORY = "history.jsonl"
    CHECKPOINT = "checkpoint.json"
    CONFIG = "config.json"

    def __init__(self, config: SearchConfig, run_dir: str | os.PathLike | None = None,
                 executor: Executor | None = None, progress: bool = True,
                 callback: Callable[[dict, GPSearch], None] | None = None):
        if not isinstance(config, SearchConfig):
            raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else search_run_dir(config.key)
        self.executor = executor or InProcessExecutor()
        self.progress = progress
        self.callback = callback
        self.pset = config.primitive_set
        self._stop = False
        self.probe = None

    # paths
    @property
    def history_path(self) -> Path:
        return self.run_dir / self.HISTORY

    def _check_run_dir(self) -> None:
        cfg_path = self.run_dir / self.CONFIG
        if cfg_path.exists():
            saved = _read_config(cfg_path)
            if saved != self.config:
                raise RunDirError(
                    f"{self.run_dir} holds a search with another configuration "
                    f"({config_diff(saved.to_dict(), self.config.to_dict())}); "
                    "use a new run_dir or resume(run_dir)"
                )
        else:
            write_json_atomic(cfg_path, self.config.to_dict())

    def request_stop(self) -> None:
        """Stop after the current chunk (the checkpoint keeps everything done so far)."""
        self._stop = True

    # -- population helpers ------------------------------------------------------------------
    def _initial_population(self, rng: np.random.RandomState) -> list[tuple[str, str, list[str]]]:
        pop: list[tuple[str, str, list[str]]] = []
        for text in self.config.seed_expressions[: self.config.population_size]:
            pop.append((str(LossExpression.parse(text, self.pset)), "seed", []))
        while len(pop) < self.config.population_size:
            prog = self.pset.random_program(rng, self.config.init_depth)
            expr = LossExpression.from_program(prog, self.pset)
            pop.append((str(expr), "init", []))
        return pop

    def _programs(self, texts: Sequence[str]) -> list:
        cfg = self.config
        return [LossExpression.parse(t).to_program(self.pset, init_depth=cfg.init_depth,
                                                   p_point_replace=cfg.p_point_replace)
                for t in texts]

    def _tournament(self, scores: np.ndarray, rng: np.random.RandomState) -> int:
        contenders = rng.randint(0, len(scores), self.config.tournament_size)
        return int(contenders[np.argmax(scores[contenders])])

    def _next_population(self, texts: list[str], scores: np.ndarray,
                         rng: np.random.RandomState) -> list[tuple[str, str, list[str]]]:
        cfg = self.config
        programs = self._programs(texts)
        keys = [LossExpression.parse(t).key for t in texts]
        new: list[tuple[str, str, list[str]]] = []
        seen: set[str] = set()
        for i in np.argsort(-scores, kind="stable"):
            if len(new) >= cfg.elitism:
                break
            if keys[i] not in seen and np.isfinite(scores[i]) and scores[i] > -1:
                new.append((texts[i], "elite", [keys[i]]))
                seen.add(keys[i])
        cuts = np.cumsum([cfg.p_crossover, cfg.p_subtree_mutation, cfg.p_hoist_mutation,
                          cfg.p_point_mutation])
        while len(new) < cfg.population_size:
            parent = self._tournament(scores, rng)
            prog = programs[parent]
            parents = [keys[parent]]
            method = rng.uniform()
            if method < cuts[0]:
                donor = self._tournament(scores, rng)
                child, _, _ = prog.crossover(programs[donor].program, rng)
                origin = "crossover"
                parents.append(keys[donor])
            elif method < cuts[1]:
                child, _, _ = prog.subtree_mutation(rng)
                origin = "subtree_mutation"
            elif method < cuts[2]:
                child, _ = prog.hoist_mutation(rng)
                origin = "hoist_mutation"
            elif method < cuts[3]:
                child, _ = prog.point_mutation(rng)
                origin = "point_mutation"
            else:
                child, origin = prog.reproduce(), "reproduction"
            expr = LossExpression.from_program(child, self.pset)
            if expr.depth > cfg.max_depth or expr.size > cfg.max_size:
                # the child is discarded: what enters the population is a copy of the parent
                expr, origin = LossExpression.from_program(prog, self.pset), "reproduction"
                parents = [keys[parent]]
            new.append((str(expr), origin, parents))
        return new

    # -- evaluation ---------------------------------------------------------------------------
    def _evaluate_generation(self, gen: int, population: list[tuple[str, str, list[str]]],
                             cache: dict[str, dict], done_rows: dict[int, dict]) -> list[dict]:
        """Rows for every candidate of ``gen``; rows in ``done_rows`` (by index) are reused."""
        from tqdm.auto import tqdm

        cfg = self.config
        rows: dict[int, dict] = dict(done_rows)
        to_train: dict[str, list[int]] = {}  # fingerprint -> candidate indices (trained once)
        for i, (text, origin, parents) in enumerate(population):
            if i in rows:
                continue
            expr = LossExpression.parse(text)
            report = check_candidate(expr, self.probe,
                                     equivalence="value_and_gradient" if cfg.equivalence == "none"
                                     else cfg.equivalence)
            fp = report.fingerprint if cfg.equivalence != "none" or not report.ok else expr.key
            base = {"run": cfg.key, "generation": gen, "index": i, "key": expr.key, "expression": text,
                    "size": expr.size, "depth": expr.depth, "origin": origin, "parents": parents,
                    "fingerprint": fp, "reason": report.detail, "cache_hit": False, "cache_of": None,
                    "val_accuracy": None, "val_ce": None, "train_time_s": None, "steps_done": None,
                    "final_train_loss": None}
            if not report.ok:
                rows[i] = {**base, "status": f"rejected_{report.status}", "fitness": -1.0}
            elif fp in cache:
                hit = cache[fp]
                rows[i] = {**base, **{k: hit[k] for k in ("val_accuracy", "val_ce", "status",
                                                          "final_train_loss", "steps_done")},
                           "train_time_s": 0.0, "cache_hit": True, "cache_of": hit["key"]}
            else:
                rows[i] = base
                to_train.setdefault(fp, []).append(i)
        # rows decided without training go to disk now
        fresh = [rows[i] for i in sorted(rows) if i not in done_rows and "status" in rows[i]]
        for r in fresh:
            r["fitness"] = self._fitness(r)
        append_rows(self.history_path, fresh)

        # one representative per fingerprint, in fixed chunks: a chunk is the unit of resume
        reps = [idx[0] for idx in to_train.values()]
        chunks = [reps[k:k + cfg.chunk_size] for k in range(0, len(reps), cfg.chunk_size)]
        bar = tqdm(total=len(population), desc=f"generation {gen}", leave=False,
                   disable=not self.progress)
        bar.update(len(population) - sum(len(v) for v in to_train.values()))
        texts = [[population[i][0] for i in ch] for ch in chunks]
        for chunk, results in zip(chunks, self._run_chunks(texts), strict=False):
            chunk_rows = []
            for i, res in zip(chunk, results, strict=True):
                fp = rows[i]["fingerprint"]
                rows[i].update(res)
                rows[i]["fitness"] = self._fitness(rows[i])
                chunk_rows.append(rows[i])
                cache[fp] = rows[i]
                for j in to_train[fp][1:]:  # equivalent candidates of the same generation
                    rows[j].update({k: res[k] for k in ("val_accuracy", "val_ce", "status",
                                                        "final_train_loss", "steps_done")},
                                   train_time_s=0.0, cache_hit=True, cache_of=rows[i]["key"])
                    rows[j]["fitness"] = self._fitness(rows[j])
                    chunk_rows.append(rows[j])
            append_rows(self.history_path, chunk_rows)
            bar.update(sum(len(to_train[rows[i]["fingerprint"]]) for i in chunk))
            if self._stop:
                break
        bar.close()
        if self._stop and any("status" not in rows[i] for i in rows):
            raise KeyboardInterrupt("search stopped on request; resume continues from here")
        return [rows[i] for i in range(len(population))]

    def _run_chunks(self, chunks: list[list[str]]):
        """Yield each chunk's results in order. In-process: one chunk at a time, so every finished
        chunk reaches the history before the next starts; other executors get all at once."""
        cfg_dict = self.config.to_dict()
        if isinstance(self.executor, InProcessExecutor):
            for texts in chunks:
                yield evaluate_chunk(cfg_dict, texts)
            return
        futures = [self.executor.submit(evaluate_chunk, cfg_dict, texts) for texts in chunks]
        pending = {f: k for k, f in enumerate(futures)}
        ready: dict[int, list[dict]] = {}
        nxt = 0
        for fut in as_completed(futures):
            ready[pending[fut]] = fut.result()
            while nxt in ready:  # hand results over in chunk order: the history stays ordered
                yield ready.pop(nxt)
                nxt += 1

    def _fitness(self, row: dict) -> float:
        if row["status"] != "ok" or row.get("val_accuracy") is None:
            return -1.0
        return float(row["val_accuracy"]) - self.config.parsimony_coefficient * row["size"]

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        """Run (or continue) the search to ``config.generations``; safe to call again after a kill.

        The run directory is locked while the search runs (a second process on it fails at
        once); the checkpoint must belong to this configuration, and a run whose checkpoint is
        missing is rebuilt exactly by replaying the GP from its seed and the recorded fitness.
        """
        cfg = self.config
        require_available(cfg.resolved_device())  # before anything is written
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with run_dir_lock(self.run_dir):
            return self._run_locked()

    def _run_locked(self) -> SearchResult:
        cfg = self.config
        self._check_run_dir()
        # the number of classes fixes the probe batch of the sanity filter
        num_classes = _load_data(cfg.dataset, cfg.data_root, cfg.n_train, cfg.n_val,
                                 cfg.data_seed, "cpu").num_classes
        self.probe = make_probe(num_classes, n=cfg.probe_size)
        ckpt_path = self.run_dir / self.CHECKPOINT
        ckpt = _read_checkpoint(ckpt_path, cfg) if ckpt_path.exists() else None
        history = _history_rows(self.run_dir, cfg)
        gen, population, rng, done_rows = self._restore(history, ckpt)
        if not (self.run_dir / self.CHECKPOINT).exists():
            self._checkpoint(gen, population, rng)
        # the cache is rebuilt from the history: every trained (not cached) row
        cache: dict[str, dict] = {}
        for r in history:
            if (r["generation"] < gen or r["index"] in done_rows) and \
                    r["status"] in ("ok", "nonfinite") and not r["cache_hit"]:
                cache.setdefault(r["fingerprint"], r)

        while gen < cfg.generations:
            start = time.perf_counter()
            rows = self._evaluate_generation(gen, population, cache, done_rows)
            done_rows = {}
            scores = np.array([r["fitness"] for r in rows], dtype=float)
            next_pop = (self._next_population([r["expression"] for r in rows], scores, rng)
                        if gen + 1 < cfg.generations else [])
            gen += 1
            self._checkpoint(gen, next_pop, rng)
            population = next_pop
            if self.callback is not None:
                summary = summarise_generations(pd.DataFrame(rows)).iloc[0].to_dict()
                summary["wall_time_s"] = time.perf_counter() - start
                self.callback(summary, self)
            if self._stop:
                break
        return load_result(self.run_dir)

    # -- restoring a run ------------------------------------------------------------------------
    def _restore(self, history: list[dict], ckpt: dict | None):
        """(generation, population, rng, rows already done in that generation) to continue from."""
        if ckpt is None:
            return self._replay(history)
        ckpt_path = self.run_dir / self.CHECKPOINT
        gen = ckpt["generation"]
        population = [tuple(p) for p in ckpt["population"]]
        done_rows = {r["index"]: r for r in history if r["generation"] == gen}
        later = sorted({r["generation"] for r in history if r["generation"] > gen})
        if later:
            raise RunDirError(
                f"{ckpt_path} is at generation {gen} but {self.HISTORY} already holds generation(s) "
                f"{later}: the checkpoint is older than the history. Move {ckpt_path.name} aside "
                "and run again: the search is then rebuilt from the history")
        self._check_population(gen, population, done_rows)
        return gen, population, _rng_from_json(ckpt["rng_state"]), done_rows

    def _replay(self, history: list[dict]):
        """Rebuild the state without a checkpoint: the GP's only randomness is its seeded RNG,
        so replaying initialisation and selection on the recorded fitness is exact."""
        cfg = self.config
        rng = np.random.RandomState(cfg.seed)
        population = self._initial_population(rng)
        by_gen: dict[int, dict[int, dict]] = {}
        for r in history:
            by_gen.setdefault(r["generation"], {})[r["index"]] = r
        gen = 0
        while gen < cfg.generations:
            rows = by_gen.get(gen, {})
            self._check_population(gen, population, rows)
            if len(rows) < len(population):
                extra = sorted(g for g in by_gen if g > gen)
                if extra:
                    raise RunDirError(
                        f"{self.run_dir / self.HISTORY}: generation {gen} is incomplete but "
                        f"generation(s) {extra} follow it; the history cannot be replayed")
                return gen, population, rng, rows
            scores = np.array([rows[i]["fitness"] for i in range(len(population))], dtype=float)
            texts = [rows[i]["expression"] for i in range(len(population))]
            population = (self._next_population(texts, scores, rng)
                          if gen + 1 < cfg.generations else [])
            gen += 1
        return gen, population, rng, {}

    def _check_population(self, gen: int, population: list, rows: dict[int, dict]) -> None:
        """The history's rows of ``gen`` must be the candidates the state says were trained."""
        for i, r in rows.items():
            if i >= len(population) or r["expression"] != population[i][0]:
                expected = population[i][0] if i < len(population) else "(no such candidate)"
                raise RunDirError(
                    f"{self.run_dir / self.HISTORY}: generation {gen}, index {i} holds "
                    f"{r['expression']!r} but the search state gives {expected!r}; the history "
                    "does not belong to this run's checkpoint and seed")

    def _checkpoint(self, gen: int, population: list, rng: np.random.RandomState) -> None:
        write_json_atomic(self.run_dir / self.CHECKPOINT, {
            "generation": gen, "population": [list(p) for p in population],
            "rng_state": _rng_to_json(rng), "config_key": self.config.key,
            "config": self.config.to_dict(),
        })


def run_search(config: SearchConfig, run_dir: str | os.PathLike | None = None,
               executor: Executor | None = None, progress: bool = True,
               callback: Callable[[dict, GPSearch], None] | None = None) -> SearchResult:
    """Run a search (continuing it if ``run_dir`` already holds the same configuration)."""
    return GPSearch(config, run_dir, executor=executor, progress=progress, callback=callback).run()


def resume(run_dir: str | os.PathLike, executor: Executor | None = None, progress: bool = True,
           callback: Callable[[dict, GPSearch], None] | None = None) -> SearchResult:
    """Continue the search saved in ``run_dir`` from its last checkpoint."""
    config = _read_config(Path(run_dir) / GPSearch.CONFIG)
    return run_search(config, run_dir, executor=executor, progress=progress, callback=callback)


def load_result(run_dir: str | os.PathLike) -> SearchResult:
    """Read a (finished or partial) search from disk; needs only config.json and the history.

    Each (generation, index) is counted once (the first row written for it), and whether the
    search is complete is read from the history itself, so a lost or corrupt checkpoint does
    not hide results.
    """
    run_dir = Path(run_dir)
    config = _read_config(run_dir / GPSearch.CONFIG)
    history = pd.DataFrame(_history_rows(run_dir, config))
    complete = False
    if len(history):
        history = history.sort_values(["generation", "index"]).reset_index(drop=True)
        counts = history.groupby("generation")["index"].nunique()
        complete = all(counts.get(g, 0) == config.population_size
                       for g in range(config.generations))
    return SearchResult(config=config, run_dir=run_dir, history=history, complete=complete)


# -- run-directory files ---------------------------------------------------------------------
class RunDirError(ValueError):
    """A run directory that cannot be used as it is; the message says which file and what to do."""


def run_dir_lock(run_dir: Path):
    """An exclusive lock on a search's run directory (``search.lock`` inside it)."""
    return exclusive_lock(run_dir / "search.lock", f"search directory {run_dir}")


def config_diff(old: dict, new: dict, prefix: str = "") -> str:
    """``field: old -> new`` for every differing field (nested dicts as ``budget.steps``)."""
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "(absent)"), new.get(k, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            inner = config_diff(a, b, f"{prefix}{k}.")
            if inner:
                parts.append(inner)
        elif a != b:
            parts.append(f"{prefix}{k}: {json.dumps(a)} -> {json.dumps(b)}")
    return ", ".join(parts)


def _read_config(path: Path) -> SearchConfig:
    if not path.exists():
        raise FileNotFoundError(f"no search in {path.parent}: {path.name} is missing")
    try:
        return load_config_file(SearchConfig, path)
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None


def _read_checkpoint(path: Path, config: SearchConfig) -> dict:
    """The checkpoint, checked: readable, complete, and written by this very configuration."""
    what_to_do = (f"move {path.name} aside (e.g. `mv {path} {path}.bad`) and run again: the "
                  "search is then rebuilt exactly from the history")
    try:
        ckpt = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path} is corrupt ({exc}); {what_to_do}") from None
    missing = [k for k in ("generation", "population", "rng_state", "config_key")
               if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise RunDirError(f"{path} lacks {missing}; {what_to_do}")
    if ckpt["config_key"] != config.key:
        diff = (config_diff(ckpt["config"], config.to_dict()) if isinstance(ckpt.get("config"), dict)
                else f"config key {ckpt['config_key']} -> {config.key}")
        raise RunDirError(
            f"{path.parent / GPSearch.CONFIG} was changed after the search started ({diff}); "
            "restore it, or start the changed configuration in a new run directory")
    gen, pop = ckpt["generation"], ckpt["population"]
    if not (isinstance(gen, int) and 0 <= gen <= config.generations and isinstance(pop, list)):
        raise RunDirError(f"{path}: generation={gen!r} / population are not valid; {what_to_do}")
    try:
        _rng_from_json(ckpt["rng_state"])
    except (TypeError, ValueError) as exc:
        raise RunDirError(f"{path}: rng_state is not valid ({exc}); {what_to_do}") from None
    return ckpt


def _history_rows(run_dir: Path, config: SearchConfig) -> list[dict]:
    """The history with each (generation, index) once; rows of another configuration refused."""
    path = run_dir / GPSearch.HISTORY
    rows, seen, foreign = [], set(), set()
    for r in read_rows(path):
        if r.get("run") != config.key:
            foreign.add(r.get("run"))
            continue
        ident = (r["generation"], r["index"])
        if ident in seen:
            continue
        seen.add(ident)
        rows.append(r)
    if foreign:
        raise RunDirError(
            f"{path} holds rows of another configuration (run key(s) {sorted(map(str, foreign))}, "
            f"{GPSearch.CONFIG} has {config.key}); {GPSearch.CONFIG} was changed after the search "
            "started: restore it or use a new run directory")
    return rows
