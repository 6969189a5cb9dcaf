"""What a loss does to one sample, without training: the confidence it drives to, its gradient scale.

Every function here takes any ngl loss module (hand-written or a found
:class:`ngl.LossExpression` compiled with ``to_module()``): logits ``[B, C]`` and class-index
targets, with a ``reduction`` attribute.

* :func:`optimum_confidence` solves numerically for the true-class probability a loss drives a
  single sample to (CE: 1; label smoothing: ``1 - eps + eps / C``; NGL: about 0.57 / 0.39 / 0.36
  for C = 2 / 10 / 100); :func:`optimum_table` tabulates it.
* :func:`gradient_scale` compares the norm of ``d loss / d logits`` with CE's. NGL averages over
  the C classes *and* its softmax derivatives are O(1/C), so its gradient is roughly ``1/C^2`` of
  CE's (0.36x for C = 2, 0.08x for C = 10 at a uniform prediction); :func:`gradient_scale_table`
  tabulates it.

Optimizers and NGL. Adam and AdamW divide each update by a running estimate of the gradient's
scale, so multiplying a loss by a constant does not change their trajectory (up to ``eps``):
NGL's small gradient costs nothing there. Plain SGD (with or without momentum) steps
``lr * gradient``; at the learning rate that suits CE, NGL's steps are ``~1/C^2`` as large
(12x smaller for C = 10, ~1000x for C = 100) and it barely trains. Use
:func:`sgd_lr_for` to rescale: ``lr_NGL = lr_CE / gradient_scale(NGL, C)`` gives NGL steps of
CE's size near an uninformed prediction. :func:`ngl.evaluate.sensitivity.optimizer_sweep`
measures both.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ngl.losses import CrossEntropy, per_sample_losses

__all__ = [
    "optimum_confidence",
    "optimum_table",
    "gradient_scale",
    "gradient_scale_table",
    "sgd_lr_for",
]


# -- helpers ----------------------------------------------------------------------------------
def _check_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} must be an int >= 2")
    return num_classes


def _symmetric_logits(margin: Tensor, num_classes: int) -> Tensor:
    """Logits ``[a, 0, ..., 0]`` for each margin ``a`` (shape ``[N, C]``)."""
    z = torch.zeros(len(margin), num_classes, dtype=torch.float64)
    z[:, 0] = margin
    return z


def _logits_for_p(p_true: float, num_classes: int) -> Tensor:
    """One row of logits whose softmax gives ``p_true`` to class 0 and shares the rest equally."""
    if not 0 < p_true < 1:
        raise ValueError(f"p_true={p_true!r} must lie in (0, 1)")
    margin = math.log(p_true) - math.log((1 - p_true) / (num_classes - 1))
    return _symmetric_logits(torch.tensor([margin], dtype=torch.float64), num_classes)


# -- optimum confidence ---------------------------------------------------------------------------
def optimum_confidence(loss: nn.Module, num_classes: int, *, margin_range: tuple[float, float] = (-20.0, 40.0),
                       grid: int = 1201, free_check: bool = True, seed: int = 0,
                       return_details: bool = False) -> float | dict[str, float]:
    """True-class probability that minimises ``loss`` for one sample (target class 0).

    Solved on the logits: a dense grid plus golden-section refinement over the symmetric family
    ``z = [a, 0, ..., 0]`` (true class ``p = e^a / (e^a + C - 1)``, the others sharing the rest),
    and, with ``free_check``, an unconstrained L-BFGS minimisation over all C logits from a
    random start (float64) that confirms the symmetric family contains the optimum. The returned
    value is the ``p_true`` of whichever solution has the lower loss (they agree for every loss
    in :mod:`ngl.losses`). A loss that keeps improving as ``p -> 1`` (CE) returns a value at the
    end of ``margin_range`` (> 0.999999).

    ``return_details=True`` returns a dict: ``p_symmetric``, ``p_free``, ``p_true``,
    ``loss_symmetric``, ``loss_free``, ``margin``.
    """
    num_classes = _check_classes(num_classes)
    lo, hi = margin_range
    target = torch.zeros(1, dtype=torch.long)

    def f(a: np.ndarray) -> np.ndarray:
        a_t = torch.as_tensor(np.atleast_1d(a), dtype=torch.float64)
        z = _symmetric_logits(a_t, num_classes)
        with torch.no_grad():
            v = per_sample_losses(loss, z, target.expand(len(a_t)))
        return v.numpy()

    xs = np.linspace(lo, hi, grid)
    vals = f(xs)
    vals = np.where(np.isfinite(vals), vals, np.inf)
    k = int(np.argmin(vals))
    a, b = xs[max(k - 1, 0)], xs[min(k + 1, grid - 1)]
    gr = (math.sqrt(5) - 1) / 2  # golden section on [a, b]
    c, d = b - gr * (b - a), a + gr * (b - a)
    fc, fd = f(c)[0], f(d)[0]
    for _ in range(80):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - gr * (b - a)
            fc = f(c)[0]
        else:
            a, c, fc = c, d, fd
            d = a + gr * (b - a)
            fd = f(d)[0]
    margin = (a + b) / 2
    loss_sym = float(f(margin)[0])
    if vals[k] < loss_sym:  # an end point of the range
        margin, loss_sym = float(xs[k]), float(vals[k])
    p_sym = float(torch.softmax(_symmetric_logits(torch.tensor([margin], dtype=torch.float64),
                                                  num_classes), -1)[0, 0])
    out = {"p_symmetric": p_sym, "loss_symmetric": loss_sym, "margin": float(margin),
           "p_free": float("nan"), "loss_free": float("nan")}
    p_best = p_sym
    if free_check:
        g = torch.Generator().manual_seed(seed)
        z = (0.5 * torch.randn(1, num_classes, generator=g, dtype=torch.float64)).requires_grad_(True)
        opt = torch.optim.LBFGS([z], lr=1.0, max_iter=200, tolerance_grad=1e-12,
                                tolerance_change=1e-14, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            v = per_sample_losses(loss, z, target).sum()
            v.backward()
            return v

        with contextlib.suppress(RuntimeError):  # a non-finite line search keeps the last z
            opt.step(closure)
        with torch.no_grad():
            zc = z.detach().clamp(-1e4, 1e4)
            loss_free = float(per_sample_losses(loss, zc, target)[0])
            p_free = float(torch.softmax(zc, -1)[0, 0])
        out.update(p_free=p_free, loss_free=loss_free)
        if math.isfinite(loss_free) and loss_free < loss_sym - 1e-9 * max(1.0, abs(loss_sym)):
            p_best = p_free
    out["p_true"] = p_best
    return out if return_details else p_best


def optimum_table(losses: Mapping[str, nn.Module], classes: Sequence[int] = (2, 10, 100),
                  free_check: bool = True) -> pd.DataFrame:
    """Tidy table: one row per (loss, C) with the optimum ``p_true`` and the uniform ``1/C``.

    Columns: ``loss``, ``num_classes``, ``p_true``, ``p_symmetric``, ``p_free``, ``uniform``.
    """
    rows = []
    for name, loss in losses.items():
        for c in classes:
            d = optimum_confidence(loss, int(c), free_check=free_check, return_details=True)
            rows.append({"loss": name, "num_classes": int(c), "p_true": d["p_true"],
                         "p_symmetric": d["p_symmetric"], "p_free": d["p_free"],
                         "uniform": 1.0 / int(c)})
    return pd.DataFrame(rows)


# -- gradient scale ---------------------------------------------------------------------------------
def _grad_norm(loss: nn.Module, logits: Tensor, target: Tensor) -> float:
    z = logits.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(per_sample_losses(loss, z, target).sum(), z)
    return float(g.norm())


def gradient_scale(loss: nn.Module, num_classes: int, at: str | float = "uniform",
                   p_trained: float = 0.9, reference: nn.Module | None = None,
                   relative: bool = True) -> float:
    """Norm of ``d loss / d logits`` for one sample, relative to CE's at the same point.

    ``at="uniform"``: all logits 0 (an uninformed network, the start of training).
    ``at="trained"``: the true class has ``p_trained`` (0.9 by default), the others share the
    rest. A float ``at`` is used as ``p_true`` directly. ``relative=False`` returns the raw norm;
    ``reference`` replaces CE as the yardstick.
    """
    num_classes = _check_classes(num_classes)
    if at == "uniform":
        z = torch.zeros(1, num_classes, dtype=torch.float64)
    elif at == "trained":
        z = _logits_for_p(p_trained, num_classes)
    elif isinstance(at, (int, float)) and not isinstance(at, bool):
        z = _logits_for_p(float(at), num_classes)
    else:
        raise ValueError(f"at={at!r}; expected 'uniform', 'trained' or a probability in (0, 1)")
    target = torch.zeros(1, dtype=torch.long)
    norm = _grad_norm(loss, z, target)
    if not relative:
        return norm
    ref = _grad_norm(reference if reference is not None else CrossEntropy(), z, target)
    return norm / ref


def gradient_scale_table(losses: Mapping[str, nn.Module], classes: Sequence[int] = (2, 10, 100),
                         at: Sequence[str | float] = ("uniform", "trained"),
                         p_trained: float = 0.9) -> pd.DataFrame:
    """Tidy table: ``loss``, ``num_classes``, ``at``, ``ratio`` (to CE), ``grad_norm`` (raw)."""
    rows = []
    for name, loss in losses.items():
        for c in classes:
            for where in at:
                rows.append({"loss": name, "num_classes": int(c), "at": str(where),
                             "ratio": gradient_scale(loss, int(c), where, p_trained),
                             "grad_norm": gradient_scale(loss, int(c), where, p_trained, relative=False)})
    return pd.DataFrame(rows)


def sgd_lr_for(loss: nn.Module, num_classes: int, ce_lr: float) -> float:
    """SGD learning rate that gives ``loss`` CE-sized steps near a uniform prediction.

    ``ce_lr / gradient_scale(loss, num_classes, "uniform")``: for NGL with C = 10 about 12x CE's
    learning rate. Adam/AdamW need no such rescaling (they are invariant to the loss's scale).
    """
    return float(ce_lr) / gradient_scale(loss, num_classes, "uniform")
