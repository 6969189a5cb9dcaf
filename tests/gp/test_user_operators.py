"""Operators of your own (issue 23): softplus registered at run time parses, compiles, sympifies,
prints as LaTeX, passes the sanity filter, is sampled, trains in a tiny search and resumes.
Values are checked against torch's own softplus, not against the code under test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy
import torch
import torch.nn.functional as F

import ngl
from ngl.__main__ import main
from ngl.fitness import TrainBudget
from ngl.gp import LossExpression, PrimitiveSet, RunOptions, SearchSpec, run_search
from ngl.gp.primitives import OPERATORS
from ngl.gp.sampling import sample_expressions
from ngl.gp.sanity import check_candidate, make_probe
from ngl.gp.user_operators import operator_fingerprint


def _softplus_sympy(a):
    return sympy.log(1 + sympy.exp(a))


@pytest.fixture(autouse=True, scope="module")
def softplus():
    """Registered for this module's tests, unregistered after (other tests see the built-ins)."""
    ngl.register_operator("softplus", 1, F.softplus, lambda a: np.logaddexp(0.0, a),
                          _softplus_sympy, interval=lambda a: (0.0, float("inf")),
                          protected=True, description="log(1 + exp(a))")
    yield OPERATORS["softplus"]
    OPERATORS.pop("softplus", None)


def pset() -> PrimitiveSet:
    return PrimitiveSet(operators=("add", "mul", "softplus"), leaves=("y_pred", "y_real"),
                        const_range=(-2.0, 2.0), name="with softplus")
TEXT = "softplus(y_pred*y_real) + -1.5*y_pred*y_real"


def test_it_parses_compiles_and_matches_torch():
    expr = LossExpression.parse(TEXT)
    assert "softplus" in expr.operators
    z, y = torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 4, (5,))
    p, t = torch.softmax(z, -1), F.one_hot(y, 4).double()
    want = (F.softplus(p * t) - 1.5 * p * t).mean(-1).mean()
    assert torch.allclose(expr.to_module()(z, y), want)


def test_it_sympifies_and_prints_latex():
    expr = LossExpression.parse("softplus(y_pred)")
    assert expr.sympy().has(sympy.exp) and expr.sympy().has(sympy.log)
    assert r"\operatorname{softplus}" in expr.latex()


def test_it_passes_the_sanity_filter_and_is_sampled():
    report = check_candidate(LossExpression.parse(TEXT), make_probe(10))
    assert report.ok, report.detail
    texts = [str(e) for e in sample_expressions(pset(), 40, seed=0)]
    assert any("softplus(" in t for t in texts)


def test_forms_that_disagree_or_a_taken_name_are_refused():
    with pytest.raises(ValueError, match="numpy_fn disagrees with torch_fn"):
        ngl.register_operator("bad_softplus", 1, F.softplus, np.exp, _softplus_sympy)
    with pytest.raises(ValueError, match="taken by a built-in"):
        ngl.register_operator("exp", 1, torch.exp, np.exp, sympy.exp)
    with pytest.raises(ValueError, match="protected=True"):
        ngl.register_operator("my_inv", 1, lambda a: 1 / a, lambda a: 1 / a, lambda a: 1 / a,
                              protected=True)
    with pytest.raises(ValueError, match="registered already with other values"):
        ngl.register_operator("softplus", 1, torch.exp, np.exp, sympy.exp)
    # the same function again is fine (a notebook cell run twice)
    ngl.register_operator("softplus", 1, F.softplus, lambda a: np.logaddexp(0.0, a),
                          _softplus_sympy)


def test_it_trains_in_a_search_and_resumes(tmp_path, monkeypatch, capsys):
    spec = SearchSpec(primitive_set=pset(), population_size=4, generations=2, n_train=120,
                      n_val=60, budget=TrainBudget(steps=3, batch_size=32), seed=3, rescore=0,
                      seed_expressions=(TEXT,), references=())
    run = tmp_path / "s"
    first = run_search(spec, run, RunOptions(chunk_size=4), progress=False)
    assert (first.history["expression"] == TEXT).any()
    assert (first.history.loc[first.history["expression"] == TEXT, "status"] == "ok").all()
    sittings = [json.loads(line) for line in (run / "sittings.jsonl").read_text().splitlines()]
    assert sittings[0]["user_operators"]["softplus"]["fingerprint"] == \
        operator_fingerprint("softplus")
    again = ngl.resume(run, progress=False)
    assert again.history[["expression", "val_accuracy"]].equals(
        first.history[["expression", "val_accuracy"]])
    # resumed with another function under the same name: refused in one line
    monkeypatch.setitem(OPERATORS, "softplus", OPERATORS["softplus"].__class__(
        **{**OPERATORS["softplus"].__dict__, "torch_fn": torch.relu}))
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "operator 'softplus' is registered with another function" in err and "\n" not in err
    assert main(["show", str(run)]) == 2  # nor shown with another function's formulas
    assert "registered with another function" in capsys.readouterr().err
    # not registered at all: the spec cannot be read, and the message says how to register it
    monkeypatch.delitem(OPERATORS, "softplus")
    assert main(["show", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown operator 'softplus'" in err and "ngl.register_operator" in err
    assert "--import MODULE" in err
    # on the command line, a module that registers it: the search shows and resumes
    (tmp_path / "my_ops.py").write_text(
        "import numpy as np, sympy, torch.nn.functional as F\nimport ngl\n"
        "ngl.register_operator('softplus', 1, F.softplus, lambda a: np.logaddexp(0.0, a),\n"
        "                      lambda a: sympy.log(1 + sympy.exp(a)))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--import", "my_ops", "show", str(run)]) == 0
    assert main(["--import", "my_ops", "resume", str(run), "--quiet"]) == 0
    assert main(["--import", "no_such_module_xyz", "show", str(run)]) == 2
    assert "--import no_such_module_xyz" in capsys.readouterr().err


def test_the_picker_offers_it_and_returns_it():
    from ngl.ui import primitive_set_picker

    picker = primitive_set_picker("paper", n_samples=0)
    assert "softplus" in picker.op_boxes and not picker.op_boxes["softplus"].value
    picker.op_boxes["softplus"].value = True
    assert "softplus" in picker.value.operators


@pytest.mark.parametrize(("kw", "says"), [
    ({"numpy_fn": lambda a: np.full_like(a, np.nan)}, "numpy_fn is not finite where torch_fn is"),
    ({"sympy_fn": lambda a: sympy.log(-1 - a**2)}, "sympy_fn is not finite on most"),
    ({"interval": lambda a: (0.0, 1.0)}, "interval does not hold torch_fn's value"),
])
def test_forms_that_are_never_compared_or_a_wrong_interval_are_refused(kw, says):
    base = dict(name="softplus2", arity=1, torch_fn=F.softplus,
                numpy_fn=lambda a: np.logaddexp(0.0, a), sympy_fn=_softplus_sympy)
    with pytest.raises(ValueError, match=says):
        ngl.register_operator(**{**base, **kw})
    assert "softplus2" not in OPERATORS
