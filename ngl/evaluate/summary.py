"""Downstream results summarised: mean ± std per (dataset, loss) and paired tests against CE.

:func:`summarise` turns the results DataFrame (one row per run, from
:func:`ngl.evaluate.grid.run_grid`) into one row per (dataset, loss) (or per
(dataset, model, loss)) with ``n`` (finished runs), ``mean``, ``std`` (sample std, ddof=1),
and, against the baseline loss, paired on (model, seed) -- seed s of every loss starts from
the same initial weights, so only seeds finished by *both* the loss and the baseline count:
``delta`` (the paired mean difference, loss minus baseline), ``delta_ci_low`` /
``delta_ci_high`` (its 95% t-interval), ``n_pairs``, ``p_ttest`` (paired t-test) and
``p_wilcoxon`` (Wilcoxon signed-rank, both from :func:`paired_test`). ``delta_unpaired`` is the
plain difference of the two means over all finished runs; it can disagree with the tests when a
seed failed on one side.

Accuracies are reported in percent (``scale=100``), so deltas are percentage points.
:func:`format_summary` is the summary for people (strings; a std or interval one seed leaves
undefined is :data:`UNDEFINED`, an en dash, not ``nan``); the numbers stay NaN in the summary
itself. :mod:`ngl.evaluate.tables` formats it as a paper table; :mod:`ngl.evaluate.paper`
compares it with the paper's numbers.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ngl.losses.registry import display_name

__all__ = ["summarise", "paired_test", "format_summary", "format_number", "UNDEFINED"]

UNDEFINED = "\u2013"  # en dash: what people see for a std / interval that one seed leaves undefined


# -- statistics ----------------------------------------------------------------------------------
def paired_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95,
                ) -> dict[str, float]:
    """Paired t-test and Wilcoxon signed-rank test of ``a`` vs ``b`` (two-sided).

    Returns ``n``, ``mean_diff`` (mean of a - b), ``ci_low`` / ``ci_high`` (the t-interval
    ``mean_diff ± t_{(1+confidence)/2, n-1} sd/sqrt(n)`` that goes with the paired t-test),
    ``p_ttest`` and ``p_wilcoxon``. The interval is NaN below 2 pairs (and has zero width when
    all differences are equal); a p-value is NaN where the test is undefined (fewer than 2
    pairs, or all differences equal / zero).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} must lie in (0, 1)")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-d and of equal length, got {a.shape} and {b.shape}")
    d = a - b
    out = {"n": int(len(d)), "mean_diff": float(d.mean()) if len(d) else math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "p_ttest": math.nan, "p_wilcoxon": math.nan}
    if len(d) < 2:
        return out
    half = float(stats.t.ppf((1 + confidence) / 2, len(d) - 1) * stats.sem(d))
    out["ci_low"], out["ci_high"] = out["mean_diff"] - half, out["mean_diff"] + half
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if np.ptp(d) > 0:
            out["p_ttest"] = float(stats.ttest_rel(a, b).pvalue)
        if np.any(d != 0):
            with contextlib.suppress(ValueError):
                out["p_wilcoxon"] = float(stats.wilcoxon(a, b).pvalue)
    return out


_PAIRED_COLUMNS = ("delta", "delta_ci_low", "delta_ci_high", "n_pairs", "p_ttest", "p_wilcoxon",
                   "delta_unpaired")


def _check_unique(runs: pd.DataFrame, pair_on: Sequence[str], row: object, groups: Sequence[str],
                  ) -> None:
    """Two runs with one pairing key would be paired with each baseline run (a cross product)."""
    dup = runs.duplicated(subset=list(pair_on), keep=False)
    if dup.any():
        key = runs.loc[dup, list(pair_on)].iloc[0].to_dict()
        where = {c: row[c] for c in [*groups, "loss"]}
        raise ValueError(f"{where} has several finished runs with {key}: cannot pair them with the "
                         f"baseline; add the column that tells them apart to 'by' or 'pair_on'")


def _ok(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    if "status" in df:
        df = df[df["status"] == "ok"]
    return df[df[metric].notna()]


def summarise(results: pd.DataFrame, metric: str = "test_accuracy",
              by: Sequence[str] = ("dataset", "loss"), baseline: str | None = "ce",
              scale: float = 100.0, pair_on: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean ± std of ``metric`` per ``by`` group, paired change vs ``baseline`` and paired tests.

    Only runs with ``status == "ok"`` count; ``n_failed`` says how many others (non-finite,
    errors) a group has. ``pair_on`` (default: ``model`` and ``seed``, minus what is in ``by``)
    matches runs of a loss with the baseline's runs: ``delta`` (paired mean difference), its 95%
    CI (``delta_ci_low``, ``delta_ci_high``) and the p-values use the same ``n_pairs`` pairs, so
    they agree with each other; ``delta_unpaired`` is the difference of the group means. The
    baseline's own row has ``delta = 0``; with nothing to pair on (no ``model``/``seed``
    columns), ``delta`` stays NaN and only ``delta_unpaired`` is given. ``scale=100`` reports
    accuracies in percent. Two finished runs of one group with the same pairing key are an error
    (they would be paired with every matching baseline run).
    """
    by = list(by)
    if "loss" not in by:
        raise ValueError("'by' must contain 'loss'")
    missing = [c for c in [*by, metric] if c not in results.columns]
    if missing:
        raise ValueError(f"results have no column(s) {missing}; columns: {list(results.columns)}")
    if pair_on is None:
        pair_on = [c for c in ("model", "seed") if c not in by and c in results.columns]
    pair_on = list(pair_on)
    df = _ok(results, metric).copy()
    df["_value"] = df[metric].astype(float) * scale
    groups = [c for c in by if c != "loss"]
    rows = []
    for key, g in results.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        vals = _ok(g, metric)[metric].to_numpy(dtype=float) * scale
        rows.append({**dict(zip(by, key, strict=True)), "n": len(vals),
                     "mean": float(vals.mean()) if len(vals) else math.nan,
                     "std": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
                     "n_failed": len(g) - len(vals)})
    out = pd.DataFrame(rows, columns=[*by, "n", "mean", "std", "n_failed"])
    for col in _PAIRED_COLUMNS:
        out[col] = math.nan
    if baseline is not None:
        for i, r in out.iterrows():
            sel = np.ones(len(df), dtype=bool)
            for c in groups:
                sel &= (df[c] == r[c]).to_numpy()
            base = df[sel & (df["loss"] == baseline).to_numpy()]
            if base.empty:
                continue
            out.loc[i, "delta_unpaired"] = r["mean"] - base["_value"].mean()
            if r["loss"] == baseline:
                out.loc[i, "delta"] = 0.0
                continue
            mine = df[sel & (df["loss"] == r["loss"]).to_numpy()]
            if not pair_on:
                continue
            _check_unique(mine, pair_on, r, groups)
            _check_unique(base, pair_on, {**r, "loss": baseline}, groups)
            merged = mine.merge(base, on=pair_on, suffixes=("", "_base"))
            test = paired_test(merged["_value"], merged["_value_base"])
            out.loc[i, ["delta", "delta_ci_low", "delta_ci_high", "n_pairs", "p_ttest",
                        "p_wilcoxon"]] = (test["mean_diff"], test["ci_low"], test["ci_high"],
                                          test["n"], test["p_ttest"], test["p_wilcoxon"])
    for col in _PAIRED_COLUMNS:
        if col != "n_pairs":
            out[col] = out[col].astype(float)
    out["n_pairs"] = out["n_pairs"].fillna(0).astype(int)
    out.attrs.update({"metric": metric, "scale": scale, "baseline": baseline, "by": by})
    return out


# -- the summary for people ----------------------------------------------------------------------
def format_number(x: float | None, decimals: int = 2, sign: bool = False) -> str:
    """``x`` as text with a true minus sign (``−0.48``); NaN or None (one seed) as :data:`UNDEFINED`.

    ``sign=True`` prints ``+`` for changes (``+0.52``), so that no sign is read as no change.
    """
    if x is None or pd.isna(x):
        return UNDEFINED
    text = f"{x:+.{decimals}f}" if sign else f"{x:.{decimals}f}"
    return text.replace("-", "\u2212", 1) if text.startswith("-") else text


def format_summary(summary: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """:func:`summarise`'s result as strings, one row per group, for a notebook or a report.

    Columns: the ``by`` columns (raw keys, as in the summary), ``n`` (finished runs, with the
    failed ones when there are any), ``mean ± std``, and against the baseline the paired
    ``Δ`` (``baseline`` on its own row), its ``95% CI``, ``pairs`` and ``p (t-test)``. What one
    seed leaves undefined (std, interval, p) reads :data:`UNDEFINED`, never ``nan``; the
    summary itself keeps NaN for computing.
    """
    by = list(summary.attrs.get("by", [c for c in ("dataset", "model", "loss") if c in summary]))
    baseline = summary.attrs.get("baseline")

    def p_text(p: float) -> str:
        return UNDEFINED if pd.isna(p) else f"{p:.2g}"

    rows = []
    for r in summary.to_dict("records"):
        failed = int(r.get("n_failed", 0) or 0)
        row = {c: r[c] for c in by}
        row["n"] = f"{int(r['n'])}" + (f" ({failed} failed)" if failed else "")
        row["mean ± std"] = (f"{format_number(r['mean'], decimals)} ± "
                             f"{format_number(r['std'], decimals)}")
        if baseline is not None:
            own = r["loss"] == baseline
            row[f"Δ vs {display_name(baseline)}"] = "baseline" if own else format_number(r["delta"], decimals, sign=True)
            row["95% CI"] = UNDEFINED if own else (
                f"[{format_number(r['delta_ci_low'], decimals, sign=True)}, "
                f"{format_number(r['delta_ci_high'], decimals, sign=True)}]")
            row["pairs"] = UNDEFINED if own else f"{int(r['n_pairs'])}"
            row["p (t-test)"] = UNDEFINED if own else p_text(r["p_ttest"])
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(rows[0]) if rows else [*by, "n", "mean ± std"])
    out.attrs.update(summary.attrs)
    return out
