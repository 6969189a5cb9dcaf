"""The GP loss search loop: gplearn trees, tournament selection, batched fitness, resume.

One generation: sanity-filter every candidate on a probe batch (rejects are never trained),
look each up in the equivalence cache (functionally equal losses are trained once), train
the rest population-batched (:mod:`ngl.fitness`) through any ``concurrent.futures.Executor``,
append one history row per candidate as soon as its chunk finishes, then select and vary
(gplearn's crossover and subtree/hoist/point mutation) and checkpoint population + RNG.

All candidates of the whole search start from the same initial weights and see the same
batches (common random numbers), so fitness differences come from the loss alone and cached
results stay valid across generations. Fitness is accuracy on the *search-validation* split
(every row says so in ``split``); the held-out test split is never touched by a search. A
killed run resumes from its last checkpoint (or, without one, by replaying the GP from the
history) and reaches the same result as an uninterrupted run.

Beside the population: the spec's ``references`` are trained once before generation 0 with
the same data, budget and seed (``references.jsonl``), and after the last generation the hall
of fame's top ``rescore`` entries and every reference are retrained with ``rescore_seeds``
other seeds (:func:`ngl.gp.rundir.rescore_seed`; ``rescore_plan.json`` freezes what is
rescored, ``rescore.jsonl`` holds one row per loss and seed). Neither enters selection, the
cache or the history; both resume like the history (only missing rows are trained).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ngl.gp.executors import InProcessExecutor, results_in_order
from ngl.gp.expression import LossExpression
from ngl.gp.result import SearchResult, load_result, summarise_generations
from ngl.gp.rundir import (
    CHECKPOINT,
    HISTORY,
    OPTIONS,
    PRE_01_CONFIG,
    SPEC,
    RunDirError,
    check_bracket,
    check_checkpoint_seal,
    check_user_operators,
    config_diff,
    history_rows,
    read_checkpoint,
    read_rescore_plan,
    read_run_files,
    reference_rows,
    rescore_rows,
    rng_from_json,
    rng_to_json,
    run_dir_lock,
    search_folder,
    search_rows,
)
from ngl.gp.sanity import check_candidate, make_probe
from ngl.gp.side import SideTrainings
from ngl.gp.spec import RunOptions, SearchSpec
from ngl.gp.variation import Variation, selection_scores
from ngl.gp.worker import evaluate_chunk, load_search_data
from ngl.io.config import ConfigError, require_available
from ngl.io.paths import search_run_dir
from ngl.io.records import write_json_atomic

__all__ = ["GPSearch", "run_search", "resume", "selection_scores"]

RESULT_FIELDS = ("val_accuracy", "val_ce", "status", "final_train_loss", "steps_done", "rung",
                 "rung_accuracies", "rung_ces")
"""What a cache hit takes over from the row of the candidate that was trained."""

class GPSearch(SideTrainings):
    """A resumable search of ``spec`` in ``run_dir`` (default ``runs/search/<spec key>``).

    ``options`` say how it runs (device, chunk size...; never part of the result);
    ``callback(summary_row, search)`` is called after each generation (live plots);
    ``executor`` is any ``concurrent.futures.Executor`` (default: in-process).
    """

    def __init__(self, spec: SearchSpec, run_dir: str | os.PathLike | None = None,
                 options: RunOptions | None = None, executor: Executor | None = None,
                 progress: bool = True, callback: Callable[[dict, GPSearch], None] | None = None):
        if not isinstance(spec, SearchSpec):
            raise TypeError(f"spec must be a SearchSpec, got {type(spec).__name__}")
        self.spec = spec
        self.options = options if options is not None else RunOptions()
        self.run_dir = Path(run_dir) if run_dir is not None else search_run_dir(spec.key)
        self.executor = executor or InProcessExecutor()
        self.progress = progress
        self.callback = callback
        self.pset = spec.primitive_set
        self.variation = Variation(spec)
        self._stop = False
        self.probe = None
        self.num_classes: int | None = None

    # paths
    @property
    def history_path(self) -> Path:
        return self.run_dir / HISTORY

    def _check_run_dir(self) -> None:
        """The directory must hold this spec (or nothing yet); nothing is written here."""
        # a folder of ngl before 0.1 (config.json) is refused by read_run_files in one line
        if (self.run_dir / SPEC).exists() or (self.run_dir / PRE_01_CONFIG).exists():
            files = read_run_files(self.run_dir)
            saved = files.spec
            if saved != self.spec:
                raise RunDirError(
                    f"{self.run_dir} holds a search with another spec "
                    f"({config_diff(saved.to_dict(), self.spec.to_dict())}); "
                    "use another run directory, or resume this one (ngl.resume / python -m ngl "
                    "resume)")
            check_bracket(self.run_dir, self.spec, files)
        self._user_ops = check_user_operators(self.run_dir, self.spec)

    def _start_sitting(self) -> None:
        """Once every file has been checked: freeze the spec (first sitting), record the
        options (``options.json``, the last used, which ``resume`` takes) and the sitting."""
        folder = search_folder(self.run_dir)
        folder.freeze(self.spec.to_dict())
        write_json_atomic(self.run_dir / OPTIONS, self.options.to_dict())
        folder.record_sitting(self.options.to_dict(), num_classes=self.num_classes,
                              user_operators=self._user_ops)

    def request_stop(self) -> None:
        """Stop after the current chunk (the checkpoint keeps everything done so far)."""
        self._stop = True

    # -- population (ngl.gp.variation) -----------------------------------------------------------
    def _initial_population(self, rng: np.random.RandomState) -> list[tuple[str, str, list[str]]]:
        return self.variation.initial_population(rng)

    def _next_population(self, texts: list[str], scores: np.ndarray,
                         rng: np.random.RandomState) -> list[tuple[str, str, list[str]]]:
        return self.variation.next_population(texts, scores, rng)

    # -- evaluation ---------------------------------------------------------------------------
    def _evaluate_generation(self, gen: int, population: list[tuple[str, str, list[str]]],
                             cache: dict[str, dict], done_rows: dict[int, dict]) -> list[dict]:
        """Rows for every candidate of ``gen``; rows in ``done_rows`` (by index) are reused."""
        spec = self.spec
        rows: dict[int, dict] = dict(done_rows)
        to_train: dict[str, list[int]] = {}  # fingerprint -> candidate indices (trained once)
        for i, (text, origin, parents) in enumerate(population):
            if i in rows:
                continue
            expr = LossExpression.parse(text)
            report = check_candidate(expr, self.probe,
                                     equivalence="value_and_gradient" if spec.equivalence == "none"
                                     else spec.equivalence)
            fp = report.fingerprint if spec.equivalence != "none" or not report.ok else expr.key
            base = {"run": spec.key, "split": "search_validation", "generation": gen, "index": i,
                    "key": expr.key, "expression": text,
                    "size": expr.size, "depth": expr.depth, "origin": origin, "parents": parents,
                    "fingerprint": fp, "reason": report.detail, "cache_hit": False, "cache_of": None,
                    "val_accuracy": None, "val_ce": None, "train_time_s": None, "steps_done": None,
                    "final_train_loss": None, "rung": None, "rung_accuracies": None,
                    "rung_ces": None}
            if not report.ok:
                rows[i] = {**base, "status": f"rejected_{report.status}", "fitness": -1.0}
            elif fp in cache:
                hit = cache[fp]
                rows[i] = {**base, **{k: hit.get(k) for k in RESULT_FIELDS},
                           "train_time_s": 0.0, "cache_hit": True, "cache_of": hit["key"]}
            else:
                rows[i] = base
                to_train.setdefault(fp, []).append(i)
        # rows decided without training go to disk now
        fresh = [rows[i] for i in sorted(rows) if i not in done_rows and "status" in rows[i]]
        for r in fresh:
            r["fitness"] = self._fitness(r)
        search_rows(self.run_dir, HISTORY, self.spec).append(fresh)

        # one representative per fingerprint, in fixed chunks: a chunk is the unit of resume;
        # with halving a chunk is one bracket of the spec, so chunk_size cannot change survivors
        reps = [idx[0] for idx in to_train.values()]
        size = self.spec.halving.bracket if self.spec.halving else self.options.chunk_size
        chunks = [reps[k:k + size] for k in range(0, len(reps), size)]
        bar = tqdm(total=len(population), desc=f"generation {gen}", leave=False,
                   disable=not self.progress)
        bar.update(len(population) - sum(len(v) for v in to_train.values()))
        texts = [[population[i][0] for i in ch] for ch in chunks]
        in_process = isinstance(self.executor, InProcessExecutor)
        for chunk, results in zip(chunks, self._run_chunks(texts, bar.update), strict=False):
            chunk_rows = []
            for i, res in zip(chunk, results, strict=True):
                fp = rows[i]["fingerprint"]
                rows[i].update(res)
                rows[i]["fitness"] = self._fitness(rows[i])
                chunk_rows.append(rows[i])
                cache[fp] = rows[i]
                for j in to_train[fp][1:]:  # equivalent candidates of the same generation
                    rows[j].update({k: res[k] for k in RESULT_FIELDS},
                                   train_time_s=0.0, cache_hit=True, cache_of=rows[i]["key"])
                    rows[j]["fitness"] = self._fitness(rows[j])
                    chunk_rows.append(rows[j])
            search_rows(self.run_dir, HISTORY, self.spec).append(chunk_rows)
            # in-process the bar advanced as each candidate finished; add its equivalents
            bar.update(sum(len(to_train[rows[i]["fingerprint"]]) - (1 if in_process else 0)
                           for i in chunk))
            if self._stop:
                break
        bar.close()
        if self._stop and any("status" not in rows[i] for i in rows):
            raise KeyboardInterrupt("search stopped on request; resume continues from here")
        return [rows[i] for i in range(len(population))]

    def _run_chunks(self, chunks: list[list[str]], progress: Callable[[int], object]):
        """Yield each chunk's results in order (see :meth:`_run_tasks`)."""
        spec_dict, options_dict = self.spec.to_dict(), self.options.to_dict()
        yield from self._run_tasks([(evaluate_chunk, (spec_dict, options_dict, texts))
                                    for texts in chunks], progress)

    def _run_tasks(self, tasks: list[tuple[Callable, tuple]], progress: Callable[[int], object]):
        """Each task's results in task order (:func:`ngl.gp.executors.results_in_order`)."""
        return results_in_order(self.executor, tasks, progress)

    def _fitness(self, row: dict) -> float:
        if row["status"] != "ok" or row.get("val_accuracy") is None:
            return -1.0
        return float(row["val_accuracy"]) - self.spec.parsimony_coefficient * row["size"]

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        """Run (or continue) the search to ``config.generations``; safe to call again after a kill.

        The run directory is locked while the search runs (a second process on it fails at
        once); the checkpoint must belong to this configuration, and a run whose checkpoint is
        missing is rebuilt exactly by replaying the GP from its seed and the recorded fitness.
        """
        device = self.options.resolved_device()
        require_available(device)  # before anything is written
        if self.options.cuda_graph and not device.startswith("cuda"):
            raise ConfigError(f"cuda_graph=True needs a CUDA device, but device="
                              f"{self.options.device!r} resolves to {device!r} here")
        # the data must load as asked (folder, subset sizes) before a run directory exists
        spec = self.spec
        try:
            load_search_data(spec.dataset, self.options.data_root, spec.n_train, spec.n_val,
                       spec.data_seed, "cpu")
        except ValueError as exc:  # e.g. n_train larger than the split: the spec cannot run
            raise ConfigError(f"{spec.dataset}: {exc}") from None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with run_dir_lock(self.run_dir):
            return self._run_locked()

    def _run_locked(self) -> SearchResult:
        spec = self.spec
        self._check_run_dir()
        # the number of classes fixes the probe batch of the sanity filter
        num_classes = load_search_data(spec.dataset, self.options.data_root, spec.n_train, spec.n_val,
                                 spec.data_seed, "cpu").num_classes
        self.num_classes = num_classes  # recorded with the sitting: a result's chance level
        self.probe = make_probe(num_classes, n=spec.probe_size)
        ckpt_path = self.run_dir / CHECKPOINT
        ckpt = read_checkpoint(ckpt_path, spec) if ckpt_path.exists() else None
        history = history_rows(self.run_dir, spec)
        # the side files are checked before anything trains (rows of another spec refused)
        reference_rows(self.run_dir, spec)
        rescore_rows(self.run_dir, spec)
        read_rescore_plan(self.run_dir, spec)
        gen, population, rng, done_rows = self._restore(history, ckpt)
        self._start_sitting()
        if not (self.run_dir / CHECKPOINT).exists():
            self._checkpoint(gen, population, rng)
        self._train_references()  # before generation 0, once: never part of the population
        # the cache is rebuilt from the history: every trained (not cached) row
        cache: dict[str, dict] = {}
        for r in history:
            if (r["generation"] < gen or r["index"] in done_rows) and \
                    r["status"] in ("ok", "nonfinite") and not r["cache_hit"]:
                cache.setdefault(r["fingerprint"], r)

        while gen < spec.generations:
            start = time.perf_counter()
            rows = self._evaluate_generation(gen, population, cache, done_rows)
            done_rows = {}
            scores = selection_scores(rows, spec)
            next_pop = (self._next_population([r["expression"] for r in rows], scores, rng)
                        if gen + 1 < spec.generations else [])
            gen += 1
            self._checkpoint(gen, next_pop, rng)
            population = next_pop
            if self.callback is not None:
                summary = summarise_generations(pd.DataFrame(rows)).iloc[0].to_dict()
                summary["wall_time_s"] = time.perf_counter() - start
                self.callback(summary, self)
            if self._stop:
                break
        if gen >= spec.generations and not self._stop:
            self._rescore()
        return load_result(self.run_dir)

    # -- restoring a run ------------------------------------------------------------------------
    def _restore(self, history: list[dict], ckpt: dict | None):
        """(generation, population, rng, rows already done in that generation) to continue from."""
        if ckpt is None:
            return self._replay(history)
        ckpt_path = self.run_dir / CHECKPOINT
        gen = ckpt["generation"]
        population = [tuple(p) for p in ckpt["population"]]
        done_rows = {r["index"]: r for r in history if r["generation"] == gen}
        counts = {g: sum(r["generation"] == g for r in history) for g in range(gen)}
        missing = [g for g, n in counts.items() if n < self.spec.population_size]
        if missing:
            raise RunDirError(
                f"{ckpt_path} says generation(s) {missing} are done but {HISTORY} lacks their "
                f"rows; restore {HISTORY} (continuing would lose those results for good)")
        later = sorted({r["generation"] for r in history if r["generation"] > gen})
        if later:
            raise RunDirError(
                f"{ckpt_path} is at generation {gen} but {HISTORY} already holds generation(s) "
                f"{later}: the checkpoint is older than the history. Move {ckpt_path.name} aside "
                "and run again: the search is then rebuilt from the history")
        size = 0 if gen == self.spec.generations else self.spec.population_size
        if len(population) != size:
            raise RunDirError(
                f"{ckpt_path}: the population holds {len(population)} candidates at generation "
                f"{gen}, the spec has {size}; move {ckpt_path.name} aside and run again: the "
                "search is then rebuilt exactly from the history")
        self._check_population(gen, population, done_rows)
        check_checkpoint_seal(ckpt_path, ckpt)  # last: the messages above say more
        return gen, population, rng_from_json(ckpt["rng_state"]), done_rows

    def _replay(self, history: list[dict]):
        """Rebuild the state without a checkpoint: the GP's only randomness is its seeded RNG,
        so replaying initialisation and selection on the recorded fitness is exact."""
        spec = self.spec
        rng = np.random.RandomState(spec.seed)
        population = self._initial_population(rng)
        by_gen: dict[int, dict[int, dict]] = {}
        for r in history:
            by_gen.setdefault(r["generation"], {})[r["index"]] = r
        gen = 0
        while gen < spec.generations:
            rows = by_gen.get(gen, {})
            self._check_population(gen, population, rows)
            if len(rows) < len(population):
                extra = sorted(g for g in by_gen if g > gen)
                if extra:
                    raise RunDirError(
                        f"{self.run_dir / HISTORY}: generation {gen} is incomplete but "
                        f"generation(s) {extra} follow it; the history cannot be replayed")
                return gen, population, rng, rows
            scores = selection_scores([rows[i] for i in range(len(population))], spec)
            texts = [rows[i]["expression"] for i in range(len(population))]
            population = (self._next_population(texts, scores, rng)
                          if gen + 1 < spec.generations else [])
            gen += 1
        return gen, population, rng, {}

    def _check_population(self, gen: int, population: list, rows: dict[int, dict]) -> None:
        """The history's rows of ``gen`` must be the candidates the state says were trained."""
        for i, r in rows.items():
            if i >= len(population) or r["expression"] != population[i][0]:
                expected = population[i][0] if i < len(population) else "(no such candidate)"
                raise RunDirError(
                    f"{self.run_dir / HISTORY}: generation {gen}, index {i} holds "
                    f"{r['expression']!r} but the search state gives {expected!r}: "
                    f"{CHECKPOINT} or {HISTORY} was altered. If {CHECKPOINT} is the damaged one, "
                    "move it aside and run again: the search is then rebuilt from the history")

    def _checkpoint(self, gen: int, population: list, rng: np.random.RandomState) -> None:
        write_json_atomic(self.run_dir / CHECKPOINT, {
            "generation": gen, "population": [list(p) for p in population],
            "rng_state": rng_to_json(rng), "spec_key": self.spec.key,
            "spec": self.spec.to_dict(),
        }, sealed=True)


def run_search(spec: SearchSpec, run_dir: str | os.PathLike | None = None,
               options: RunOptions | None = None, executor: Executor | None = None,
               progress: bool = True,
               callback: Callable[[dict, GPSearch], None] | None = None) -> SearchResult:
    """Run a search (continuing it if ``run_dir`` already holds the same spec)."""
    return GPSearch(spec, run_dir, options, executor=executor, progress=progress,
                    callback=callback).run()


def resume(run_dir: str | os.PathLike, options: RunOptions | None = None,
           executor: Executor | None = None, progress: bool = True,
           callback: Callable[[dict, GPSearch], None] | None = None) -> SearchResult:
    """Continue the search saved in ``run_dir`` (with its last options unless given)."""
    files = read_run_files(Path(run_dir))
    return run_search(files.spec, run_dir, options or files.options, executor=executor,
                      progress=progress, callback=callback)
