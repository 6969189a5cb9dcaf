"""One optimizer builder and one non-finite policy for every training loop of ``ngl``.

Why one place: ``optimizer="sgd"`` used to mean Nesterov momentum in downstream training
(:mod:`ngl.train.loop`) and plain momentum in the loss search (:mod:`ngl.fitness`), so a loss
selected under one optimizer was evaluated under another. Now the search, downstream training,
segmentation, the ImageNet recipe and :mod:`ngl.evaluate.sensitivity` all build their optimizer with
:func:`build_optimizer`, and Nesterov momentum is used only where a config says
``nesterov=True``.

Non-finite policy (the same in every loop): a step is applied only when the loss value *and*
every gradient it produced are finite. Otherwise the run -- or, in the population engine, the
candidate -- is marked ``"nonfinite"`` and the bad gradients are never applied: the weights stay
those of the last finite step. A loss with a finite value can still have an infinite gradient
(``sqrt`` at 0, ``log`` at 0 in a branch ``where`` does not mask), so checking the value alone
is not enough. :func:`all_finite` is the check; it returns a device tensor, so a loop decides
when to pay the one host sync per step.

Mixed precision (CUDA, ``torch.amp.GradScaler``): parameter gradients are then *scaled*, and an
inf/NaN in them is usually overflow of the scaled fp16 backward, not a broken loss -- the scaler
skips that step and lowers the scale, which is how AMP is meant to work. Under AMP the loops
therefore check the loss value and the loss's own gradient with respect to the (float32) logits,
which the scaling cannot push past float32's range; the parameter gradients are left to the
scaler. A finite loss gradient that only overflows inside the fp16 network is a skipped step,
not a non-finite run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from torch import Tensor

from ngl.io.config import STRICT, ConfigMixin

__all__ = ["OPTIMIZERS", "TrainSettings", "build_optimizer", "nesterov_problem",
           "optimizer_from_config", "all_finite", "forward_backward", "apply_step"]

OPTIMIZERS = ("adam", "adamw", "sgd")


def nesterov_problem(optimizer: str, momentum: float, nesterov: bool) -> str | None:
    """The one Nesterov rule: ``nesterov=True`` needs SGD with momentum; what is wrong, or None."""
    if nesterov and (optimizer != "sgd" or momentum <= 0):
        return (f"nesterov=True needs optimizer='sgd' with momentum > 0, got "
                f"optimizer={optimizer!r}, momentum={momentum}")
    return None


@pydantic_dataclass(frozen=True, config=STRICT)
class TrainSettings(ConfigMixin):
    """The training settings the search's `ngl.fitness.TrainBudget` and downstream
    `ngl.train.TrainConfig` share (each adds its own length and schedule): one definition, one
    Nesterov rule, one optimizer builder (:func:`optimizer_from_config`)."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: Annotated[float, Field(gt=0, le=100)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0, le=10)] = 0.0
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    batch_size: Annotated[int, Field(ge=1, le=10**6)] = 128
    eval_batch_size: Annotated[int, Field(ge=1, le=10**7)] = 1024

    def __post_init__(self) -> None:
        problem = nesterov_problem(self.optimizer, self.momentum, self.nesterov)
        if problem:
            raise ValueError(f"{type(self).__name__}.{problem}")


def build_optimizer(params: Iterable[Tensor] | Iterable[dict[str, Any]], *, optimizer: str,
                    lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                    nesterov: bool = False, capturable: bool = False) -> torch.optim.Optimizer:
    """The optimizer every ``ngl`` training loop uses (Adam, AdamW or SGD).

    ``momentum`` and ``nesterov`` apply to SGD only; ``nesterov=True`` with another optimizer
    is refused rather than ignored. ``capturable=True`` keeps Adam/AdamW's step counter on the
    device so the step can be recorded in a CUDA graph (SGD needs nothing for that).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r}; expected one of {OPTIMIZERS}")
    problem = nesterov_problem(optimizer, momentum, nesterov)
    if problem:
        raise ValueError(problem)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, capturable=capturable)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, capturable=capturable)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov)


def optimizer_from_config(params: Iterable[Tensor], config: TrainSettings,
                          capturable: bool = False) -> torch.optim.Optimizer:
    """:func:`build_optimizer` with the settings of a ``TrainConfig`` or ``TrainBudget``."""
    return build_optimizer(params, optimizer=config.optimizer, lr=config.lr,
                           weight_decay=config.weight_decay, momentum=config.momentum,
                           nesterov=config.nesterov, capturable=capturable)


def all_finite(value: Tensor, tensors: Iterable[Tensor | None] = ()) -> Tensor:
    """0-dim bool tensor: ``value`` and every tensor in ``tensors`` hold no inf/NaN.

    ``None`` entries (parameters without a gradient) are skipped. No host sync happens here;
    ``bool(...)`` of the result is the loop's one sync per step.
    """
    finite = torch.isfinite(value.detach()).all()
    for t in tensors:
        if t is not None:
            finite = finite & torch.isfinite(t).all()
    return finite


def forward_backward(model: torch.nn.Module, loss: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                     y: Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                     amp: bool, params: Iterable[Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """One step of a training loop up to the update, under the policy above: forward (fp16
    autocast when ``amp``), the loss on float32 logits, zeroed and (scaled) backward. Returns
    the loss value and :func:`all_finite` of it and of what the policy checks (the logit
    gradient under AMP, else every parameter gradient, of ``params`` or the model's), as device
    tensors: the loop decides when to sync, and a multi-GPU loop can agree across ranks first.
    Apply the update with :func:`apply_step` only when it is finite."""
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp):
        out = model(x)
    logits = out.float()
    if amp and logits.requires_grad:
        logits.retain_grad()  # the loss's own gradient, checked below
    value = loss(logits, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(value).backward()
    checked = [logits.grad] if amp else [p.grad for p in (params if params is not None
                                                         else model.parameters())]
    return value, all_finite(value, checked)


def apply_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """The update after a finite :func:`forward_backward` (the scaler skips an overflowed one)."""
    scaler.step(optimizer)
    scaler.update()
