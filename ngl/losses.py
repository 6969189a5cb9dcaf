"""Classification losses called like ``nn.CrossEntropyLoss``: the paper's NGL and its baselines.

Every loss here takes logits ``[B, C]`` or ``[B, C, d1, ...]`` (segmentation) and a target of
class indices ``[B]`` / ``[B, d1, ...]`` or of class probabilities with the logits' shape. They
share one base class so reduction, ``ignore_index``, shape handling, dtype promotion under
autocast and input validation behave the same for hand-written and GP-found losses.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ClassificationLoss",
    "ElementwiseLoss",
    "CrossEntropy",
    "NGL",
    "FocalLoss",
    "LabelSmoothingCE",
    "PolyLoss",
    "BaikalLoss",
    "SymmetricCE",
    "get_loss",
    "available_losses",
    "register_loss",
    "NGL_ALPHA",
    "per_sample_losses",
]

NGL_ALPHA = 2.4092
_REDUCTIONS = ("none", "mean", "sum")


class ClassificationLoss(nn.Module):
    """Base class: flattens inputs to ``[N, C]``, builds targets, masks ignored entries, reduces.

    Subclasses implement :meth:`per_sample`, which maps float logits ``z [N, C]`` and target
    distributions ``y [N, C]`` to one loss value per sample ``[N]``.

    ``reduction="mean"`` averages over the non-ignored samples (as ``nn.CrossEntropyLoss`` does
    without class weights). Unlike torch, a mean over *no* samples is 0 with a zero gradient
    instead of NaN, both when every entry is ignored and when the batch is empty (``B = 0`` or an
    empty segmentation map): a crop of pure void or an empty last batch must not poison training.
    ``"sum"`` of nothing is 0 and ``"none"`` returns the empty per-sample shape, as in torch.

    Classes whose logit is ``-inf`` (p = 0) contribute nothing where their target weight is 0,
    by the convention ``0 * log 0 = 0`` (torch's index-target cross entropy gives the same finite
    value and gradient; its probability-target form returns NaN there).
    """

    def __init__(self, reduction: str = "mean", ignore_index: int = -100, validate: bool = True):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction={reduction!r} is not supported; expected one of {_REDUCTIONS}")
        # bool is an int subclass: ignore_index=True would silently skip class 1.
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise ValueError(
                f"ignore_index={ignore_index!r} ({type(ignore_index).__name__}) is not supported; "
                f"expected an int class index whose targets are skipped, e.g. -100 or 255"
            )
        self.reduction = reduction
        self.ignore_index = int(ignore_index)
        self.validate = validate

    def per_sample(self, z: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, ignore_index={self.ignore_index}"

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        z, y, valid, out_shape = self._prepare(input, target)
        loss = self.per_sample(z, y)
        if valid is not None:
            loss = torch.where(valid, loss, torch.zeros((), dtype=loss.dtype, device=loss.device))
        if self.reduction == "none":
            return loss.reshape(out_shape)
        if self.reduction == "sum":
            return loss.sum()
        if valid is None:
            # An empty batch means 0 (like an all-ignored one), not torch's NaN of mean([]).
            return loss.mean() if loss.numel() else loss.sum()
        return loss.sum() / valid.sum().clamp_min(1).to(loss.dtype)

    # -- input handling -------------------------------------------------------------------
    def _prepare(self, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor | None, tuple]:
        """Return float logits [N, C], target distribution [N, C], validity mask [N] or None."""
        if not torch.is_tensor(input) or not torch.is_tensor(target):
            raise TypeError(
                f"{type(self).__name__} expects tensors (logits, target), got "
                f"{type(input).__name__} and {type(target).__name__}"
            )
        if input.dim() < 2:
            raise ValueError(
                f"logits must have shape [B, C] or [B, C, d1, ...], got {tuple(input.shape)}"
            )
        if not input.is_floating_point():
            raise ValueError(f"logits must be floating point, got dtype {input.dtype}")
        num_classes = input.shape[1]
        if num_classes == 0:
            raise ValueError(
                f"logits of shape {tuple(input.shape)} have C=0 classes; expected at least one "
                f"class along dim 1 ([B, C] or [B, C, d1, ...])"
            )
        # Compute in float32 or wider: under autocast logits may arrive in fp16/bf16.
        z = input if input.dtype in (torch.float32, torch.float64) else input.float()
        if input.dim() > 2:  # [B, C, d1, ...] -> [B*d1*..., C]
            z = z.movedim(1, -1)
        out_shape = tuple(z.shape[:-1])
        z = z.reshape(-1, num_classes)

        if target.is_floating_point():  # class probabilities, same shape as the logits
            if target.shape != input.shape:
                raise ValueError(
                    f"probability targets must have the logits' shape {tuple(input.shape)}, "
                    f"got {tuple(target.shape)}"
                )
            y = target.to(z.dtype)
            if input.dim() > 2:
                y = y.movedim(1, -1)
            y = y.reshape(-1, num_classes)
            if self.validate and bool(((y < 0) | ~torch.isfinite(y)).any()):
                raise ValueError("probability targets must be finite and non-negative")
            return z, y, None, out_shape

        if target.dtype == torch.bool or target.is_complex():
            raise ValueError(f"target must hold class indices (int) or probabilities, got {target.dtype}")
        expected = (input.shape[0], *input.shape[2:])
        if tuple(target.shape) != expected:
            raise ValueError(
                f"class-index target must have shape {expected} for logits of shape "
                f"{tuple(input.shape)}, got {tuple(target.shape)}"
            )
        t = target.reshape(-1).long()
        valid = t != self.ignore_index
        if self.validate:
            bad = valid & ((t < 0) | (t >= num_classes))
            if bool(bad.any()):
                value = int(t[bad][0])
                raise ValueError(
                    f"target value {value} is out of range: expected class indices in "
                    f"[0, {num_classes - 1}] or ignore_index={self.ignore_index}"
                )
        all_valid = self.validate and bool(valid.all())
        safe = t if all_valid else torch.where(valid, t, torch.zeros_like(t))
        safe = safe.clamp(0, num_classes - 1)
        y = F.one_hot(safe, num_classes).to(z.dtype)
        return z, y, (None if all_valid else valid), out_shape


def _ylogp(y: Tensor, logp: Tensor) -> Tensor:
    """``y * logp`` with ``0 * log 0 = 0``: a ``-inf`` logit of a class with zero target weight
    would otherwise give ``0 * -inf = NaN`` in the value and the gradient."""
    return y * torch.where(y == 0, torch.zeros((), dtype=logp.dtype, device=logp.device), logp)


class ElementwiseLoss(ClassificationLoss):
    """A loss ``mean_c f(p, y, z)`` over classes, the form of NGL and of every GP candidate.

    ``fn(z, y)`` maps logits ``[N, C]`` and targets ``[N, C]`` to element values ``[N, C]``.
    """

    def __init__(
        self,
        fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
        validate: bool = True,
    ):
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate=validate)
        if fn is not None:
            self.elementwise = fn

    def elementwise(self, z: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def per_sample(self, z: Tensor, y: Tensor) -> Tensor:
        return self.elementwise(z, y).mean(dim=-1)


class CrossEntropy(ClassificationLoss):
    """Plain cross entropy, ``-sum_c y_c log p_c`` (the baseline every table is relative to)."""

    def per_sample(self, z: Tensor, y: Tensor) -> Tensor:
        return -_ylogp(y, torch.log_softmax(z, dim=-1)).sum(dim=-1)


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
            return -_ylogp(y, logp).sum(dim=-1)
        # (1 - p) computed as -expm1(logp): accurate when p is close to 1.
        weight = (-torch.expm1(logp)).clamp_min(0).pow(self.gamma)
        return -(weight * _ylogp(y, logp)).sum(dim=-1)


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
        return -_ylogp(q, logp).sum(dim=-1)


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
        ce = -_ylogp(y, logp).sum(dim=-1)
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
        self.a, self.b, self.clamp = float(a), float(b), float(clamp)

    def per_sample(self, z: Tensor, y: Tensor) -> Tensor:
        logp = torch.log_softmax(z, dim=-1)
        ce = -_ylogp(y, logp).sum(dim=-1)
        rce = -(logp.exp() * torch.log(y.clamp(self.clamp, 1.0))).sum(dim=-1)
        return self.a * ce + self.b * rce


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "ce": CrossEntropy,
    "ngl": NGL,
    "focal": FocalLoss,
    "label_smoothing": LabelSmoothingCE,
    "poly": PolyLoss,
    "baikal": BaikalLoss,
    "sce": SymmetricCE,
}
_ALIASES = {
    "cross_entropy": "ce",
    "crossentropy": "ce",
    "next_generation_loss": "ngl",
    "f5": "ngl",
    "focal_loss": "focal",
    "ls": "label_smoothing",
    "label_smoothing_ce": "label_smoothing",
    "poly1": "poly",
    "glo": "baikal",
    "symmetric_ce": "sce",
}


def per_sample_losses(loss: nn.Module, logits: Tensor, target: Tensor) -> Tensor:
    """``loss`` evaluated with ``reduction="none"`` (its own setting restored afterwards)."""
    old = getattr(loss, "reduction", None)
    if old is None:
        raise ValueError(f"loss {loss!r} has no 'reduction' attribute; use an ngl loss module")
    loss.reduction = "none"
    try:
        return loss(logits, target)
    finally:
        loss.reduction = old


def register_loss(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make a loss available to :func:`get_loss` (e.g. the best expression of a search)."""
    key = name.lower()
    if key in _REGISTRY or key in _ALIASES:
        raise ValueError(f"a loss named {name!r} is already registered")
    _REGISTRY[key] = factory


def available_losses() -> list[str]:
    """Names accepted by :func:`get_loss` (aliases not included)."""
    return sorted(_REGISTRY)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _looks_like_expression(text: str) -> bool:
    """True for text meant as a loss expression: it has an operator, a parenthesis or comma,
    or names a leaf or operator (``y_pred``, ``exp``), so its parse error is the useful message."""
    from ngl.primitives import LEAVES, OPERATOR_ALIASES, OPERATORS

    if any(ch in text for ch in "()+-*/^,"):
        return True
    names = set(LEAVES) | set(OPERATORS) | set(OPERATOR_ALIASES)
    return any(word in names for word in _IDENTIFIER.findall(text))


def get_loss(name: str, **kwargs) -> nn.Module:
    """Build a loss by name, e.g. ``get_loss("focal", gamma=2)``.

    Names that are not registered but read as a loss expression (an operator, parenthesis or leaf
    name, e.g. ``"1 - y_pred*y_real"``) are compiled with :class:`ngl.LossExpression`; if such a
    text does not parse, the parser's error (with the position) is raised, not "unknown loss".
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a str, got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key in _REGISTRY:
        return _REGISTRY[key](**kwargs)
    from ngl.expression import LossExpression  # late import: expression builds on this module

    if _looks_like_expression(name):
        try:
            expr = LossExpression.parse(name)
        except ValueError as err:
            raise ValueError(f"{err} (read as a loss expression: {name!r} is not a registered loss "
                             f"name; see ngl.available_losses())") from err
        return expr.to_module(**kwargs)
    from ngl.primitives import LEAVES

    raise ValueError(
        f"unknown loss {name!r}: neither a registered loss name (expected one of "
        f"{available_losses()}, aliases {sorted(_ALIASES)}) nor a loss expression over the leaves "
        f"{list(LEAVES)} such as 'exp(2.4 - y_pred*(1 + y_real))'"
    )
