"""The paper's downstream numbers, and ours side by side with them.

:func:`paper_table` loads the numbers the authors reported (``ngl/resources/paper_results.csv``,
long form), :func:`paper_wide` shows them as printed, and :func:`compare_with_paper` puts "paper"
and "reproduced" (a :func:`ngl.evaluate.summary.summarise` summary) side by side with the
authors' verdict rule (a change within ±:data:`SAME_AS_CE_BAND` is "same as CE") applied to both.

The paper's deltas are "as printed": whether they are percentage points or relative % is not
stated (:data:`PAPER_CAVEAT`); ours are percentage points. :data:`PAPER_CITATION` says where the
numbers come from. :func:`format_comparison` is the side-by-side table for people: strings, with
an en dash where one seed leaves a std or interval undefined (the numbers stay NaN).
"""

from __future__ import annotations

import math
from importlib import resources

import pandas as pd

from ngl.evaluate.summary import UNDEFINED, format_number

__all__ = ["paper_table", "paper_wide", "compare_with_paper", "format_comparison", "PAPER_CITATION",
           "PAPER_CAVEAT", "SAME_AS_CE_BAND"]

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
    """The paper's table as printed: losses x datasets (CE absolute, others changes).

    The source's ``mean`` column holds mean *changes*, so CE's is 0; here CE's ``mean`` is its
    mean accuracy over the seven datasets instead, in the unit of the rest of its row.
    """
    df = paper_table()
    wide = df.pivot_table(index="loss", columns="dataset", values="value", sort=False)
    wide = wide.reindex(index=list(dict.fromkeys(df["loss"])),
                        columns=list(dict.fromkeys(df["dataset"])))
    ce = df[df["kind"] == "accuracy_percent"]
    if "mean" in wide.columns and len(ce):
        wide.loc[ce["loss"].iloc[0], "mean"] = ce["value"].mean()
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


def format_comparison(side: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """:func:`compare_with_paper`'s table as strings, for a notebook or a report.

    Same index (dataset, loss: raw keys) and rows; columns ``paper CE (%)``, ``paper Δ``,
    ``paper verdict``, ``ours mean ± std``, ``ours Δ [95% CI]``, ``ours verdict``, ``n``,
    ``pairs``, ``p (t-test)``. A std, interval or p-value that one seed leaves undefined, and a
    change or verdict that does not apply (CE against itself), read as an en dash
    (:data:`ngl.evaluate.summary.UNDEFINED`), never ``nan``; ``side`` itself keeps NaN. Carries
    ``side``'s citation and caveat.
    """
    def verdict(v: object) -> str:
        return UNDEFINED if v in (None, "--") or pd.isna(v) else str(v)

    rows = []
    for r in side.reset_index().to_dict("records"):
        ce = r.get("loss") == "ce"  # the baseline: no change against itself
        ci = (f"[{format_number(r['ours_ci_low'], decimals, sign=True)}, "
              f"{format_number(r['ours_ci_high'], decimals, sign=True)}]")
        rows.append({
            "paper CE (%)": format_number(r["paper_ce"], 1),
            "paper Δ": UNDEFINED if ce else format_number(r["paper_delta"], decimals, sign=True),
            "paper verdict": verdict(r["paper_verdict"]),
            "ours mean ± std": (f"{format_number(r['ours_mean'], decimals)} ± "
                                f"{format_number(r['ours_std'], decimals)}"),
            "ours Δ [95% CI]": UNDEFINED if ce else f"{format_number(r['ours_delta'], decimals, sign=True)} {ci}",
            "ours verdict": verdict(r["ours_verdict"]),
            "n": f"{int(r['n'])}",
            "pairs": f"{int(r['n_pairs'])}",
            "p (t-test)": UNDEFINED if ce or pd.isna(r["p_ttest"]) else f"{r['p_ttest']:.2g}",
        })
    out = pd.DataFrame(rows, index=side.index, columns=[
        "paper CE (%)", "paper Δ", "paper verdict", "ours mean ± std", "ours Δ [95% CI]",
        "ours verdict", "n", "pairs", "p (t-test)"])
    out.attrs.update(side.attrs)
    return out
