"""Operators of your own (PySR and gplearn take user functions directly): registered once at
run time with their torch, numpy and sympy forms, checked to agree, then usable everywhere a
built-in operator is; and what a run directory records of them (a fingerprint of values)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import sympy
import torch

from ngl.gp.primitives import (
    ANY_INTERVAL,
    LEAVES,
    OPERATOR_ALIASES,
    OPERATORS,
    Interval,
    Primitive,
    forget_gplearn_function,
)

__all__ = ["register_operator", "user_operators", "operator_fingerprint"]


def _probe_args(arity: int) -> list[np.ndarray]:
    """Fixed arguments on which an operator's forms are compared and its behaviour recorded."""
    base = np.array([-30.0, -3.0, -1.0, -0.5, -1e-4, 0.0, 1e-4, 0.5, 1.0, 3.0, 30.0])
    grids = np.meshgrid(*([base] * arity), indexing="ij")
    return [g.ravel() for g in grids]


def operator_fingerprint(name: str) -> list[float | None]:
    """The operator's torch form on fixed arguments, rounded to 9 significant digits (None
    where not finite): what a run records of a user operator, so that resuming it with another
    function under the same name is refused."""
    prim = OPERATORS[name]
    args = [torch.tensor(a, dtype=torch.float64) for a in _probe_args(prim.arity)]
    with torch.no_grad():
        out = prim.torch_fn(*args).double().numpy()
    return [float(f"{v:.9g}") if math.isfinite(v) else None for v in out.tolist()]


def register_operator(name: str, arity: int, torch_fn: Callable[..., torch.Tensor],
                      numpy_fn: Callable[..., np.ndarray], sympy_fn: Callable[..., sympy.Expr],
                      interval: Callable[..., Interval] | None = None, protected: bool = False,
                      description: str | None = None, latex: str | None = None) -> Primitive:
    """Add an operator of your own, usable everywhere a built-in one is: parse, compile, the
    sanity filter, sympy and LaTeX, sampling, the picker widget and searches (PySR and gplearn
    take user functions the same way).

    ``torch_fn`` trains; ``numpy_fn`` (gplearn, quick checks) and ``sympy_fn`` (formulas) must
    agree with it: the three are compared on fixed arguments and a registration whose forms
    disagree is refused. ``interval`` maps argument intervals to an interval holding every
    output (default: unbounded); ``protected=True`` claims the torch form is finite for every
    finite argument, and is checked. Registering the same name again with the same values is
    a no-op; with other values it is refused (a run recorded with one softplus must not resume
    with another). In worker processes (Dask), register it there too, e.g. in a module the
    workers import.
    """
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"operator name {name!r}: expected an identifier such as 'softplus'")
    if name in LEAVES or name in OPERATOR_ALIASES or (name in OPERATORS and not OPERATORS[name].user):
        raise ValueError(f"operator name {name!r} is taken by a built-in leaf or operator")
    if arity not in (1, 2):
        raise ValueError(f"arity={arity!r}: expected 1 or 2")
    args = _probe_args(arity)
    with torch.no_grad():
        t = torch_fn(*(torch.tensor(a, dtype=torch.float64) for a in args))
    if not isinstance(t, torch.Tensor) or t.shape != args[0].shape:
        raise ValueError(f"{name}: torch_fn must map tensors to a tensor of the same shape")
    t = t.double().numpy()
    with np.errstate(all="ignore"):
        n = np.asarray(numpy_fn(*args), dtype=float)
    syms = sympy.symbols("a b")[:arity]
    expr = sympy.lambdify(syms, sympy_fn(*syms), "numpy")
    with np.errstate(all="ignore"):
        s = np.broadcast_to(np.asarray(expr(*args), dtype=float), t.shape)
    fin = np.isfinite(t)
    if n.shape != t.shape or not np.isfinite(n[fin]).all():
        raise ValueError(f"{name}: numpy_fn is not finite where torch_fn is; the three forms "
                         "must compute the same function")
    if s.shape != t.shape or np.isfinite(s[fin]).sum() < 0.5 * fin.sum():
        raise ValueError(f"{name}: sympy_fn is not finite on most check arguments where "
                         "torch_fn is; the three forms must compute the same function")
    for form, values in (("numpy_fn", n), ("sympy_fn", s)):
        both = fin & np.isfinite(values)
        # the sympy form is the idealised one: compared where it is finite, off the guards
        if not np.allclose(values[both], t[both], rtol=1e-6, atol=1e-9):
            raise ValueError(f"{name}: {form} disagrees with torch_fn on the check arguments; "
                             "the three forms must compute the same function")
    if protected and not fin.all():
        raise ValueError(f"{name}: protected=True, but torch_fn is not finite on every check "
                         "argument")
    if interval is not None:  # the compiler trusts it to choose unprotected fast paths
        whole = interval(*((float(a.min()), float(a.max())) for a in args))
        points = [interval(*((float(a[k]), float(a[k])) for a in args)) for k in range(t.size)]
        tol = 1e-9 + 1e-9 * np.abs(t)
        inside = (t >= np.array([p[0] for p in points]) - tol) & (t <= np.array(
            [p[1] for p in points]) + tol) & (t >= whole[0] - tol) & (t <= whole[1] + tol)
        if not inside[fin].all():
            k = int(np.flatnonzero(fin & ~inside)[0])
            raise ValueError(f"{name}: interval does not hold torch_fn's value "
                             f"{t[k]:.6g} at {tuple(float(a[k]) for a in args)}; it must "
                             "bound every output")
    prim = Primitive(name, arity, torch_fn, numpy_fn, sympy_fn,
                     description or f"{name} (registered)",
                     bounds=interval if interval is not None else (lambda *a: ANY_INTERVAL),
                     latex=latex, user=True)
    old = OPERATORS.get(name)
    if old is not None:
        before = operator_fingerprint(name)
        OPERATORS[name] = prim
        if operator_fingerprint(name) != before:
            OPERATORS[name] = old
            raise ValueError(f"operator {name!r} is registered already with other values; "
                             "use another name")
        return prim
    OPERATORS[name] = prim
    forget_gplearn_function(name)
    return prim


def user_operators(names: Iterable[str] | None = None) -> dict[str, dict]:
    """The user-registered operators among ``names`` (default all), each with its arity,
    description and :func:`operator_fingerprint`: what a run directory records."""
    pick = OPERATORS if names is None else {n: OPERATORS[n] for n in names if n in OPERATORS}
    return {n: {"arity": p.arity, "description": p.description,
                "fingerprint": operator_fingerprint(n)} for n, p in pick.items() if p.user}
