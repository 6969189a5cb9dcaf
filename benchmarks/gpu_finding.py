"""The GPU finding of issue 12: notebook 02's full-mode search, then `ngl.validate` of what it found.

Three phases, each timed, on one GPU in under 10 minutes with the defaults (no internet needed):

1. **search**: notebook 02's full-mode spec (population 64, 20 generations, the calibrated
   default fitness: ``SearchSpec``'s model and budget, ``dense_cnn`` for 100 cosine-annealed Adam
   steps per candidate, 12,000 search-train / 3,000 search-validation examples of
   Fashion-MNIST), *without* NGL seeded, CUDA graphs on, CE as the search's reference. A wall-clock guard stops it cleanly at a
   generation boundary once ``--search-seconds`` are spent (or when the next generation, estimated
   at the last one's time, would end past them); what it found so far is validated.
2. **validate**: ``ValidateConfig`` defaults (``dense_cnn``, 4 epochs, Adam, cosine; fidelity over
   10 + 10 candidates) with its references (CE, NGL, focal, label smoothing), the top 3 found losses, seeds 0-4 and transfer
   to digits, scored on the held-out test split. ``--validate-seconds`` stops it after the cell
   that passes the budget; the report then covers the finished cells (``complete: false``) and
   re-running with ``--search-seconds 0`` continues the validation without searching further.
   (The losses to validate are frozen in ``plan.json`` when the validation starts: a re-run that
   searches further still validates those; use another ``--out`` for a fresh finding.)
3. **report**: the markdown table, the card, per-phase timings; figures, tables and
   ``summary.json`` under ``--out`` (the last line printed is the same JSON).

Every number is labelled with its split: *search-validation* (the search's fitness, which it
selected on) or *held-out test* (the dataset's test split, never touched by the search).

    python benchmarks/gpu_finding.py                          # on a GPU, defaults
    python benchmarks/gpu_finding.py --data-root /path/to/fashion-mnist
    # tiny, on a CPU (about a minute):
    python benchmarks/gpu_finding.py --device cpu --no-cuda-graph --dataset digits \\
        --population 4 --generations 1 --steps 5 --n-train 256 --n-val 128 --epochs 1 \\
        --seeds 0,1 --fidelity-top 2 --fidelity-sample 1 --out /tmp/gpu_finding_tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

import ngl
from ngl.evaluate.validate import DEFAULT_TRAIN, ValidateConfig, load_validation, validate
from ngl.io import json_safe
from ngl.io.config import ConfigError
from ngl.io.records import write_json_atomic, write_text_atomic

_DEFAULT = ngl.SearchSpec()  # the calibrated fitness: its model and budget


class _OutOfTime(Exception):
    """Raised from the validation callback when ``--validate-seconds`` are spent."""


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    s = ap.add_argument_group("search (notebook 02, full mode)")
    s.add_argument("--dataset", default="fashion_mnist", help="searched and validated dataset")
    s.add_argument("--population", type=int, default=64)
    s.add_argument("--generations", type=int, default=20)
    s.add_argument("--steps", type=int, default=_DEFAULT.budget.steps,
                   help="training steps per candidate (default: SearchSpec's)")
    s.add_argument("--n-train", type=int, default=12000, help="search-train examples")
    s.add_argument("--n-val", type=int, default=3000, help="search-validation examples")
    s.add_argument("--seed", type=int, default=0, help="GP seed")
    s.add_argument("--search-seconds", type=float, default=300.0,
                   help="wall-clock budget of the search (0: do not search, validate what is "
                        "in the run directory)")
    s.add_argument("--no-cuda-graph", action="store_true", help="no CUDA graphs (needed on CPU)")
    v = ap.add_argument_group("validate (held-out test split)")
    v.add_argument("--top-k", type=int, default=3, help="found losses to validate")
    v.add_argument("--seeds", type=_seeds, default=(0, 1, 2, 3, 4), help="e.g. 0,1,2,3,4")
    v.add_argument("--model", default="dense_cnn", help="downstream model")
    v.add_argument("--epochs", type=int, default=DEFAULT_TRAIN.epochs)
    v.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap (tiny runs only)")
    v.add_argument("--transfer", action="append", default=None, metavar="DATASET:MODEL",
                   help="transfer pair, repeatable (default: digits:<model>; 'none': off)")
    v.add_argument("--fidelity-top", type=int, default=ValidateConfig().fidelity_top)
    v.add_argument("--fidelity-sample", type=int, default=ValidateConfig().fidelity_sample)
    v.add_argument("--validate-seconds", type=float, default=240.0,
                   help="wall-clock budget of the validation (0: no limit)")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--data-root", default=None, help="folder of the Fashion-MNIST idx files")
    ap.add_argument("--out", default="runs/gpu_finding", help="everything goes under here")
    return ap


def _card(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _search(args: argparse.Namespace, out: Path, root: str | None) -> tuple[ngl.SearchResult, dict]:
    spec = ngl.SearchSpec(
        primitive_set=ngl.preset("paper"), population_size=args.population,
        generations=args.generations, dataset=args.dataset, model=_DEFAULT.model,
        n_train=args.n_train, n_val=args.n_val, seed=args.seed, seed_expressions=(), elitism=1,
        budget=dataclasses.replace(_DEFAULT.budget, steps=args.steps))
    run_dir = out / "search" / spec.key
    info = {"run_dir": str(run_dir), "spec_key": spec.key, "budget_s": args.search_seconds,
            "stopped_by_budget": False, "s_per_generation": []}
    if args.search_seconds <= 0:
        if not (run_dir / "history.jsonl").exists():
            raise SystemExit(f"--search-seconds 0 validates an existing search, but {run_dir} "
                             "holds none; give the search a budget first")
        print(f"[search] skipped (--search-seconds 0): validating {run_dir} as it is", flush=True)
        return ngl.load(run_dir), info
    start = time.perf_counter()

    def guard(summary: dict, search) -> None:
        took = summary["wall_time_s"]
        info["s_per_generation"].append(round(took, 2))
        elapsed = time.perf_counter() - start
        print(f"[search] generation {int(summary['generation'])}: best {summary['best']:.4f} "
              f"median {summary['median']:.4f} (search-validation acc.), trained "
              f"{int(summary['trained'])}, cached {int(summary['cache_hits'])}, rejected "
              f"{int(summary['rejected'])}; {took:.1f} s (elapsed {elapsed:.0f} s)", flush=True)
        # the next generation is assumed to take as long as this one
        if elapsed + took > args.search_seconds and not info["stopped_by_budget"]:
            info["stopped_by_budget"] = True
            print(f"[search] budget of {args.search_seconds:.0f} s would be passed by the next "
                  "generation: stopping here (the checkpoint keeps everything)", flush=True)
            search.request_stop()

    result = ngl.search(spec, run_dir, device=args.device, chunk_size=args.population,
                        cuda_graph=not args.no_cuda_graph, data_root=root, progress=False,
                        callback=guard)
    info["seconds"] = round(time.perf_counter() - start, 1)
    return result, info


def _validate(args: argparse.Namespace, result: ngl.SearchResult, out: Path,
              root: str | None):
    if args.transfer == ["none"]:
        transfer: list = []
    elif args.transfer:
        transfer = args.transfer  # "dataset:model" strings; ValidateConfig splits and checks them
    else:
        transfer = [["digits", args.model]] if args.dataset != "digits" else []
    train = DEFAULT_TRAIN.to_dict() | {"epochs": args.epochs,
                                       "max_steps_per_epoch": args.max_steps_per_epoch}
    config = ValidateConfig.from_dict({
        "top_k": args.top_k, "references": list(ValidateConfig().references),
        "seeds": list(args.seeds),
        "model": args.model, "train": train, "transfer": transfer,
        "fidelity_top": args.fidelity_top, "fidelity_sample": args.fidelity_sample,
        "data_root": root, "device": args.device})
    val_dir = out / "validate" / result.spec.key / config.key
    start = time.perf_counter()
    deadline = start + args.validate_seconds if args.validate_seconds > 0 else float("inf")

    def progress(row: dict, _results) -> None:
        acc = row.get("test_accuracy")
        print(f"[validate] {row['dataset']}/{row['model']}/{row['loss'][:40]}/seed {row['seed']}: "
              f"{row['status']}" + (f", held-out test acc. {acc:.4f}" if acc is not None else "")
              + f" ({row.get('wall_s', 0):.1f} s)", flush=True)
        if time.perf_counter() > deadline:
            raise _OutOfTime

    stopped = False
    try:
        report = validate(result.run_dir, config, val_dir, progress=False, callback=progress)
    except _OutOfTime:
        stopped = True
        print(f"[validate] budget of {args.validate_seconds:.0f} s spent: stopped; the report "
              "covers the finished cells (re-run with --search-seconds 0 to continue)", flush=True)
        report = load_validation(val_dir)
    info = {"out_dir": str(val_dir), "config_key": config.key, "budget_s": args.validate_seconds,
            "stopped_by_budget": stopped, "complete": report.complete,
            "seconds": round(time.perf_counter() - start, 1)}
    return report, info


def _figures(report, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ngl.ui.plots_validation import plot_fidelity, plot_validation
    from ngl.ui.style import save_figure, set_style

    set_style("paper")
    written = []
    for name, plot in (("validation", plot_validation), ("fidelity", plot_fidelity)):
        try:
            fig = plot(report)
        except ValueError as exc:  # nothing finished yet for this figure
            print(f"[report] no {name} figure: {exc}")
            continue
        written += [str(p) for p in save_figure(fig, name, notebook="gpu_finding", directory=out,
                                                config=report.config.to_dict())]
        plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; for a tiny CPU try: --device cpu --no-cuda-graph "
                         "(see the module docstring)")
    if args.device == "cpu" and not args.no_cuda_graph:
        raise SystemExit("CUDA graphs need a CUDA device: add --no-cuda-graph with --device cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = args.data_root if args.dataset != "digits" else None  # digits is embedded
    card = _card(args.device)
    torch.zeros(1, device=args.device)  # device start-up (the CUDA context) counts as set-up
    print(f"[ngl] {card}, torch {torch.__version__}, ngl {ngl.__version__}", flush=True)
    ngl.setup(seed=args.seed, style=None)
    timings = {"setup_s": round(time.perf_counter() - t0, 1)}

    try:
        result, search_info = _search(args, out, root)
        timings["search_s"] = round(time.perf_counter() - t0 - timings["setup_s"], 1)
        hof = result.hall_of_fame(args.top_k)
        print(f"[search] {len(result.history)} candidates, "
              f"{int(result.history['generation'].max()) + 1} of {result.spec.generations} "
              f"generations, complete: {result.complete}; top {args.top_k} by search-validation "
              "accuracy (the split the search selected on):")
        print(hof[["val_accuracy", "size", "generation", "expression"]].to_string(index=False))
        t1 = time.perf_counter()
        report, val_info = _validate(args, result, out, root)
        timings["validate_s"] = round(time.perf_counter() - t1, 1)
    except (ConfigError, FileNotFoundError) as exc:  # bad arguments, data not found
        raise SystemExit(f"error: {exc}") from None

    t2 = time.perf_counter()
    md = report.to_markdown()
    print(f"\nheld-out test split of {report.plan['dataset']}, downstream {report.config.model}, "
          f"{report.config.train.epochs} epochs, seeds {list(report.config.seeds)} "
          f"(search fitness = search-validation accuracy):\n")
    print(md)
    figures = _figures(report, out)
    write_text_atomic(out / "table.md", md)
    write_text_atomic(out / "table.tex", report.to_latex())
    timings["report_s"] = round(time.perf_counter() - t2, 1)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    print(f"[ngl] timings: {timings} on {card}")

    table = report.table.copy()
    table["name"] = table["loss"].map(lambda s: report.names().get(s, s))
    cols = ["name", "loss", "kind", "n", "mean", "std", "delta", "delta_ci_low", "delta_ci_high",
            "p_ttest", "p_wilcoxon", "p_holm", "paper_rule", "verdict", "search_fitness"]
    summary = json_safe({
        "benchmark": "gpu_finding", "card": card, "device": args.device,
        "torch": torch.__version__, "cuda": torch.version.cuda, "ngl": ngl.__version__,
        "args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
        "timings": timings,
        "search": {**search_info, "candidates": len(result.history),
                   "generations_done": int(result.history["generation"].max()) + 1,
                   "generations_planned": result.spec.generations, "complete": result.complete,
                   "top": [{"expression": r.expression, "search_validation_accuracy":
                            float(r.val_accuracy), "size": int(r.size)}
                           for r in hof.itertuples()]},
        "validate": {**val_info, "dataset": report.plan["dataset"],
                     "split": "held-out test", "model": report.config.model,
                     "table": table[cols].to_dict(orient="records"),
                     "transfer": report.transfer.to_dict(orient="records"),
                     "fidelity": report.fidelity_stats},
        "figures": figures,
    })
    write_json_atomic(out / "summary.json", summary)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
