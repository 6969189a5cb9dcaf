"""What scoring a candidate loss means: the loss signature, the training budget, the result.

The same `TrainBudget` trains every candidate of a search, whichever engine runs it
(:mod:`ngl.fitness.reference` or :mod:`ngl.fitness.population`), and every engine reports a
`FitnessResult` per candidate, built by `make_result` so that the non-finite policy reads the
same everywhere: a candidate stopped by a NaN/inf loss or gradient scores ``val_accuracy=0.0``
(the worst possible score, a plain float for selection, JSON and pandas) and ``val_ce=nan``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from torch import Tensor

from ngl.io.config import STRICT, ConfigMixin

__all__ = ["LossFn", "TrainBudget", "FitnessResult", "make_result"]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""A candidate loss: ``loss(logits[B, C], target[B] int64) -> scalar tensor``."""


@pydantic_dataclass(frozen=True, config=STRICT)
class TrainBudget(ConfigMixin):
    """How one candidate is trained: the same budget for every candidate of a search.

    ``optimizer="sgd"`` uses ``momentum`` and, only when asked, ``nesterov`` (the same
    optimizer builder as downstream training, :func:`ngl.train.optim.build_optimizer`).
    """

    steps: Annotated[int, Field(ge=0)] = 200
    batch_size: Annotated[int, Field(ge=1)] = 128
    lr: Annotated[float, Field(gt=0)] = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    eval_batch_size: Annotated[int, Field(ge=1)] = 1024

    def __post_init__(self) -> None:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ValueError(f"TrainBudget.nesterov=True needs optimizer='sgd' with momentum > 0, "
                             f"got optimizer={self.optimizer!r}, momentum={self.momentum}")


@dataclass(frozen=True)
class FitnessResult:
    """Outcome of training one candidate.

    ``train_time_s`` is wall time of the training loop; in `train_population` it is the
    pass's time divided by the candidates in the pass (the amortised share).
    ``final_train_loss`` is the candidate's own loss on the last batch it attempted (for a
    non-finite candidate, the value that stopped it). ``steps_done`` counts applied updates.
    """

    val_accuracy: float
    val_ce: float
    train_time_s: float
    status: str
    final_train_loss: float
    steps_done: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_result(ok: bool, acc: float, ce: float, time_s: float, last_loss: float,
                steps: int) -> FitnessResult:
    """The result of one candidate; a non-finite one (``ok=False``) scores 0.0 with no CE."""
    if not ok:
        return FitnessResult(0.0, math.nan, time_s, "nonfinite", last_loss, steps)
    return FitnessResult(acc, ce, time_s, "ok", last_loss, steps)
