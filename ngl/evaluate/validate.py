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

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from statsmodels.stats.multitest import multipletests

from ngl.data import available_datasets
from ngl.evaluate.grid import (
    GridConfig,
    grid_cells,
    load_results,
    loss_label,
    run_grid,
)
from ngl.evaluate.paper import SAME_AS_CE_BAND
from ngl.evaluate.ranking import rank_agreement
from ngl.evaluate.summary import summarise
from ngl.evaluate.tables import LOSS_NAMES, latex_escape
from ngl.gp.expression import LossExpression
from ngl.gp.result import SearchResult, load_result
from ngl.io.config import STRICT, ConfigError, ConfigMixin, OneOrMany, check_device
from ngl.io.paths import folder_of, runs_dir
from ngl.io.records import exclusive_lock, read_json, write_json_atomic, write_text_atomic
from ngl.losses import loss_specs_field
from ngl.models import available_models
from ngl.train import TrainConfig

__all__ = ["ValidateConfig", "ValidationReport", "DEFAULT_TRAIN", "DEFAULT_REFERENCES",
           "validate", "load_validation", "fidelity_correlation", "verdicts", "validation_dir"]

DEFAULT_TRAIN = TrainConfig(epochs=4, batch_size=128, lr=1e-3, optimizer="adam",
                            schedule="cosine")
"""Downstream default: with ``dense_cnn`` about 91.2 % CE test accuracy on Fashion-MNIST in about
4.5 minutes on a 2-core CPU (``benchmarks/downstream_default.py``)."""

DEFAULT_REFERENCES: tuple[str | dict[str, Any], ...] = (
    "ce", "ngl", {"name": "focal", "gamma": 2.0}, "label_smoothing")

_SEEDS = Annotated[tuple[Annotated[int, Field(ge=0)], ...], OneOrMany]


def _pairs(value: Any) -> Any:
    """``"digits:dense_cnn"`` or ``["digits", "dense_cnn"]`` -> ``("digits", "dense_cnn")``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"transfer entry {item!r}: expected 'dataset:model'")
            item = parts
        out.append(tuple(item))
    return tuple(out)


@pydantic_dataclass(frozen=True, config=STRICT)
class ValidateConfig(ConfigMixin):
    """How a search's finding is validated (JSON round-trips; its key names the output folder).

    ``dataset``/``data_seed`` default to the search's (``None``), so the held-out test split is
    the one the search never saw. ``transfer`` lists extra (dataset, model) pairs; ``None``
    means the other bundled dataset (digits <-> Fashion-MNIST) with ``model``, and
    ``small_inception`` on the search's dataset; ``()`` turns transfer off. Fidelity uses the
    top ``fidelity_top`` hall-of-fame entries plus ``fidelity_sample`` other trained candidates
    drawn at random (``fidelity_top=0`` and ``fidelity_sample=0``: off), each trained with
    ``fidelity_seeds``. ``margin`` is the paper's "same as CE" band in percentage points.
    """

    top_k: Annotated[int, Field(ge=1)] = 5
    references: Annotated[tuple[str | dict[str, Any], ...],
                          loss_specs_field("references")] = DEFAULT_REFERENCES
    baseline: str = "ce"
    seeds: _SEEDS = (0, 1, 2, 3, 4)
    model: str = "dense_cnn"
    train: TrainConfig = field(default_factory=lambda: DEFAULT_TRAIN)
    dataset: str | None = None
    data_seed: Annotated[int, Field(ge=0)] | None = None
    n_train: Annotated[int, Field(ge=1)] | None = None
    n_val: Annotated[int, Field(ge=1)] | None = None
    n_test: Annotated[int, Field(ge=1)] | None = None
    transfer: Annotated[tuple[tuple[str, str], ...] | None, BeforeValidator(_pairs)] = None
    fidelity_top: Annotated[int, Field(ge=0)] = 10
    fidelity_sample: Annotated[int, Field(ge=0)] = 10
    fidelity_seeds: _SEEDS = (0,)
    margin: Annotated[float, Field(ge=0)] = SAME_AS_CE_BAND
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    bootstrap_resamples: Annotated[int, Field(ge=100)] = 2000
    data_root: str | None = None
    device: str = "auto"

    RUN_OPTIONS = ("device", "data_root")  # how it runs: not in the key nor in "the same config"

    def __post_init__(self) -> None:
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={list(self.seeds)}: expected at least 2 distinct seeds "
                             "(paired tests need pairs; the paper uses 5)")
        if len(set(self.fidelity_seeds)) != len(self.fidelity_seeds) or not self.fidelity_seeds:
            raise ValueError(f"fidelity_seeds={list(self.fidelity_seeds)}: expected distinct seeds")
        if self.baseline not in [loss_label(r) for r in self.references]:
            raise ValueError(f"baseline={self.baseline!r} is not among references "
                             f"{[loss_label(r) for r in self.references]}")
        if self.dataset is not None and self.dataset not in available_datasets():
            raise ValueError(f"dataset={self.dataset!r}: expected one of {available_datasets()}")
        models = available_models()
        for d, m in [("", self.model), *(self.transfer or ())]:
            if d and d not in available_datasets():
                raise ValueError(f"transfer dataset {d!r}: expected one of {available_datasets()}")
            if m not in models:
                raise ValueError(f"model {m!r}: expected one of {models[:8]}...")
        check_device(self.device)


def validation_dir(result: SearchResult, config: ValidateConfig) -> Path:
    """Default output folder: ``runs/validate/<search key>/<config key>``."""
    return folder_of(runs_dir() / "validate" / result.spec.key, config)


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
    return {"search_key": result.spec.key, "search_dir": str(result.run_dir),
            "search_complete": bool(result.complete),
            "search_generations_seen": int(result.history["generation"].max()) + 1,
            "dataset": config.dataset or result.spec.dataset,
            "data_seed": config.data_seed if config.data_seed is not None else result.spec.data_seed,
            "found": found, "fidelity": fidelity, "config": config.to_dict()}


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


# -- statistics ----------------------------------------------------------------------------------
def verdicts(table: pd.DataFrame, found: list[str], margin: float, alpha: float,
             baseline: str = "ce") -> pd.DataFrame:
    """Holm-corrected p-values across the found losses, the paper's rule and the verdict.

    ``paper_rule`` is the authors' rule on the paired mean change alone (within ±margin:
    "same"). ``verdict`` is "better"/"worse" only when the rule says so *and* the paired t-test
    is significant after Holm's correction over the found losses (for a reference loss: the
    uncorrected t-test, one pre-specified comparison); "same" when the rule says so; and
    "not significant" when the change is outside the band but the test does not confirm it.
    """
    t = table.copy()
    t["p_holm"] = np.nan
    t["p_holm_wilcoxon"] = np.nan
    mask = t["loss"].isin(found) & t["p_ttest"].notna()
    if mask.any():
        t.loc[mask, "p_holm"] = multipletests(t.loc[mask, "p_ttest"], method="holm")[1]
    mask_w = t["loss"].isin(found) & t["p_wilcoxon"].notna()
    if mask_w.any():
        t.loc[mask_w, "p_holm_wilcoxon"] = multipletests(t.loc[mask_w, "p_wilcoxon"],
                                                         method="holm")[1]
    p = t["p_holm"].where(t["loss"].isin(found), t["p_ttest"])
    rule = np.where(t["delta"] > margin, "better", np.where(t["delta"] < -margin, "worse", "same"))
    t["paper_rule"] = np.where(t["delta"].isna(), "n/a", rule)
    sig = (p < alpha).fillna(False).to_numpy(dtype=bool)
    t["verdict"] = np.where(t["delta"].isna(), "n/a",
                            np.where(rule == "same", "same",
                                     np.where(sig, rule, "not significant")))
    t.loc[t["loss"] == baseline, ["paper_rule", "verdict"]] = "baseline"
    return t


def fidelity_correlation(search_fitness: np.ndarray, test_accuracy: np.ndarray,
                         resamples: int = 2000, confidence: float = 0.95,
                         seed: int = 0) -> dict[str, float]:
    """Spearman's rho of search fitness vs held-out accuracy, its p-value and a bootstrap CI
    (:func:`ngl.evaluate.ranking.rank_agreement`; NaN below 4 points or with a constant side)."""
    r = rank_agreement(search_fitness, test_accuracy, resamples, confidence, seed)
    out = {"n": r["n"], "rho": r["rho"], "p_value": r["rho_p"], "ci_low": r["rho_low"],
           "ci_high": r["rho_high"]}
    if r["n"] >= 4 and not math.isnan(r["rho"]):
        out["bootstrap_undefined"] = r["bootstrap_undefined"]
    return out


@dataclass
class ValidationReport:
    """What ``validate`` found: tidy results, the held-out table, transfer and fidelity.

    ``table``: one row per loss of the main grid (held-out test accuracy in %, paired change to
    the baseline with CI, p-values, Holm, paper rule, verdict, search fitness of found losses:
    ``search_fitness`` on the search's own seed, ``search_fitness_mean`` over its rescoring seeds).
    ``transfer``: the same per (dataset, model) pair in long form. ``fidelity``: one row per
    candidate (search fitness, mean held-out accuracy); ``fidelity_stats``: Spearman and CI.
    """

    config: ValidateConfig
    plan: dict
    out_dir: Path
    results: pd.DataFrame
    table: pd.DataFrame
    transfer: pd.DataFrame
    fidelity: pd.DataFrame
    fidelity_stats: dict[str, float]
    complete: bool

    @property
    def found(self) -> list[str]:
        return [f["expression"] for f in self.plan["found"]]

    def names(self) -> dict[str, str]:
        """Short display names: ``found #1``... for expressions, the label for references."""
        return {e: f"found #{i + 1}" for i, e in enumerate(self.found)}

    def wide(self) -> pd.DataFrame:
        """The held-out table with one extra column per transfer pair (paired change to CE)."""
        t = self.table.copy()
        for (d, m), part in self.transfer.groupby(["dataset", "model"], sort=False):
            col = part.set_index("loss")
            t[f"{d}/{m} mean"] = t["loss"].map(col["mean"])
            t[f"{d}/{m} delta"] = t["loss"].map(col["delta"])
        return t

    def to_markdown(self, decimals: int = 2) -> str:
        """The held-out table (and transfer columns) as GitHub markdown, with what it shows."""
        names = self.names()
        w = self.wide()
        pairs = [c[:-5] for c in w.columns if c.endswith(" mean")]
        head = ["loss", f"test acc. % ({self.plan['dataset']}/{self.config.model})",
                f"Δ vs {self.config.baseline} [95% CI]", "p (t)", "p (Wilcoxon)", "p Holm",
                f"paper rule (±{self.config.margin:g})", "verdict", "search fitness",
                *[f"{p}: acc. (Δ)" for p in pairs]]

        def f(v: float, sign: bool = False) -> str:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return "–"
            return f"{v:+.{decimals}f}" if sign else f"{v:.{decimals}f}"

        def p(v: float) -> str:
            return "–" if v is None or math.isnan(v) else f"{v:.3g}"

        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, r in w.iterrows():
            name = names.get(r["loss"], r["loss"])
            fit = r.get("search_fitness", math.nan)
            cells = [name, f"{f(r['mean'])} ± {f(r['std'])} (n={int(r['n'])})",
                     f"{f(r['delta'], True)} [{f(r['delta_ci_low'], True)}, "
                     f"{f(r['delta_ci_high'], True)}]", p(r["p_ttest"]), p(r["p_wilcoxon"]),
                     p(r["p_holm"]), r["paper_rule"], r["verdict"],
                     f(100 * fit) if not math.isnan(fit) else "–"]
            for pr in pairs:
                cells.append(f"{f(r[f'{pr} mean'])} ({f(r[f'{pr} delta'], True)})")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for e, n in names.items():
            lines.append(f"- {n}: `{e}`")
        if not self.plan.get("search_complete", True):
            lines.append(f"- the search was still running when these losses were chosen "
                         f"({self.plan['search_generations_seen']} generations seen)")
        fs = self.fidelity_stats
        if fs.get("n", 0):
            lines.append(f"- fidelity: Spearman ρ = {f(fs['rho'])} "
                         f"[{f(fs['ci_low'])}, {f(fs['ci_high'])}] over {fs['n']} candidates "
                         f"(search fitness vs held-out test accuracy)")
        return "\n".join(lines) + "\n"

    def to_latex(self, decimals: int = 2) -> str:
        r"""The held-out table as a booktabs tabular; found losses are named ``found #k`` in it
        and written out (math mode) in notes under it, so a reader can tell what they are.

        Names and verdicts are escaped (:func:`~ngl.evaluate.tables.latex_escape`), numbers
        rounded (p-values to 3 significant digits, below 0.001 as ``<0.001``), a missing value
        (a one-seed std, the baseline's change) is ``--`` (an en dash), as in
        :func:`~ngl.evaluate.tables.format_table`, minus signs are maths. Needs only
        ``\usepackage{booktabs}``; compiles with pdflatex in the T1 or the default OT1 font
        encoding (``tests/test_latex_exports.py`` compiles it).
        """
        names = self.names()
        base = latex_escape(LOSS_NAMES.get(self.config.baseline, self.config.baseline))

        def num(v: float, sign: bool = False) -> str:
            if v is None or pd.isna(v):
                return "--"
            return f"{v:+.{decimals}f}".replace("-", "$-$") if sign else f"{v:.{decimals}f}"

        def pval(v: float) -> str:
            return "--" if v is None or pd.isna(v) else ("$<$0.001" if v < 0.001 else f"{v:.3g}")

        rows = [r"\begin{tabular}{lrrrrl}", r"\toprule",
                rf"loss & test acc.\ (\%) & $\Delta$ vs {base} [95\,\% CI] & $p$ & "
                r"$p_\mathrm{Holm}$ & verdict \\", r"\midrule"]
        for _, r in self.table.iterrows():
            acc = rf"{num(r['mean'])} $\pm$ {num(r['std'])}"  # one seed: "90.05 ± --"
            if r["loss"] == self.config.baseline:
                ci = "--"
            elif pd.isna(r["delta_ci_low"]):  # one pair: a change, no interval
                ci = num(r["delta"], True)
            else:
                ci = (f"{num(r['delta'], True)} [{num(r['delta_ci_low'], True)}, "
                      f"{num(r['delta_ci_high'], True)}]")
            rows.append(" & ".join([latex_escape(names.get(r["loss"], r["loss"])), acc, ci,
                                    pval(r["p_ttest"]), pval(r["p_holm"]),
                                    latex_escape(r["verdict"])]) + r" \\")
        rows.append(r"\bottomrule")
        for expression, name in names.items():
            formula = LossExpression.parse(expression).latex()
            rows.append(rf"\multicolumn{{6}}{{@{{}}l}}{{{latex_escape(name)}: ${formula}$}} \\")
        rows.append(r"\end{tabular}")
        return "\n".join(rows) + "\n"


def _summaries(config: ValidateConfig, grids: dict[str, GridConfig], results: pd.DataFrame,
               plan: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    found = [f["expression"] for f in plan["found"]]
    fitness = {f["expression"]: f["search_fitness"] for f in plan["found"]}
    main = results[results["cell_key"].isin(_keys(grids["main"]))] if len(results) else results
    if len(main):
        table = summarise(main, by=("dataset", "model", "loss"), baseline=config.baseline)
    else:
        table = pd.DataFrame(columns=["dataset", "model", "loss", "n", "mean", "std", "n_failed",
                                      "delta", "delta_ci_low", "delta_ci_high", "n_pairs",
                                      "p_ttest", "p_wilcoxon", "delta_unpaired"])
    table = verdicts(table, found, config.margin, config.alpha, config.baseline)
    table["kind"] = np.where(table["loss"].isin(found), "found", "reference")
    table["search_fitness"] = table["loss"].map(fitness).astype(float)
    # plans written before rescoring existed have no mean: NaN there
    mean = {f["expression"]: f.get("search_fitness_mean", math.nan) for f in plan["found"]}
    table["search_fitness_mean"] = table["loss"].map(mean).astype(float)
    parts = []
    for name, grid in grids.items():
        if not name.startswith("transfer:"):
            continue
        sub = results[results["cell_key"].isin(_keys(grid))] if len(results) else results
        if len(sub):
            parts.append(verdicts(summarise(sub, by=("dataset", "model", "loss"),
                                            baseline=config.baseline),
                                  found, config.margin, config.alpha, config.baseline))
    transfer = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["dataset", "model", "loss", "mean", "delta"])
    return table.reset_index(drop=True), transfer


def _keys(grid: GridConfig) -> set[str]:
    return {c["cell_key"] for c in grid_cells(grid)}


def _fidelity(config: ValidateConfig, grids: dict[str, GridConfig], results: pd.DataFrame,
              plan: dict) -> tuple[pd.DataFrame, dict[str, float]]:
    cols = ["expression", "source", "search_fitness", "test_accuracy", "n_runs", "n_nonfinite"]
    if "fidelity" not in grids or not len(results):
        return pd.DataFrame(columns=cols), fidelity_correlation(np.array([]), np.array([]))
    sub = results[results["cell_key"].isin(_keys(grids["fidelity"]))]
    sub = sub[sub["status"].isin(["ok", "nonfinite"])]
    rows = []
    seen = set()
    for f in plan["fidelity"]:
        if f["expression"] in seen:
            continue
        seen.add(f["expression"])
        runs = sub[sub["loss"] == f["expression"]]
        if not len(runs):
            continue
        # a run stopped by a non-finite loss scores 0, as it does in the search
        acc = np.where(runs["status"] == "ok", runs["test_accuracy"].astype(float), 0.0)
        rows.append({"expression": f["expression"], "source": f["source"],
                     "search_fitness": f["search_fitness"], "test_accuracy": float(acc.mean()),
                     "n_runs": len(runs), "n_nonfinite": int((runs["status"] != "ok").sum())})
    points = pd.DataFrame(rows, columns=cols)
    corr = fidelity_correlation(points["search_fitness"].to_numpy(),
                                points["test_accuracy"].to_numpy(), config.bootstrap_resamples)
    return points, corr


# -- the stage -----------------------------------------------------------------------------------
def _read_plan(out_dir: Path, config: ValidateConfig) -> dict | None:
    path = out_dir / "plan.json"
    if not path.exists():
        return None
    try:
        plan = read_json(path)
        ValidateConfig.from_dict(plan["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a validation plan ({exc}); move it aside to start "
                          "over") from None
    # device and data folder are how it runs: a validation moved to a GPU resumes here
    saved = {k: v for k, v in plan["config"].items() if k not in ValidateConfig.RUN_OPTIONS}
    if saved != config.identity():
        raise ConfigError(f"{path}: this folder validates another configuration; use its "
                          "config or another --out folder")
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
    result = load_result(run_dir)
    out = Path(out_dir) if out_dir is not None else validation_dir(result, config)
    # refused before anything is written: a config for another folder, a search with no result
    fresh = None if _read_plan(out, config) is not None else _plan(result, config)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out / "validate.lock", str(out)):
        plan = _read_plan(out, config)
        if plan is None:
            plan = fresh if fresh is not None else _plan(result, config)
            write_json_atomic(out / "plan.json", plan)
        planned = plan_grids(config, plan)
        unknown = set(grids or ()) - set(planned)
        if unknown:
            raise ConfigError(f"grids={sorted(unknown)}: expected some of {list(planned)}")
        for name, grid in planned.items():
            if grids is None or name in grids:
                run_grid(grid, out / "results.jsonl", executor=executor, progress=progress,
                         callback=callback, checkpoint_dir=out / "checkpoints")
        report = _report(config, plan, out, planned)
        _write_outputs(report)
    return report


def _report(config: ValidateConfig, plan: dict, out: Path,
            planned: dict[str, GridConfig]) -> ValidationReport:
    results = load_results(out / "results.jsonl")
    table, transfer = _summaries(config, planned, results, plan)
    points, corr = _fidelity(config, planned, results, plan)
    done = set(results.loc[results["status"].isin(["ok", "nonfinite"]), "cell_key"]) if len(
        results) else set()
    complete = all(_keys(g) <= done for g in planned.values())
    return ValidationReport(config, plan, out, results, table, transfer, points, corr, complete)


def _write_outputs(report: ValidationReport) -> None:
    out = report.out_dir
    write_text_atomic(out / "table.md", report.to_markdown())
    write_text_atomic(out / "table.tex", report.to_latex())
    write_text_atomic(out / "table.csv", report.wide().to_csv(index=False))
    write_text_atomic(out / "transfer.csv", report.transfer.to_csv(index=False))
    write_text_atomic(out / "fidelity.csv", report.fidelity.to_csv(index=False))
    fs = {k: (None if isinstance(v, float) and math.isnan(v) else v)
          for k, v in report.fidelity_stats.items()}
    write_json_atomic(out / "report.json", {"complete": report.complete, "fidelity": fs,
                                            "search_key": report.plan["search_key"]})


def load_validation(out_dir: str | os.PathLike) -> ValidationReport:
    """The report of a validation folder, read back without training anything."""
    out = Path(out_dir)
    path = out / "plan.json"
    if not path.exists():
        raise FileNotFoundError(f"{out}: no plan.json; not a validation folder")
    plan = read_json(path)
    config = ValidateConfig.from_dict(plan["config"])
    return _report(config, plan, out, plan_grids(config, plan))
