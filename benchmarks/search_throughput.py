"""Search throughput: the same GP loss search run four ways, side by side, in one process.

* ``naive``: no sanity filter, no equivalence cache, one candidate at a time, full budget -- what
  a plain gplearn-with-a-training-fitness user would do: every candidate of every generation is
  trained with `ngl.fitness.train_sequential` (the plain one-model training loop).
* ``filter+cache``: `ngl.gp.GPSearch` with one candidate per chunk: rejects are never trained and
  equivalent losses are trained once, but each candidate still trains alone.
* ``+batching``: the same search with the default chunk (population-batched passes).
* ``+halving``: the same search with successive halving (``SearchSpec.halving``).

Same spec (seed, population, generations, data, budget) for all four. For each it prints the
wall time, candidates evaluated per hour (population x generations over wall time),
candidates trained, candidate-steps trained and the best hall-of-fame loss. The last line is one
JSON object with ``throughput_ratio`` (candidates per hour, ``+halving`` over ``naive``).

Halving section (``+batching`` vs ``+halving``, the comparison of issue 13): candidate-steps and
wall-time ratios; generation 0 is the same population in both runs, so the rung-0 scores of the
halving run are compared with the full-budget scores of the other (Spearman, and whether the
full-budget top 3 of generation 0 reached the last rung); the top 3 of both halls of fame
(overlap) and the best full-budget search-validation accuracy of each.

Agreement (exit status 1 otherwise): a loss trained to the full budget in two runs must score
the same in both (within 0.5 points or 2 validation samples, whichever is larger: float
rounding differs between the one-model loop and batched passes of other compositions);
statuses must match. A fast run that scores losses
differently is not a result.

    .venv/bin/python benchmarks/search_throughput.py     # digits, SearchSpec's defaults, all four
    .venv/bin/python benchmarks/search_throughput.py --dataset fashion_mnist --n-train 3000 \\
        --n-val 1000 --ways batching,halving
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ngl.fitness import SuccessiveHalving, TrainBudget, train_sequential
from ngl.gp import GPSearch, RunOptions, SearchSpec, load_result
from ngl.gp.expression import LossExpression
from ngl.gp.worker import load_search_data
from ngl.io.records import append_rows, json_safe
from ngl.models import build_model

WAYS = ("naive", "filter_cache", "batching", "halving")
LABELS = {"naive": "naive", "filter_cache": "filter+cache", "batching": "+batching",
          "halving": "+halving"}


class NaiveSearch(GPSearch):
    """The GP loop of `GPSearch` (same initial trees, selection and variation) with the plain
    evaluation: every candidate trained alone to the full budget, no filter, no cache."""

    def _evaluate_generation(self, gen, population, cache, done_rows):
        spec = self.spec
        data = load_search_data(spec.dataset, self.options.data_root, spec.n_train, spec.n_val,
                          spec.data_seed, self.options.resolved_device())
        c, h, _w = data.input_shape
        model_fn = functools.partial(build_model, spec.model, c, data.num_classes, h)
        rows = []
        for i, (text, origin, parents) in enumerate(population):
            if i in done_rows:
                rows.append(done_rows[i])
                continue
            expr = LossExpression.parse(text)
            try:
                res = train_sequential(model_fn, [expr.to_module(validate=False)], data,
                                       spec.budget, seed=spec.seed,
                                       device=self.options.resolved_device())[0].to_dict()
            except (RuntimeError, ValueError) as exc:  # e.g. a loss of the wrong shape
                res = {"status": "error", "val_accuracy": None, "val_ce": None,
                       "train_time_s": None, "steps_done": 0, "final_train_loss": None,
                       "reason": str(exc)[:200]}
            row = {"run": spec.key, "split": "search_validation", "generation": gen, "index": i,
                   "key": expr.key, "expression": text, "size": expr.size, "depth": expr.depth,
                   "origin": origin, "parents": parents, "fingerprint": expr.key,
                   "reason": None, "cache_hit": False, "cache_of": None, "rung": None,
                   "rung_accuracies": None, **res}
            row["fitness"] = self._fitness(row)
            append_rows(self.history_path, [row])
            rows.append(row)
        return rows


def run_way(way: str, spec: SearchSpec, root: Path, chunk: int, data_root: str | None) -> dict:
    if way == "halving":
        spec = SearchSpec.from_dict({**spec.to_dict(), "halving": SuccessiveHalving().to_dict()})
    options = RunOptions(chunk_size=1 if way == "filter_cache" else chunk, data_root=data_root)
    cls = NaiveSearch if way == "naive" else GPSearch
    start = time.perf_counter()
    cls(spec, root / way, options, progress=False).run()
    wall = time.perf_counter() - start
    result = load_result(root / way)
    h = result.history
    trained = h[~h["cache_hit"].astype(bool) & h["status"].isin(["ok", "nonfinite", "error"])]
    best = result.hall_of_fame(1).iloc[0]
    n = spec.population_size * spec.generations
    return {"way": way, "wall_s": wall, "candidates": n, "candidates_per_hour": n / wall * 3600,
            "trained": len(trained), "candidate_steps": int(trained["steps_done"].sum()),
            "best": best["expression"], "best_key": best["key"],
            "best_val_accuracy": float(best["val_accuracy"]), "history": h,
            "hall_of_fame": result.hall_of_fame(3)}


def full_budget_scores(run: dict, steps: int) -> pd.DataFrame:
    """Rows of losses trained to the full budget (not cache hits), one per key."""
    h = run["history"]
    full = h[~h["cache_hit"].astype(bool) & h["status"].isin(["ok", "nonfinite"])]
    if "rung" in full and full["rung"].notna().any():
        full = full[(full["status"] == "nonfinite") | (full["steps_done"] == steps)]
    return full.drop_duplicates("key").set_index("key")


def disagreements(runs: dict[str, dict], steps: int, n_val: int) -> tuple[list[str], float]:
    """Losses trained fully in two runs that score differently: by more than the paper's
    margin of 0.5 points or 2 validation samples, whichever is larger. Which candidates share
    a batched pass changes float rounding, which a hundred training steps grow into a few
    samples (seen: 3 of 1,000 on Fashion-MNIST with validation CE equal to 1e-4); a wrong
    batch order or optimizer state moves a score by whole points."""
    tol = max(2 / n_val, 0.005) + 1e-9
    problems, worst = [], 0.0
    names = list(runs)
    for a_i, a in enumerate(names):
        for b in names[a_i + 1:]:
            fa, fb = full_budget_scores(runs[a], steps), full_budget_scores(runs[b], steps)
            for key in fa.index.intersection(fb.index):
                ra, rb = fa.loc[key], fb.loc[key]
                if ra["status"] != rb["status"]:
                    problems.append(f"{key}: status {ra['status']} ({a}) vs {rb['status']} ({b})")
                    continue
                if ra["status"] == "ok":
                    d = abs(float(ra["val_accuracy"]) - float(rb["val_accuracy"]))
                    worst = max(worst, d)
                    if d > tol:
                        problems.append(f"{key}: {ra['val_accuracy']:.4f} ({a}) vs "
                                        f"{rb['val_accuracy']:.4f} ({b})")
    return problems, worst


def halving_comparison(full: dict, cut: dict, steps: int) -> dict:
    """The with/without-halving comparison of issue 13, section 1."""
    hf, hc = full["history"], cut["history"]
    g0f = hf[(hf["generation"] == 0) & (hf["status"] == "ok")].set_index("index")
    g0c = hc[(hc["generation"] == 0) & (hc["status"] == "ok")].set_index("index")
    both = g0f.index.intersection(g0c.index)
    assert (g0f.loc[both, "key"] == g0c.loc[both, "key"]).all(), "generation 0 differs"
    early = [r[0] for r in g0c.loc[both, "rung_accuracies"]]
    rho = spearmanr(early, g0f.loc[both, "val_accuracy"]).statistic if len(both) > 2 else math.nan
    top0 = g0f.loc[both].sort_values("val_accuracy", ascending=False).head(3).index
    last = SuccessiveHalving().rungs - 1
    top0_kept = int((g0c.loc[top0, "rung"] == last).sum())
    tf, tc = full["hall_of_fame"], cut["hall_of_fame"]
    return {
        "candidate_steps_ratio": full["candidate_steps"] / max(cut["candidate_steps"], 1),
        "wall_ratio": full["wall_s"] / cut["wall_s"],
        "gen0_candidates": int(len(both)),
        "gen0_spearman_rung0_vs_full": float(rho),
        "gen0_full_top3_reaching_last_rung": top0_kept,
        "top3_overlap": len(set(tf["key"]) & set(tc["key"])),
        "best_full_budget_accuracy": {"without": full["best_val_accuracy"],
                                      "with": cut["best_val_accuracy"]},
        "same_best_loss": full["best_key"] == cut["best_key"],
        "best_difference_pp": 100 * (cut["best_val_accuracy"] - full["best_val_accuracy"]),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-val", type=int, default=None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--generations", type=int, default=5)
    default = SearchSpec()
    ap.add_argument("--steps", type=int, default=default.budget.steps)
    ap.add_argument("--batch-size", type=int, default=default.budget.batch_size)
    ap.add_argument("--model", default=default.model, help="default: SearchSpec's")
    ap.add_argument("--schedule", default=default.budget.schedule,
                    choices=["constant", "cosine"], help="default: SearchSpec's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-size", type=int, default=16)
    ap.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated of {WAYS}")
    ap.add_argument("--out", default=None, help="folder for the four run directories")
    args = ap.parse_args(argv)
    ways = [w for w in args.ways.split(",") if w]
    bad = [w for w in ways if w not in WAYS]
    if bad:
        ap.error(f"--ways: unknown {bad}; expected some of {WAYS}")
    spec = SearchSpec(population_size=args.population, generations=args.generations,
                      seed=args.seed, dataset=args.dataset, n_train=args.n_train,
                      n_val=args.n_val, model=args.model,
                      budget=TrainBudget(steps=args.steps, batch_size=args.batch_size,
                                         schedule=args.schedule),
                      # the loop itself: references and rescoring are a fixed cost per search
                      # (1 + 2 x (rescore + references) trainings), which the naive way lacks
                      references=(), rescore=0)
    root = Path(args.out or tempfile.mkdtemp(prefix="ngl-throughput-"))
    n_val = len(load_search_data(spec.dataset, args.data_root, spec.n_train, spec.n_val,
                           spec.data_seed, "cpu").y_val)
    print(f"spec {spec.key}: {spec.dataset} ({n_val} search-validation), population "
          f"{spec.population_size}, {spec.generations} generations, {spec.model}, "
          f"{spec.budget.steps} {spec.budget.schedule} steps of {spec.budget.batch_size}; halving = {SuccessiveHalving().to_dict()}; runs in {root}")
    # warm-up outside the timings: the first training in a process pays one-off costs (about
    # 5 s: kernels, allocator, data to the device) that would otherwise land on the first way
    warm = LossExpression.parse("-y_real*log(y_pred)").to_module(validate=False)
    data = load_search_data(spec.dataset, args.data_root, spec.n_train, spec.n_val, spec.data_seed,
                      RunOptions().resolved_device())
    c, h, _w = data.input_shape
    train_sequential(functools.partial(build_model, spec.model, c, data.num_classes, h), [warm],
                     data, TrainBudget(steps=5, batch_size=spec.budget.batch_size), seed=0,
                     device=RunOptions().resolved_device())
    runs: dict[str, dict] = {}
    for way in ways:
        runs[way] = run_way(way, spec, root, args.chunk_size, args.data_root)
        r = runs[way]
        print(f"{LABELS[way]:>13}: {r['wall_s']:7.1f} s  {r['candidates_per_hour']:8.0f} cand/h  "
              f"trained {r['trained']:3d}  candidate-steps {r['candidate_steps']:6d}  "
              f"best {100 * r['best_val_accuracy']:.2f}% {r['best']}", flush=True)
    problems, worst = disagreements(runs, spec.budget.steps, n_val)
    summary: dict = {
        "spec": spec.key, "dataset": spec.dataset, "n_val": n_val,
        "ways": {w: {k: v for k, v in r.items() if k not in ("history", "hall_of_fame")}
                 for w, r in runs.items()},
        "max_full_budget_difference": worst, "disagreements": problems[:10],
    }
    if "halving" in runs and "batching" in runs:
        summary["halving"] = halving_comparison(runs["batching"], runs["halving"],
                                                spec.budget.steps)
        print("halving vs batching:", json.dumps(summary["halving"]))
    first, last = ways[0], ways[-1]
    # candidates per hour and candidate-steps of the last way (the full machinery by default)
    # against the first (naive by default); the ways run in the order given
    summary["throughput_ratio"] = (runs[last]["candidates_per_hour"]
                                   / runs[first]["candidates_per_hour"])
    summary["ratio_of"] = f"{last} over {first}"
    summary["candidate_steps_ratio_last_vs_first"] = (runs[first]["candidate_steps"]
                                                      / max(runs[last]["candidate_steps"], 1))
    for _w, r in summary["ways"].items():
        r["wall_s"] = round(r["wall_s"], 2)
        r["candidates_per_hour"] = round(r["candidates_per_hour"], 1)
    plain = json.loads(json.dumps(summary, default=lambda o: o.item() if isinstance(o, np.generic)
                                  else str(o)))
    print(json.dumps(json_safe(plain), allow_nan=False))  # NaN (e.g. no Spearman) as null
    if problems:
        print(f"DISAGREE: {len(problems)} loss(es) scored differently by two ways, e.g. "
              f"{problems[0]}", file=sys.stderr)
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
