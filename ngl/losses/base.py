"""The base classes every ngl loss shares: reduction, ``ignore_index``, shapes, dtypes, validation.

Every loss takes logits ``[B, C]`` or ``[B, C, d1, ...]`` (segmentation) and a target of
class indices ``[B]`` / ``[B, d1, ...]`` or of class probabilities with the logits' shape. One
base class makes reduction, ``ignore_index``, shape handling, dtype promotion under autocast and
input validation behave the same for hand-written and GP-found losses.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["ClassificationLoss", "ElementwiseLoss", "ylogp"]

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
        # never clamped into a class it is not: unchecked (validate=False, no host sync), an
        # out-of-range index fails in scatter (an IndexError-like RuntimeError on the CPU, a
        # device-side assert on CUDA) instead of training on a wrong label without a word
        y = torch.zeros(safe.shape[0], num_classes, dtype=z.dtype, device=z.device)
        y = y.scatter_(1, safe[:, None], 1.0)
        return z, y, (None if all_valid else valid), out_shape


def ylogp(y: Tensor, logp: Tensor) -> Tensor:
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


