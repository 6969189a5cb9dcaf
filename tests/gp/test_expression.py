"""LossExpression: parsing, printing, gplearn round trips, sympy/LaTeX and compiled torch losses."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sympy
import torch

import ngl
import ngl.gp.expression as ngl_expression
import ngl.gp.parse as ngl_parse
from ngl.gp.compiler import compile_program, generate_source
from ngl.gp.expression import ExpressionLoss, LossExpression
from ngl.gp.primitives import OPERATORS, PrimitiveSet, preset
from ngl.gp.sampling import sample_expressions

NGL_TEXT = "exp(2.4092 - y_pred*(1 + y_real)) - cos(cos(sin(y_pred)))"


def test_parse_ngl_structure():
    e = LossExpression.parse(NGL_TEXT)
    assert e.program == (
        "sub", "exp", "sub", 2.4092, "mul", "y_pred", "add", 1.0, "y_real",
        "cos", "cos", "sin", "y_pred",
    )
    assert e.size == 13
    assert e.depth == 5
    assert e.leaves == ("y_pred", "y_real")
    assert e.constants == (2.4092, 1.0)


def test_parsed_ngl_equals_handwritten_ngl_exactly():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 10, generator=g)
    t = torch.randint(0, 10, (64,), generator=g)
    t[3] = -100
    ours = LossExpression.parse(NGL_TEXT).to_module()
    ref = ngl.get_loss("ngl")
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    a, b = ours(z1, t), ref(z2, t)
    assert torch.equal(a, b)
    a.backward()
    b.backward()
    assert torch.equal(z1.grad, z2.grad)
    for red in ("none", "sum"):
        assert torch.equal(LossExpression.parse(NGL_TEXT).to_module(reduction=red)(z, t),
                           ngl.get_loss("ngl", reduction=red)(z, t))


def test_segmentation_input_through_expression_module():
    z = torch.randn(2, 5, 3, 3)
    t = torch.randint(0, 5, (2, 3, 3))
    t[0, 0, 0] = 255
    a = LossExpression.parse(NGL_TEXT).to_module(ignore_index=255)(z, t)
    b = ngl.get_loss("ngl", ignore_index=255)(z, t)
    assert torch.equal(a, b)


def test_gplearn_prefix_form_parses():
    e = LossExpression.parse(
        "sub(exp(sub(2.409, mul(y_pred, add(1.000, y_real)))), cos(cos(sin(y_pred))))"
    )
    assert str(e) == "exp(2.409 - y_pred*(1.0 + y_real)) - cos(cos(sin(y_pred)))"
    # gplearn's default feature names X0, X1 map to the primitive set's leaves in order.
    e2 = LossExpression.parse("add(X0, mul(X1, 0.5))", preset("paper"))
    assert str(e2) == "y_pred + y_real*0.5"
    assert LossExpression.parse("sig(y_pred)").program == ("sigmoid", "y_pred")


@pytest.mark.parametrize(
    "text",
    [
        NGL_TEXT,
        "y_pred - -0.5",
        "-0.5*y_pred",
        "-(0.5*y_pred)",
        "-(0.5)",
        "-y_pred**2",
        "(-y_pred)**2",
        "(-0.5)**2 + y_real",
        "y_pred/(y_real*y_pred)",
        "y_pred - (y_real - y_pred)",
        "(y_pred - y_real) - y_pred",
        "y_pred/-y_real",
        "max(y_pred, 0.3) + min(logits, log_pred)",
        "sqrt(abs(neg(y_pred))) * inv(tanh(sigmoid(y_real)))",
        "1e-05 + y_pred",
        "-(-y_pred)",
    ],
)
def test_str_round_trips(text):
    e = LossExpression.parse(text)
    assert LossExpression.parse(str(e)) == e
    assert LossExpression.parse(e.prefix()) == e


def test_random_expressions_round_trip_through_text_prefix_and_gplearn():
    pset = preset("full")
    exprs = sample_expressions(pset, 60, seed=3, init_depth=(1, 6))
    assert len(exprs) == 60
    for e in exprs:
        assert LossExpression.parse(str(e)) == e
        assert LossExpression.parse(e.prefix()) == e
        prog = e.to_program(pset)
        assert LossExpression.from_program(prog, pset) == e
        assert prog.length_ == e.size and prog.depth_ == e.depth


def test_sampling_is_seeded_and_respects_the_set():
    pset = PrimitiveSet(operators=("add", "mul", "exp"), leaves=("y_pred", "y_real"), const_range=None)
    a = sample_expressions(pset, 10, seed=7)
    b = sample_expressions(pset, 10, seed=7)
    c = sample_expressions(pset, 10, seed=8)
    assert a == b and a != c
    for e in a:
        assert set(e.operators) <= {"add", "mul", "exp"}
        assert not e.constants
        assert 1 <= e.depth <= 4  # "grow" trees may stop before the drawn depth


def test_compiled_code_is_straight_line_with_shared_subtrees_and_folded_constants():
    e = LossExpression.parse("exp(y_pred*y_real) + exp(y_pred*y_real) + exp(2.0*3.0)")
    src = e.source()
    assert src.count("_f_exp(") == 1  # the repeated subtree is computed once
    assert "6.0" not in src and repr(float(np.exp(6.0))) in src  # constants folded
    assert "for " not in src and "while " not in src
    z, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    p = torch.softmax(z, -1)
    y = torch.nn.functional.one_hot(t, 3).float()
    want = (2 * torch.exp(p * y) + np.exp(6.0)).mean()
    torch.testing.assert_close(e.to_module()(z, t), want)


@pytest.mark.parametrize("text", ["2.0", "y_real", "cos(1.0) + y_real"])
def test_prediction_free_expressions_still_give_finite_losses(text):
    z, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    out = LossExpression.parse(text).to_module(reduction="none")(z, t)
    assert out.shape == (4,) and torch.all(torch.isfinite(out))


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_every_operator_compiles_and_matches_its_numpy_form(name):
    prim = OPERATORS[name]
    args = ", ".join(["y_pred", "log_pred"][: prim.arity])
    e = LossExpression.parse(f"{name}({args})")
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64) * 3
    y = torch.zeros(5, 4, dtype=torch.float64)
    got = e.compile()(z, y).numpy()
    p, logp = torch.softmax(z, -1).numpy(), torch.log_softmax(z, -1).numpy()
    want = prim.numpy_fn(*[p, logp][: prim.arity])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_protected_operators_have_finite_gradients_at_their_edges():
    z = torch.tensor([[0.0, 0.0], [50.0, -50.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1])
    for text in ["div(y_pred, y_pred - 0.5)", "log(y_pred - 0.5)", "sqrt(y_pred - 0.5)",
                 "inv(y_pred - 0.5)", "exp(100.0*logits)"]:
        z.grad = None
        out = LossExpression.parse(text).to_module()(z, t)
        out.backward()
        assert torch.isfinite(out), text
        assert torch.all(torch.isfinite(z.grad)), text


def test_gradcheck_of_compiled_expression():
    e = LossExpression.parse("log(y_pred + 0.1)*y_real - square(y_pred) + tanh(logits)")
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2, 1])
    loss = e.to_module()
    assert torch.autograd.gradcheck(lambda x: loss(x, t), (z,))


def test_sympy_latex_and_simplify():
    e = LossExpression.parse(NGL_TEXT)
    assert e.latex() == (r"e^{2.4092 - \hat{y} \, \left(1 + y\right)} - "
                         r"\cos\left(\cos\left(\sin\left(\hat{y}\right)\right)\right)")
    s = LossExpression.parse("y_pred*y_real + y_real*y_pred - 2*y_pred*y_real").simplify()
    assert s == 0
    p, y = sympy.Symbol("y_pred", real=True), sympy.Symbol("y_real", real=True)
    assert sympy.simplify(e.sympy() - (sympy.exp(sympy.Float(2.4092) - p * (1 + y))
                                       - sympy.cos(sympy.cos(sympy.sin(p))))) == 0


def test_key_is_stable_and_hashable():
    a, b = LossExpression.parse(NGL_TEXT), LossExpression.parse(" exp(2.4092-y_pred*(1+y_real))-cos(cos(sin(y_pred)))")
    assert a == b and hash(a) == hash(b) and a.key == b.key
    assert a.key == "cbdcd1f6ae37dadb"  # must not change across versions: run dirs are named by it
    assert len({a, b, LossExpression.parse("y_pred")}) == 2


def test_expression_module_pickles():
    loss = LossExpression.parse(NGL_TEXT).to_module(reduction="sum")
    loss2 = pickle.loads(pickle.dumps(loss))
    assert isinstance(loss2, ExpressionLoss) and loss2.reduction == "sum"
    z, t = torch.randn(3, 4), torch.tensor([0, 1, 3])
    assert torch.equal(loss(z, t), loss2(z, t))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", "empty loss expression"),
        ("   ", "empty loss expression"),
        ("exp(y_pred", r"'\(' at position 3 is never closed"),
        ("(y_pred + y_real", r"'\(' at position 0 is never closed"),
        ("y_pred + y_real)", r"unexpected '\)' at position 15"),
        ("foo(y_pred)", r"unknown symbol 'foo' at position 0"),
        ("y_pred + bar", r"unknown symbol 'bar' at position 9"),
        ("exp(y_pred, y_real)", r"wrong arity: 'exp' takes 1 argument\(s\), got 2 at position 0"),
        ("add(y_pred)", r"wrong arity: 'add' takes 2 argument\(s\), got 1 at position 0"),
        ("y_pred $ y_real", r"unexpected character '\$' at position 7"),
        ("y_pred +", r"missing operand before 'end of text' at position 8"),
        ("y_pred ** 3", r"only the power 2.*got '3' at position 10"),
        ("exp + 1", r"operator 'exp' needs its arguments in parentheses at position 0"),
        ("y_pred(1)", r"leaf 'y_pred' is not a function at position 0"),
        ("y_pred y_real", r"unexpected token 'y_real' at position 7"),
    ],
)
def test_bad_text_names_token_and_position(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        LossExpression.parse(text)


def test_parse_restricted_to_a_primitive_set():
    pset = PrimitiveSet(operators=("add", "mul"), leaves=("y_pred", "y_real"))
    with pytest.raises(ValueError, match=r"operator 'exp'.*not in the primitive set"):
        LossExpression.parse("exp(y_pred)", pset)
    with pytest.raises(ValueError, match=r"unknown symbol 'logits'"):
        LossExpression.parse("logits + y_pred", pset)
    with pytest.raises(ValueError, match=r"lacks"):
        LossExpression.parse("exp(y_pred)").to_program(pset)


def test_invalid_programs_are_rejected():
    with pytest.raises(ValueError, match="operand"):
        LossExpression(("add", "y_pred"))
    with pytest.raises(ValueError, match="extra nodes"):
        LossExpression(("y_pred", "y_real"))
    with pytest.raises(ValueError, match="unknown node 'foo'"):
        LossExpression(("foo",))
    with pytest.raises(ValueError, match="must be finite"):
        LossExpression(("add", "y_pred", float("inf")))


def _tree_walk(e: LossExpression, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reference evaluator: the protected torch form of every node, no compiler tricks."""
    leaves = {"y_pred": torch.softmax(z, -1), "y_real": y, "logits": z,
              "log_pred": torch.log_softmax(z, -1)}

    def ev(t):
        node, kids = t
        if isinstance(node, float):
            return torch.full_like(z, node)
        if not kids:
            return leaves[node]
        return OPERATORS[node].torch_fn(*(ev(k) for k in kids))

    return ev(e._tree()).expand_as(z)


def test_compiler_fast_paths_agree_with_the_protected_tree_walk():
    """Interval analysis may drop a protection only where it cannot matter."""
    exprs = sample_expressions(preset("full"), 150, seed=11, init_depth=(2, 5))
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(16, 6, generator=g, dtype=torch.float64) * 5,
                   torch.tensor([[80.0, -80, 0, 0, 1, 2]], dtype=torch.float64)])
    y = torch.nn.functional.one_hot(torch.randint(0, 6, (17,), generator=g), 6).double()
    for e in exprs:
        want = _tree_walk(e, z, y)
        got = e.compile()(z, y)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, equal_nan=True, msg=str(e))


# -- printer and parser agree (Python's precedence) ------------------------------------------


def test_neg_of_squared_constant_prints_text_that_parses_back():
    """neg(square(1.5)) = -2.25; its text once read back as square(-1.5) = +2.25."""
    e = LossExpression(("neg", "square", 1.5))
    assert str(e) == "-(1.5**2)"
    assert e.prefix() == "neg(square(1.5))"
    z, t = torch.randn(2, 3, dtype=torch.float64), torch.tensor([0, 2])
    for text in (str(e), e.prefix(), "-1.5**2"):
        back = LossExpression.parse(text)
        assert back == e and back.key == e.key, text
        assert torch.equal(back.to_module(reduction="none")(z, t), torch.full((2,), -(1.5**2), dtype=torch.float64))


@pytest.mark.parametrize(
    "text",
    ["-2**2", "-2.0**2", "--2**2", "-(2)**2", "(-2)**2", "1 - -2**2", "-1.5**2 + 1", "2*-3",
     "3/-2*4", "-2**2*3", "-0.5*-0.5", "2**+2", "-2.5", "+-2.5", "-+2.5", "-1e-05**2", "-.5**2"],
)
def test_constant_arithmetic_evaluates_like_python(text):
    """Python's precedence: unary minus binds weaker than ** (-2**2 == -4) and tighter than * /."""
    want = eval(text)  # Python's own arithmetic (the text holds only numbers)
    z = torch.randn(2, 3, dtype=torch.float64)
    got = LossExpression.parse(text).compile()(z, torch.zeros_like(z))
    assert torch.equal(got, torch.full_like(z, want)), (text, got, want)


def test_power_exponent_is_a_signed_number_but_only_two_exists():
    assert LossExpression.parse("y_pred**+2") == LossExpression.parse("square(y_pred)")
    with pytest.raises(ValueError, match=r"only the power 2 .*got '-1' at position 8"):
        LossExpression.parse("y_pred**-1")
    with pytest.raises(ValueError, match=r"'\*\*' after a power.*\(a\*\*2\)\*\*2 at position 9"):
        LossExpression.parse("y_pred**2**2")


# -- bad input: size limits, ASCII digits ------------------------------------------------------


def _balanced_sum(depth: int) -> str:
    return "y_pred" if depth == 0 else f"add({_balanced_sum(depth - 1)}, {_balanced_sum(depth - 1)})"


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("exp(" * 200 + "y_pred" + ")" * 200, "MAX_DEPTH"),
        (" + ".join(["y_pred"] * 2000), "MAX_DEPTH"),
        ("(" * 200 + "y_pred" + ")" * 200, "MAX_DEPTH"),
        ("-" * 5000 + "y_pred", "MAX_DEPTH"),
        (_balanced_sum(10), "MAX_SIZE"),  # 2047 nodes, depth only 10
    ],
    ids=["200-nested-exp", "2000-term-sum", "200-parentheses", "5000-minus-signs", "2047-nodes"],
)
def test_deep_or_long_text_is_a_value_error_naming_the_limit(text, limit):
    value = getattr(ngl_expression, limit)
    with pytest.raises(ValueError, match=rf"limit {limit}={value}\b.* at position \d+ in "):
        LossExpression.parse(text)


def test_text_at_the_limits_still_parses_prints_and_compiles():
    deepest = LossExpression.parse("sin(" * ngl_expression.MAX_DEPTH + "y_pred" + ")" * ngl_expression.MAX_DEPTH)
    assert deepest.depth == ngl_expression.MAX_DEPTH
    assert LossExpression.parse(str(deepest)) == deepest
    z = torch.randn(2, 3, dtype=torch.float64)
    want = torch.softmax(z, -1)
    for _ in range(ngl_expression.MAX_DEPTH):
        want = torch.sin(want)
    assert torch.equal(deepest.compile()(z, torch.zeros_like(z)), want)
    chain = LossExpression.parse(" + ".join(["y_pred"] * (ngl_expression.MAX_DEPTH + 1)))
    assert chain.depth == ngl_expression.MAX_DEPTH and LossExpression.parse(str(chain)) == chain


def test_depth_of_a_huge_program_is_measured_without_recursion():
    """The search builds crossover children with from_program and rejects them by depth."""
    e = LossExpression(("neg",) * 5000 + ("y_pred",))
    assert e.depth == 5000 and e.size == 5001


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("y_pred + \u0663", r"unexpected character '\u0663' at position 9"),  # Arabic-Indic 3
        ("2.\u0663 * y_pred", r"unexpected character '\u0663' at position 2"),
        ("\u0663", r"unexpected character '\u0663' at position 0"),
        ("y_pred*\u00b2", r"unexpected character '\u00b2' at position 7"),  # superscript 2
        ("y_pred**\u00b2", r"unexpected character '\u00b2' at position 8"),
        ("X\u0661", r"unexpected character '\u0661' at position 1"),
        ("y_pred +\u00a01", r"unexpected character '\\xa0' at position 8"),
        ("y_pred + 1e999", r"constant '1e999' is too large for a float at position 9"),
    ],
)
def test_only_ascii_digits_and_finite_numbers_are_read(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        LossExpression.parse(text, preset("paper"))


@pytest.mark.parametrize("text", ["y_pred", "2.5", "-2.5", "y_real", "logits", "log_pred", " +2.5 "])
def test_one_token_expressions_compile_to_working_modules(text):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2, 1])
    y = torch.nn.functional.one_hot(t, 3).double()
    ref = {"y_pred": lambda: torch.softmax(z, -1), "y_real": lambda: y, "logits": lambda: z,
           "log_pred": lambda: torch.log_softmax(z, -1)}
    name = text.strip()
    want = (ref[name]() if name in ref else torch.full_like(z, float(name))).mean()
    loss = LossExpression.parse(text).to_module()
    got = loss(z, t)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if got.requires_grad:
        (gz,) = torch.autograd.grad(got, z)
        (wz,) = torch.autograd.grad(want, z) if want.requires_grad else (torch.zeros_like(z),)
        torch.testing.assert_close(gz, wz, rtol=1e-12, atol=1e-12)


def test_text_and_code_modules_agree_with_the_expression_class():
    """parse/print (ngl.gp.parse) and compile (ngl.gp.compiler) are what LossExpression uses;
    the limits are one object, re-exported by ngl.gp.expression."""
    e = LossExpression.parse(NGL_TEXT)
    program = ngl_parse.parse_program(NGL_TEXT, tuple(e.leaves) + ("logits",), tuple(OPERATORS))
    assert program == e.program
    tree = ngl_parse.program_tree(program)
    assert ngl_parse.format_infix(tree) == str(e) and ngl_parse.format_prefix(tree) == e.prefix()
    assert ngl_parse.text_key(str(e)) == e.key
    assert compile_program(e.program) is e.compile()
    assert generate_source(e.program)[0] == e.source()
    assert (ngl_expression.MAX_DEPTH, ngl_expression.MAX_SIZE) == (ngl_parse.MAX_DEPTH,
                                                                   ngl_parse.MAX_SIZE)
    assert ngl_parse.looks_like_expression("y_pred") and not ngl_parse.looks_like_expression("cee")


def test_the_one_ngl_constant_is_the_papers_formula():
    """ngl.NGL_EXPRESSION (used by notebooks, benchmarks and tests) is the formula as written in
    the authors' reference implementation, typed here independently."""
    import ngl

    assert ngl.NGL_EXPRESSION == "exp(2.4092 - y_pred*(1 + y_real)) - cos(cos(sin(y_pred)))"
    assert LossExpression.parse(ngl.NGL_EXPRESSION).key == LossExpression.parse(NGL_TEXT).key


@pytest.mark.parametrize("text, shown, latex", [
    # a GP constant of 16 digits is rounded; "+ -c" reads "- c", "- -c" reads "+ c"
    ("sin(y_real - -0.8533806000947646)/(y_pred*y_real*sqrt(y_pred))",
     "sin(y_real + 0.8534)/(y_pred*y_real*sqrt(y_pred))",
     r"\frac{\sin\left(y + 0.8534\right)}{\hat{y} \, y \, \sqrt{\left|\hat{y}\right|}}"),
    ("exp(y_real + -0.15864115631763642)", "exp(y_real - 0.1586)", r"e^{y - 0.1586}"),
    # the example: no "(-0.62413) 1/y" in a fraction
    ("-0.6241278873730751/y_pred/(0.6804456109393229 - y_real)",
     "-0.6241/y_pred/(0.6804 - y_real)", r"\frac{\frac{-0.6241}{\hat{y}}}{0.6804 - y}"),
    # a typed constant stays whole (NGL's alpha), a whole number loses its ".0"
    ("exp(2.4092 - y_pred*(1.0 + y_real))", "exp(2.4092 - y_pred*(1 + y_real))",
     r"e^{2.4092 - \hat{y} \, \left(1 + y\right)}"),
    ("y_pred + -(y_pred*y_real)", "y_pred - y_pred*y_real", r"\hat{y} - \hat{y} \, y"),
    ("y_pred - (y_real - y_pred)", "y_pred - (y_real - y_pred)",
     r"\hat{y} - \left(y - \hat{y}\right)"),
    ("square(y_pred - 1.0)*2.0", "(y_pred - 1)**2*2", r"\left(\hat{y} - 1\right)^{2} \cdot 2"),
    # the protections that change the function everywhere are shown: sqrt|x| and log|x|
    ("sqrt(y_pred - y_real) + log(y_real - y_pred)", "sqrt(y_pred - y_real) + log(y_real - y_pred)",
     r"\sqrt{\left|\hat{y} - y\right|} + \log\left|y - \hat{y}\right|"),
    # no sign right after an operator: "y*(-0.5)", "a - -2*y" reads "a + 2*y"
    ("mul(y_pred, -0.5)", "y_pred*(-0.5)", r"\hat{y} \, \left(-0.5\right)"),
    ("sub(y_pred, mul(-2.0, y_real))", "y_pred + 2*y_real", r"\hat{y} + 2 \, y"),
    # ... but not through a division: its protection (x/0 = 1) is not odd in x
    ("add(y_pred, div(-3.0, y_real))", "y_pred + (-3/y_real)", r"\hat{y} + \frac{-3}{y}"),
])
def test_display_and_latex_forms_are_short_and_read_as_written(text, shown, latex):
    e = LossExpression.parse(text)
    assert e.display() == shown
    assert e.latex() == latex
    assert str(e) == str(LossExpression.parse(text))  # the stored form is unchanged
    # the display form denotes the same function up to the rounding of its constants
    p = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    y = torch.tensor([0.2, 1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(_values(e, p, y), _values(LossExpression.parse(shown), p, y),
                          rtol=1e-3, atol=1e-3)


def _values(e: LossExpression, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss's element values ``fn(z, y_onehot)`` on random logits (the compiled, protected
    function itself; `p`, `y` only seed the inputs)."""
    g = torch.Generator().manual_seed(int(1000 * float(p.sum() + y.sum())))
    z = torch.randn(6, 3, generator=g, dtype=torch.float64)
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).double()
    return e.compile()(z, onehot)
