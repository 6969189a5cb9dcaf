"""Accuracy against expression size across a search's trained candidates, the Pareto front
marked (PySR's view of a search): a loss is on the front when no other loss is at least as
accurate with a tree at most as large, and strictly better in one of the two. Of several losses
with the very same size and accuracy, one (the most accurate-first, earliest) is marked."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["pareto_front"]


def pareto_front(evaluated: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct trained ``ok`` loss (``key``, ``expression``, ``size``,
    ``val_accuracy``, ``generation``), ``on_front`` True for the non-dominated ones; sorted by
    size, then accuracy (best first)."""
    cols = ["key", "expression", "size", "val_accuracy", "generation"]
    if not len(evaluated):
        return pd.DataFrame(columns=[*cols, "on_front"])
    ok = evaluated[evaluated["status"] == "ok"]
    ok = ok.sort_values(["val_accuracy", "generation"], ascending=[False, True])
    ok = ok.drop_duplicates("key")[cols].astype({"size": int, "val_accuracy": float})
    ok = ok.sort_values(["size", "val_accuracy"], ascending=[True, False]).reset_index(drop=True)
    # sorted by size (then accuracy, best first): a loss is on the front when it is more
    # accurate than every smaller-or-equal tree before it
    best_before = np.maximum.accumulate(np.r_[-np.inf, ok["val_accuracy"].to_numpy()[:-1]])
    first_of_size = ~ok["size"].duplicated().to_numpy()
    on = (ok["val_accuracy"].to_numpy() > best_before) & first_of_size
    return ok.assign(on_front=on)
