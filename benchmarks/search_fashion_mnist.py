"""A real GP loss search on a Fashion-MNIST subset on this machine, then the best loss vs CE and NGL.

Prints the time per generation, the best expression found and its validation accuracy next to
CE and NGL trained with the same budget, seed, initial weights and batches. The last line is JSON.

    .venv/bin/python benchmarks/search_fashion_mnist.py [--population 12 --generations 4 --steps 150]
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import ngl
from ngl.data import load_cached
from ngl.fitness import train_population
from ngl.models import build_model

NGL_TEXT = ngl.NGL_EXPRESSION


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=12)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-val", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--no-ngl-seed", action="store_true", help="do not put NGL into generation 0")
    args = ap.parse_args()

    cfg = ngl.SearchSpec(
        primitive_set=ngl.preset("paper"), population_size=args.population,
        generations=args.generations, dataset="fashion_mnist", n_train=args.n_train,
        n_val=args.n_val, seed=args.seed,
        budget=ngl.TrainBudget(steps=args.steps, batch_size=128, lr=1e-3, optimizer="adam"),
        seed_expressions=() if args.no_ngl_seed else (NGL_TEXT,),
    )
    gen_times: list[float] = []
    start = time.perf_counter()
    result = ngl.search(cfg, args.run_dir, chunk_size=args.population, progress=False,
                        callback=lambda s, _: (gen_times.append(s["wall_time_s"]), print(
                            f"generation {int(s['generation'])}: best {s['best']:.4f} median "
                            f"{s['median']:.4f} trained {int(s['trained'])} cached "
                            f"{int(s['cache_hits'])} rejected {int(s['rejected'])} "
                            f"{s['wall_time_s']:.1f} s", flush=True)))
    total = time.perf_counter() - start
    best = result.best
    print(result.hall_of_fame(5)[["val_accuracy", "size", "expression"]].to_string(index=False))

    # Same budget, seed, initial weights and batches: CE, NGL and the best found loss side by side.
    # the search's own split (data_seed), not one drawn with the GP seed
    data = load_cached("fashion_mnist", None, cfg.n_train, cfg.n_val, None, cfg.data_seed)
    c, h, _ = data.input_shape
    model_fn = functools.partial(build_model, cfg.model, c, data.num_classes, h)
    losses = {"ce": ngl.get_loss("ce"), "ngl": ngl.get_loss("ngl"), "best": best.to_module()}
    res = train_population(model_fn, list(losses.values()), data, cfg.budget, seed=cfg.seed)
    accs = {k: round(r.val_accuracy, 4) for k, r in zip(losses, res, strict=True)}
    print(f"same budget ({cfg.budget.steps} steps x {cfg.budget.batch_size}): {accs}")
    print(json.dumps({"dataset": "fashion_mnist", "n_train": cfg.n_train, "n_val": cfg.n_val,
                      "population": cfg.population_size, "generations": cfg.generations,
                      "steps": cfg.budget.steps, "total_s": round(total, 1),
                      "s_per_generation": [round(t, 1) for t in gen_times],
                      "best_expression": str(best), "val_accuracy": accs,
                      "run_dir": str(result.run_dir)}))


if __name__ == "__main__":
    main()
