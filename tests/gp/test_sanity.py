"""The sanity filter rejects hopeless candidates; the fingerprint finds equivalent ones."""

from __future__ import annotations

import pytest

from ngl.gp.expression import LossExpression
from ngl.gp.sanity import check_candidate, make_probe
from ngl.losses import NGL_EXPRESSION

PROBE = make_probe(10)
NGL_TEXT = NGL_EXPRESSION


def check(text, **kw):
    return check_candidate(LossExpression.parse(text), PROBE, **kw)


@pytest.mark.parametrize("text", [NGL_TEXT, "-(y_real*log_pred)", "1.0 - y_pred*y_real",
                                  "square(y_pred - y_real)"])
def test_good_losses_pass_ngl_included(text):
    rep = check(text)
    assert rep.ok and rep.fingerprint and rep.true_class_gain > 0


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("y_real", "no_prediction"),
        ("cos(y_real - 1.7)", "no_prediction"),
        ("log(log(y_real)/exp(y_pred))", "constant"),
        ("y_pred - y_pred", "constant"),
        ("y_pred*y_real", "wrong_direction"),  # minimising p_t pushes the true class down
        ("exp(exp(logits + 4.0))*exp(exp(logits + 4.0))*exp(exp(logits + 4.0))", "nonfinite"),
    ],
)
def test_hopeless_losses_are_rejected_with_a_reason(text, status):
    rep = check(text)
    assert rep.status == status and not rep.ok and rep.detail


def test_fingerprint_identifies_equivalent_losses():
    a, b = check("y_pred*y_pred - y_pred*y_real*2.0"), check("square(y_pred) - 2.0*y_real*y_pred")
    assert a.fingerprint == b.fingerprint
    c = check("square(y_pred) - 3.0*y_real*y_pred")
    assert c.fingerprint != a.fingerprint
    # a constant offset changes values but not training: equal only in gradient mode
    d, e = check("1.0 - y_pred*y_real"), check("2.0 - y_pred*y_real")
    assert d.fingerprint != e.fingerprint
    assert check("1.0 - y_pred*y_real", equivalence="gradient").fingerprint == \
        check("2.0 - y_pred*y_real", equivalence="gradient").fingerprint


def test_probe_is_fixed_and_validated():
    assert (make_probe(5).logits == make_probe(5).logits).all()
    with pytest.raises(ValueError, match="num_classes=1"):
        make_probe(1)
    with pytest.raises(ValueError, match="equivalence mode 'x'"):
        check(NGL_TEXT, equivalence="x")
