"""The CMA-ES state of a tuning run as JSON: no pickle in run folders.

``checkpoint.json`` holds every attribute of the ``cmaes.CMA`` object: floats as exact hex
strings (``float.hex``, so a resumed run asks for bit-identical vectors), arrays with dtype and
shape, the RandomState as its state list. Reading checks every name, kind and shape against a
fresh optimiser built from the same spec, so a hand-edited or foreign file is refused in one line,
never run. A folder of ngl 0.1 holds ``checkpoint.pkl`` instead: it is never opened (a pickle
can run code); the state is rebuilt exactly by replaying CMA-ES over the recorded rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from cmaes import CMA

from ngl.gp.rundir import rng_from_json, rng_to_json

__all__ = ["cma_to_json", "cma_from_json"]


def _enc(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        kind = v.dtype.kind
        if kind not in "fiub":
            raise TypeError(f"cannot store an array of dtype {v.dtype}")
        flat = v.ravel().tolist()
        data = [float(x).hex() for x in flat] if kind == "f" else flat
        return {"ndarray": {"dtype": v.dtype.str, "shape": list(v.shape), "data": data}}
    if isinstance(v, bool | np.bool_):
        return {"bool": bool(v)}
    if isinstance(v, int | np.integer):
        return {"int": int(v), "numpy": isinstance(v, np.integer)}
    if isinstance(v, float | np.floating):
        return {"float": float(v).hex(), "numpy": isinstance(v, np.floating)}
    if v is None:
        return None
    raise TypeError(f"cannot store a {type(v).__name__}")


def _dec(v: Any, like: Any, name: str) -> Any:
    bad = f"{name} = {str(v)[:60]!r}"
    if v is None:
        if like is not None and not isinstance(like, np.ndarray):
            raise ValueError(f"{bad}: expected a value")
        return None
    if not isinstance(v, dict):
        raise ValueError(f"{bad}: not a stored value")
    if set(v) == {"ndarray"} and isinstance(v["ndarray"], dict):
        a = v["ndarray"]
        try:
            dtype, shape, data = np.dtype(a["dtype"]), tuple(a["shape"]), a["data"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{bad}: not a stored array ({exc})") from None
        if dtype.kind not in "fiub" or not all(type(s) is int and 0 <= s < 10**6 for s in shape) \
                or not isinstance(data, list) or len(data) != int(np.prod(shape)):
            raise ValueError(f"{bad}: dtype, shape or data length are not valid")
        if isinstance(like, np.ndarray) and (like.shape != shape or like.dtype != dtype):
            raise ValueError(f"{name}: shape {shape} / dtype {dtype} do not fit this optimiser "
                             f"({like.shape} / {like.dtype})")
        try:
            vals = [float.fromhex(x) for x in data] if dtype.kind == "f" else data
            return np.array(vals, dtype=dtype).reshape(shape)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{name}: array data are not valid ({exc})") from None
    if isinstance(like, np.ndarray):
        raise ValueError(f"{bad}: expected an array")
    if set(v) == {"bool"} and type(v["bool"]) is bool:
        return v["bool"]
    if set(v) == {"int", "numpy"} and type(v["int"]) is int and abs(v["int"]) < 2**63:
        return np.int64(v["int"]) if v["numpy"] else v["int"]
    if set(v) == {"float", "numpy"} and isinstance(v["float"], str):
        try:
            x = float.fromhex(v["float"])
        except ValueError:
            raise ValueError(f"{bad}: not a hex float") from None
        return np.float64(x) if v["numpy"] else x
    raise ValueError(f"{bad}: not a stored value")


def cma_to_json(cma: CMA) -> dict:
    """Every attribute of ``cma`` (its RandomState as a state list) as plain JSON."""
    return {"attributes": {k: _enc(v) for k, v in sorted(cma.__dict__.items()) if k != "_rng"},
            "rng": rng_to_json(cma._rng)}


def cma_from_json(state: Any, fresh: CMA) -> CMA:
    """The optimiser saved by :func:`cma_to_json`, checked against ``fresh`` (one built from
    the same spec): the same attribute names, scalars of the same kind, arrays of the same
    shape and dtype (``_B``/``_D`` are None until the first update). ``ValueError`` otherwise."""
    if not isinstance(state, dict) or set(state) != {"attributes", "rng"} \
            or not isinstance(state["attributes"], dict):
        raise ValueError("expected {attributes, rng}")
    attrs, like = state["attributes"], {k: v for k, v in fresh.__dict__.items() if k != "_rng"}
    if set(attrs) != set(like):
        missing, extra = sorted(set(like) - set(attrs)), sorted(set(attrs) - set(like))
        raise ValueError(f"attributes differ from this optimiser's (missing {missing}, "
                         f"unexpected {extra})")
    values = {}
    for k, v in attrs.items():
        old = like[k]
        shape_free = old is None  # _B, _D: None until the first update, arrays after
        values[k] = _dec(v, None if shape_free else old, k)
        if not shape_free and not isinstance(old, np.ndarray) and \
                type(values[k]) is not type(old) and not (
                    isinstance(old, float | np.floating) and isinstance(values[k], float | np.floating)):
            raise ValueError(f"{k}: a {type(values[k]).__name__}, expected a {type(old).__name__}")
    cma = CMA.__new__(CMA)
    cma.__dict__.update(values)
    try:
        cma._rng = rng_from_json(state["rng"])
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"rng: not a RandomState state ({exc})") from None
    return cma
