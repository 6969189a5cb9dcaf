"""Does ``torch.compile`` of the folded population network pay for itself within one search?

One batched pass (P candidates, the search's own masked training step, then the validation
score) is run twice from the same start: eagerly, and with the folded network compiled
(``RunOptions(compile=True)``: ``torch.compile`` of ``FoldedEngine.net``; the losses, masking
and optimizer stay eager). It prints the steady per-step times, the compile overhead (the
compiled pass's wall time minus its steps at the steady rate, minus the eager pass's wall time
minus its steps: what compiling the training and the evaluation graph costs), and the
break-even: how many steps of P candidates repay that overhead, against the pass-steps of one
search (``--search-steps`` candidate-steps / P). By default inductor starts with an empty cache
(a fresh temporary folder), as on a new machine; ``--warm-cache`` keeps the user's cache. Both
sides must reach the same validation scores (within 2 samples) and final losses (1e-3
relative); otherwise the exit status is 1. The last line is one JSON object.

    .venv/bin/python benchmarks/compile_folded.py [--pop 4 --steps 60 --dataset digits]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import tempfile
import time

import torch

from ngl.data import load_cached
from ngl.fitness import CPU_PASS_SIZE, TrainBudget
from ngl.fitness.population import PopulationPass, PopulationRun
from ngl.gp.expression import LossExpression
from ngl.losses import NGL_EXPRESSION
from ngl.models import build_model

TEXTS = [NGL_EXPRESSION, "-y_real*log(y_pred)", "(y_pred - y_real)*(y_pred - y_real)",
         "-y_real*log(y_pred) - 0.1*log(y_pred)"]


def timed_pass(run: PopulationRun, ids: list[int], steps: int, compiled: bool) -> tuple[list, float, list]:
    """Build, train step by step and score one pass; (per-step seconds, wall, scores)."""
    run.compile = compiled
    start = time.perf_counter()
    ps = PopulationPass(run, ids)
    times = []
    rng = None
    for k in range(steps):
        dt, rng = ps.train(run.batches[k:k + 1], rng)
        times.append(dt)
    scores = ps.score()
    return times, time.perf_counter() - start, scores


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--pop", type=int, default=CPU_PASS_SIZE)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--search-steps", type=int, default=16 * 5 * 100,
                    help="candidate-steps of one search (default: SearchSpec's population 16 "
                         "x 5 generations x 100 steps, every candidate trained)")
    ap.add_argument("--warm-cache", action="store_true",
                    help="keep inductor's on-disk cache (default: start empty)")
    args = ap.parse_args(argv)
    if not args.warm_cache:  # inductor reads it when it compiles: as on a fresh machine
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="ngl-inductor-")
    torch.manual_seed(0)
    data = load_cached(args.dataset, None, None, None, None, 0)
    c, h, _w = data.input_shape
    model_fn = functools.partial(build_model, args.model, c, data.num_classes, h)
    budget = TrainBudget(steps=args.steps, batch_size=args.batch_size)
    losses = [LossExpression.parse(TEXTS[i % len(TEXTS)]).to_module(validate=False)
              for i in range(args.pop)]
    run = PopulationRun(model_fn, losses, data, budget, 0, torch.device("cpu"), "folded", cuda_graph=False)
    ids = list(range(args.pop))
    eager_t, eager_wall, eager_scores = timed_pass(run, ids, args.steps, compiled=False)
    comp_t, comp_wall, comp_scores = timed_pass(run, ids, args.steps, compiled=True)
    warm = max(3, args.steps // 4)
    eager_step = sorted(eager_t[warm:])[len(eager_t[warm:]) // 2]
    comp_step = sorted(comp_t[warm:])[len(comp_t[warm:]) // 2]
    compile_s = (comp_wall - args.steps * comp_step) - (eager_wall - args.steps * eager_step)
    gain = eager_step - comp_step
    pass_steps = args.search_steps / args.pop
    break_even = compile_s / gain if gain > 0 else math.inf
    n_val = len(data.y_val)
    bad = [i for i, (a, b) in enumerate(zip(eager_scores, comp_scores, strict=True))
           if a[1] != b[1] or abs(a[2] - b[2]) > 2 / n_val + 1e-9
           or not math.isclose(a[4], b[4], rel_tol=1e-3, abs_tol=1e-5)]
    summary = {
        "pop": args.pop, "steps": args.steps, "batch_size": args.batch_size,
        "eager_step_ms": 1000 * eager_step, "compiled_step_ms": 1000 * comp_step,
        "steady_speedup": eager_step / comp_step, "compile_s": compile_s,
        "compiled_pass_wall_s": comp_wall, "eager_pass_wall_s": eager_wall,
        "cold_cache": not args.warm_cache,
        "break_even_pass_steps": break_even, "search_pass_steps": pass_steps,
        "pays_within_one_search": break_even < pass_steps, "disagreeing_candidates": bad,
    }
    print(f"P={args.pop}: eager {1000 * eager_step:.1f} ms/step, compiled "
          f"{1000 * comp_step:.1f} ms/step ({summary['steady_speedup']:.2f}x), compile "
          f"{compile_s:.1f} s; break-even after {break_even:.0f} pass-steps, one search has "
          f"{pass_steps:.0f}")
    print(json.dumps(summary))
    if bad:
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
