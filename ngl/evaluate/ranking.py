"""Rank agreement between two scorings of the same losses: Spearman's rho and Kendall's tau,
each with a percentile-bootstrap interval over the (x, y) pairs.

Why its own module: the search-fidelity check of :func:`ngl.evaluate.validate` and the proxy
calibration (:mod:`ngl.evaluate.proxy_calibration`) ask the same question -- does a cheap
score order losses as the expensive one does -- and must answer it the same way.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

__all__ = ["rank_agreement"]


def rank_agreement(x: np.ndarray, y: np.ndarray, resamples: int = 2000,
                   confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """``rho``/``tau`` with p-values and bootstrap CIs (``rho_low``/``rho_high``,
    ``tau_low``/``tau_high``) of ``x`` against ``y``.

    Both statistics are NaN below 3 points or when one side is constant (no ranking to compare:
    a proxy that scores every loss alike says nothing). The intervals are NaN below 4 points or
    when the statistic is undefined (a constant resample, likely with few, tied points) in more
    than half of the resamples; such resamples are dropped and counted in
    ``bootstrap_undefined`` (``scipy.stats.bootstrap`` would give NaN as soon as one is).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    out = {"n": int(len(x)), "rho": math.nan, "rho_p": math.nan, "rho_low": math.nan,
           "rho_high": math.nan, "tau": math.nan, "tau_p": math.nan, "tau_low": math.nan,
           "tau_high": math.nan, "bootstrap_undefined": 0}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    rho, tau = stats.spearmanr(x, y), stats.kendalltau(x, y)
    out.update(rho=float(rho.statistic), rho_p=float(rho.pvalue), tau=float(tau.statistic),
               tau_p=float(tau.pvalue))
    if len(x) < 4:
        return out
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(resamples, len(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhos = np.array([stats.spearmanr(x[i], y[i]).statistic for i in idx], dtype=float)
        taus = np.array([stats.kendalltau(x[i], y[i]).statistic for i in idx], dtype=float)
    tail = 100 * (1 - confidence) / 2
    for name, values in (("rho", rhos), ("tau", taus)):
        ok = values[np.isfinite(values)]
        out["bootstrap_undefined"] = max(out["bootstrap_undefined"], int(resamples - len(ok)))
        if len(ok) >= resamples // 2:
            low, high = np.percentile(ok, [tail, 100 - tail])
            out[f"{name}_low"], out[f"{name}_high"] = float(low), float(high)
    return out
