"""From a search to a validated finding: held-out test accuracy, transfer and fidelity.

A search selects losses on its *search-validation* split with a cheap budget (a few hundred
steps of a small network). ``validate`` answers what a reader of a paper asks next:

* **held-out**: the top-k distinct losses of the hall of fame, plus reference losses (CE, NGL,
  focal, label smoothing), retrained at full fidelity (a downstream :class:`TrainConfig` and
  model) over several seeds and scored on the dataset's *test* split, which no part of the
  search touched (Fashion-MNIST: the official 10k test images; digits: its fixed 20 %). Seed s
  of every loss starts from the same weights and sees the same batches, so differences pair.
* **statistics**: per loss, mean ± std, the paired difference to CE with its 95 % t-interval,
  paired t-test and Wilcoxon p-values, Holm-corrected across the k found losses
  (``statsmodels``); the verdict combines the paper's ±0.5 rule with that correction.
* **transfer**: the same losses on other (dataset, model) pairs, as extra columns.
* **fidelity**: Spearman's rank correlation (bootstrap CI) between the search's fitness and the
  full-fidelity test accuracy, over the hall of fame plus a random sample of trained candidates.

It is a set of grids (:mod:`ngl.evaluate.grid`) writing into one results file, so it resumes
after any interruption and cells shared between grids are trained once. The losses to validate
are chosen once, when the output directory is created, and frozen in ``plan.json``: a rerun
(even while the search is still going) validates the same losses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ngl.evaluate.grid import (
    GridConfig,
    loss_label,
    results_rows,
    run_grid,
)

# the configuration and the report have their own modules; a validation is imported from here
from ngl.evaluate.validate_config import (
    DEFAULT_REFERENCES,
    DEFAULT_TRAIN,
    ValidateConfig,
    validation_dir,
)
from ngl.evaluate.validate_report import (
    ValidationReport,
    fidelity_correlation,
    report_of,
    verdicts,
    write_report,
)
from ngl.gp.result import SearchResult, load_result
from ngl.io.config import ConfigError, require_available, resolve_device
from ngl.io.records import read_json
from ngl.io.runs import RunFolder

__all__ = ["ValidateConfig", "ValidationReport", "DEFAULT_TRAIN", "DEFAULT_REFERENCES",
           "validate", "load_validation", "validation_folder", "fidelity_correlation", "verdicts", "validation_dir"]


# -- which losses --------------------------------------------------------------------------------
def _rescored(entry: pd.Series) -> dict:
    """The search's mean fitness over its seeds, for an entry the search rescored: the number
    the search ranked it by, kept beside the one-seed ``search_fitness`` so the finding can say
    whether the search's order held on the test split. Empty for an entry not rescored."""
    mean = entry.get("fitness_mean")
    if mean is None or pd.isna(mean):
        return {}
    return {"search_fitness_mean": float(mean), "search_seeds": int(entry["n_seeds"])}


def _plan(result: SearchResult, config: ValidateConfig) -> dict:
    """The losses to validate, chosen from the search as it stands now (frozen in plan.json)."""
    hof = result.hall_of_fame(max(config.top_k, config.fidelity_top))
    if not len(hof):
        raise ConfigError(f"{result.run_dir}: no candidate has trained successfully yet; "
                          "nothing to validate")
    found = [{"rank": i + 1, "expression": r["expression"],
              "search_fitness": float(r["val_accuracy"]), "generation": int(r["generation"]),
              **_rescored(r)}
             for i, r in hof.head(config.top_k).iterrows()]
    fidelity = [{"expression": r["expression"], "search_fitness": float(r["val_accuracy"]),
                 "source": "hall_of_fame"} for _, r in hof.head(config.fidelity_top).iterrows()]
    if config.fidelity_sample:
        ev = result.evaluated
        ev = ev[~ev["fingerprint"].isin(set(hof["fingerprint"]))]
        ev = ev.drop_duplicates("fingerprint").drop_duplicates("key")
        take = min(config.fidelity_sample, len(ev))
        if take:
            rng = np.random.default_rng(0)
            idx = np.sort(rng.choice(len(ev), size=take, replace=False))
            for _, r in ev.iloc[idx].iterrows():
                # a candidate that diverged in the search scored 0 there (its search fitness)
                fidelity.append({"expression": r["expression"],
                                 "search_fitness": float(r["val_accuracy"]) if r["status"] == "ok"
                                 else 0.0, "source": "random"})
    return {"search_key": result.spec.key, "search_spec_sha256": result.spec.digest,
            "search_dir": str(result.run_dir),
            "search_complete": bool(result.complete),
            "search_generations_seen": int(result.history["generation"].max()) + 1,
            "dataset": config.dataset or result.spec.dataset,
            "data_seed": config.data_seed if config.data_seed is not None else result.spec.data_seed,
            "found": found, "fidelity": fidelity, "config": config.to_dict()}


def _check_search(plan: dict, path: Path, result: SearchResult) -> None:
    """A validation folder belongs to the search it was planned from: another search's folder
    would report that search's found losses and fitness as this one's finding."""
    key = plan.get("search_key")
    if key != result.spec.key:
        raise ConfigError(f"{path}: this folder validates search {key!r} (from "
                          f"{plan.get('search_dir')}), not {result.spec.key} ({result.run_dir}); "
                          "use another --out folder for this search")
    sha = plan.get("search_spec_sha256")
    if sha is not None and sha != result.spec.digest:
        raise ConfigError(f"{path}: search_spec_sha256 does not match the spec of "
                          f"{result.run_dir}; the plan or the search's spec.json was edited")


def _transfer_pairs(config: ValidateConfig, dataset: str) -> tuple[tuple[str, str], ...]:
    if config.transfer is not None:
        return config.transfer
    other = "fashion_mnist" if dataset == "digits" else "digits"
    return ((other, config.model), (dataset, "small_inception"))


def _grid(config: ValidateConfig, plan: dict, dataset: str, model: str, losses: list,
          seeds: tuple[int, ...]) -> GridConfig:
    same = dataset == plan["dataset"]
    return GridConfig(
        datasets=(dataset,), models=(model,), losses=tuple(losses), seeds=seeds,
        train=config.train, n_train=config.n_train if same else None,
        n_val=config.n_val if same else None, n_test=config.n_test if same else None,
        data_seed=plan["data_seed"],
        # digits is embedded; a data folder applies to file-based datasets only
        data_root=None if dataset == "digits" else config.data_root, device=config.device)


def plan_grids(config: ValidateConfig, plan: dict) -> dict[str, GridConfig]:
    """Named grids in the order they run: ``main``, ``transfer:<dataset>/<model>``, ``fidelity``."""
    found = [f["expression"] for f in plan["found"]]
    losses = found + [r for r in config.references if loss_label(r) not in found]
    grids = {"main": _grid(config, plan, plan["dataset"], config.model, losses, config.seeds)}
    for d, m in _transfer_pairs(config, plan["dataset"]):
        if (d, m) != (plan["dataset"], config.model):
            grids[f"transfer:{d}/{m}"] = _grid(config, plan, d, m, losses, config.seeds)
    fid = list(dict.fromkeys(f["expression"] for f in plan["fidelity"]))
    if fid:
        grids["fidelity"] = _grid(config, plan, plan["dataset"], config.model, fid,
                                  config.fidelity_seeds)
    return grids


# -- the stage -----------------------------------------------------------------------------------
def _check_found(plan: dict, path: Path) -> None:
    """A plan file is shared and hand-edited: every found entry's numbers are checked before
    they reach a table (fitness scores are fractions in [0, 1], seed counts at least 1)."""
    found = plan.get("found")
    if not isinstance(found, list):
        raise ConfigError(f"{path}: found = {found!r}: expected a list of found losses")
    for i, f in enumerate(found):
        if not isinstance(f, dict) or not isinstance(f.get("expression"), str):
            raise ConfigError(f"{path}: found[{i}] = {f!r}: expected an entry with an expression")
        for name, required in (("search_fitness", True), ("search_fitness_mean", False)):
            v = f.get(name)
            if v is None and not required:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise ConfigError(f"{path}: found[{i}].{name} = {v!r}: expected a fraction "
                                  "in [0, 1]")
        seeds = f.get("search_seeds")
        if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int)
                                  or seeds < 1):
            raise ConfigError(f"{path}: found[{i}].search_seeds = {seeds!r}: expected a "
                              "whole number >= 1")


def validation_folder(out_dir: str | os.PathLike) -> RunFolder:
    """A validation's folder as the run kernel sees it (``plan.json`` frozen in it)."""
    return RunFolder(Path(out_dir), "validation folder", "plan.json", "validate.lock",
                     sealed=True)


def _identity(plan: dict) -> dict:
    """What of a plan's config decides the result: device and data folder are how it runs, so
    a validation moved to a GPU resumes in its folder."""
    ValidateConfig.from_dict(plan["config"])
    return {k: v for k, v in plan["config"].items() if k not in ValidateConfig.RUN_OPTIONS}


def _read_plan(out_dir: Path, config: ValidateConfig,
               result: SearchResult | None = None) -> dict | None:
    folder = validation_folder(out_dir)
    plan = folder.read_plan("validation plan", _identity, config.identity(),
                            "validates another configuration",
                            "use its config or another --out folder", check_seal=False)
    if plan is not None:
        _check_found(plan, folder.spec_path)
        if result is not None:
            _check_search(plan, folder.spec_path, result)
        folder.unseal(read_json(folder.spec_path), "validation plan")
    return plan


def validate(run_dir: str | os.PathLike, config: ValidateConfig | None = None,
             out_dir: str | os.PathLike | None = None, *, progress: bool = True,
             executor=None, callback=None, grids: tuple[str, ...] | None = None,
             ) -> ValidationReport:
    """Validate the search in ``run_dir`` (finished or still running) as ``config`` says.

    Writes ``plan.json`` (the losses chosen, on the first call), ``results.jsonl`` (one row
    per trained cell), ``table.md``/``table.tex``/``table.csv``, ``transfer.csv``,
    ``fidelity.csv`` and ``report.json`` into ``out_dir`` (default
    :func:`validation_dir`), locked while it runs. ``grids`` limits which of the planned grids
    run now (``"main"``, ``"transfer:<d>/<m>"``, ``"fidelity"``); the report covers what exists.
    """
    config = config if config is not None else ValidateConfig()
    require_available(resolve_device(config.device))  # one line, before anything is written
    result = load_result(run_dir)
    out = Path(out_dir) if out_dir is not None else validation_dir(result, config)
    # refused before anything is written: a config or a search for another folder, a search
    # with no result, grids the plan does not have
    fresh = _read_plan(out, config, result) or _plan(result, config)
    unknown = set(grids or ()) - set(plan_grids(config, fresh))
    if unknown:
        raise ConfigError(f"grids={sorted(unknown)}: expected some of "
                          f"{list(plan_grids(config, fresh))}")
    folder = validation_folder(out)
    with folder.lock():
        results_rows(out / "results.jsonl").read()  # damaged rows refused before any write
        plan = _read_plan(out, config, result)
        if plan is None:
            plan = fresh
            folder.freeze(plan)
        folder.record_sitting({k: getattr(config, k) for k in ValidateConfig.RUN_OPTIONS},
                              grids=None if grids is None else list(grids))
        planned = plan_grids(config, plan)
        for name, grid in planned.items():
            if grids is None or name in grids:
                run_grid(grid, out / "results.jsonl", executor=executor, progress=progress,
                         callback=callback, checkpoint_dir=out / "checkpoints")
        report = report_of(config, plan, out, planned)
        write_report(report)
    return report


def load_validation(out_dir: str | os.PathLike) -> ValidationReport:
    """The report of a validation folder, read back without training anything."""
    out = Path(out_dir)
    folder = validation_folder(out)
    plan = folder.read_spec(lambda p: (p, ValidateConfig.from_dict(p["config"])),
                            "validation plan", "restore it from a copy", check_seal=False)
    if plan is None:
        raise FileNotFoundError(f"{out}: no plan.json; not a validation folder")
    plan, config = plan
    _check_found(plan, folder.spec_path)
    folder.unseal(read_json(folder.spec_path), "validation plan", "restore it from a copy")
    return report_of(config, plan, out, plan_grids(config, plan))
