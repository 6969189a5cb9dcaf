"""Calibration of a trained classifier: ECE, reliability diagrams, temperature scaling.

* :func:`reliability_diagram_data` bins the top-1 confidence into equal-width bins;
  :func:`expected_calibration_error` (Guo et al. 2017) and :func:`mean_confidence` summarise it.
* :func:`fit_temperature` fits ``T`` so that ``softmax(logits / T)`` has the lowest NLL on
  validation logits; :func:`calibration_report` gives ECE, confidence, accuracy and NLL before
  and after it.
* :func:`collect_logits` runs a model over a tensor of inputs in batches.
* :func:`calibration_latex` is the per-loss table of those numbers for a paper (notebook 05).

``probs`` arguments are class probabilities ``[N, C]`` (apply softmax to logits first); tensors
and arrays are both accepted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ngl.evaluate.tables import latex_escape

__all__ = [
    "expected_calibration_error",
    "reliability_diagram_data",
    "mean_confidence",
    "fit_temperature",
    "calibration_report",
    "collect_logits",
    "calibration_latex",
]


def _as_probs(probs) -> np.ndarray:
    p = probs.detach().cpu().double().numpy() if torch.is_tensor(probs) else np.asarray(probs, float)
    if p.ndim != 2:
        raise ValueError(f"probabilities must have shape [N, C], got {p.shape}")
    return p


def _as_labels(labels, n: int) -> np.ndarray:
    y = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    y = y.astype(np.int64).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} predictions")
    return y


def reliability_diagram_data(probs, labels, n_bins: int = 15) -> pd.DataFrame:
    """Equal-width confidence bins: ``bin_lower``, ``bin_upper``, ``confidence`` (mean max-prob),
    ``accuracy``, ``count``, ``fraction`` (of all samples), ``gap`` (accuracy - confidence).

    ``probs`` are class probabilities ``[N, C]`` (apply softmax to logits first). Empty bins
    have NaN confidence/accuracy and count 0.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r} must be >= 1")
    p = _as_probs(probs)
    y = _as_labels(labels, len(p))
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # (lo, hi] bins
    count = np.bincount(idx, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return pd.DataFrame({"bin_lower": edges[:-1], "bin_upper": edges[1:], "confidence": mean_conf,
                         "accuracy": acc, "count": count.astype(int),
                         "fraction": count / max(len(p), 1), "gap": acc - mean_conf})


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` over equal-width bins
    of the top-1 confidence."""
    d = reliability_diagram_data(probs, labels, n_bins)
    nz = d["count"] > 0
    return float((d.loc[nz, "fraction"] * d.loc[nz, "gap"].abs()).sum())


def mean_confidence(probs) -> float:
    """Mean top-1 probability."""
    return float(_as_probs(probs).max(axis=1).mean())


def _nll(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> float:
    return float(F.cross_entropy(logits.double() / temperature, labels.long()))


def fit_temperature(val_logits, val_labels, bounds: tuple[float, float] = (1e-2, 1e3)) -> float:
    """Temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    Solved in ``log T`` by golden-section search on ``bounds`` after a coarse grid (the NLL is
    unimodal in T for fixed logits in practice; the grid guards against a poor bracket).
    """
    z = torch.as_tensor(val_logits).detach().cpu().double()
    y = torch.as_tensor(val_labels).detach().cpu().long()
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError("val_logits must be [N, C] with N > 0 labels")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])

    def f(log_t: float) -> float:
        return _nll(z, y, math.exp(log_t))

    xs = np.linspace(lo, hi, 61)
    vals = [f(x) for x in xs]
    k = int(np.argmin(vals))
    a, b = xs[max(k - 1, 0)], xs[min(k + 1, len(xs) - 1)]
    gr = (math.sqrt(5) - 1) / 2
    c, d = b - gr * (b - a), a + gr * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(40):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - gr * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + gr * (b - a)
            fd = f(d)
    return float(math.exp((a + b) / 2))


def calibration_report(logits, labels, val_logits=None, val_labels=None, n_bins: int = 15,
                       temperature: float | None = None) -> dict[str, float]:
    """ECE, mean confidence, accuracy and NLL on (logits, labels), before and after temperature
    scaling fitted on (val_logits, val_labels) (or the given ``temperature``).

    Keys: ``accuracy``, ``ece``, ``confidence``, ``nll``, ``temperature``, ``ece_ts``,
    ``confidence_ts``, ``nll_ts`` (accuracy does not change under temperature scaling).
    """
    z = torch.as_tensor(logits).detach().cpu().double()
    y = torch.as_tensor(labels).detach().cpu().long()
    if temperature is None:
        if val_logits is None or val_labels is None:
            raise ValueError("give val_logits and val_labels (to fit T) or a temperature")
        temperature = fit_temperature(val_logits, val_labels)
    p = torch.softmax(z, -1)
    p_ts = torch.softmax(z / temperature, -1)
    return {
        "accuracy": float((z.argmax(-1) == y).double().mean()),
        "ece": expected_calibration_error(p, y, n_bins),
        "confidence": mean_confidence(p),
        "nll": _nll(z, y),
        "temperature": float(temperature),
        "ece_ts": expected_calibration_error(p_ts, y, n_bins),
        "confidence_ts": mean_confidence(p_ts),
        "nll_ts": _nll(z, y, temperature),
    }


@torch.no_grad()
def collect_logits(model: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    """Logits of ``model`` (in eval mode) on ``x``, as float32 on the CPU."""
    was = model.training
    model.eval()
    try:
        out = [model(x[i:i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.empty(0)


# readable headers of calibration_report's keys; "_ts" (after temperature scaling) is grouped
_CALIBRATION_HEADERS = {"accuracy": "acc.", "confidence": "conf.", "ece": "ECE", "nll": "NLL",
                        "temperature": "$T$"}


def _calibration_group(col: str) -> str:
    if col.endswith("_ts"):
        return "after temperature scaling"
    return "" if col == "temperature" else "before"


def calibration_latex(calib_mean: pd.DataFrame, decimals: int = 3, caption: str | None = None,
                      label: str | None = None) -> str:
    r"""Per-loss calibration numbers (rows: losses, columns: :func:`calibration_report`'s keys,
    as notebook 05's ``calib_mean``) as a booktabs ``tabular`` for a paper.

    Raw column names such as ``confidence_ts`` are not what a reader should see (and ``_`` does
    not compile in text): headers are readable (``conf.``, ``ECE``, ``NLL``, ``$T$``) under a
    "before" / "after temperature scaling" row; numbers are rounded to ``decimals``, NaN shows
    ``--``, loss names are escaped with :func:`~ngl.evaluate.tables.latex_escape`. Wrapped in a
    ``table`` when ``caption`` (plain text, escaped) or ``label`` is given. Needs
    ``\usepackage{booktabs}`` and compiles with the T1 or the default OT1 font encoding.
    """
    cols = [str(c) for c in calib_mean.columns]
    bases = [c.removesuffix("_ts") for c in cols]  # the group row says "after temperature scaling"
    heads = [_CALIBRATION_HEADERS.get(b) or latex_escape(b) for b in bases]
    groups: list[tuple[str, int, int]] = []  # (text, first, last) column numbers, 1-based
    for i, col in enumerate(cols, start=2):
        g = _calibration_group(col)
        if groups and groups[-1][0] == g:
            groups[-1] = (g, groups[-1][1], i)
        else:
            groups.append((g, i, i))
    top = " & ".join(["", *(rf"\multicolumn{{{b - a + 1}}}{{c}}{{{g}}}" if g else
                            " & ".join([""] * (b - a + 1)) for g, a, b in groups)])
    rules = "".join(rf"\cmidrule(lr){{{a}-{b}}}" for g, a, b in groups if g)
    first = latex_escape(calib_mean.index.name or "loss")
    lines = [r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule", top + r" \\", rules,
             " & ".join([first, *heads]) + r" \\", r"\midrule"]
    for name, row in calib_mean.iterrows():
        cells = ["--" if pd.isna(v) else f"{float(v):.{decimals}f}" for v in row]
        lines.append(" & ".join([latex_escape(name), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    body = "\n".join(lines)
    if caption is None and label is None:
        return body + "\n"
    head = [r"\begin{table}[t]", r"\centering"]
    if caption is not None:
        head.append(r"\caption{" + latex_escape(caption) + "}")
    if label:
        head.append(r"\label{" + label + "}")
    return "\n".join([*head, body, r"\end{table}"]) + "\n"
