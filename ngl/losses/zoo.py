"""The paper's NGL and the baselines it is compared with (CE, focal, label smoothing, Poly-1,
Baikal/GLO, symmetric CE), each a :class:`~ngl.losses.base.ClassificationLoss`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ngl.losses.base import ClassificationLoss, ElementwiseLoss, ylogp

__all__ = ["CrossEntropy", "NGL", "FocalLoss", "LabelSmoothingCE", "PolyLoss", "BaikalLoss",
           "SymmetricCE", "NGL_ALPHA", "NGL_EXPRESSION"]

#: NGL's constant (the authors' reference implementation).
NGL_ALPHA = 2.4092
#: The paper's formula as loss-expression text (``ngl.LossExpression.parse(NGL_EXPRESSION)``
#: compiles to exactly :class:`NGL`); the one copy every notebook, test and benchmark uses.
NGL_EXPRESSION = "exp(2.4092 - y_pred*(1 + y_real)) - cos(cos(sin(y_pred)))"


class CrossEntropy(ClassificationLoss):
    """Plain cross entropy, ``-sum_c y_c log p_c`` (the baseline every table is relative to)."""

    def per_sample(self, z: Tensor, y: Tensor) -> Tensor:
        return -ylogp(y, torch.log_softmax(z, dim=-1)).sum(dim=-1)


class NGL(ElementwiseLoss):
    """Next Generation Loss: ``mean_c exp(alpha - p(1 + y)) - cos(cos(sin(p)))``, p = softmax(z).

    ``scaling=True`` applies the extra sigmoid of the authors' Keras example to p first (a
    variant, not the definition).
    """

    def __init__(
        self,
        alpha: float = NGL_ALPHA,
        scaling: bool = False,
        reduction: str = "mean",
        ignore_index: int = -100,
        validate: bool = True,
    ):
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate=validate)
        if not math.isfinite(alpha):
            raise ValueError(f"alpha={alpha!r} must be a finite float")
        self.alpha = float(alpha)
        self.scaling = bool(scaling)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, scaling={self.scaling}, " + super().extra_repr()

    def elementwise(self, z: Tensor, y: Tensor) -> Tensor:
        p = torch.softmax(z, dim=-1)
        if self.scaling:
            p = torch.sigmoid(p)
        return torch.exp(self.alpha - p * (1 + y)) - torch.cos(torch.cos(torch.sin(p)))


class FocalLoss(ClassificationLoss):
    """Focal loss (Lin et al. 2017): ``-sum_c y_c (1 - p_c)^gamma log p_c``; gamma=0 is CE."""

    def __init__(self, gamma: float = 2.0, reduction: str = "mean", ignore_index: int = -100,
                 validate: bool = True):
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate=validate)
        if not (math.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"gamma={gamma!r} must be a finite float >= 0")
        self.gamma = float(gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, " + super().extra_repr()

    def per_sample(self, z: Tensor, y: Tensor) -> Tensor:
        logp = torch.log_softmax(z, dim=-1)
        if self.gamma == 0:
            return -ylogp(y, logp).sum(dim=-1)
        # (1 - p) computed as -expm1(logp): accurate when p is close to 1.
        weight = (-torch.expm1(logp)).clamp_min(0).pow(self.gamma)
        return -(weight * ylogp(y, logp)).sum(dim=-1)


class LabelSmoothingCE(ClassificationLoss):
    """CE against ``(1 - eps) y + eps / C`` (Szegedy et al. 2016); same as torch's label_smoothing.

    With ``eps > 0`` every class has target weight ``eps / C``, so a ``-inf`` logit gives ``+inf``
    (torch too, with the same finite gradient); with ``eps = 0`` it is plain CE and stays finite.
    """

    def __init__(self, epsilon: float = 0.1, reduction: str = "mean", ignore_index: int = -100,
                 validate: bool = True):
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate=validate)
        if not (0.0 <= epsilon <= 1.0):
            raise ValueError(f"epsilon={epsilon!r} must lie in [0, 1]")
        self.epsilon = float(epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, " + super().extra_repr()

    def per_sample(self, z: Tensor, y: Tensor) -> Tensor:
        logp = torch.log_softmax(z, dim=-1)
        q = (1 - self.epsilon) * y + self.epsilon / z.shape[-1]
        return -ylogp(q, logp).sum(dim=-1)


class PolyLoss(ClassificationLoss):
    """Poly-1 loss (Leng et al. 2022): ``CE + epsilon (1 - p_t)`` with ``p_t = sum_c y_c p_c``."""

    def __init__(self, epsilon: float = 1.0, reduction: str = "mean", ignore_index: int = -100,
                 validate: bool = True):
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate=validate)
        if not math.isfinite(epsilon):
            raise ValueError(f"epsilon={epsilon!r} must be a finite float")
        self.epsilon = float(epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, " + super().extra_repr()

    def per_sample(self, z: Tensor, y: Tensor) -> Tensor:
        logp = torch.log_softmax(z, dim=-1)
        ce = -ylogp(y, logp).sum(dim=-1)
        pt = (y * logp.exp()).sum(dim=-1)
        return ce + self.epsilon * (1 - pt)


class BaikalLoss(ElementwiseLoss):
    """Baikal loss from GLO (Gonzalez & Miikkulainen 2020): ``-mean_c (log p_c - y_c / p_c)``.

    ``p`` is clamped to ``eps`` from below so that extreme logits give finite values and
    gradients (``1/p`` would overflow); log p uses ``log_softmax`` above the clamp.
    """

    def __init__(self, eps: float = 1e-7, reduction: str = "mean", ignore_index: int = -100,
                 validate: bool = True):
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate=validate)
        if not (0 < eps < 1):
            raise ValueError(f"eps={eps!r} must lie in (0, 1)")
        self.eps = float(eps)

    def elementwise(self, z: Tensor, y: Tensor) -> Tensor:
        logp = torch.log_softmax(z, dim=-1).clamp_min(math.log(self.eps))
        return -(logp - y * torch.exp(-logp))


class SymmetricCE(ClassificationLoss):
    """Symmetric CE (Wang et al. 2019), a baseline of the paper: ``a CE + b RCE``.

    RCE is ``-sum_c p_c log clamp(y_c, A)`` with ``log 0`` replaced by ``log A``, A = 1e-4.
    """

    def __init__(self, a: float = 0.1, b: float = 1.0, clamp: float = 1e-4, reduction: str = "mean",
                 ignore_index: int = -100, validate: bool = True):
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate=validate)
        if not (0 < clamp < 1):
            raise ValueError(f"clamp={clamp!r} must lie in (0, 1)")
        for name, v in (("a", a), ("b", b)):  # a NaN weight would make every loss NaN silently
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{name}={v!r} must be a finite float")
        self.a, self.b, self.clamp = float(a), float(b), float(clamp)

    def per_sample(self, z: Tensor, y: Tensor) -> Tensor:
        logp = torch.log_softmax(z, dim=-1)
        ce = -ylogp(y, logp).sum(dim=-1)
        rce = -(logp.exp() * torch.log(y.clamp(self.clamp, 1.0))).sum(dim=-1)
        return self.a * ce + self.b * rce


