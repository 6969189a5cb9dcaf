"""What a validation found, from its folder's rows: the held-out table with paired statistics
(Holm, the paper's rule, verdicts), transfer, and the search-fidelity check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from ngl.evaluate.grid import (
    GridConfig,
    grid_cells,
    in_cell_order,
    load_results,
)
from ngl.evaluate.ranking import rank_agreement
from ngl.evaluate.summary import summarise
from ngl.evaluate.tables import LOSS_NAMES, latex_escape
from ngl.evaluate.validate_config import ValidateConfig
from ngl.gp.expression import LossExpression
from ngl.io.records import write_json_atomic, write_text_atomic
from ngl.losses import display_name

__all__ = ["ValidationReport", "verdicts", "fidelity_correlation", "report_of", "write_report"]


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
    main_keys: frozenset = frozenset()  # the cells of the main grid

    @property
    def found(self) -> list[str]:
        return [f["expression"] for f in self.plan["found"]]

    def names(self) -> dict[str, str]:
        """Short names of the found losses: ``found #1``... (their formulas go in notes)."""
        return {e: f"found #{i + 1}" for i, e in enumerate(self.found)}

    def label(self, loss: str) -> str:
        """What a table or figure prints for a loss: ``found #k`` for a found expression, the
        display name for a reference (``"CE"``, ``"Focal (gamma=2.0)"``, ``"Label
        smoothing"``), never a registry key."""
        return self.names().get(loss) or display_name(loss)

    @property
    def test_images(self) -> int | None:
        """How many test images each main-grid run was scored on (None before the first)."""
        if not len(self.results) or "sizes" not in self.results:
            return None
        main = self.results
        if self.main_keys and "cell_key" in main:  # the main grid (not transfer, fidelity)
            main = main[main["cell_key"].isin(self.main_keys)]
        sizes = [s.get("test") for s in main["sizes"] if isinstance(s, dict)]
        return int(min(sizes)) if sizes else None

    def band_images(self) -> tuple[float, int] | None:
        """(test images the paper's ±margin band spans, test images) when that is under 5:
        a same/better/worse verdict then rests on a handful of images. None otherwise."""
        n = self.test_images
        if n is None or self.config.margin / 100 * n >= 5:
            return None
        return self.config.margin / 100 * n, n

    def band_note(self) -> str | None:
        """:meth:`band_images` in words (under the table and in the figure)."""
        if self.band_images() is None:
            return None
        images, n = self.band_images()
        return (f"the ±{self.config.margin:g} pp band is {images:.1f} test images "
                f"(n_test = {n}): fewer than 5, so the paper's same/better/worse rule is at the "
                "resolution of single images here")

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
        pairs = [c[:-5] for c in w.columns if c.endswith(" mean") and c != "search_fitness mean"]
        # the search's mean over its rescoring seeds, beside the one-seed score it selected on
        rescored = "search_fitness_mean" in w and bool(w["search_fitness_mean"].notna().any())
        head = ["loss", f"test acc. % ({self.plan['dataset']}/{self.config.model})",
                f"Δ vs {self.config.baseline} [95% CI]", "p (t)", "p (Wilcoxon)", "p Holm",
                f"paper rule (±{self.config.margin:g})", "verdict", "search fitness",
                *(["search fitness, mean of seeds"] if rescored else []),
                *[f"{p}: acc. (Δ)" for p in pairs]]

        def f(v: float, sign: bool = False) -> str:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return "–"
            return f"{v:+.{decimals}f}" if sign else f"{v:.{decimals}f}"

        def p(v: float) -> str:
            return "–" if v is None or math.isnan(v) else f"{v:.3g}"

        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, r in w.iterrows():
            name = self.label(r["loss"])
            fit = r.get("search_fitness", math.nan)
            cells = [name, f"{f(r['mean'])} ± {f(r['std'])} (n={int(r['n'])})",
                     f"{f(r['delta'], True)} [{f(r['delta_ci_low'], True)}, "
                     f"{f(r['delta_ci_high'], True)}]", p(r["p_ttest"]), p(r["p_wilcoxon"]),
                     p(r["p_holm"]), r["paper_rule"], r["verdict"],
                     f(100 * fit) if not math.isnan(fit) else "–"]
            if rescored:
                mean = r.get("search_fitness_mean", math.nan)
                cells.append(f(100 * mean) if not math.isnan(mean) else "–")
            for pr in pairs:
                cells.append(f"{f(r[f'{pr} mean'])} ({f(r[f'{pr} delta'], True)})")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for e, n in names.items():
            lines.append(f"- {n}: `{e}`")
        if self.band_note():
            lines.append(f"- note: {self.band_note()}")
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
            rows.append(" & ".join([latex_escape(self.label(r["loss"])), acc, ci,
                                    pval(r["p_ttest"]), pval(r["p_holm"]),
                                    latex_escape(r["verdict"])]) + r" \\")
        rows.append(r"\bottomrule")
        for expression, name in names.items():
            formula = LossExpression.parse(expression).latex()
            rows.append(rf"\multicolumn{{6}}{{@{{}}l}}{{{latex_escape(name)}: ${formula}$}} \\")
        if self.band_images():
            images, n = self.band_images()
            rows.append(rf"\multicolumn{{6}}{{@{{}}l}}{{\footnotesize Note: the $\pm$"
                        rf"{self.config.margin:g}\,pp band is {images:.1f} test images "
                        rf"($n_\mathrm{{test}}={n}$), under 5.}} \\")
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


def report_of(config: ValidateConfig, plan: dict, out: Path,
              planned: dict[str, GridConfig]) -> ValidationReport:
    """The report of what the folder ``out`` holds now (partial while it runs)."""
    # the planned cells in plan order: the report does not depend on the file's line order
    results = load_results(out / "results.jsonl")
    if len(results):
        results = pd.DataFrame(in_cell_order(results.to_dict("records"), list(planned.values())))
    table, transfer = _summaries(config, planned, results, plan)
    points, corr = _fidelity(config, planned, results, plan)
    done = set(results.loc[results["status"].isin(["ok", "nonfinite"]), "cell_key"]) if len(
        results) else set()
    complete = all(_keys(g) <= done for g in planned.values())
    return ValidationReport(config, plan, out, results, table, transfer, points, corr, complete,
                            frozenset(_keys(planned["main"])) if "main" in planned else frozenset())


def write_report(report: ValidationReport) -> None:
    """The tables, ``fidelity.csv`` and ``report.json`` into the report's folder."""
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
