"""Several searches side by side: one tidy frame of their per-generation progress, labelled,
with each one's references, for an overlay figure (:func:`ngl.ui.plot_compare`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd

from ngl.gp.result import SearchResult, load_result

__all__ = ["compare"]


def compare(runs: Sequence[str | os.PathLike | SearchResult] | Mapping[str, object]
            ) -> pd.DataFrame:
    """Per-generation rows of every search: ``search`` (its key), ``label`` (the mapping's
    key, else ``dataset/model seed=s`` made unique), ``generation``, ``best``, ``median``,
    ``q25``, ``q75``, ``diversity`` (distinct functions), ``mean_size``, and ``references``
    (``{label: accuracy}`` of the search's references, the same on each of its rows)."""
    items = list(runs.items()) if isinstance(runs, Mapping) else [(None, r) for r in runs]
    if not items:
        raise ValueError("compare needs at least one search (run directories or results)")
    frames, used = [], set()
    for given, run in items:
        res = run if isinstance(run, SearchResult) else load_result(run)
        label = given if given is not None else (
            f"{res.spec.dataset}/{res.spec.model} seed={res.spec.seed}")
        base, k = label, 2
        while label in used:  # two searches of the same setting: told apart, never merged
            label, k = f"{base} ({k})", k + 1
        used.add(label)
        summary = res.generation_summary()
        if not len(summary):
            continue
        refs = dict(summary.attrs.get("references") or {})
        frames.append(pd.DataFrame({
            "search": res.spec.key, "label": label, "generation": summary["generation"],
            "best": summary["best"], "median": summary["median"], "q25": summary["q25"],
            "q75": summary["q75"], "diversity": summary["distinct_functions"],
            "mean_size": summary["mean_size"], "references": [refs] * len(summary)}))
    if not frames:
        raise ValueError("none of the searches has a finished generation yet")
    return pd.concat(frames, ignore_index=True)
