"""Downstream grid on full Fashion-MNIST: SmallCNN, Adam, CE vs NGL vs focal vs label smoothing.

Trains every (loss, seed) cell with ``ngl.evaluate.grid.run_grid`` (resumable: finished runs in the
results file are skipped), then prints the paper-style table (mean ± std test accuracy, change
against CE, paired t-test and Wilcoxon p-values), the paper's Fashion-MNIST numbers next to
ours, and the time per run. The last line is JSON.

    .venv/bin/python benchmarks/downstream_fashion_mnist.py [--epochs 2 --seeds 3 --threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import ngl
from ngl import evaluate
from ngl.evaluate import GridConfig, run_grid
from ngl.io import json_safe
from ngl.train import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--model", default="dense_cnn")
    ap.add_argument("--losses", nargs="+", default=["ce", "ngl", "focal", "label_smoothing"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-train", type=int, default=None, help="subset size (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--results", default="runs/benchmarks/downstream_fashion_mnist.jsonl")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = GridConfig(datasets=(args.dataset,), models=(args.model,), losses=tuple(args.losses),
                     seeds=tuple(range(args.seeds)), n_train=args.n_train, device=args.device,
                     train=TrainConfig(optimizer="adam", lr=args.lr, epochs=args.epochs,
                                       batch_size=args.batch_size))
    t0 = time.perf_counter()
    results = run_grid(cfg, Path(args.results))
    wall = time.perf_counter() - t0

    summary = evaluate.summarise(results, baseline="ce")
    print(f"\n{args.dataset}, {args.model}, Adam lr {args.lr}, batch {args.batch_size}, "
          f"{args.epochs} epochs, seeds {list(cfg.seeds)}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print(evaluate.to_markdown(summary))
    cols = ["loss", "n", "mean", "std", "delta", "p_ttest", "p_wilcoxon"]
    print(summary[cols].round(4).to_string(index=False))
    side = evaluate.compare_with_paper(summary)
    if len(side):
        print("\npaper vs ours (", evaluate.PAPER_CAVEAT, ")")
        print(side.round(3).to_string())
    ok = results[results.status == "ok"]
    per_run = ok.groupby("loss")["time_s"].mean()
    print("\nmean training time per run (s):", per_run.round(1).to_dict())
    print(json.dumps(json_safe({
        "benchmark": "downstream_fashion_mnist", "dataset": args.dataset, "model": args.model,
        "epochs": args.epochs, "seeds": list(cfg.seeds), "batch_size": args.batch_size,
        "lr": args.lr, "optimizer": "adam", "n_train": int(ok["sizes"].iloc[0]["train"]) if len(ok) else None,
        "test_accuracy": {r.loss: {"mean": r.mean / 100, "std": r.std / 100, "n": int(r.n),
                                   "delta_pp": r.delta, "p_ttest": r.p_ttest,
                                   "p_wilcoxon": r.p_wilcoxon} for r in summary.itertuples()},
        "per_seed": {loss: [float(a) for a in g.sort_values("seed").test_accuracy]
                     for loss, g in ok.groupby("loss")},
        "time_per_run_s": per_run.round(2).to_dict(), "wall_s": round(wall, 1),
        "statuses": results.status.value_counts().to_dict(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "ngl": ngl.__version__,
        "cpu": platform.processor() or platform.machine(),
    })))


if __name__ == "__main__":
    main()
