"""What a search produced: its history, per-generation summary and hall of fame, read from disk.

A :class:`SearchResult` needs only the spec and the history (never the checkpoint), so a
lost checkpoint hides nothing; each (generation, index) is counted once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sympy
from torch import nn

from ngl.gp.expression import LossExpression
from ngl.gp.rundir import history_rows, read_run_files
from ngl.gp.spec import RunOptions, SearchSpec

__all__ = ["SearchResult", "HallOfFameEntry", "summarise_generations", "load_result"]


@dataclass(frozen=True)
class HallOfFameEntry:
    """One found loss with its search-validation score (``split`` says which data scored it)."""

    rank: int
    expression: LossExpression
    val_accuracy: float
    size: int
    generation: int
    split: str = "search_validation"

    def to_module(self, **kwargs) -> nn.Module:
        """The loss as a module, called like ``nn.CrossEntropyLoss``."""
        return self.expression.to_module(**kwargs)

    def sympy(self) -> sympy.Expr:
        return self.expression.sympy()

    def latex(self) -> str:
        return self.expression.latex()

    def __str__(self) -> str:
        return str(self.expression)


@dataclass
class SearchResult:
    """What a search produced: the tidy history, per-generation summary and hall of fame."""

    spec: SearchSpec
    options: RunOptions
    run_dir: Path
    history: pd.DataFrame
    complete: bool
    legacy: bool = False

    @property
    def evaluated(self) -> pd.DataFrame:
        """Rows whose loss was trained or taken from the cache (not rejected)."""
        h = self.history
        return h[h["status"].isin(["ok", "nonfinite"])] if len(h) else h

    def hall_of_fame(self, n: int | None = None) -> pd.DataFrame:
        """Best distinct losses by search-validation accuracy (ties: smaller tree first); with
        successive halving, by the rung reached first, then accuracy there. ``formula`` is
        the short display form of ``expression`` (:meth:`LossExpression.display`)."""
        ok = self.evaluated
        if not len(ok):
            return ok
        ok = ok[ok["status"] == "ok"]
        # successive halving: the rung reached first (a candidate stopped early lost there)
        reached = ok["rung"].astype(float).fillna(np.inf) if "rung" in ok else np.inf
        ok = ok.assign(_reached=reached).sort_values(
            ["_reached", "val_accuracy", "size", "generation"],
            ascending=[False, False, True, True]).drop(columns="_reached")
        ok = ok.drop_duplicates("fingerprint").drop_duplicates("key")
        top = ok.head(n or self.options.hall_of_fame_size).reset_index(drop=True)
        # the readable form for tables; "expression" stays the exact, stored text
        return top.assign(formula=[LossExpression.parse(t).display() for t in top["expression"]])

    def entries(self, n: int | None = None) -> list[HallOfFameEntry]:
        """The hall of fame as objects with ``.to_module()``, ``.sympy()``, ``.latex()``."""
        return [HallOfFameEntry(rank=i + 1, expression=LossExpression.parse(r["expression"]),
                                val_accuracy=float(r["val_accuracy"]), size=int(r["size"]),
                                generation=int(r["generation"]))
                for i, r in self.hall_of_fame(n).iterrows()]

    @property
    def best(self) -> HallOfFameEntry:
        entries = self.entries(1)
        if not entries:
            raise ValueError(f"no candidate of {self.run_dir} trained successfully yet")
        return entries[0]

    def generation_summary(self) -> pd.DataFrame:
        return summarise_generations(self.history)

    def to_latex(self, n: int | None = None, caption: str | None = None) -> str:
        r"""The hall of fame as a booktabs table for a paper (formula in math mode, accuracy in
        %, size).

        ``caption`` is plain text, escaped like the default one (which names the dataset and
        model, e.g. ``fashion_mnist``). Needs only ``\usepackage{booktabs}``; compiles with
        pdflatex in the T1 or the default OT1 font encoding (``tests/test_latex_exports.py``).
        """
        rows = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{rlrr}", r"\toprule",
                r"rank & loss & search-val.\ acc.\ (\%) & size \\", r"\midrule"]
        for e in self.entries(n):
            rows.append(f"{e.rank} & ${e.latex()}$ & {100 * e.val_accuracy:.2f} & {e.size} \\\\")
        cap = caption or (f"Hall of fame of search {self.spec.key} ({self.spec.dataset}, "
                          f"{self.spec.model}, {self.spec.budget.steps} steps); accuracy on the "
                          "search-validation split, not a held-out test result.")
        rows += [r"\bottomrule", r"\end{tabular}", f"\\caption{{{_latex_text(cap)}}}",
                 r"\end{table}"]
        return "\n".join(rows) + "\n"


# LaTeX's special characters in text mode; ``<``/``>``/``|`` print as ``¡``/``¿``/``—`` in the
# default OT1 encoding. (ngl.evaluate.latex_escape, a layer above, also handles Unicode.)
_LATEX_TEXT = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
               "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
               "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
               "|": r"\textbar{}"}


def _latex_text(text: str) -> str:
    """Plain text (a caption) as LaTeX text that compiles and prints as written."""
    return "".join(_LATEX_TEXT.get(ch, ch) for ch in text)


def summarise_generations(history: pd.DataFrame) -> pd.DataFrame:
    """One row per generation: fitness quantiles, diversity, tree size, rejected/cached counts."""
    if not len(history):
        return pd.DataFrame()
    rows = []
    for gen, part in history.groupby("generation"):
        acc = part.loc[part["status"] == "ok", "val_accuracy"].astype(float)
        rows.append({
            "generation": int(gen),
            "candidates": len(part),
            "best": acc.max() if len(acc) else math.nan,
            "q75": acc.quantile(0.75) if len(acc) else math.nan,
            "median": acc.median() if len(acc) else math.nan,
            "q25": acc.quantile(0.25) if len(acc) else math.nan,
            "distinct_functions": part["fingerprint"].nunique(),
            "distinct_expressions": part["key"].nunique(),
            "mean_size": part["size"].mean(),
            "rejected": int(part["status"].str.startswith("rejected").sum()),
            "nonfinite": int((part["status"] == "nonfinite").sum()),
            "cache_hits": int(part["cache_hit"].sum()),
            "trained": int((~part["cache_hit"] & part["status"].isin(["ok", "nonfinite"])).sum()),
            "train_time_s": float(part.loc[~part["cache_hit"], "train_time_s"].fillna(0).sum()),
        })
    return pd.DataFrame(rows)


def load_result(run_dir: str | Path) -> SearchResult:
    """Read a (finished or partial) search from disk; needs only the spec and the history.

    Whether the search is complete is read from the history itself (every generation has all
    its candidates), so a lost or corrupt checkpoint does not hide results.
    """
    run_dir = Path(run_dir)
    files = read_run_files(run_dir)
    history = pd.DataFrame(history_rows(run_dir, files.spec, legacy=files.legacy))
    complete = False
    if len(history):
        history = history.sort_values(["generation", "index"]).reset_index(drop=True)
        counts = history.groupby("generation")["index"].nunique()
        complete = all(counts.get(g, 0) == files.spec.population_size
                       for g in range(files.spec.generations))
    return SearchResult(spec=files.spec, options=files.options, run_dir=run_dir, history=history,
                        complete=complete, legacy=files.legacy)
