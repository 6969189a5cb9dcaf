"""Cost per candidate of each proxy of a calibration, timed side by side on a quiet machine.

A calibration records the seconds each proxy took while it ran, which may have been across
several sittings and beside other work. This benchmark times the proxies of one calibration
config alternately (``--repeats`` rounds, fastest kept) on the same few losses, exactly as a
search trains them (``train_population`` with the search's pass size on the search-train
subset), and prints seconds per candidate and the ratio to the first proxy (the old default):

    python benchmarks/proxy_cost.py --config findings/calibration/fashion_mnist.json --repeats 2

The last line is one JSON object. The exit status is 1 when a proxy timed here scores a loss
differently from the calibration's own rows (``--out``, optional) by more than one
validation sample: a timing of something else would not be this proxy's cost.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch

from ngl.data import load_cached
from ngl.evaluate.grid import build_loss
from ngl.evaluate.proxy_calibration import CalibrationConfig, proxy_key
from ngl.fitness import train_population
from ngl.io.config import load_config_file
from ngl.io.records import read_rows
from ngl.models import build_model

LOSSES = ("ce", "ngl", {"name": "focal", "gamma": 2.0}, "label_smoothing")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="a CalibrationConfig JSON file")
    ap.add_argument("--out", default=None, help="its calibration folder, to check the scores")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config_file(CalibrationConfig, args.config)
    losses = [build_loss(s) for s in LOSSES]
    labels = [s if isinstance(s, str) else f"{s['name']}(gamma={s['gamma']})" for s in LOSSES]
    best: dict[str, float] = {}
    scores: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for proxy in config.proxies:
            data = load_cached(config.dataset,
                               None if config.dataset == "digits" else args.data_root,
                               proxy.n_train or config.n_train, config.n_val, None,
                               config.data_seed).to(args.device)
            c, h, _w = data.input_shape
            model_fn = functools.partial(build_model, proxy.model, c, data.num_classes, h)
            start = time.perf_counter()
            res = train_population(model_fn, losses, data, proxy.budget, seed=config.seed,
                                   device=args.device)
            per = (time.perf_counter() - start) / len(losses)
            best[proxy.name] = min(best.get(proxy.name, float("inf")), per)
            scores[proxy.name] = [r.val_accuracy for r in res]
    first = config.proxies[0].name
    ok = True
    if args.out:
        rows = read_rows(Path(args.out) / "proxies.jsonl")
        n_val = config.n_val or len(load_cached(config.dataset, None if config.dataset == "digits"
                                                else args.data_root, None, None, None,
                                                config.data_seed).y_val)
        for proxy in config.proxies:
            key = proxy_key(config, proxy)
            mine = {r["loss"]: r["val_accuracy"] for r in rows if r.get("proxy_key") == key}
            for label, acc in zip(labels, scores[proxy.name], strict=True):
                if label in mine and abs(mine[label] - acc) > 1 / n_val + 1e-9:
                    print(f"disagree: {proxy.name} / {label}: calibration {mine[label]:.4f}, "
                          f"here {acc:.4f}", file=sys.stderr)
                    ok = False
    for proxy in config.proxies:
        print(f"{proxy.name:>24}: {best[proxy.name]:7.2f} s per candidate "
              f"({best[proxy.name] / best[first]:.2f}x {first})")
    print(json.dumps({"seconds_per_candidate": best, "relative_to": first,
                      "ratios": {k: v / best[first] for k, v in best.items()},
                      "threads": torch.get_num_threads(), "agree": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
