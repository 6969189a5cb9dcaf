"""Can this fitness be trusted? Fidelity calibration of a search's cheap score against full training.

A search ranks candidate losses by a *proxy*: a small network trained a few hundred steps on a
subset, scored on the search-validation split. A proxy is only worth as much as it orders
losses the way full training does. ``calibrate`` measures that on a panel of losses:

* **panel**: the registry's references (CE, NGL, focal, label smoothing, Poly-1, SCE), plain
  expression losses (squared and absolute error on probabilities), ``random_trees``
  sanity-passing random trees of the primitive set and, with ``run_dir``, trained candidates
  of an existing search (its hall of fame and a random sample). Chosen once and frozen in
  ``plan.json``.
* **proxies**: each a fitness exactly as a search computes it (``train_population`` on the
  search-train subset with the search's common random numbers, scored on search-validation).
* **target**: the training ``validate`` uses (``dense_cnn``, :data:`DEFAULT_TRAIN`) on the whole
  training split, over ``target_seeds``, scored on the *same* search-validation images; the
  test split is never evaluated (the grid runs with ``score_test=False``), so choosing a proxy
  never peeks at the numbers a finding reports.
* **per proxy**: Spearman's rho and Kendall's tau against the target (bootstrap 95 % CI), the
  target accuracy of the proxy's top-1 and top-3 and their regret against the target's best,
  and the cost per candidate (candidate-steps, seconds). The recommendation is the cheapest
  proxy whose rho is at least ``rho_min`` with its lower bound above ``rho_low_min``, or
  none ("none of these holds").

Everything is rows in JSON-lines files (``proxies.jsonl`` one row per proxy and loss, appended
as each chunk of losses finishes; ``target.jsonl`` the grid machinery's rows, trained once per
cell, with per-epoch checkpoints), under a lock, so a calibration resumes after ``kill -9`` and
can run across several sittings; a rerun trains only what is missing.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ngl.data import load_cached
from ngl.evaluate.grid import (
    build_loss,
    loss_label,
    results_rows,
    run_grid,
)

# the configuration and the report have their own modules; a calibration is imported from here
from ngl.evaluate.proxy_config import (
    DEFAULT_PROXIES,
    PANEL_REFERENCES,
    PLAIN_LOSSES,
    CalibrationConfig,
    Proxy,
    calibration_dir,
    config_for,
    proxy_key,
    proxy_of,
    proxy_rows,
)
from ngl.evaluate.proxy_report import CalibrationReport, proxy_table, report_of, write_report
from ngl.fitness import train_population
from ngl.gp.expression import LossExpression
from ngl.gp.result import load_result
from ngl.gp.sampling import sample_expressions
from ngl.gp.sanity import check_candidate, make_probe
from ngl.io.config import ConfigError, check_device, require_available, resolve_device
from ngl.io.runs import RunFolder
from ngl.losses import display_name
from ngl.models import build_model

__all__ = ["Proxy", "CalibrationConfig", "CalibrationReport", "DEFAULT_PROXIES",
           "PANEL_REFERENCES", "PLAIN_LOSSES", "calibrate", "load_calibration",
           "calibration_dir", "proxy_table", "proxy_of", "config_for", "proxy_key"]


# -- the panel -----------------------------------------------------------------------------------
def _panel(config: CalibrationConfig, num_classes: int) -> list[dict]:
    """The losses to calibrate on, in a fixed order (frozen in plan.json)."""
    panel: list[dict] = []
    seen_fp: set[str] = set()
    probe = make_probe(num_classes)

    def add(name: str, spec: Any, kind: str, **extra: Any) -> None:
        panel.append({"name": name, "loss": loss_label(spec), "loss_spec": spec, "kind": kind,
                      **extra})

    def fresh(text: str) -> bool:
        """The expression passes the search's sanity filter and is a new function."""
        report = check_candidate(LossExpression.parse(text), probe)
        if not report.ok or report.fingerprint in seen_fp:
            return False
        seen_fp.add(report.fingerprint)
        return True

    for ref in config.references:
        add(_reference_name(ref), ref, "reference")
    if config.plain_losses:
        for name, text in PLAIN_LOSSES.items():
            if fresh(text):
                add(name, text, "plain")
    if config.random_trees:
        pool = sample_expressions(config.primitive_set, 50 * config.random_trees,
                                  seed=config.tree_seed)
        k = 0
        for expr in pool:
            if k == config.random_trees:
                break
            if fresh(str(expr)):
                k += 1
                add(f"random #{k}", str(expr), "random")
    if config.run_dir is not None and (config.search_top or config.search_sample):
        result = load_result(config.run_dir)
        hof = result.hall_of_fame(config.search_top) if config.search_top else result.history[:0]
        for i, (_, r) in enumerate(hof.iterrows()):
            if fresh(r["expression"]):
                add(f"search #{i + 1}", r["expression"], "search",
                    search_fitness=float(r["val_accuracy"]))
        ev = result.evaluated
        ev = ev[(ev["status"] == "ok") & ~ev["key"].isin(set(hof["key"]) if len(hof) else set())]
        ev = ev.drop_duplicates("fingerprint").drop_duplicates("key")
        take = min(config.search_sample, len(ev))
        if take:
            idx = np.sort(np.random.default_rng(config.tree_seed).choice(len(ev), take,
                                                                         replace=False))
            for j, (_, r) in enumerate(ev.iloc[idx].iterrows()):
                if fresh(r["expression"]):
                    add(f"search sample #{j + 1}", r["expression"], "search",
                        search_fitness=float(r["val_accuracy"]))
    labels = [p["loss"] for p in panel]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"the panel's losses are not distinct: {labels}")
    return panel


def _reference_name(spec: str | dict) -> str:
    """``"Focal (gamma=2.0)"`` for ``{"name": "focal", "gamma": 2.0}``; its own ``label`` wins."""
    if isinstance(spec, str):
        return display_name(spec)
    if "label" in spec:
        return str(spec["label"])
    kw = ", ".join(f"{k}={v}" for k, v in sorted(spec.items()) if k != "name")
    return display_name(spec["name"]) + (f" ({kw})" if kw else "")


def calibration_folder(out: str | os.PathLike) -> RunFolder:
    """A calibration's folder as the run kernel sees it (``plan.json`` frozen in it)."""
    return RunFolder(Path(out), "calibration folder", "plan.json", "calibrate.lock",
                     sealed=True)


def _identity(plan: dict) -> dict:
    """The plan's config as it reads now (fields added since it was written read as their
    defaults), its panel checked."""
    panel = plan["panel"]
    if not isinstance(panel, list) or not all(isinstance(p, dict) and "loss" in p
                                              and "loss_spec" in p for p in panel):
        raise ValueError("panel is not a list of losses")
    return CalibrationConfig.from_dict(plan["config"]).to_dict()


def _read_plan(out: Path, config: CalibrationConfig) -> dict | None:
    return calibration_folder(out).read_plan(
        "calibration plan", _identity, config.to_dict(), "calibrates another configuration",
        "use its config or another --out folder")


# -- proxies -------------------------------------------------------------------------------------
def _run_proxy(config: CalibrationConfig, proxy: Proxy, panel: list[dict], path: Path,
               device: str, data_root: str | None, chunk_size: int, bar: tqdm,
               should_stop) -> bool:
    """Score every panel loss not yet in ``path`` with ``proxy``; False if stopped early."""
    key = proxy_key(config, proxy)
    rows = proxy_rows(path.parent)
    done = {loss for k, loss in rows.done() if k == key}
    todo = [p for p in panel if p["loss"] not in done]
    bar.update(len(panel) - len(todo))
    if not todo:
        return True
    data = load_cached(config.dataset, None if config.dataset == "digits" else data_root,
                       proxy.n_train or config.n_train, config.n_val, None, config.data_seed)
    c, h, _w = data.input_shape
    model_fn = functools.partial(build_model, proxy.model, c, data.num_classes, h)
    for s in range(0, len(todo), chunk_size):
        if should_stop is not None and should_stop():
            return False
        chunk = todo[s:s + chunk_size]
        start = time.perf_counter()
        results = train_population(model_fn, [build_loss(p["loss_spec"]) for p in chunk],
                                   data.to(device), proxy.budget, seed=config.seed, device=device)
        wall = time.perf_counter() - start
        rows.append([{
            "proxy_key": key, "proxy": proxy.name, "loss": p["loss"], "split": "search_validation",
            **{k: getattr(r, k) for k in ("val_accuracy", "val_ce", "status", "steps_done",
                                          "train_time_s")},
            "candidate_steps": proxy.budget.steps, "wall_s": wall / len(chunk), "device": device,
        } for p, r in zip(chunk, results, strict=True)])
        bar.update(len(chunk))
    return True


def calibrate(config: CalibrationConfig | None = None, out_dir: str | os.PathLike | None = None,
              *, device: str = "auto", data_root: str | None = None, chunk_size: int = 4,
              progress: bool = True, proxies_only: bool = False,
              should_stop=None) -> CalibrationReport:
    """Run (or continue) the calibration ``config`` in ``out_dir`` (default
    :func:`calibration_dir`); return its report, written as ``table.md``/``.tex``/``.csv``,
    ``scores.csv`` and ``report.json`` there.

    How it runs never changes what it measures: ``device`` ("auto": CUDA when there is one),
    ``data_root`` (the dataset's folder) and ``chunk_size`` (losses trained together per proxy,
    the unit of resume). The proxies run first (cheap), then the target grid. ``proxies_only``
    stops after the proxies; ``should_stop()`` is asked between chunks and grid cells. Both leave a partial
    report (``complete=False``) that the same call continues.
    """
    config = config if config is not None else CalibrationConfig()
    check_device(device)
    require_available(resolve_device(device))  # one line, before anything is written
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size!r}: expected a positive integer")
    out = Path(out_dir) if out_dir is not None else calibration_dir(config)
    plan = _read_plan(out, config)
    if plan is None:  # everything checked (config, search folder, panel) before writing
        data = load_cached(config.dataset, None if config.dataset == "digits" else data_root,
                           config.n_train, config.n_val, None, config.data_seed)
        plan = {"config": config.to_dict(), "num_classes": data.num_classes,
                "panel": _panel(config, data.num_classes)}
        if config.run_dir is not None:
            plan["search_key"] = load_result(config.run_dir).spec.key
    folder = calibration_folder(out)
    with folder.lock():
        proxy_rows(out).read()  # damaged rows refused before anything is written
        results_rows(out / "target.jsonl").read()
        folder.freeze(plan)
        folder.record_sitting({"device": device, "data_root": data_root,
                               "chunk_size": chunk_size, "proxies_only": proxies_only})
        panel = plan["panel"]
        device = resolve_device(device)
        bar = tqdm(total=len(panel) * len(config.proxies), desc="proxies", disable=not progress)
        try:
            stopped = False
            for proxy in config.proxies:
                if not _run_proxy(config, proxy, panel, out / "proxies.jsonl", device,
                                  data_root, chunk_size, bar, should_stop):
                    stopped = True
                    break
        finally:
            bar.close()
        if not stopped and not proxies_only:
            run_grid(config.target_grid(panel, device, data_root), out / "target.jsonl",
                     progress=progress,
                     checkpoint_dir=out / "checkpoints", should_stop=should_stop)
        report = report_of(config, plan, out)
        write_report(report)
    return report


def load_calibration(out_dir: str | os.PathLike) -> CalibrationReport:
    """The report of a calibration folder, read back without training anything."""
    out = Path(out_dir)
    found = calibration_folder(out).read_spec(
        lambda p: (p, _identity(p), CalibrationConfig.from_dict(p["config"])),
        "calibration plan", "restore it from a copy")
    if found is None:
        raise FileNotFoundError(f"{out}: no plan.json; not a calibration folder")
    plan, _, config = found
    return report_of(config, plan, out)
