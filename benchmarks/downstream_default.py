"""The downstream default of `ngl.validate` (DEFAULT_TRAIN on dense_cnn) reaches >= 91 % CE test accuracy.

Trains cross entropy on full Fashion-MNIST with ``ngl.evaluate.validate.DEFAULT_TRAIN`` (4 epochs,
Adam 1e-3, batch 128, cosine) on ``dense_cnn``, the default downstream model of ``validate``, and,
side by side with the same ``TrainConfig`` and seeds, on ``small_cnn``, the search's fitness
model (which underfits). Prints the held-out test accuracy and wall time of each run, the means
and the ratio of times, and exits non-zero when dense_cnn's mean test accuracy is below 0.91
(or a run failed).

The 91 % check applies only at full size (the whole training split, every step of every epoch,
the default epochs). With ``--n-train``, ``--max-steps-per-epoch`` or ``--epochs`` the script only
checks that everything runs and says that the threshold is not applicable. Runs are cells of a
resumable grid (``--results``): a finished run is not trained again. The last line is JSON.

    .venv/bin/python benchmarks/downstream_default.py                    # ~10 min on a 2-core CPU
    .venv/bin/python benchmarks/downstream_default.py --n-train 512 --max-steps-per-epoch 4 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

import ngl
from ngl.evaluate import GridConfig, run_grid
from ngl.evaluate.validate import DEFAULT_TRAIN
from ngl.io import json_safe

THRESHOLD = 0.91
MODELS = ("dense_cnn", "small_cnn")  # validate's downstream default, the search's fitness model


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=_seeds, default=(0,), help="comma-separated, e.g. 0,1,2")
    ap.add_argument("--epochs", type=int, default=DEFAULT_TRAIN.epochs,
                    help=f"default {DEFAULT_TRAIN.epochs} (DEFAULT_TRAIN); another value is a "
                         "reduced run")
    ap.add_argument("--n-train", type=int, default=None, help="training subset (reduced run)")
    ap.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap (reduced run)")
    ap.add_argument("--threshold", type=float, default=THRESHOLD)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default=None, help="folder of the Fashion-MNIST idx files")
    ap.add_argument("--results", default="runs/benchmarks/downstream_default.jsonl")
    args = ap.parse_args(argv)

    reduced = [f for f, on in (("--n-train", args.n_train is not None),
                               ("--max-steps-per-epoch", args.max_steps_per_epoch is not None),
                               ("--epochs", args.epochs != DEFAULT_TRAIN.epochs)) if on]
    train = ngl.TrainConfig.from_dict(DEFAULT_TRAIN.to_dict() | {
        "epochs": args.epochs, "max_steps_per_epoch": args.max_steps_per_epoch})
    cfg = GridConfig(datasets=("fashion_mnist",), models=MODELS, losses=("ce",),
                     seeds=args.seeds, train=train, n_train=args.n_train,
                     data_root=args.data_root, device=args.device)
    print(f"CE on fashion_mnist, {' vs '.join(MODELS)}, seeds {list(args.seeds)}, train "
          f"{ {k: v for k, v in train.to_dict().items() if v != ngl.TrainConfig().to_dict()[k]} }, "
          f"device {cfg.resolved_device()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads" + (f"; REDUCED ({', '.join(reduced)})" if reduced
                                                  else "; full size"), flush=True)
    t0 = time.perf_counter()
    rows = run_grid(cfg, args.results, progress=False,
                    callback=lambda r, _: print(
                        f"  {r['model']} seed {r['seed']}: {r['status']}"
                        + (f", held-out test acc. {r['test_accuracy']:.4f}"
                           if r.get("test_accuracy") is not None else "")
                        + f", {r.get('time_s', r['wall_s']):.1f} s", flush=True))
    wall = time.perf_counter() - t0

    ok = rows[rows["status"] == "ok"]
    per_model = {}
    for model in MODELS:
        part = ok[ok["model"] == model].sort_values("seed")
        per_model[model] = {"test_accuracy": [float(a) for a in part["test_accuracy"]],
                            "mean_test_accuracy": float(part["test_accuracy"].mean())
                            if len(part) else None,
                            "wall_s": [round(float(t), 1) for t in part["time_s"]],
                            "mean_wall_s": float(part["time_s"].mean()) if len(part) else None}
    print(f"\n{'model':<10} {'held-out test acc.':>18} {'wall time (s)':>14}  (per seed; test: "
          "the official 10,000 images; time: training and per-epoch evaluation)")
    for model, m in per_model.items():
        accs = ", ".join(f"{a:.4f}" for a in m["test_accuracy"])
        times = ", ".join(f"{t:.1f}" for t in m["wall_s"])
        print(f"{model:<10} {accs:>18} {times:>14}")
    d, s = per_model["dense_cnn"], per_model["small_cnn"]
    ratio = (d["mean_wall_s"] / s["mean_wall_s"]) if d["mean_wall_s"] and s["mean_wall_s"] else None
    if d["mean_test_accuracy"] is not None and s["mean_test_accuracy"] is not None:
        print(f"means: dense_cnn {d['mean_test_accuracy']:.4f} in {d['mean_wall_s']:.1f} s, "
              f"small_cnn {s['mean_test_accuracy']:.4f} in {s['mean_wall_s']:.1f} s; time ratio "
              f"dense_cnn / small_cnn = {ratio:.2f}")

    failed = rows[rows["status"] != "ok"]
    if len(failed):
        check = "failed"
        print(f"FAILED: {len(failed)} run(s) did not finish: "
              f"{failed[['model', 'seed', 'status']].to_dict(orient='records')}")
    elif reduced:
        check = "not applicable"
        print(f"91 % check: NOT APPLICABLE at reduced size ({', '.join(reduced)}); run without "
              "those arguments for the real check")
    elif d["mean_test_accuracy"] < args.threshold:
        check = "below"
        print(f"FAILED: dense_cnn mean CE test accuracy {d['mean_test_accuracy']:.4f} < "
              f"{args.threshold}")
    else:
        check = "passed"
        print(f"passed: dense_cnn mean CE test accuracy {d['mean_test_accuracy']:.4f} >= "
              f"{args.threshold}")
    print(json.dumps(json_safe({
        "benchmark": "downstream_default", "dataset": "fashion_mnist", "loss": "ce",
        "train": train.to_dict(), "seeds": list(args.seeds), "n_train": args.n_train,
        "reduced": reduced, "threshold": args.threshold, "check": check, "models": per_model,
        "time_ratio_dense_over_small": ratio, "wall_s": round(wall, 1),
        "device": cfg.resolved_device(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "ngl": ngl.__version__,
        "cpu": platform.processor() or platform.machine(),
    })))
    return 0 if check in ("passed", "not applicable") else 1


if __name__ == "__main__":
    sys.exit(main())
