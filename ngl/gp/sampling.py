"""Random loss expressions from a primitive set (gplearn's ramped half-and-half)."""

from __future__ import annotations

import numpy as np

from ngl.gp.expression import LossExpression
from ngl.gp.primitives import PrimitiveSet

__all__ = ["sample_expressions"]


def sample_expressions(pset: PrimitiveSet, n: int, *, seed: int = 0,
                       init_depth: tuple[int, int] = (2, 4), unique: bool = True) -> list:
    """Random loss expressions by gplearn's ramped half-and-half initialisation.

    Returns :class:`ngl.gp.expression.LossExpression` objects; ``unique`` drops repeats (by text).
    """
    if n < 0:
        raise ValueError(f"n={n!r} must be >= 0")
    lo, hi = init_depth
    if not (1 <= lo <= hi):
        raise ValueError(f"init_depth={init_depth!r} must satisfy 1 <= low <= high")
    rng = np.random.RandomState(seed)
    out, seen = [], set()
    tries = 0
    while len(out) < n and tries < 50 * max(n, 1):
        tries += 1
        expr = LossExpression.from_program(pset.random_program(rng, init_depth), pset)
        if unique and expr.key in seen:
            continue
        seen.add(expr.key)
        out.append(expr)
    return out
