"""Printer and parser agree on every tree: ``parse(str(e))`` and ``parse(e.prefix())`` give ``e``.

The search stores each population as text and parses it back to train, so a tree whose text
reads back as another tree would be trained as a different loss than the one recorded. Trees
are built here directly from the operator registry (never by parsing), so the printer meets
shapes the parser would never produce, e.g. ``neg(square(1.5))`` or ``square(-0.0)``.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ngl
from ngl.gp.expression import LossExpression
from ngl.gp.primitives import OPERATORS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add waiting

FULL = ngl.preset("full")

# Constants that stress the printer: signed zeros, subnormals, the float extremes, integers at
# the switch between '1e+15'-style and '123.0'-style text, and exponent-form values.
TRICKY_CONSTANTS = [
    0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.0, -2.0, 1 / 3, 2.4092, 0.1,
    1e-05, -1e-05, 1e-7, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300,
    1e15 - 1, 1e15, -1e15, 1e16, 123456789012345.0, 1e22, 1e300, -1e300, 1.7976931348623157e308,
]
constants = st.one_of(st.sampled_from(TRICKY_CONSTANTS),
                      st.floats(allow_nan=False, allow_infinity=False))
leaves = st.one_of(st.sampled_from(FULL.leaves), constants).map(lambda node: (node, ()))


def _wrap(chain: list[str], tree: tuple) -> tuple:
    for op in reversed(chain):
        tree = (op, (tree,))
    return tree


# Chains of unary minus and power over a leaf (``neg(square(1.5))``, ``square(neg(-0.0))``):
# the text of a minus next to a number is where printer and parser can disagree, and a plain
# recursive draw reaches such chains only rarely.
sign_chains = st.builds(_wrap, st.lists(st.sampled_from(["neg", "square"]), min_size=1, max_size=3),
                        st.one_of(constants.map(lambda c: (c, ())), leaves))


# Every operator of the registry; those on the printer's precedence edges (unary minus, the
# power, the non-commutative infix ones) drawn three times as often.
_OPERATOR_DRAWS = [*FULL.operators, *(["neg", "square", "sub", "div"] * 2)]


def _apply_every_operator(kids: st.SearchStrategy) -> st.SearchStrategy:
    return st.sampled_from(_OPERATOR_DRAWS).flatmap(
        lambda op: st.tuples(st.just(op), st.tuples(*[kids] * OPERATORS[op].arity)))


trees = st.recursive(st.one_of(leaves, sign_chains), _apply_every_operator, max_leaves=10)


def _prefix(tree: tuple) -> list:
    node, kids = tree
    return [node, *(n for k in kids for n in _prefix(k))]


def _same_program(a: tuple, b: tuple) -> bool:
    """Equal node for node, the sign of a zero included (``-0.0 == 0.0`` in Python)."""
    return len(a) == len(b) and all(
        type(x) is type(y) and x == y and (not isinstance(x, float) or math.copysign(1, x) == math.copysign(1, y))
        for x, y in zip(a, b, strict=True)
    )


def _walk(program: tuple, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reference meaning of a prefix program: the registry's torch form of every node."""
    leaf_values = {"y_pred": lambda: torch.softmax(z, -1), "y_real": lambda: y, "logits": lambda: z,
                   "log_pred": lambda: torch.log_softmax(z, -1)}
    pos = 0

    def ev() -> torch.Tensor:
        nonlocal pos
        node = program[pos]
        pos += 1
        if isinstance(node, float):
            return torch.full_like(z, node)
        if node in leaf_values:
            return leaf_values[node]()
        return OPERATORS[node].torch_fn(*(ev() for _ in range(OPERATORS[node].arity)))

    return ev().expand_as(z)


def _value_and_grads(fn, z0: torch.Tensor, y0: torch.Tensor) -> list[torch.Tensor]:
    z, y = z0.clone().requires_grad_(True), y0.clone().requires_grad_(True)
    out = fn(z, y).expand_as(z)
    if not out.requires_grad:
        return [out, torch.zeros_like(z), torch.zeros_like(y)]
    grads = torch.autograd.grad(out, (z, y), torch.ones_like(out), allow_unused=True)
    return [out.detach(), *(torch.zeros_like(t) if g is None else g for g, t in zip(grads, (z, y), strict=True))]


def _assert_identical(got: list[torch.Tensor], want: list[torch.Tensor], text: str) -> None:
    """Bit for bit, with NaN equal to NaN (torch.equal says NaN != NaN)."""
    for name, a, b in zip(("value", "d/dz", "d/dy"), got, want, strict=True):
        same_nan = torch.equal(a.isnan(), b.isnan())
        assert same_nan and torch.equal(a.masked_fill(a.isnan(), 0), b.masked_fill(b.isnan(), 0)), (
            f"{name} of {text!r}: {a} != {b}")


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 5, generator=g, dtype=torch.float64) * 4
    y = torch.rand(3, 5, generator=g, dtype=torch.float64)
    return z, y


def _check_round_trip(program: tuple) -> None:
    e = LossExpression(program)
    assert _same_program(e.program, program)
    for text in (str(e), e.prefix()):
        back = LossExpression.parse(text)
        assert _same_program(back.program, program), (text, back.program, program)
        assert back.key == e.key, text


def test_full_preset_has_every_operator_and_leaf():
    assert set(FULL.operators) == set(OPERATORS)
    assert len(FULL.leaves) == 4


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees)
@example(tree=("neg", (("square", ((1.5, ()),)),)))  # printed '-1.5**2', once read as square(-1.5)
def test_random_trees_print_and_parse_back_to_the_same_loss(tree):
    program = tuple(_prefix(tree))
    _check_round_trip(program)
    e = LossExpression(program)
    assert LossExpression.from_program(e.to_program(FULL), FULL) == e
    z, y = _inputs()
    want = _value_and_grads(functools.partial(_walk, program), z, y)
    try:
        trained = e.compile()
    except ValueError as err:  # a constant subtree overflows (e.g. 1e300*1e300): refused alike
        assert "not finite" in str(err)
        trained = None
    for text in (str(e), e.prefix()):
        back = LossExpression.parse(text)
        _assert_identical(_value_and_grads(functools.partial(_walk, back.program), z, y), want, text)
        if trained is None:
            with pytest.raises(ValueError, match="not finite"):
                back.compile()
        else:  # what the search trains from the stored text is what was built
            _assert_identical(_value_and_grads(back.compile(), z, y), _value_and_grads(trained, z, y), text)


# Subtrees that sit on the printer's precedence edges: a minus next to a number, powers of
# negative or exponent-form constants, signed zeros.
AWKWARD = [
    (1.5,), (-1.5,), (0.0,), (-0.0,), (1e-05,), (-1e300,), (2.0,),
    ("square", 1.5), ("square", -1.5), ("square", 1e-05), ("square", -0.0), ("square", 0.0),
    ("neg", 1.5), ("neg", -1.5), ("neg", -0.0), ("neg", "square", 1.5), ("neg", "square", 1e-05),
    ("neg", "square", -2.0), ("square", "neg", 1.5), ("square", "square", 2.0),
    ("neg", "neg", "y_pred"), ("y_pred",), ("neg", "y_pred"), ("sub", "y_pred", -1.5),
    ("mul", -1.5, "y_real"), ("div", "square", 1.5, "neg", 2.0),
]
CONTEXTS = [(), ("neg",), ("square",), ("neg", "square"), ("sub", "y_pred"), ("mul", -2.0),
            ("div", 1.5), ("exp",), ("max", -1.5)]


@pytest.mark.parametrize("op", sorted(OPERATORS))
def test_every_operator_round_trips_with_awkward_operands(op):
    arity = OPERATORS[op].arity
    # Each awkward operand in each place (the other place y_pred), and every same-place pair.
    combos = [(a,) for a in AWKWARD] if arity == 1 else [
        *((a, ("y_pred",)) for a in AWKWARD), *((("y_pred",), a) for a in AWKWARD),
        *((a, a) for a in AWKWARD)]
    for args in combos:
        inner = (op, *(n for a in args for n in a))
        for ctx in CONTEXTS:
            _check_round_trip((*ctx, *inner))
            if len(ctx) == 2 and ctx[0] in ("sub", "div"):  # and as the left operand
                _check_round_trip((ctx[0], *inner, ctx[1]))
