"""A real GP loss search on a Fashion-MNIST subset, then its top loss vs CE and NGL on held-out test data.

The search trains each candidate on a *search-train* subset of Fashion-MNIST's training data and
scores it (its fitness) on a *search-validation* subset; the top loss is the one that scored best
there, so its fitness is optimistic by construction and is not compared with anything on that
split. Instead ``ngl.evaluate.validate`` retrains the top loss, CE and NGL with the same seeds
(same initial weights and batches per seed, so the differences pair) and scores them on the
official 10,000 *held-out test* images, which the search never saw: paired change to CE with its
95 % interval, paired t-test and Wilcoxon, and the verdict (the paper's ±0.5 points plus a
significant test). Every printed number names its split; the last line is JSON.

NGL is not put into generation 0 (``--seed-ngl`` does, as a yardstick; then "the best found loss
scores at least NGL's search fitness" holds by construction and says nothing). The defaults are
sized for a CPU (3 seeds, 2 epochs of ``dense_cnn`` on 6,000 training examples per run);
``benchmarks/gpu_finding.py`` is the full-size GPU version.

    .venv/bin/python benchmarks/search_fashion_mnist.py [--population 12 --generations 4 --steps 150]
    .venv/bin/python benchmarks/search_fashion_mnist.py --val-seeds 0,1,2,3,4 --val-epochs 4 --val-n-train 0
"""

from __future__ import annotations

import argparse
import json
import time

import ngl
from ngl.evaluate.validate import DEFAULT_TRAIN, ValidateConfig, validate
from ngl.io import json_safe
from ngl.io.config import ConfigError

NGL_TEXT = ngl.NGL_EXPRESSION


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    s = ap.add_argument_group("search (fitness: search-validation accuracy)")
    s.add_argument("--population", type=int, default=12)
    s.add_argument("--generations", type=int, default=4)
    s.add_argument("--steps", type=int, default=150)
    s.add_argument("--n-train", type=int, default=6000, help="search-train examples")
    s.add_argument("--n-val", type=int, default=2000, help="search-validation examples")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--run-dir", default=None, help="default: runs/search/<spec key>")
    s.add_argument("--seed-ngl", action="store_true",
                   help="put NGL into generation 0 (a yardstick; off by default)")
    v = ap.add_argument_group("validation (held-out test split)")
    v.add_argument("--top-k", type=int, default=1, help="found losses to validate")
    v.add_argument("--val-seeds", type=_seeds, default=(0, 1, 2), help="at least 2, e.g. 0,1,2")
    v.add_argument("--val-model", default="dense_cnn")
    v.add_argument("--val-epochs", type=int, default=2)
    v.add_argument("--val-n-train", type=int, default=6000,
                   help="training examples per run (0: the whole training split)")
    v.add_argument("--val-n-val", type=int, default=2000,
                   help="validation examples, for the per-epoch curve only (0: all)")
    v.add_argument("--val-n-test", type=int, default=0, help="test examples (0: all 10,000)")
    v.add_argument("--validate-out", default=None,
                   help="default: runs/validate/<search key>/<config key>")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default=None, help="folder of the Fashion-MNIST idx files")
    args = ap.parse_args()

    spec = ngl.SearchSpec(
        primitive_set=ngl.preset("paper"), population_size=args.population,
        generations=args.generations, dataset="fashion_mnist", n_train=args.n_train,
        n_val=args.n_val, seed=args.seed,
        budget=ngl.TrainBudget(steps=args.steps, batch_size=128, lr=1e-3, optimizer="adam"),
        seed_expressions=(NGL_TEXT,) if args.seed_ngl else (),
    )
    print(f"search: population {spec.population_size}, {spec.generations} generations, "
          f"{spec.budget.steps} steps of {spec.model}; search-train n={spec.n_train}, "
          f"search-validation n={spec.n_val}; NGL seeded: {args.seed_ngl}", flush=True)
    gen_times: list[float] = []
    start = time.perf_counter()
    result = ngl.search(spec, args.run_dir, device=args.device, chunk_size=args.population,
                        data_root=args.data_root, progress=False,
                        callback=lambda s, _: (gen_times.append(s["wall_time_s"]), print(
                            f"generation {int(s['generation'])}: search-validation acc. best "
                            f"{s['best']:.4f} median {s['median']:.4f}; trained "
                            f"{int(s['trained'])} cached {int(s['cache_hits'])} rejected "
                            f"{int(s['rejected'])} {s['wall_time_s']:.1f} s", flush=True)))
    total = time.perf_counter() - start
    best = result.best
    hof = result.hall_of_fame(5)[["val_accuracy", "size", "expression"]]
    print("hall of fame (val_accuracy = search-validation accuracy, the split it was selected on):")
    print(hof.to_string(index=False))

    def size(n: int) -> int | None:
        return n or None  # 0 on the command line: the whole split

    train = DEFAULT_TRAIN.to_dict() | {"epochs": args.val_epochs}
    try:
        config = ValidateConfig.from_dict({
            "top_k": args.top_k, "references": ["ce", "ngl"], "seeds": list(args.val_seeds),
            "model": args.val_model, "train": train, "n_train": size(args.val_n_train),
            "n_val": size(args.val_n_val), "n_test": size(args.val_n_test), "transfer": [],
            "fidelity_top": 0, "fidelity_sample": 0, "data_root": args.data_root,
            "device": args.device})
        t1 = time.perf_counter()
        report = validate(result.run_dir, config, args.validate_out, progress=False)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    val_s = time.perf_counter() - t1
    ok = report.results[report.results["status"] == "ok"]
    n_test = int(ok["sizes"].iloc[0]["test"]) if len(ok) else None

    print(f"\nheld-out test split (fashion_mnist test, n={n_test}), "
          f"{config.model}, {config.train.epochs} epochs, seeds {list(config.seeds)}, "
          f"training examples per run: {config.n_train or 'all'}; "
          "'search fitness' = search-validation accuracy:\n")
    print(report.to_markdown())
    table = report.table.set_index("loss")
    names = report.names()
    held_out = {names.get(loss, loss): {
        "test_accuracy_pct": r["mean"], "std_pct": r["std"], "n": int(r["n"]),
        "delta_vs_ce_pp": r["delta"], "delta_ci_pp": [r["delta_ci_low"], r["delta_ci_high"]],
        "p_ttest": r["p_ttest"], "p_wilcoxon": r["p_wilcoxon"], "p_holm": r["p_holm"],
        "verdict": r["verdict"]} for loss, r in table.iterrows()}
    top = held_out.get("found #1", {})
    fitness = float(result.hall_of_fame(1)["val_accuracy"].iloc[0])
    nan = float("nan")
    print(f"top loss: search-validation accuracy {100 * fitness:.2f} % (the split it was selected "
          f"on); held-out test accuracy {top.get('test_accuracy_pct', nan):.2f} % vs CE "
          f"{held_out.get('ce', {}).get('test_accuracy_pct', nan):.2f} % and NGL "
          f"{held_out.get('ngl', {}).get('test_accuracy_pct', nan):.2f} % (mean over seeds); "
          f"verdict vs CE: {top.get('verdict')}")
    print(json.dumps(json_safe({
        "dataset": "fashion_mnist", "n_train": spec.n_train, "n_val": spec.n_val,
        "population": spec.population_size, "generations": spec.generations,
        "steps": spec.budget.steps, "seeded_ngl": args.seed_ngl, "total_s": round(total, 1),
        "s_per_generation": [round(t, 1) for t in gen_times], "best_expression": str(best),
        "search_validation_accuracy": fitness,
        "held_out_test": {"model": config.model, "epochs": config.train.epochs,
                          "seeds": list(config.seeds), "n_train": config.n_train,
                          "n_test": n_test,
                          "losses": held_out, "found": report.found},
        "validate_s": round(val_s, 1), "run_dir": str(result.run_dir),
        "validate_dir": str(report.out_dir),
    })))


if __name__ == "__main__":
    main()
