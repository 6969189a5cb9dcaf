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
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, Field, PlainSerializer, PlainValidator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from tqdm.auto import tqdm

from ngl.data import available_datasets, load_cached
from ngl.evaluate.grid import (
    GridConfig,
    build_loss,
    load_results,
    loss_label,
    run_grid,
)
from ngl.evaluate.ranking import rank_agreement
from ngl.evaluate.tables import latex_escape
from ngl.evaluate.validate import DEFAULT_TRAIN
from ngl.fitness import TrainBudget, train_population
from ngl.gp.expression import LossExpression
from ngl.gp.primitives import PrimitiveSet, preset
from ngl.gp.result import load_result
from ngl.gp.sampling import sample_expressions
from ngl.gp.sanity import check_candidate, make_probe
from ngl.gp.spec import SearchSpec, primitive_set_from
from ngl.io.config import STRICT, AsTuple, ConfigError, ConfigMixin, check_device, resolve_device
from ngl.io.paths import runs_dir
from ngl.io.records import (
    append_rows,
    exclusive_lock,
    read_json,
    read_rows,
    write_json_atomic,
    write_text_atomic,
)
from ngl.losses import display_name, loss_specs_field
from ngl.models import available_models, build_model
from ngl.train import TrainConfig

__all__ = ["Proxy", "CalibrationConfig", "CalibrationReport", "DEFAULT_PROXIES",
           "PANEL_REFERENCES", "PLAIN_LOSSES", "calibrate", "load_calibration",
           "calibration_dir", "proxy_table", "proxy_of", "config_for", "proxy_key"]

PANEL_REFERENCES: tuple[str | dict[str, Any], ...] = (
    "ce", "ngl", {"name": "focal", "gamma": 2.0}, "label_smoothing", "poly", "sce")
"""The registry's reference losses every panel holds."""

PLAIN_LOSSES: dict[str, str] = {
    "squared error": "(y_pred - y_real)*(y_pred - y_real)",
    "absolute error": "sqrt((y_pred - y_real)*(y_pred - y_real))",  # sqrt is sqrt|x|
}
"""Plain expression losses on probabilities (Brier-like and L1), name -> expression text."""


@pydantic_dataclass(frozen=True, config=STRICT)
class Proxy(ConfigMixin):
    """One candidate fitness: what a search with this ``model``, ``budget`` and ``n_train``
    (search-train subset; ``None``: the calibration's ``n_train``) would score a loss."""

    name: str
    model: str = "small_cnn"
    budget: TrainBudget = field(default_factory=lambda: TrainBudget(steps=100, batch_size=128))
    n_train: Annotated[int, Field(ge=1)] | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("proxy name must not be empty")
        if self.n_train is not None and self.n_train < 1:
            raise ValueError(f"n_train={self.n_train}: expected >= 1")
        if self.model not in available_models():
            raise ValueError(f"model={self.model!r}: expected one of {available_models()[:8]}...")


def proxy_of(spec: SearchSpec, name: str = "this search") -> Proxy:
    """The fitness of search ``spec`` as a proxy (its model, budget and search-train size)."""
    if spec.halving is not None:
        raise ConfigError("a spec with successive halving ranks by rung, not by one budget's "
                          "score; calibrate its budget without halving")
    return Proxy(name=name, model=spec.model, budget=spec.budget, n_train=spec.n_train)


def config_for(spec: SearchSpec, **fields: Any) -> CalibrationConfig:
    """A calibration on ``spec``'s data (dataset, subset sizes, data seed, seed and primitive
    set), with ``spec``'s own fitness as the first proxy unless ``proxies`` are given."""
    base = {"dataset": spec.dataset, "n_train": spec.n_train, "n_val": spec.n_val,
            "data_seed": spec.data_seed, "seed": spec.seed, "primitive_set": spec.primitive_set,
            "proxies": (proxy_of(spec),)}
    return CalibrationConfig(**{**base, **fields})


def _proxy(name: str, model: str, steps: int, schedule: str = "constant") -> Proxy:
    return Proxy(name=name, model=model,
                 budget=TrainBudget(steps=steps, batch_size=128, schedule=schedule))


DEFAULT_PROXIES: tuple[Proxy, ...] = (
    _proxy("small_cnn 100", "small_cnn", 100),  # the search's default before calibration
    _proxy("small_cnn 300 cos", "small_cnn", 300, "cosine"),
    _proxy("dense_cnn 100", "dense_cnn", 100),
    _proxy("dense_cnn 100 cos", "dense_cnn", 100, "cosine"),
    _proxy("dense_cnn 300 cos", "dense_cnn", 300, "cosine"),
)
"""The proxies a calibration compares unless told otherwise: the old default, longer and
annealed small_cnn, and the downstream model itself at search budgets."""


def _proxies(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(Proxy.from_dict(v) if isinstance(v, dict) else v for v in value)
    return value


@pydantic_dataclass(frozen=True, config=STRICT)
class CalibrationConfig(ConfigMixin):
    """A fidelity calibration (JSON round-trips; its key names the output folder).

    ``n_train``/``n_val``/``data_seed`` are the search's subset sizes and data seed: every proxy
    trains on that search-train subset (unless it names its own ``n_train``) and every score,
    the target's too, is taken on that search-validation subset. ``seed`` is the proxies'
    training seed (a search's ``seed``: common random numbers for every loss). Where it runs
    (device, data folder, chunk size) is given to :func:`calibrate` and never changes the
    key: a calibration moved from CPU to GPU continues in the same folder.
    """

    dataset: str = "digits"
    n_train: Annotated[int, Field(ge=1)] | None = None
    n_val: Annotated[int, Field(ge=1)] | None = None
    data_seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    references: Annotated[tuple[str | dict[str, Any], ...],
                          loss_specs_field("references")] = PANEL_REFERENCES
    plain_losses: bool = True
    random_trees: Annotated[int, Field(ge=0)] = 6
    primitive_set: Annotated[PrimitiveSet, PlainValidator(primitive_set_from),
                             PlainSerializer(lambda p: p.to_dict())] = field(
        default_factory=lambda: preset("paper"))
    tree_seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    run_dir: str | None = None
    search_top: Annotated[int, Field(ge=0)] = 3
    search_sample: Annotated[int, Field(ge=0)] = 3
    proxies: Annotated[tuple[Proxy, ...], BeforeValidator(_proxies)] = DEFAULT_PROXIES
    target_model: str = "dense_cnn"
    target_train: TrainConfig = field(default_factory=lambda: DEFAULT_TRAIN)
    target_seeds: Annotated[tuple[Annotated[int, Field(ge=0)], ...],
                            AsTuple] = (0, 1)
    rho_min: Annotated[float, Field(ge=-1, le=1)] = 0.8
    rho_low_min: Annotated[float, Field(ge=-1, le=1)] = 0.5
    bootstrap_resamples: Annotated[int, Field(ge=100, le=100_000)] = 2000

    def __post_init__(self) -> None:
        if self.dataset not in available_datasets():
            raise ValueError(f"dataset={self.dataset!r}: expected one of {available_datasets()}")
        if self.target_model not in available_models():
            raise ValueError(f"target_model={self.target_model!r}: expected one of "
                             f"{available_models()[:8]}...")
        if len(self.target_seeds) < 2 or len(set(self.target_seeds)) != len(self.target_seeds):
            raise ValueError(f"target_seeds={list(self.target_seeds)}: expected at least 2 "
                             "distinct seeds (one seed's ranking is partly noise)")
        if not self.proxies:
            raise ValueError("proxies must not be empty")
        names = [p.name for p in self.proxies]
        if len(set(names)) != len(names):
            raise ValueError(f"proxy names must be unique, got {names}")
        labels = [loss_label(r) for r in self.references]
        if len(set(labels)) != len(labels):
            raise ValueError(f"reference labels must be unique, got {labels}")
        for i, ref in enumerate(self.references):  # refused now, not as error rows later
            try:
                build_loss(ref)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"references[{i}]={ref!r}: {exc}") from None

    def target_grid(self, panel: list[dict], device: str = "auto",
                    data_root: str | None = None) -> GridConfig:
        """The target as a grid: every panel loss x target seed, validation scores only."""
        return GridConfig(
            datasets=(self.dataset,), models=(self.target_model,),
            losses=tuple(p["loss_spec"] for p in panel), seeds=self.target_seeds,
            train=self.target_train, n_train=None, n_val=self.n_val, data_seed=self.data_seed,
            data_root=None if self.dataset == "digits" else data_root, device=device,
            score_test=False)


def calibration_dir(config: CalibrationConfig) -> Path:
    """Default output folder: ``runs/calibrate/<config key>``."""
    return runs_dir() / "calibrate" / config.key


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


def _read_plan(out: Path, config: CalibrationConfig) -> dict | None:
    path = out / "plan.json"
    if not path.exists():
        return None
    try:
        plan = read_json(path)
        saved = plan["config"]
        panel = plan["panel"]
        if not isinstance(panel, list) or not all(isinstance(p, dict) and "loss" in p
                                                  and "loss_spec" in p for p in panel):
            raise ValueError("panel is not a list of losses")
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ConfigError(f"{path}: not a calibration plan ({exc}); move it aside to start "
                          "over") from None
    try:  # fields added since the plan was written read as their defaults
        same = CalibrationConfig.from_dict(saved) == config
    except (ValueError, TypeError):
        same = False
    if not same:
        raise ConfigError(f"{path}: this folder calibrates another configuration; use its "
                          "config or another --out folder")
    return plan


# -- proxies -------------------------------------------------------------------------------------
def proxy_key(config: CalibrationConfig, proxy: Proxy) -> str:
    """What decides a proxy's scores: the proxy and the calibration's data and seed (not its
    name, so renaming a proxy keeps its rows)."""
    d = proxy.to_dict()
    d.pop("name")
    d.update(dataset=config.dataset, n_train=proxy.n_train or config.n_train,
             n_val=config.n_val, data_seed=config.data_seed, seed=config.seed)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _run_proxy(config: CalibrationConfig, proxy: Proxy, panel: list[dict], path: Path,
               device: str, data_root: str | None, chunk_size: int, bar: tqdm,
               should_stop) -> bool:
    """Score every panel loss not yet in ``path`` with ``proxy``; False if stopped early."""
    key = proxy_key(config, proxy)
    done = {r["loss"] for r in read_rows(path) if r.get("proxy_key") == key}
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
        append_rows(path, [{
            "proxy_key": key, "proxy": proxy.name, "loss": p["loss"], "split": "search_validation",
            **{k: getattr(r, k) for k in ("val_accuracy", "val_ce", "status", "steps_done",
                                          "train_time_s")},
            "candidate_steps": proxy.budget.steps, "wall_s": wall / len(chunk), "device": device,
        } for p, r in zip(chunk, results, strict=True)])
        bar.update(len(chunk))
    return True


# -- the report ----------------------------------------------------------------------------------
@dataclass
class CalibrationReport:
    """What ``calibrate`` measured.

    ``scores``: one row per panel loss (name, kind, target mean/std over seeds, one column per
    proxy). ``table``: one row per proxy (cost, rho/tau with CIs, top-k regret, whether it
    holds, which one is recommended). ``recommended``: the proxy's name or None.
    ``target_agreement``: rank agreement of the target with itself across its first two seeds
    (how far full training itself repeats its order; a proxy cannot be expected to beat it).
    """

    config: CalibrationConfig
    plan: dict
    out_dir: Path
    scores: pd.DataFrame
    table: pd.DataFrame
    recommended: str | None
    target_agreement: dict[str, float]
    complete: bool

    @property
    def verdict(self) -> str:
        if self.recommended is not None:
            return (f"recommended proxy: {self.recommended} (the cheapest with rho >= "
                    f"{self.config.rho_min:g} and its lower bound > {self.config.rho_low_min:g})")
        if not self.complete:
            return "incomplete: run the same command to continue"
        return (f"none of these holds (no proxy has rho >= {self.config.rho_min:g} with its "
                f"lower bound > {self.config.rho_low_min:g})")

    def to_markdown(self, decimals: int = 2) -> str:
        t = self.table

        def f(v: Any, d: int = decimals) -> str:
            return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"

        head = ["proxy", "model", "steps", "schedule", "n_train", "batch", "s / candidate",
                "n", "Spearman ρ [95% CI]", "Kendall τ [95% CI]", "ρ, trainable only (n)",
                "top-1 target acc. %",
                "regret@1", "regret@3", "holds"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, r in t.iterrows():
            mark = "**recommended**" if r["recommended"] else ("yes" if r["holds"] else "no")
            lines.append("| " + " | ".join([
                str(r["proxy"]), str(r["model"]), str(r["steps"]), str(r["schedule"]),
                str(r["n_train"]), str(r["batch_size"]), f(r["seconds_per_candidate"]),
                str(int(r["n"])), f"{f(r['rho'])} [{f(r['rho_low'])}, {f(r['rho_high'])}]",
                f"{f(r['tau'])} [{f(r['tau_low'])}, {f(r['tau_high'])}]",
                f"{f(r['rho_trainable'])} [{f(r['rho_low_trainable'])}, "
                f"{f(r['rho_high_trainable'])}] ({int(r['n_trainable'])})",
                f(100 * r["top1_target"]), f(100 * r["regret1"]), f(100 * r["regret3"]),
                mark + (f" ({r['note']})" if r["note"] else "")]) + " |")
        ta = self.target_agreement
        lines += ["", f"- target: {self.config.target_model}, {self.config.target_train.epochs} "
                  f"epochs ({self.config.target_train.optimizer}, "
                  f"{self.config.target_train.schedule}), seeds {list(self.config.target_seeds)}, "
                  f"scored on the search-validation split; panel of {len(self.plan['panel'])} "
                  "losses",
                  f"- the target against itself (seed {self.config.target_seeds[0]} vs "
                  f"{self.config.target_seeds[1]}): ρ = {f(ta['rho'])} "
                  f"[{f(ta['rho_low'])}, {f(ta['rho_high'])}]",
                  "- trainable: losses whose target accuracy is at least twice chance",
                  "- regret: the target's best accuracy minus that of the proxy's top-1 (best of "
                  "its top 3), in points", f"- {self.verdict}"]
        return "\n".join(lines) + "\n"

    def to_latex(self, decimals: int = 2) -> str:
        r"""The proxy table as a booktabs tabular (needs ``\usepackage{booktabs}``)."""

        def f(v: Any) -> str:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return "--"
            return f"{v:.{decimals}f}".replace("-", "$-$")

        rows = [r"\begin{tabular}{lrrrrl}", r"\toprule",
                r"proxy & s/cand. & Spearman $\rho$ [95\,\% CI] & Kendall $\tau$ & "
                r"regret@1 & holds \\", r"\midrule"]
        for _, r in self.table.iterrows():
            mark = "recommended" if r["recommended"] else ("yes" if r["holds"] else "no")
            rows.append(" & ".join([
                latex_escape(r["proxy"]), f(r["seconds_per_candidate"]),
                f"{f(r['rho'])} [{f(r['rho_low'])}, {f(r['rho_high'])}]", f(r["tau"]),
                f(100 * r["regret1"]), latex_escape(mark)]) + r" \\")
        rows += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(rows) + "\n"


def proxy_table(config: CalibrationConfig, scores: pd.DataFrame,
                costs: dict[str, tuple[float, int]], chance: float = 0.1) -> pd.DataFrame:
    """One row per proxy: rank agreement with the target, top-k regret, cost, holds.

    ``scores`` has a ``target`` column and one column per proxy name (NaN where not measured);
    ``costs`` maps a proxy name to (seconds per candidate, candidate-steps). Ties in a proxy's
    ranking count against it: among losses it scores alike, the one with the lower target
    accuracy is taken first (a constant proxy's top-1 is the panel's worst loss).
    ``*_trainable`` repeats rho over the losses whose target accuracy is at least twice
    ``chance`` (1 / classes): broken losses are easy to rank, and a panel with several of them
    flatters every proxy; among the losses that train, the order is what a search needs.
    """
    rows = []
    for proxy in config.proxies:
        both = scores[["target", proxy.name]].dropna() if proxy.name in scores else scores[:0]
        x, y = both[proxy.name].to_numpy(), both["target"].to_numpy()
        stat = rank_agreement(x, y, config.bootstrap_resamples)
        trainable = y >= 2 * chance  # losses that train: the ones a search must tell apart
        sub = rank_agreement(x[trainable], y[trainable], config.bootstrap_resamples)
        stat.update({f"{k}_trainable": sub[k] for k in ("n", "rho", "rho_low", "rho_high")})
        order = np.lexsort((y, -x))  # by proxy score, ties: lower target first
        best = float(y.max()) if len(y) else math.nan
        top1 = float(y[order[0]]) if len(y) else math.nan
        top3 = float(y[order[:3]].max()) if len(y) else math.nan
        holds = bool(stat["rho"] >= config.rho_min and stat["rho_low"] > config.rho_low_min)
        note = ""
        if len(x) >= 3 and np.ptp(x) == 0:
            note = "constant: no ranking"
        seconds, steps = costs.get(proxy.name, (math.nan, proxy.budget.steps))
        rows.append({"proxy": proxy.name, "model": proxy.model, "steps": proxy.budget.steps,
                     "schedule": proxy.budget.schedule,
                     "n_train": proxy.n_train or config.n_train or "all",
                     "batch_size": proxy.budget.batch_size, "lr": proxy.budget.lr,
                     "candidate_steps": steps, "seconds_per_candidate": seconds,
                     **stat, "target_best": best, "top1_target": top1, "regret1": best - top1,
                     "top3_target": top3, "regret3": best - top3, "holds": holds, "note": note})
    table = pd.DataFrame(rows)
    table["recommended"] = False
    held = table[table["holds"]]
    if len(held):
        pick = held.sort_values(["seconds_per_candidate", "candidate_steps"], kind="stable").index[0]
        table.loc[pick, "recommended"] = True
    return table


def _report(config: CalibrationConfig, plan: dict, out: Path) -> CalibrationReport:
    panel = plan["panel"]
    scores = pd.DataFrame([{k: p.get(k) for k in ("name", "loss", "kind", "search_fitness")}
                           for p in panel])
    target = load_results(out / "target.jsonl", config.target_grid(panel))
    per_seed = pd.DataFrame(index=scores["loss"])
    if len(target):
        done = target[target["status"].isin(["ok", "nonfinite"])]
        # a run stopped by a non-finite loss scores 0, as it does in a search
        acc = np.where(done["status"] == "ok", done["val_accuracy"].astype(float), 0.0)
        per_seed = done.assign(acc=acc).pivot_table(index="loss", columns="seed", values="acc")
        per_seed = per_seed.reindex(scores["loss"])
    complete_target = len(per_seed.columns) == len(config.target_seeds) and \
        not per_seed.isna().any().any() if len(per_seed.columns) else False
    scores["target"] = per_seed.mean(axis=1).to_numpy() if len(per_seed.columns) else math.nan
    scores["target_std"] = per_seed.std(axis=1, ddof=1).to_numpy() if len(
        per_seed.columns) > 1 else math.nan
    # a loss counts for the target only once every seed has its row
    if len(per_seed.columns):
        scores.loc[per_seed.isna().any(axis=1).to_numpy(), "target"] = math.nan
    rows = read_rows(out / "proxies.jsonl") if (out / "proxies.jsonl").exists() else []
    costs: dict[str, tuple[float, int]] = {}
    complete = complete_target
    for proxy in config.proxies:
        key = proxy_key(config, proxy)
        mine = {r["loss"]: r for r in rows if r.get("proxy_key") == key}
        scores[proxy.name] = [float(mine[lo]["val_accuracy"]) if lo in mine else math.nan
                              for lo in scores["loss"]]
        complete &= all(lo in mine for lo in scores["loss"])
        secs = [float(r.get("wall_s", r.get("train_time_s", math.nan))) for r in mine.values()]
        costs[proxy.name] = (float(np.median(secs)) if secs else math.nan, proxy.budget.steps)
    if len(per_seed.columns) >= 2:
        a, b = config.target_seeds[:2]
        pair = per_seed[[a, b]].dropna() if {a, b} <= set(per_seed.columns) else per_seed[:0]
        agreement = rank_agreement(pair[a].to_numpy(), pair[b].to_numpy(),
                                   config.bootstrap_resamples)
    else:
        agreement = rank_agreement(np.array([]), np.array([]))
    classes = plan.get("num_classes") or load_cached(
        config.dataset, None, config.n_train, config.n_val, None, config.data_seed).num_classes
    table = proxy_table(config, scores, costs, chance=1 / classes)
    rec = table.loc[table["recommended"], "proxy"]
    return CalibrationReport(config, plan, out, scores, table,
                             str(rec.iloc[0]) if len(rec) and complete else None, agreement,
                             bool(complete))


def _write_outputs(report: CalibrationReport) -> None:
    out = report.out_dir
    write_text_atomic(out / "table.md", report.to_markdown())
    write_text_atomic(out / "table.tex", report.to_latex())
    write_text_atomic(out / "table.csv", report.table.to_csv(index=False))
    write_text_atomic(out / "scores.csv", report.scores.to_csv(index=False))
    write_json_atomic(out / "report.json", {
        "complete": report.complete, "recommended": report.recommended,
        "verdict": report.verdict,
        "target_agreement": {k: (None if isinstance(v, float) and math.isnan(v) else v)
                             for k, v in report.target_agreement.items()}})


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
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out / "calibrate.lock", str(out)):
        if not (out / "plan.json").exists():
            write_json_atomic(out / "plan.json", plan)
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
        report = _report(config, plan, out)
        _write_outputs(report)
    return report


def load_calibration(out_dir: str | os.PathLike) -> CalibrationReport:
    """The report of a calibration folder, read back without training anything."""
    out = Path(out_dir)
    path = out / "plan.json"
    if not path.exists():
        raise FileNotFoundError(f"{out}: no plan.json; not a calibration folder")
    try:
        config = CalibrationConfig.from_dict(read_json(path)["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a calibration plan ({exc})") from None
    plan = _read_plan(out, config)
    return _report(config, plan, out)
