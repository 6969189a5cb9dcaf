"""Paper-style tables from downstream results: mean ± std, best in bold, change vs CE, paired tests.

Everything is a pandas object first:

- :func:`summarise` turns the results DataFrame (one row per run, from
  :func:`ngl.evaluate.grid.run_grid`) into one row per (dataset, loss) (or per
  (dataset, model, loss)) with ``n`` (finished runs), ``mean``, ``std`` (sample std, ddof=1),
  and, against the baseline loss, paired on (model, seed) -- seed s of every loss starts from
  the same initial weights, so only seeds finished by *both* the loss and the baseline count:
  ``delta`` (the paired mean difference, loss minus baseline), ``delta_ci_low`` /
  ``delta_ci_high`` (its 95% t-interval), ``n_pairs``, ``p_ttest`` (paired t-test) and
  ``p_wilcoxon`` (Wilcoxon signed-rank). ``delta_unpaired`` is the plain difference of the two
  means over all finished runs; it can disagree with the tests when a seed failed on one side.
- :func:`format_table` pivots a summary to losses x datasets as strings
  (``"90.12 ± 0.31 (+0.52)"``), :func:`best_mask` says which cell of each column is best;
  :func:`to_latex` (booktabs, ``\\textbf`` for the best, escaped) and :func:`to_markdown`
  export them.
- :func:`paper_table` loads the numbers the authors reported (``ngl/resources/paper_results.csv``)
  and :func:`compare_with_paper` puts "paper" and "reproduced" side by side.

Accuracies are shown in percent (``scale=100``), so deltas are percentage points. The paper's
deltas are "as printed": whether they are percentage points or relative % is not stated.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence
from importlib import resources

import numpy as np
import pandas as pd

__all__ = ["summarise", "paired_test", "format_table", "best_mask", "to_latex", "to_markdown",
           "paper_table", "paper_wide", "compare_with_paper", "latex_escape", "DATASET_NAMES",
           "LOSS_NAMES", "PAPER_CITATION", "PAPER_CAVEAT", "SAME_AS_CE_BAND"]

PAPER_CITATION = (
    "S. Akhmedova and N. Koerber, 'Next Generation Loss Function for Image Classification', "
    "arXiv:2404.12948 (2024), Springer LNCS doi:10.1007/978-3-031-78128-5_22; numbers from the "
    "authors' early README (ZKI-PH-ImageAnalysis/Next-Generation-Loss)."
)
PAPER_CAVEAT = (
    "Paper row CE: accuracy in %, mean over ResNet50 and InceptionV3, 5 runs each; other rows: "
    "change against CE as printed -- the source does not state whether these are percentage "
    "points or relative %."
)
SAME_AS_CE_BAND = 0.5  # the authors' decision rule: a change within [-0.5, +0.5] is "same as CE"

DATASET_NAMES = {
    "digits": "Digits", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100", "malaria": "Malaria", "pcam": "PCam",
    "colorectal_histology": "Colorectal Histology", "caltech101": "Caltech 101", "mean": "mean",
}
LOSS_NAMES = {
    "ce": "CE", "ngl": "NGL", "focal": "Focal", "label_smoothing": "Label smoothing",
    "sce": "SCE", "poly": "Poly-1", "baikal": "Baikal", "ce_l2": "CE + L2",
}


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
    from scipy import stats

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


# -- wide tables -----------------------------------------------------------------------------
def _columns(summary: pd.DataFrame) -> list[str]:
    return [c for c in summary.attrs.get("by", ["dataset", "loss"]) if c != "loss"]


def _pivot(summary: pd.DataFrame, value: str) -> pd.DataFrame:
    cols = _columns(summary)
    wide = summary.pivot_table(index="loss", columns=cols, values=value, aggfunc="first",
                               sort=False, dropna=False)
    order = list(dict.fromkeys(summary["loss"]))
    return wide.reindex(order)


def best_mask(summary: pd.DataFrame, higher_is_better: bool = True, decimals: int | None = 2,
              ) -> pd.DataFrame:
    """Boolean losses x columns frame: True where a cell has the best mean of its column.

    Means are compared after rounding to ``decimals`` (what the reader sees), so printed ties
    are all bold.
    """
    means = _pivot(summary, "mean")
    shown = means.round(decimals) if decimals is not None else means
    best = shown.max() if higher_is_better else shown.min()
    return shown.eq(best, axis=1) & shown.notna()


def _fmt(x: float, decimals: int, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "--"
    s = f"{x:+.{decimals}f}" if sign else f"{x:.{decimals}f}"
    return s.replace("-", "\u2212") if sign and s.startswith("-") else s


def format_table(summary: pd.DataFrame, decimals: int = 2, show_delta: bool = True,
                 show_n: bool | None = None, alpha: float | None = 0.05,
                 higher_is_better: bool = True, bold: tuple[str, str] = ("", ""),
                 pm: str = " ± ", minus: str = "\u2212", show_ci: bool = False) -> pd.DataFrame:
    """Losses x datasets (x models) table of strings ``mean ± std (delta)``.

    ``delta`` is the *paired* mean change against the baseline (over seeds both finished), the
    quantity the ``*`` of the paired t-test is about; ``show_ci`` adds its 95% interval
    (``(+0.79 [-0.20, +1.78])``). ``bold`` wraps the best cell of each column (e.g.
    ``("**", "**")``); ``alpha`` appends ``*`` where the paired t-test against the baseline has
    p < alpha; ``show_n`` appends ``[n=k]`` per cell (default: only when cells have different
    numbers of runs).
    """
    means, stds, deltas = (_pivot(summary, v) for v in ("mean", "std", "delta"))
    ns, ps = _pivot(summary, "n"), _pivot(summary, "p_ttest")
    lows, highs = _pivot(summary, "delta_ci_low"), _pivot(summary, "delta_ci_high")

    def signed(x: float) -> str:
        return _fmt(x, decimals, sign=True).replace(chr(0x2212), minus)

    mask = best_mask(summary, higher_is_better, decimals)
    if show_n is None:
        show_n = summary["n"].nunique() > 1
    baseline = summary.attrs.get("baseline")
    out = pd.DataFrame(index=means.index, columns=means.columns, dtype=object)
    for loss in means.index:
        for col in means.columns:
            m = means.loc[loss, col]
            if pd.isna(m):
                out.loc[loss, col] = "--"
                continue
            s = stds.loc[loss, col]
            text = f"{m:.{decimals}f}" + ("" if pd.isna(s) else f"{pm}{s:.{decimals}f}")
            if mask.loc[loss, col]:
                text = f"{bold[0]}{text}{bold[1]}"
            d = deltas.loc[loss, col]
            if show_delta and loss != baseline and not pd.isna(d):
                lo, hi = lows.loc[loss, col], highs.loc[loss, col]
                ci = (f" [{signed(lo)}, {signed(hi)}]" if show_ci and not pd.isna(lo) else "")
                text += f" ({signed(d)}{ci})"
            p = ps.loc[loss, col]
            if alpha is not None and not pd.isna(p) and p < alpha:
                text += "*"
            if show_n:
                text += f" [n={int(ns.loc[loss, col])}]"
            out.loc[loss, col] = text
    out.attrs.update(summary.attrs)
    out.attrs["n_runs"] = sorted(set(int(v) for v in summary["n"]))
    return out


def latex_escape(text: object) -> str:
    """Escape LaTeX special characters in plain text."""
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}"}
    return "".join(repl.get(ch, ch) for ch in str(text))


def _header(col: object) -> str:
    parts = col if isinstance(col, tuple) else (col,)
    return " / ".join(DATASET_NAMES.get(str(p), str(p)) for p in parts)


def _caption_note(summary: pd.DataFrame) -> str:
    ns = sorted(set(int(v) for v in summary["n"]))
    metric = summary.attrs.get("metric", "test_accuracy").replace("_", " ")
    unit = " (%)" if summary.attrs.get("scale") == 100 else ""
    runs = f"n = {ns[0]} runs per cell" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]} runs per cell"
    base = summary.attrs.get("baseline")
    tail = (f"; in brackets the paired mean change against {LOSS_NAMES.get(base, base)} over "
            f"the seeds both finished, * paired t-test p < 0.05" if base else "")
    return f"{metric}{unit}, mean ± std over {runs}; best of each column in bold{tail}."


def to_latex(summary: pd.DataFrame, caption: str | None = None, label: str | None = None,
             decimals: int = 2, show_delta: bool = True, pretty: bool = True,
             higher_is_better: bool = True, alpha: float | None = 0.05, show_ci: bool = False,
             ) -> str:
    """A booktabs ``tabular`` (wrapped in ``table`` when ``caption``/``label`` is given); the
    change in brackets is the paired one (see :func:`format_table`)."""
    tab = format_table(summary, decimals=decimals, show_delta=show_delta, alpha=alpha,
                       higher_is_better=higher_is_better, bold=("\x00B", "\x00E"),
                       pm=" \x00PM ", minus="\x00MINUS", show_ci=show_ci)

    def cell(text: str) -> str:
        t = latex_escape(text)
        t = t.replace("\x00PM", r"$\pm$").replace("\x00MINUS", r"$-$").replace("*", r"$^{*}$")
        return t.replace("\x00B", r"\textbf{").replace("\x00E", "}")

    cols = list(tab.columns)
    lines = [r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule",
             "Loss & " + " & ".join(latex_escape(_header(c)) for c in cols) + r" \\", r"\midrule"]
    for loss, row in tab.iterrows():
        name = LOSS_NAMES.get(str(loss), str(loss)) if pretty else str(loss)
        lines.append(latex_escape(name) + " & " + " & ".join(cell(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    body = "\n".join(lines)
    if caption is None and label is None:
        return body + "\n"
    head = [r"\begin{table}[t]", r"\centering"]
    cap = caption if caption is not None else _caption_note(summary)
    head.append(r"\caption{" + latex_escape(cap).replace("±", r"$\pm$") + "}")
    if label:
        head.append(r"\label{" + label + "}")
    return "\n".join([*head, body, r"\end{table}"]) + "\n"


def to_markdown(summary: pd.DataFrame, decimals: int = 2, show_delta: bool = True,
                pretty: bool = True, higher_is_better: bool = True, note: bool = True,
                alpha: float | None = 0.05, show_ci: bool = False) -> str:
    """A GitHub-markdown table, best of each column in ``**bold**``, with a one-line note; the
    change in brackets is the paired one (see :func:`format_table`)."""
    tab = format_table(summary, decimals=decimals, show_delta=show_delta, alpha=alpha,
                       higher_is_better=higher_is_better, bold=("**", "**"), show_ci=show_ci)
    cols = list(tab.columns)

    def esc(t: str) -> str:
        return str(t).replace("|", r"\|")

    lines = ["| loss | " + " | ".join(esc(_header(c)) for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for loss, row in tab.iterrows():
        name = LOSS_NAMES.get(str(loss), str(loss)) if pretty else str(loss)
        lines.append(f"| {esc(name)} | " + " | ".join(esc(v).replace("*", r"\*")
                                                       .replace(r"\*\*", "**") for v in row) + " |")
    text = "\n".join(lines) + "\n"
    if note:
        text += "\n" + _caption_note(summary) + "\n"
    return text


# -- the paper's numbers ---------------------------------------------------------------------
def paper_table() -> pd.DataFrame:
    """The authors' reported downstream numbers, long form.

    Columns: ``loss`` (as printed), ``loss_id`` (our name: ce, sce, focal, ce_l2, f1..f4, ngl),
    ``dataset``, ``dataset_id``, ``value``, ``kind`` (``accuracy_percent`` for CE,
    ``change_vs_ce`` for the others). See :data:`PAPER_CITATION` and :data:`PAPER_CAVEAT`.
    """
    path = resources.files("ngl") / "resources" / "paper_results.csv"
    with resources.as_file(path) as p:
        df = pd.read_csv(p, comment="#")
    df.attrs.update({"citation": PAPER_CITATION, "caveat": PAPER_CAVEAT})
    return df


def paper_wide() -> pd.DataFrame:
    """The paper's table as printed: losses x datasets (CE absolute, others changes)."""
    df = paper_table()
    wide = df.pivot_table(index="loss", columns="dataset", values="value", sort=False)
    wide = wide.reindex(index=list(dict.fromkeys(df["loss"])),
                        columns=list(dict.fromkeys(df["dataset"])))
    wide.attrs.update(df.attrs)
    return wide


def compare_with_paper(summary: pd.DataFrame, band: float = SAME_AS_CE_BAND) -> pd.DataFrame:
    """Paper and reproduced numbers side by side, per (dataset, loss) present in both.

    ``summary`` must come from :func:`summarise` with ``by=("dataset", "loss")`` and
    ``baseline="ce"`` in percent. Columns: ``paper_ce`` (CE accuracy %), ``paper_delta``
    (change as printed), ``ours_mean``, ``ours_std``, ``ours_delta`` (paired mean change vs CE
    over the seeds both finished, percentage points) with its 95% CI ``ours_ci_low`` /
    ``ours_ci_high``, ``n``, ``n_pairs``, ``p_ttest``, and the authors' verdict rule applied to
    both (``better`` / ``same`` / ``worse`` with ``same`` = change within ±``band``; ours uses
    the paired change, the one the p-value tests). The ``caveat`` attribute says that the
    paper's unit of change is not stated.
    """
    if summary.attrs.get("by", ["dataset", "loss"]) != ["dataset", "loss"]:
        raise ValueError("compare_with_paper needs a summary by ('dataset', 'loss')")
    paper = paper_table()
    ce = paper[paper.kind == "accuracy_percent"].set_index("dataset_id")["value"]
    delta = paper[paper.kind == "change_vs_ce"].set_index(["dataset_id", "loss_id"])["value"]

    def verdict(d: float) -> str:
        if pd.isna(d):
            return "--"
        return "same" if abs(d) <= band else ("better" if d > 0 else "worse")

    rows = []
    for _, r in summary.iterrows():
        ds, loss = r["dataset"], r["loss"]
        if ds not in ce.index:
            continue
        paper_delta = 0.0 if loss == "ce" else delta.get((ds, loss), math.nan)
        rows.append({"dataset": ds, "loss": loss, "paper_ce": ce[ds],
                     "paper_delta": paper_delta,
                     "paper_verdict": verdict(paper_delta) if loss != "ce" else "--",
                     "ours_mean": r["mean"], "ours_std": r["std"], "ours_delta": r["delta"],
                     "ours_ci_low": r["delta_ci_low"], "ours_ci_high": r["delta_ci_high"],
                     "ours_verdict": verdict(r["delta"]) if loss != "ce" else "--",
                     "n": r["n"], "n_pairs": r["n_pairs"], "p_ttest": r["p_ttest"]})
    out = pd.DataFrame(rows, columns=["dataset", "loss", "paper_ce", "paper_delta", "paper_verdict",
                                      "ours_mean", "ours_std", "ours_delta", "ours_ci_low",
                                      "ours_ci_high", "ours_verdict", "n", "n_pairs", "p_ttest"])
    out.attrs.update({"citation": PAPER_CITATION, "caveat": PAPER_CAVEAT})
    return out.set_index(["dataset", "loss"])
