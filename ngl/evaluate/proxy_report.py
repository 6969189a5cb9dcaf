"""The report of a fidelity calibration: per proxy, rank agreement with the target, regret,
cost and whether it holds (:func:`proxy_table`), read from the folder's rows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ngl.data import load_cached
from ngl.evaluate.grid import load_results
from ngl.evaluate.proxy_config import CalibrationConfig, proxy_key, proxy_rows
from ngl.evaluate.ranking import rank_agreement
from ngl.evaluate.tables import latex_escape
from ngl.io.records import write_json_atomic, write_text_atomic

__all__ = ["CalibrationReport", "proxy_table", "report_of", "write_report"]


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


def report_of(config: CalibrationConfig, plan: dict, out: Path) -> CalibrationReport:
    """The report of what the folder ``out`` holds now (partial while it runs)."""
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
    rows = proxy_rows(out).read()
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


def write_report(report: CalibrationReport) -> None:
    """``table.md``/``.tex``/``.csv``, ``scores.csv`` and ``report.json`` into its folder."""
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
