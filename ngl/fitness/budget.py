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
from ngl.train.optim import TrainSettings

__all__ = ["LossFn", "TrainBudget", "SuccessiveHalving", "FitnessResult", "make_result"]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""A candidate loss: ``loss(logits[B, C], target[B] int64) -> scalar tensor``."""


@pydantic_dataclass(frozen=True, config=STRICT)
class TrainBudget(TrainSettings):
    """How one candidate is trained: the same budget for every candidate of a search.

    ``optimizer="sgd"`` uses ``momentum`` and, only when asked, ``nesterov`` (the same
    optimizer builder as downstream training, :func:`ngl.train.optim.build_optimizer`).

    ``schedule="cosine"`` anneals the learning rate over the ``steps`` from ``lr`` to 0 (step
    ``t`` uses ``lr * (1 + cos(pi * t / steps)) / 2``, what ``CosineAnnealingLR(T_max=steps)``
    stepped once per step gives); ``"constant"`` keeps ``lr``. With successive halving a
    candidate stopped at a rung has trained exactly the first steps of the same schedule.
    """

    steps: Annotated[int, Field(ge=0, le=10**9)] = 200
    schedule: Literal["constant", "cosine"] = "constant"

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based) under ``schedule``."""
        if self.schedule == "constant" or self.steps == 0:
            return self.lr
        return self.lr * (1 + math.cos(math.pi * step / self.steps)) / 2



DEFAULT_BRACKET = 16
"""`SuccessiveHalving.bracket` by default: the default ``chunk_size`` that bracketed halving
before the bracket was a field (so such specs keep their keys)."""


@pydantic_dataclass(frozen=True, config=STRICT)
class SuccessiveHalving(ConfigMixin):
    """Successive halving inside a batched training call: stop most candidates early.

    All candidates train to the first rung, are scored on the search-validation split, and
    only the best ``ceil(n / eta)`` go on to the next rung; the others stop there. Equal
    accuracies (common at an early rung) are broken by the lower validation cross-entropy. With
    ``rungs=3, eta=3`` the rungs are at 1/9, 1/3 and 1 of ``TrainBudget.steps``. Because the
    learning rate of every step is fixed by the budget (constant, or the cosine of its ``steps``),
    a candidate stopped at a rung has trained exactly the first steps of what it would have
    trained to the end.

    Selection rule (the one successive halving itself uses): candidates are ranked by the
    rung they reached, then by their score there -- a candidate that reached a later rung
    beat, at every earlier rung, the ones that stopped there.

    ``bracket`` is how many candidates compete in one halving (consecutive candidates of a
    generation that are trained, the last bracket holding the rest). It is part of the spec,
    not of how a search runs: a search hands one bracket to a worker at a time whatever its
    ``chunk_size``, so the chunk size never changes which candidates survive. The default, 16,
    is what the default chunk size gave before the bracket existed.
    """

    eta: Annotated[int, Field(ge=2, le=1_000)] = 3
    rungs: Annotated[int, Field(ge=2, le=20)] = 3
    bracket: Annotated[int, Field(ge=2, le=100_000)] = DEFAULT_BRACKET

    def rung_steps(self, steps: int) -> tuple[int, ...]:
        """Steps trained at the end of each rung, e.g. (11, 33, 100) for 100 steps."""
        return tuple(round(steps / self.eta ** (self.rungs - 1 - k)) for k in range(self.rungs))

    def check(self, steps: int, where: str = "successive_halving") -> None:
        """Refuse a budget too short for the rungs (a rung of 0 steps, or two rungs equal)."""
        if not self._fits(steps):
            least = next(s for s in range(1, self.eta ** self.rungs + 1) if self._fits(s))
            raise ValueError(
                f"{where}: rungs={self.rungs}, eta={self.eta} on {steps} steps gives rungs at "
                f"{list(self.rung_steps(steps))} steps; expected at least 1 step and strictly "
                f"more at each rung (budget.steps >= {least}, or fewer rungs)")

    def _fits(self, steps: int) -> bool:
        at = self.rung_steps(steps)
        return at[0] >= 1 and all(b > a for a, b in zip(at, at[1:], strict=False))

    def survivors(self, n: int) -> int:
        """How many of `n` candidates go on to the next rung: ``ceil(n / eta)``, at least 1."""
        return max(1, -(-n // self.eta))


@dataclass(frozen=True)
class FitnessResult:
    """Outcome of training one candidate.

    ``train_time_s`` is wall time of the training loop; in `train_population` it is the
    pass's time divided by the candidates in the pass (the amortised share).
    ``final_train_loss`` is the candidate's own loss on the last batch it attempted (for a
    non-finite candidate, the value that stopped it). ``steps_done`` counts applied updates.
    With successive halving, ``rung`` is the last rung the candidate was trained to (0-based)
    and ``rung_accuracies`` / ``rung_ces`` its search-validation accuracy and cross-entropy at
    each rung it reached (the last ones are ``val_accuracy`` / ``val_ce``); without it,
    ``rung`` is None and the lists are empty.
    """

    val_accuracy: float
    val_ce: float
    train_time_s: float
    status: str
    final_train_loss: float
    steps_done: int
    rung: int | None = None
    rung_accuracies: tuple[float, ...] = ()
    rung_ces: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_result(ok: bool, acc: float, ce: float, time_s: float, last_loss: float,
                steps: int, rung: int | None = None,
                rung_accuracies: tuple[float, ...] = (),
                rung_ces: tuple[float, ...] = ()) -> FitnessResult:
    """The result of one candidate; a non-finite one (``ok=False``) scores 0.0 with no CE."""
    if not ok:
        return FitnessResult(0.0, math.nan, time_s, "nonfinite", last_loss, steps, rung,
                             rung_accuracies, rung_ces)
    return FitnessResult(acc, ce, time_s, "ok", last_loss, steps, rung, rung_accuracies,
                         rung_ces)
