"""Where a found loss came from: its ancestors through the stored ``parents`` (the keys of the
previous generation's candidates that crossover or mutation made it from)."""

from __future__ import annotations

import pandas as pd

__all__ = ["lineage"]


def lineage(history: pd.DataFrame, key: str, max_depth: int = 50) -> pd.DataFrame:
    """The ancestry of the candidate ``key`` (its first appearance), one row per ancestor:
    ``depth`` (0: the loss itself), ``generation``, ``key``, ``expression``, ``origin`` (which
    operation made it: init, seed, crossover, mutation, reproduction...), ``parents`` and
    ``status`` (a rejected ancestor has no accuracy) and ``val_accuracy``. An ancestor reached twice (through both parents) is listed once."""
    cols = ["depth", "generation", "key", "expression", "origin", "parents", "status",
            "val_accuracy"]
    if not len(history) or key not in set(history["key"]):
        raise KeyError(f"no candidate with key {key!r} in this search's history")
    first = history.sort_values(["generation", "index"]).drop_duplicates(["generation", "key"])
    rows, seen = [], set()
    frontier = [(0, int(first.loc[first["key"] == key, "generation"].min()), key)]
    while frontier:
        depth, gen, k = frontier.pop(0)
        if (gen, k) in seen or depth > max_depth:
            continue
        seen.add((gen, k))
        at = first[(first["generation"] == gen) & (first["key"] == k)]
        if not len(at):  # a parent's row is missing (a partial history): stop this branch
            continue
        r = at.iloc[0]
        rows.append({"depth": depth, "generation": gen, "key": k, "expression": r["expression"],
                     "origin": r["origin"], "parents": list(r["parents"] or []),
                     "status": r.get("status"), "val_accuracy": r.get("val_accuracy")})
        frontier += [(depth + 1, gen - 1, p) for p in (r["parents"] or []) if gen > 0]
    return pd.DataFrame(rows, columns=cols)
