"""What a search produced: its history, per-generation summary and hall of fame, read from disk.

A :class:`SearchResult` needs only the spec and the history (never the checkpoint), so a
lost checkpoint hides nothing; each (generation, index) is counted once. The references
(``references.jsonl``) and the rescoring (``rescore_plan.json``, ``rescore.jsonl``) are read
beside it: they add columns to the hall of fame, never rows to the history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sympy
from torch import nn

from ngl.gp.expression import LossExpression
from ngl.gp.rundir import (
    check_user_operators,
    history_rows,
    planned_rescores,
    read_rescore_plan,
    read_run_files,
    reference_rows,
    rescore_ident,
    rescore_rows,
    search_folder,
)
from ngl.gp.spec import RunOptions, SearchSpec
from ngl.losses.registry import canonical_loss_name, loss_spec_label

__all__ = ["SearchResult", "HallOfFameEntry", "summarise_generations", "load_result"]


KNOWN_CLASSES = {"digits": 10, "fashion_mnist": 10, "mnist": 10, "cifar10": 10,
                 "cifar100": 100, "svhn": 10}
"""Classes of the built-in datasets, for folders whose sittings do not record it (ngl 0.1)."""


@dataclass(frozen=True)
class HallOfFameEntry:
    """One found loss with its search-validation score (``split`` says which data scored it).

    ``fitness_mean`` / ``fitness_std`` are its search-validation accuracy over the search's
    seed and the rescoring seeds (``SearchSpec.rescore``); None when it was not rescored.
    """

    rank: int
    expression: LossExpression
    val_accuracy: float
    size: int
    generation: int
    split: str = "search_validation"
    fitness_mean: float | None = None
    fitness_std: float | None = None

    def __loss_expression__(self) -> LossExpression:
        """The loss-expression protocol: an entry is accepted wherever an expression is
        (``draw_tree``, ``plot_loss_shapes``, grid losses, ``get_loss``)."""
        return self.expression

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
    """What a search produced: the tidy history, per-generation summary and hall of fame.

    ``reference_rows``, ``rescore_rows`` and ``rescore_plan`` are the contents of
    ``references.jsonl``, ``rescore.jsonl`` and ``rescore_plan.json`` (this spec's rows only).
    ``complete`` means every generation, every reference and (with ``rescore > 0``) every
    planned rescoring is done.
    """

    spec: SearchSpec
    options: RunOptions
    run_dir: Path
    history: pd.DataFrame
    complete: bool
    reference_rows: list[dict] = field(default_factory=list)
    rescore_rows: list[dict] = field(default_factory=list)
    rescore_plan: dict | None = None

    # -- references and rescoring -------------------------------------------------------------
    @property
    def references(self) -> pd.DataFrame:
        """One row per reference trained so far, in the spec's order: ``loss`` (its label),
        ``fitness`` (search-validation accuracy, as the hall of fame's ``val_accuracy``),
        ``val_ce`` and ``status``."""
        by_label = {r["loss"]: r for r in self.reference_rows}
        rows = [{"loss": lab, "fitness": _accuracy(by_label[lab]),
                 "val_ce": by_label[lab].get("val_ce"), "status": by_label[lab].get("status")}
                for lab in (loss_spec_label(r) for r in self.spec.references) if lab in by_label]
        return pd.DataFrame(rows, columns=["loss", "fitness", "val_ce", "status"])

    @property
    def rescores(self) -> pd.DataFrame:
        """The rows of ``rescore.jsonl``: ``kind`` (candidate or reference), ``key`` /
        ``expression`` or ``loss``, ``seed``, ``val_accuracy``, ``val_ce``, ``status``..."""
        return pd.DataFrame(self.rescore_rows)

    @property
    def ce_reference(self) -> str | None:
        """The label of the first reference that is plain cross entropy (None if none is)."""
        return next((loss_spec_label(r) for r in self.spec.references
                     if canonical_loss_name(r) == "ce"), None)

    @property
    def rescore_done(self) -> bool:
        """Every rescoring the plan asks for has its row (True when ``rescore=0``)."""
        if self.spec.rescore == 0:
            return True
        if self.rescore_plan is None:
            return False
        have = {rescore_ident(r) for r in self.rescore_rows}
        return all(rescore_ident(t) in have for t in planned_rescores(self.rescore_plan))

    def _ce_by_seed(self) -> dict[int, float]:
        label = self.ce_reference
        if label is None:
            return {}
        scores: dict[int, float] = {}
        own = [r for r in self.reference_rows if r["loss"] == label]
        if own:
            scores[self.spec.seed] = _accuracy(own[0])
        scores.update({int(r["seed"]): _accuracy(r) for r in self.rescore_rows
                       if r.get("kind") == "reference" and r.get("loss") == label})
        return scores

    @property
    def evaluated(self) -> pd.DataFrame:
        """Rows whose loss was trained or taken from the cache (not rejected)."""
        h = self.history
        return h[h["status"].isin(["ok", "nonfinite"])] if len(h) else h

    def _search_ranking(self) -> pd.DataFrame:
        """Every distinct ``ok`` loss in the search's own order: search-validation accuracy
        (ties: smaller tree, earlier generation); with halving the rung reached first."""
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
        # near-duplicates: the same accuracy and CE to 1e-9 is the same training outcome
        same = [ok["val_accuracy"].astype(float).round(9),
                ok["val_ce"].astype(float).round(9) if "val_ce" in ok else ok["val_accuracy"]]
        n_same = ok.groupby(same, dropna=False, sort=False)["key"].transform("size")
        ok = ok.assign(n_same=n_same.astype(int))
        return ok[~pd.concat(same, axis=1).duplicated()].reset_index(drop=True)

    @property
    def num_classes(self) -> int | None:
        """The number of classes of the search's data (recorded with each sitting; None for a
        folder of ngl 0.1 whose dataset is not one of the built-in ones)."""
        for sitting in reversed(search_folder(self.run_dir).sittings()):
            if isinstance(sitting.get("num_classes"), int):
                return sitting["num_classes"]
        return KNOWN_CLASSES.get(self.spec.dataset)

    @property
    def chance_level(self) -> float | None:
        """Accuracy at or below which a loss has learnt nothing to speak of: 1.5 x the chance
        rate 1/C (15 % with 10 classes). None when the number of classes is unknown."""
        c = self.num_classes
        return None if not c else 1.5 / c

    def hall_of_fame(self, n: int | None = None) -> pd.DataFrame:
        """Best distinct losses by search-validation accuracy (ties: smaller tree first); with
        successive halving, by the rung reached first, then accuracy there. ``formula`` is
        the tidied display form of ``expression`` (:meth:`LossExpression.tidy`: simplified,
        4 significant digits); ``expression`` stays the exact, stored text.

        Near-duplicates, losses with the very same search-validation accuracy and CE (the same
        training run, told apart only by a tree the probe did not separate), are one entry;
        ``n_same`` counts them. ``chance`` marks entries at or below :attr:`chance_level`.

        ``delta_ce`` is an entry's accuracy minus the CE reference's (NaN without one). With
        ``rescore > 0``: ``fitness_mean`` / ``fitness_std`` (sample std, ddof=1) / ``n_seeds``
        over the search's own seed and each rescoring seed, and ``delta_ce_mean`` (mean of the
        per-seed differences to CE, paired by seed); NaN for entries not rescored. Once the
        rescoring is done, the rescored entries come first, ranked by ``fitness_mean`` (ties:
        the search's order); the rest follow in the search's order.
        """
        ranked = self._search_ranking()
        if not len(ranked):
            return ranked
        ce = self._ce_by_seed()
        own_ce = ce.get(self.spec.seed, math.nan)
        ranked = ranked.assign(delta_ce=ranked["val_accuracy"].astype(float) - own_ce)
        if self.spec.rescore > 0:
            ranked = self._with_rescores(ranked, ce)
        top = ranked.head(n or self.options.hall_of_fame_size).reset_index(drop=True)
        chance = self.chance_level
        # the readable form for tables; "expression" stays the exact, stored text
        return top.assign(formula=[LossExpression.parse(t).tidy() for t in top["expression"]],
                          chance=(top["val_accuracy"].astype(float) <= chance) if chance
                          else False)

    def _with_rescores(self, ranked: pd.DataFrame, ce: dict[int, float]) -> pd.DataFrame:
        plan = self.rescore_plan
        planned = [c["key"] for c in plan["candidates"]] if plan else []
        seeds = set(plan["seeds"]) if plan else set()
        extra: dict[str, dict[int, float]] = {}
        for r in self.rescore_rows:
            if r.get("kind") == "candidate" and r.get("key") in planned and r["seed"] in seeds:
                extra.setdefault(r["key"], {})[int(r["seed"])] = _accuracy(r)
        stats = []  # (mean, std, n_seeds, delta_ce_mean) per hall-of-fame row
        for key, acc in zip(ranked["key"], ranked["val_accuracy"], strict=True):
            if key not in planned:
                stats.append((math.nan, math.nan, pd.NA, math.nan))
                continue
            by_seed = {self.spec.seed: float(acc), **extra.get(key, {})}
            values = np.array(list(by_seed.values()), dtype=float)
            diffs = [v - ce[s] for s, v in by_seed.items() if s in ce]
            stats.append((float(values.mean()),
                          float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                          len(values), float(np.mean(diffs)) if diffs else math.nan))
        mean, std, count, dmean = zip(*stats, strict=True)
        ranked = ranked.assign(fitness_mean=list(mean), fitness_std=list(std),
                               n_seeds=pd.array(list(count), dtype="Int64"),
                               delta_ce_mean=list(dmean))
        if not (planned and self.rescore_done):
            return ranked
        is_planned = ranked["key"].isin(planned)
        first = ranked[is_planned].sort_values("fitness_mean", ascending=False, kind="stable")
        return pd.concat([first, ranked[~is_planned]]).reset_index(drop=True)

    def entries(self, n: int | None = None) -> list[HallOfFameEntry]:
        """The hall of fame as objects with ``.to_module()``, ``.sympy()``, ``.latex()``."""
        return [HallOfFameEntry(rank=i + 1, expression=LossExpression.parse(r["expression"]),
                                val_accuracy=float(r["val_accuracy"]), size=int(r["size"]),
                                generation=int(r["generation"]),
                                fitness_mean=_optional(r.get("fitness_mean")),
                                fitness_std=_optional(r.get("fitness_std")))
                for i, r in self.hall_of_fame(n).iterrows()]

    @property
    def best(self) -> HallOfFameEntry:
        entries = self.entries(1)
        if not entries:
            raise ValueError(f"no candidate of {self.run_dir} trained successfully yet")
        return entries[0]

    def pareto(self) -> pd.DataFrame:
        """Accuracy vs expression size over the distinct trained losses, ``on_front`` marking
        the Pareto front (:func:`ngl.gp.front.pareto_front`)."""
        from ngl.gp.front import pareto_front

        return pareto_front(self.evaluated)

    def lineage(self, entry: object | None = None) -> pd.DataFrame:
        """The ancestry of ``entry`` (a key, a hall-of-fame entry or expression; default the
        best loss) through the stored parents (:func:`ngl.gp.lineage.lineage`)."""
        from ngl.gp.lineage import lineage

        target = self.best if entry is None else entry
        key = target if isinstance(target, str) and target in set(self.history["key"]) else (
            LossExpression.parse(str(getattr(target, "expression", target))).key)
        return lineage(self.history, key)

    def generation_summary(self) -> pd.DataFrame:
        """:func:`summarise_generations` of the history; ``.attrs["references"]`` holds each
        trained reference's accuracy by label, which :func:`ngl.ui.plot_search_progress`
        draws as a dashed line."""
        summary = summarise_generations(self.history)
        refs = self.references
        refs = refs[refs["status"] == "ok"]
        summary.attrs["references"] = dict(zip(refs["loss"], refs["fitness"].astype(float),
                                               strict=True))
        return summary

    def to_latex(self, n: int | None = None, caption: str | None = None,
                 include_chance: bool = False, tidy: bool = True) -> str:
        r"""The hall of fame as a booktabs table for a paper (formula in math mode, simplified
        when that is shorter, 4 significant digits; accuracy in %, size). Chance-level entries
        (:attr:`chance_level`) are left out unless ``include_chance``.

        ``caption`` is plain text, escaped like the default one (which names the dataset and
        model, e.g. ``fashion_mnist``). Needs only ``\usepackage{booktabs}``; compiles with
        pdflatex in the T1 or the default OT1 font encoding (``tests/test_latex_exports.py``).
        """
        entries = self.entries(n)
        # rescored: the mean over seeds the hall of fame is ranked by, beside the one-seed score
        # (which alone would carry the winner's curse into a paper)
        mean = any(e.fitness_mean is not None for e in entries)
        rows = [r"\begin{table}[t]", r"\centering",
                r"\begin{tabular}{rl" + ("rr" if mean else "r") + "r}", r"\toprule",
                r"rank & loss & search-val.\ acc.\ (\%)"
                + (r" & mean of seeds (\%)" if mean else "") + r" & size \\", r"\midrule"]
        chance = self.chance_level
        for e in entries:
            if chance is not None and e.val_accuracy <= chance and not include_chance:
                continue
            # simplified only where it is faithful; tidy=False: the tree as written
            formula = e.expression.tidy_latex() if tidy else e.latex()
            m = ("" if not mean else " & --" if e.fitness_mean is None
                 else f" & {100 * e.fitness_mean:.2f}")
            rows.append(f"{e.rank} & ${formula}$ & {100 * e.val_accuracy:.2f}{m} & {e.size} \\\\")
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


def _accuracy(row: dict) -> float:
    """A trained row's search-validation accuracy (a non-finite run scores 0.0, as in the
    history)."""
    acc = row.get("val_accuracy")
    return 0.0 if acc is None else float(acc)


def _optional(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


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
    spec = files.spec
    check_user_operators(run_dir, spec)  # another function under a user operator's name
    history = pd.DataFrame(history_rows(run_dir, spec))
    complete = False
    if len(history):
        history = history.sort_values(["generation", "index"]).reset_index(drop=True)
        counts = history.groupby("generation")["index"].nunique()
        complete = all(counts.get(g, 0) == spec.population_size
                       for g in range(spec.generations))
    refs = reference_rows(run_dir, spec)
    result = SearchResult(spec=spec, options=files.options, run_dir=run_dir, history=history,
                          complete=False, reference_rows=refs,
                          rescore_rows=rescore_rows(run_dir, spec),
                          rescore_plan=read_rescore_plan(run_dir, spec))
    refs_done = len(refs) == len(spec.references)
    result.complete = complete and refs_done and result.rescore_done
    return result
