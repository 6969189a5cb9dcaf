"""Cheap checks before a candidate loss costs a training run: rejection and equivalence.

On a fixed probe batch of near-uniform logits (an untrained network's predictions) a
candidate is rejected when its loss is non-finite, constant, not differentiable in the
prediction, or when a small gradient step does not raise the true-class probability. The
probe sits near uniform on purpose: NGL's optimum is an interior confidence (about 0.39 for
10 classes), so a probe near confident predictions would reject the very loss the paper found.

Candidates whose loss values and gradients agree on the probe are functionally equivalent for
training; :func:`fingerprint` gives them the same hash so the search trains one of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from ngl.gp.expression import LossExpression

__all__ = ["Probe", "SanityReport", "check_candidate", "make_probe"]


@dataclass(frozen=True)
class Probe:
    """A fixed batch of logits and integer targets used for every candidate."""

    logits: torch.Tensor
    target: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])


def make_probe(num_classes: int, n: int = 64, scale: float = 0.5, seed: int = 1234) -> Probe:
    """Near-uniform float32 logits (``scale * N(0, 1)``) and random targets, fixed by ``seed``.

    float32 like training, so a loss that overflows in training is caught here too.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} must be >= 2")
    if n < 1:
        raise ValueError(f"n={n!r} must be >= 1")
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, num_classes, generator=g, dtype=torch.float32) * scale
    target = torch.randint(0, num_classes, (n,), generator=g)
    return Probe(logits, target)


@dataclass(frozen=True)
class SanityReport:
    """``status`` is ``ok`` or the rejection reason; ``fingerprint`` identifies equivalent losses."""

    status: str
    fingerprint: str | None = None
    detail: str = ""
    true_class_gain: float = float("nan")

    @property
    def ok(self) -> bool:
        return self.status == "ok"




def _quantise(x: np.ndarray, rel: float = 1e-7) -> np.ndarray:
    """Snap float64 values to a grid of ``rel * max|x|``: rounding noise of differently written
    but equal formulas (~1e-15) almost never straddles a grid line, real differences do."""
    scale = float(np.max(np.abs(x))) if x.size else 0.0
    if scale == 0.0 or not np.isfinite(scale):
        return np.zeros_like(x, dtype=np.int64)
    return np.round(x / (rel * scale)).astype(np.int64)


def fingerprint_arrays(values: np.ndarray, grads: np.ndarray, mode: str) -> str:
    """Hash of float64 loss values and gradients on the probe (``mode`` picks what must agree)."""
    h = hashlib.sha256()
    if mode == "value_and_gradient":
        h.update(_quantise(values).tobytes())
    elif mode != "gradient":
        raise ValueError(f"equivalence mode {mode!r} unknown; expected 'value_and_gradient' or 'gradient'")
    h.update(_quantise(grads).tobytes())
    return h.hexdigest()[:20]


def check_candidate(expr: LossExpression, probe: Probe, step: float = 0.05,
                    equivalence: str = "value_and_gradient") -> SanityReport:
    """Run the rejection checks on ``probe`` and fingerprint a candidate that passes."""
    if not ({"y_pred", "logits", "log_pred"} & set(expr.leaves)):
        return SanityReport("no_prediction", detail="the expression does not depend on the prediction")
    loss = expr.to_module(reduction="none", validate=False)
    z = probe.logits.clone().requires_grad_(True)
    with torch.enable_grad():
        values = loss(z, probe.target)
        if not torch.all(torch.isfinite(values)):
            return SanityReport("nonfinite", detail="loss value is not finite on the probe batch")
        (grad,) = torch.autograd.grad(values.sum(), z, allow_unused=True)
    if grad is None or not torch.all(torch.isfinite(grad)):
        return SanityReport("nonfinite" if grad is not None else "constant",
                            detail="gradient is not finite" if grad is not None else "no gradient")
    gnorm = grad.norm(dim=1, keepdim=True)
    if float(gnorm.max()) < 1e-10:
        return SanityReport("constant", detail="gradient with respect to the logits is zero")
    # One normalised descent step per sample: does the true-class probability go up on average?
    direction = -grad / gnorm.clamp_min(1e-30)
    with torch.no_grad():
        idx = probe.target.unsqueeze(1)
        before = torch.softmax(probe.logits, 1).gather(1, idx)
        after = torch.softmax(probe.logits + step * direction, 1).gather(1, idx)
        gain = float((after - before).mean())
    if not gain > 0:
        return SanityReport("wrong_direction", detail=f"a descent step changes p_true by {gain:.3g}",
                            true_class_gain=gain)
    # The fingerprint is taken in float64, where equal formulas agree to ~1e-15.
    z64 = probe.logits.double().requires_grad_(True)
    with torch.enable_grad():
        v64 = loss(z64, probe.target)
        (g64,) = torch.autograd.grad(v64.sum(), z64)
    fp = fingerprint_arrays(v64.detach().numpy(), g64.numpy(), equivalence)
    return SanityReport("ok", fingerprint=fp, true_class_gain=gain)
