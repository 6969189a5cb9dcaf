"""What a row of each run file may hold: strict pydantic models with ranges.

Run folders are shared and hand-edited, so every row is checked before it reaches a table or a
selection: an accuracy is a number in [0, 1] (NaN only where the status says the run did not
finish with one), an index lies below the population, a generation is an int (``"0"`` is not),
a fitness is finite. Fields a model does not name pass through unchecked (``extra="allow"``);
the kernel (:class:`ngl.io.runs.Rows`) validates each row with its file's model and names the
file, the line and the field of the first bad one.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = ["RowModel", "HistoryRow", "SideRow", "TuneRow", "ResultRow", "ProxyRow",
           "SittingRow", "FINISHED"]

FINISHED = ("ok", "nonfinite")
"""Statuses of a run that ended with its scores (a ``nonfinite`` one scores as the worst)."""

Index = Annotated[int, Field(ge=0, le=2**31)]


def _number(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("expected a number")
    return v


def _finite(v: Any) -> Any:
    if not math.isfinite(_number(v)):
        raise ValueError("expected a finite number")
    return v


#: an int or float (NaN and infinities allowed: a diverged run's loss), never a bool or string
Number = Annotated[Any, PlainValidator(_number)]
#: a finite int or float
Finite = Annotated[Any, PlainValidator(_finite)]


def _fraction(v: Any, status: str | None, name: str) -> Any:
    """None, NaN (when the run has no score: not ``ok``) or a finite number in [0, 1]."""
    if v is None:
        return v
    if isinstance(v, float) and math.isnan(v):
        if status == "ok":
            raise ValueError(f"{name} is NaN although status is 'ok'")
        return v
    if not math.isfinite(v) or not 0 <= v <= 1:
        raise ValueError(f"{name} = {v!r}: expected a fraction in [0, 1]")
    return v


class RowModel(BaseModel):
    """Base of the row models: strict types (no ``"0"`` for 0, no ``true`` for 1), other fields
    kept as they are."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=True)

    #: fields holding a score in [0, 1] (NaN only when the status is not ``ok``)
    FRACTIONS: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _fractions(self) -> RowModel:
        status = getattr(self, "status", None)
        for name in self.FRACTIONS:
            _fraction(getattr(self, name, None), status, name)
        return self


class HistoryRow(RowModel):
    """One candidate of a search (``history.jsonl``)."""

    FRACTIONS: ClassVar[tuple[str, ...]] = ("val_accuracy",)

    run: str
    generation: Index
    index: Index
    expression: str
    key: str
    fingerprint: str | None = None
    status: str
    fitness: Finite
    val_accuracy: Number | None = None
    val_ce: Number | None = None
    cache_hit: bool = False
    size: Annotated[int, Field(ge=1)] | None = None
    parents: list[str] = []
    train_time_s: Number | None = None

    @field_validator("fitness")
    @classmethod
    def _at_most_one(cls, v: float) -> float:
        if v > 1:
            raise ValueError("expected at most 1 (an accuracy less a size penalty)")
        return v

    @field_validator("index")
    @classmethod
    def _below_population(cls, v: int, info: ValidationInfo) -> int:
        n = (info.context or {}).get("population_size")
        if n is not None and v >= n:
            raise ValueError(f"expected an index below the population size {n}")
        return v

    @field_validator("generation")
    @classmethod
    def _below_generations(cls, v: int, info: ValidationInfo) -> int:
        n = (info.context or {}).get("generations")
        if n is not None and v >= n:
            raise ValueError(f"expected a generation below the spec's {n} generations")
        return v

    @model_validator(mode="after")
    def _scored(self) -> HistoryRow:
        if self.status == "ok" and self.val_accuracy is None:
            raise ValueError("status 'ok' needs a val_accuracy")
        if self.status in FINISHED and self.fingerprint is None:
            raise ValueError(f"status {self.status!r} needs a fingerprint (the cache key)")
        return self


class SideRow(RowModel):
    """A reference's or a rescoring's training (``references.jsonl``, ``rescore.jsonl``)."""

    FRACTIONS: ClassVar[tuple[str, ...]] = ("val_accuracy",)

    run: str
    status: str
    kind: str | None = None
    key: str | None = None
    loss: str | None = None
    val_accuracy: Number | None = None
    val_ce: Number | None = None
    seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None


class TuneRow(RowModel):
    """One CMA-ES evaluation of a tuning run (``history.jsonl``; generation -1 is the start).

    With the search's fitness (``split: search_validation``) the score is an accuracy in
    [0, 1]; a caller's own objective (``split: own_objective``) is any finite number."""

    generation: Annotated[int, Field(ge=-1, le=2**31)]
    index: Index
    constants: list[Finite]
    expression: str
    status: str
    val_accuracy: Finite
    split: str = "search_validation"

    @model_validator(mode="after")
    def _accuracy(self) -> TuneRow:
        if self.split != "own_objective":
            _fraction(self.val_accuracy, self.status, "val_accuracy")
        return self


class ResultRow(RowModel):
    """One trained grid cell (``results.jsonl``, a validation's and a calibration's target)."""

    FRACTIONS: ClassVar[tuple[str, ...]] = ("val_accuracy", "test_accuracy", "val_top5",
                                            "test_top5")

    cell_key: str
    dataset: str
    model: str
    loss: str
    seed: Annotated[int, Field(ge=0)]
    status: str
    val_accuracy: Number | None = None
    test_accuracy: Number | None = None
    val_top5: Number | None = None
    test_top5: Number | None = None
    val_ce: Number | None = None
    test_ce: Number | None = None


class ProxyRow(RowModel):
    """One proxy's score of one panel loss (a calibration's ``proxies.jsonl``)."""

    FRACTIONS: ClassVar[tuple[str, ...]] = ("val_accuracy",)

    proxy_key: str
    loss: str
    status: str
    val_accuracy: Number


class SittingRow(RowModel):
    """One sitting of a run folder (``sittings.jsonl``)."""

    sitting: Index
    options: dict
