"""The primitive set: one definition per operator, validation, JSON persistence, presets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy
import torch

from ngl.gp.primitives import (
    LEAVES,
    OPERATORS,
    PRESETS,
    PrimitiveSet,
    gplearn_functions,
    preset,
)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_each_operator_has_consistent_torch_numpy_sympy_forms(name):
    prim = OPERATORS[name]
    assert prim.description and prim.arity in (1, 2)
    rng = np.random.default_rng(0)
    # away from the protection thresholds the three forms agree
    args = [rng.uniform(0.2, 2.0, 7) for _ in range(prim.arity)]
    t = prim(*[torch.tensor(a) for a in args]).numpy()
    n = prim.numpy_fn(*args)
    np.testing.assert_allclose(t, n, rtol=1e-12)
    syms = sympy.symbols(f"a0:{prim.arity}")
    f = sympy.lambdify(syms, prim.sympy_fn(*syms), "numpy")
    np.testing.assert_allclose(f(*args), n, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_numpy_and_torch_forms_are_closed_on_zeros_negatives_and_extremes(name):
    prim = OPERATORS[name]
    for value in (0.0, -1.0, 1e-9, -1e6, 1e6):
        args = [np.full(4, value)] * prim.arity
        assert np.all(np.isfinite(prim.numpy_fn(*args))), (name, value)
        targs = [torch.full((4,), value, dtype=torch.float32, requires_grad=True)] * prim.arity
        out = prim(*targs)
        out.sum().backward()
        assert torch.all(torch.isfinite(out)), (name, value)
        assert torch.all(torch.isfinite(targs[0].grad)), (name, value)


def test_protected_forms_follow_gplearn_conventions():
    x = np.array([0.0, 5e-4, 2.0, -4.0])
    np.testing.assert_allclose(OPERATORS["div"].numpy_fn(np.ones(4), x), [1, 1, 0.5, -0.25])
    np.testing.assert_allclose(OPERATORS["log"].numpy_fn(x), [0, 0, np.log(2), np.log(4)])
    np.testing.assert_allclose(OPERATORS["sqrt"].numpy_fn(x), np.sqrt(np.abs(x)))
    assert OPERATORS["exp"](torch.tensor(1e4)).item() == pytest.approx(np.exp(30.0), rel=1e-6)


def test_primitive_arity_is_checked():
    with pytest.raises(ValueError, match="'exp' takes 1 argument"):
        OPERATORS["exp"](torch.ones(1), torch.ones(1))


def test_gplearn_make_function_accepts_every_operator():
    funcs = gplearn_functions(OPERATORS)
    assert [f.name for f in funcs] == list(OPERATORS)
    assert all(f.arity == OPERATORS[f.name].arity for f in funcs)


def test_paper_preset_holds_the_operators_the_paper_names_and_ngl():
    p = preset("paper")
    assert set(p.operators) == {"add", "sub", "mul", "div", "sqrt", "log", "exp", "sin", "cos"}
    assert p.leaves == ("y_pred", "y_real")
    lo, hi = p.const_range
    assert lo < 2.4092 < hi
    assert set(PRESETS) >= {"paper", "gplearn", "full"}


def test_json_round_trip_and_atomic_save(tmp_path):
    p = PrimitiveSet(operators=("add", "exp", "min"), leaves=("y_pred", "logits"),
                     const_range=(-1, 2), name="mine")
    assert PrimitiveSet.from_json(p.to_json()) == p
    path = p.save(tmp_path / "sub" / "pset.json")
    assert PrimitiveSet.load(path) == p
    assert json.loads(path.read_text())["operators"] == ["add", "exp", "min"]
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left behind
    none = PrimitiveSet(const_range=None)
    assert PrimitiveSet.from_json(none.to_json()).const_range is None


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"operators": ("add", "pow")}, r"unknown operator 'pow'; expected some of \['add'"),
        ({"leaves": ("y_pred", "x")}, r"unknown leaf 'x'; expected some of \['y_pred'"),
        ({"operators": ()}, "at least one operator"),
        ({"leaves": ()}, "at least one leaf"),
        ({"leaves": ("y_real",)}, "contain no prediction"),
        ({"operators": ("add", "add")}, "listed twice"),
        ({"const_range": (2, 1)}, r"const_range=\(2, 1\)"),
        ({"const_range": (0, float("inf"))}, "finite"),
        ({"const_range": "abc"}, "pair"),
    ],
)
def test_validation_errors_name_the_bad_value(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        PrimitiveSet(**kwargs)


def test_unknown_preset_and_json_fields():
    with pytest.raises(ValueError, match="unknown preset 'x'.*'paper'"):
        preset("x")
    with pytest.raises(ValueError, match=r"unknown PrimitiveSet field\(s\) \['colour'\]"):
        PrimitiveSet.from_dict({"operators": ["add"], "colour": 1})


def test_leaves_are_documented():
    assert set(LEAVES) == {"y_pred", "y_real", "logits", "log_pred"}
    assert all(leaf.description and leaf.latex for leaf in LEAVES.values())
