"""The GP primitive set: operators and leaves from which loss functions are evolved.

Each operator is defined exactly once, here, with its torch form (training), its numpy form
(gplearn's ``make_function`` and quick numeric checks) and its sympy form (formulas, LaTeX,
simplification). Protected operators follow gplearn and the authors' sibling work (GANetic
loss): division and log guard against tiny arguments, sqrt takes ``|x|``, exp is clipped so
that it cannot overflow. The sympy forms are the idealised mathematics that a paper prints.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sympy
import torch
from gplearn._program import _Program
from gplearn.fitness import mean_absolute_error
from gplearn.functions import make_function

from ngl.io.records import write_text_atomic

__all__ = [
    "Primitive",
    "Leaf",
    "OPERATORS",
    "LEAVES",
    "PrimitiveSet",
    "PRESETS",
    "preset",
    "available_operators",
    "available_leaves",
    "gplearn_functions",
    "USER_HINT",
    "ANY_INTERVAL",
    "forget_gplearn_function",
]

EPS = 1e-3  # gplearn's protection threshold for div and log
EXP_MAX = 30.0  # exp clipped here: e^30 ~ 1e13 keeps sums and products finite in float32


def _safe_den(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ok = x.abs() > EPS
    return ok, torch.where(ok, x, torch.ones_like(x))


def _t_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # where() on both branches: the unused branch must not produce inf, or its gradient is NaN.
    ok, den = _safe_den(b)
    return torch.where(ok, a / den, torch.ones_like(den))


def _t_inv(a: torch.Tensor) -> torch.Tensor:
    ok, den = _safe_den(a)
    return torch.where(ok, 1.0 / den, torch.zeros_like(den))


def _t_log(a: torch.Tensor) -> torch.Tensor:
    ok, den = _safe_den(a)
    return torch.where(ok, torch.log(den.abs()), torch.zeros_like(den))


def _t_sqrt(a: torch.Tensor) -> torch.Tensor:
    # sqrt(|x|) has an infinite slope at 0; clamp keeps the gradient finite (value shift <= 1e-6).
    return torch.sqrt(a.abs().clamp_min(1e-12))


def _t_exp(a: torch.Tensor) -> torch.Tensor:
    return torch.exp(a.clamp(max=EXP_MAX))


def _n_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(np.abs(b) > EPS, np.divide(a, b), 1.0)


def _n_inv(a: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(np.abs(a) > EPS, 1.0 / a, 0.0)


def _n_log(a: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(a) > EPS, np.log(np.abs(a)), 0.0)


def _n_sigmoid(a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.clip(a, -500, 500)))


Interval = tuple[float, float]
INF = math.inf


def _imul(a: Interval, b: Interval) -> Interval:
    # 0 * inf is taken as 0: a finite value in [0, 0] times any finite value is 0.
    prods = [0.0 if (x == 0 or y == 0) else x * y for x in a for y in b]
    return min(prods), max(prods)


def _iexp(a: Interval) -> Interval:
    return math.exp(min(a[0], EXP_MAX)), math.exp(min(a[1], EXP_MAX))


def _isq(a: Interval) -> Interval:
    lo, hi = a
    if lo <= 0 <= hi:
        return 0.0, max(lo * lo, hi * hi)
    return min(lo * lo, hi * hi), max(lo * lo, hi * hi)


def _iabs(a: Interval) -> Interval:
    lo, hi = a
    return (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), max(abs(lo), abs(hi))


def _away_from_zero(a: Interval) -> bool:
    return a[0] > EPS or a[1] < -EPS


_ANY = ANY_INTERVAL = (-INF, INF)  # what an operator without an interval rule may return


@dataclass(frozen=True)
class Primitive:
    """One GP operator: arity, its three implementations and a one-line description.

    ``bounds`` maps argument intervals to an interval holding every output (used by the
    expression compiler); ``fast_fn`` is a cheaper torch form, equal to ``torch_fn`` whenever
    ``fast_ok(*intervals)`` holds (e.g. exp needs no clipping when its argument is <= 30).
    """

    name: str
    arity: int
    torch_fn: Callable[..., torch.Tensor] = field(repr=False)
    numpy_fn: Callable[..., np.ndarray] = field(repr=False)
    sympy_fn: Callable[..., sympy.Expr] = field(repr=False)
    description: str
    infix: str | None = None  # '+', '-', '*', '/' for binary operators written infix
    bounds: Callable[..., Interval] = field(default=lambda *a: _ANY, repr=False)
    fast_fn: Callable[..., torch.Tensor] | None = field(default=None, repr=False)
    fast_ok: Callable[..., bool] | None = field(default=None, repr=False)
    latex: str | None = None  # LaTeX of a function-style operator (default \operatorname{name})
    user: bool = False  # registered at run time with register_operator

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if len(args) != self.arity:
            raise ValueError(f"{self.name!r} takes {self.arity} argument(s), got {len(args)}")
        return self.torch_fn(*args)


@dataclass(frozen=True)
class Leaf:
    """A terminal of a loss tree, computed from the logits ``z`` and the targets ``y``."""

    name: str
    description: str
    latex: str
    bounds: Interval = _ANY


_OPS: tuple[Primitive, ...] = (
    Primitive("add", 2, torch.add, np.add, lambda a, b: a + b, "a + b", "+",
              bounds=lambda a, b: (a[0] + b[0], a[1] + b[1])),
    Primitive("sub", 2, torch.sub, np.subtract, lambda a, b: a - b, "a - b", "-",
              bounds=lambda a, b: (a[0] - b[1], a[1] - b[0])),
    Primitive("mul", 2, torch.mul, np.multiply, lambda a, b: a * b, "a * b", "*", bounds=_imul),
    Primitive("div", 2, _t_div, _n_div, lambda a, b: a / b, "protected a / b (1 where |b| <= 1e-3)",
              "/", fast_fn=torch.div, fast_ok=lambda a, b: _away_from_zero(b)),
    Primitive("exp", 1, _t_exp, lambda a: np.exp(np.minimum(a, EXP_MAX)), sympy.exp,
              "exp(a), argument clipped at 30 so it cannot overflow", bounds=_iexp,
              fast_fn=torch.exp, fast_ok=lambda a: a[1] <= EXP_MAX),
    Primitive("log", 1, _t_log, _n_log, sympy.log, "protected log|a| (0 where |a| <= 1e-3)",
              fast_fn=torch.log, fast_ok=lambda a: a[0] > EPS),
    Primitive("sqrt", 1, _t_sqrt, lambda a: np.sqrt(np.abs(a)), sympy.sqrt, "protected sqrt|a|",
              bounds=lambda a: (math.sqrt(_iabs(a)[0]), math.sqrt(_iabs(a)[1])),
              fast_fn=torch.sqrt, fast_ok=lambda a: a[0] >= 1e-12),
    Primitive("square", 1, torch.square, np.square, lambda a: a**2, "a squared", bounds=_isq),
    Primitive("neg", 1, torch.neg, np.negative, lambda a: -a, "-a", bounds=lambda a: (-a[1], -a[0])),
    Primitive("abs", 1, torch.abs, np.abs, sympy.Abs, "|a|", bounds=_iabs),
    Primitive("inv", 1, _t_inv, _n_inv, lambda a: 1 / a, "protected 1 / a (0 where |a| <= 1e-3)",
              fast_fn=torch.reciprocal, fast_ok=_away_from_zero),
    Primitive("sin", 1, torch.sin, np.sin, sympy.sin, "sin(a)", bounds=lambda a: (-1.0, 1.0)),
    Primitive("cos", 1, torch.cos, np.cos, sympy.cos, "cos(a)", bounds=lambda a: (-1.0, 1.0)),
    Primitive("tanh", 1, torch.tanh, np.tanh, sympy.tanh, "tanh(a)",
              bounds=lambda a: (math.tanh(a[0]), math.tanh(a[1]))),
    Primitive("sigmoid", 1, torch.sigmoid, _n_sigmoid, lambda a: 1 / (1 + sympy.exp(-a)),
              "logistic sigmoid 1 / (1 + exp(-a))", bounds=lambda a: (0.0, 1.0)),
    Primitive("max", 2, torch.maximum, np.maximum, sympy.Max, "max(a, b)",
              bounds=lambda a, b: (max(a[0], b[0]), max(a[1], b[1]))),
    Primitive("min", 2, torch.minimum, np.minimum, sympy.Min, "min(a, b)",
              bounds=lambda a, b: (min(a[0], b[0]), min(a[1], b[1]))),
)
OPERATORS: dict[str, Primitive] = {p.name: p for p in _OPS}

#: Alternative spellings accepted by the parser (gplearn prints ``sig``).
OPERATOR_ALIASES = {"sig": "sigmoid", "plus": "add", "minus": "sub", "times": "mul",
                    "protected_div": "div", "pow2": "square", "sq": "square", "maximum": "max",
                    "minimum": "min", "negative": "neg"}

_LEAVES: tuple[Leaf, ...] = (
    Leaf("y_pred", "softmax probabilities p = softmax(z)", r"\hat{y}", (0.0, 1.0)),
    # Probability targets are only checked to be >= 0, so no upper bound is assumed.
    Leaf("y_real", "target distribution (one-hot for class indices)", r"y", (0.0, INF)),
    Leaf("logits", "raw network outputs z", r"z"),
    Leaf("log_pred", "log-probabilities log_softmax(z)", r"\log\hat{y}", (-INF, 0.0)),
)
LEAVES: dict[str, Leaf] = {leaf.name: leaf for leaf in _LEAVES}


def available_operators() -> list[str]:
    return list(OPERATORS)


def available_leaves() -> list[str]:
    return list(LEAVES)


USER_HINT = "register an operator of your own first (ngl.register_operator; CLI: --import MODULE)"


def _check_names(kind: str, names: Iterable[str], known: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or name not in known:
            hint = f"; {USER_HINT}" if kind == "operator" else ""
            raise ValueError(f"unknown {kind} {name!r}; expected some of {list(known)}{hint}")
        if name in out:
            raise ValueError(f"{kind} {name!r} is listed twice")
        out.append(name)
    # Canonical (registry) order: the same selection is the same set, whatever the tick order.
    return tuple(n for n in known if n in out)


@dataclass(frozen=True)
class PrimitiveSet:
    """The user's choice of operators, leaves and ephemeral-constant range for a search.

    ``const_range=None`` means no random constants. Operators and leaves are kept in the
    registry's order, whatever order they were given in: that order fixes how gplearn numbers
    the leaves (``X0`` is the first leaf) and draws functions, so equal sets sample alike.
    """

    operators: tuple[str, ...] = ("add", "sub", "mul", "div", "exp", "log", "sqrt", "sin", "cos")
    leaves: tuple[str, ...] = ("y_pred", "y_real")
    const_range: tuple[float, float] | None = (-5.0, 5.0)
    name: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "operators", _check_names("operator", self.operators, list(OPERATORS)))
        object.__setattr__(self, "leaves", _check_names("leaf", self.leaves, list(LEAVES)))
        if not self.operators:
            raise ValueError(f"a primitive set needs at least one operator; choose from {list(OPERATORS)}")
        if not self.leaves:
            raise ValueError(f"a primitive set needs at least one leaf; choose from {list(LEAVES)}")
        if "y_pred" not in self.leaves and "logits" not in self.leaves and "log_pred" not in self.leaves:
            raise ValueError(
                f"leaves {list(self.leaves)} contain no prediction (y_pred, logits or log_pred): "
                "no loss built from them could train a network"
            )
        if self.const_range is not None:
            try:
                lo, hi = (float(v) for v in self.const_range)
            except (TypeError, ValueError):
                raise ValueError(
                    f"const_range={self.const_range!r} must be None or a pair (low, high)"
                ) from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"const_range={self.const_range!r} must be finite with low < high")
            object.__setattr__(self, "const_range", (lo, hi))

    # -- views ------------------------------------------------------------------------------
    @property
    def primitives(self) -> list[Primitive]:
        return [OPERATORS[name] for name in self.operators]

    def describe(self) -> str:
        ops = ", ".join(self.operators)
        consts = "none" if self.const_range is None else f"uniform in {self.const_range}"
        return f"PrimitiveSet {self.name!r}: operators [{ops}]; leaves [{', '.join(self.leaves)}]; constants {consts}"

    # -- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["operators"] = list(self.operators)
        d["leaves"] = list(self.leaves)
        d["const_range"] = None if self.const_range is None else list(self.const_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PrimitiveSet:
        unknown = set(d) - {"operators", "leaves", "const_range", "name"}
        if unknown:
            raise ValueError(f"unknown PrimitiveSet field(s) {sorted(unknown)}")
        cr = d.get("const_range", (-5.0, 5.0))
        return cls(
            operators=tuple(d.get("operators", ())),
            leaves=tuple(d.get("leaves", ("y_pred", "y_real"))),
            const_range=None if cr is None else tuple(cr),
            name=d.get("name", "custom"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> PrimitiveSet:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename) so a crash never leaves half a file."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> PrimitiveSet:
        return cls.from_json(Path(path).read_text())

    # -- gplearn ----------------------------------------------------------------------------
    def gplearn_functions(self) -> list:
        return gplearn_functions(self.operators)

    def random_program(self, random_state: np.random.RandomState, init_depth: tuple[int, int] = (2, 4),
                       init_method: str = "half and half"):
        """A random gplearn ``_Program`` (ramped half-and-half by default)."""
        functions = self.gplearn_functions()
        return _Program(
            function_set=functions,
            arities=_arities(functions),
            init_depth=init_depth,
            init_method=init_method,
            n_features=len(self.leaves),
            const_range=self.const_range,
            metric=mean_absolute_error,
            p_point_replace=0.05,
            parsimony_coefficient=0.0,
            random_state=random_state,
            feature_names=list(self.leaves),
        )


def _arities(functions: list) -> dict[int, list]:
    arities: dict[int, list] = {}
    for f in functions:
        arities.setdefault(f.arity, []).append(f)
    return arities


_GPLEARN_CACHE: dict[str, object] = {}


def gplearn_functions(names: Iterable[str]) -> list:
    """gplearn ``_Function`` objects for operator names, built once from the numpy forms."""
    out = []
    for name in names:
        if name not in _GPLEARN_CACHE:
            prim = OPERATORS[name]
            _GPLEARN_CACHE[name] = make_function(function=prim.numpy_fn, name=name, arity=prim.arity,
                                                 wrap=False)
        out.append(_GPLEARN_CACHE[name])
    return out


def forget_gplearn_function(name: str) -> None:
    _GPLEARN_CACHE.pop(name, None)  # an operator registered anew


PRESETS: dict[str, PrimitiveSet] = {
    # What the paper names: +, -, x, /, sqrt, log, exp, sin, cos ("etc."); leaves y_pred,
    # y_real and constants. The constant range is not known; (-5, 5) contains NGL's 2.4092.
    "paper": PrimitiveSet(
        operators=("add", "sub", "mul", "div", "sqrt", "log", "exp", "sin", "cos"),
        leaves=("y_pred", "y_real"),
        const_range=(-5.0, 5.0),
        name="paper",
    ),
    # gplearn's own default function set, for comparison with symbolic-regression habits.
    "gplearn": PrimitiveSet(
        operators=("add", "sub", "mul", "div"), leaves=("y_pred", "y_real"), const_range=(-1.0, 1.0),
        name="gplearn",
    ),
    "full": PrimitiveSet(
        operators=tuple(OPERATORS), leaves=tuple(LEAVES), const_range=(-5.0, 5.0), name="full"
    ),
}


def preset(name: str) -> PrimitiveSet:
    """A named primitive set: ``paper`` (as far as the paper is known), ``gplearn``, ``full``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


