"""Loss-expression trees back to text: Python infix (the stored, hashed form that
:mod:`ngl.gp.parse` reads back exactly), the short display form for tables, LaTeX, and
gplearn's prefix form. A tree is the nested ``(node, children)`` form of
:func:`ngl.gp.parse.program_tree`.
"""

from __future__ import annotations

from ngl.gp.primitives import LEAVES, OPERATORS

__all__ = ["format_display", "format_infix", "format_latex", "format_prefix"]

# binding strength of each printed form, loosest first; 5 is an atom (leaf, call, constant)
_PREC = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3, "square": 4}
_ATOM = 5


def _fmt_const(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{value:.1f}"
    return repr(value)



def format_infix(tree: tuple) -> str:
    """Infix text of a nested tree (`program_tree`), parenthesised only where Python needs it."""
    return _infix(tree)[0]


def format_display(tree: tuple, digits: int = 4) -> str:
    """Infix text for people (tables, labels): constants to `digits` significant digits,
    ``a + -c`` written ``a - c`` (``a - -c``, ``a - -2*y``: ``a + c``, ``a + 2*y``) and a sign
    never right after an operator (``y*(-0.5)``). Not parseable back to the same tree;
    the stored, hashed form is `format_infix`."""
    return _infix(tree, digits)[0]


def _short(value: float, digits: int) -> str:
    """A constant for people: as written when it has at most ``digits + 2`` significant digits
    (a typed constant such as NGL's 2.4092 stays whole), else rounded to ``digits``."""
    mantissa = repr(abs(value)).lower().split("e")[0].replace(".", "").lstrip("0")
    if len(mantissa.rstrip("0")) <= digits + 2:
        text = f"{value:.{digits + 2}g}"
    else:
        text = f"{value:.{digits}g}"
    return "0" if text == "-0" else text


_LATEX_FUNCTIONS = {"sin": r"\sin", "cos": r"\cos", "tanh": r"\tanh",
                    "sigmoid": r"\sigma", "max": r"\max", "min": r"\min"}


# unary operators written around their argument: (template, precedence of the result)
_LATEX_UNARY = {"inv": (r"\frac{{1}}{{{}}}", 2), "exp": ("e^{{{}}}", 4),
                "sqrt": (r"\sqrt{{\left|{}\right|}}", _ATOM),
                "log": (r"\log\left|{}\right|", _ATOM), "abs": (r"\left|{}\right|", _ATOM)}


def format_latex(tree: tuple, digits: int = 4) -> str:
    r"""LaTeX of the tree as written, for papers: constants as in `format_display`, ``a + -c``
    as ``a - c``, fractions for ``/``, and parentheses only where the precedence needs them.
    ``sqrt`` and ``log`` show the absolute value they take (``\sqrt{|x|}``, ``\log|x|``), so
    the formula is the function the loss computes; only the tiny-argument guards of ``log``
    and ``/`` are left out."""
    return _latex(tree, digits)[0]


def _latex(t: tuple, digits: int) -> tuple[str, int]:
    node, kids = t
    if isinstance(node, float):
        return _short(node, digits), (3 if _negative_const(t) else _ATOM)
    if not kids:
        return LEAVES[node].latex, _ATOM
    if (flipped := _flip_sign(t)) is not None:
        return _latex(flipped, digits)
    parts = [_latex(k, digits) for k in kids]

    def wrap(part: tuple[str, int], least: int) -> str:
        return part[0] if part[1] >= least else rf"\left({part[0]}\right)"

    if node == "add":
        return f"{parts[0][0]} + {parts[1][0]}", 1
    if node == "sub":
        return f"{parts[0][0]} - {wrap(parts[1], 2)}", 1
    if node == "mul":
        left, right = wrap(parts[0], 2), wrap(parts[1], 4)
        sep = r" \cdot " if right[:1].isdigit() or right[:1] in "-." else r" \, "
        return f"{left}{sep}{right}", 2
    if node == "div":
        return rf"\frac{{{parts[0][0]}}}{{{parts[1][0]}}}", 2
    if node == "neg":
        return f"-{wrap(parts[0], 2)}", 3
    if node == "square":
        return f"{wrap(parts[0], _ATOM)}^{{2}}", 4
    if node in _LATEX_UNARY:
        template, prec = _LATEX_UNARY[node]
        return template.format(parts[0][0]), prec
    args = ", ".join(p[0] for p in parts)
    name = _LATEX_FUNCTIONS.get(node) or OPERATORS[node].latex or (
        r"\operatorname{" + node.replace("_", r"\_") + "}")  # a user operator
    return rf"{name}\left({args}\right)", _ATOM


def _negative_const(t: tuple) -> bool:
    return isinstance(t[0], float) and (t[0] < 0 or str(t[0]).startswith("-"))


def _flip_sign(t: tuple) -> tuple | None:
    """``a + -c`` as ``a - c`` and ``a - -x`` as ``a + x`` (negative constant or ``neg``), for
    display only; None where there is nothing to flip."""
    node, kids = t
    if node not in ("add", "sub"):
        return None
    flipped = {"add": "sub", "sub": "add"}[node]
    right = kids[1]
    if _negative_const(right):
        return flipped, (kids[0], (-right[0], ()))
    if right[0] == "neg":
        return flipped, (kids[0], right[1][0])
    # a - -2*y: a + 2*y (not through "/": the protected division's x/0 is 1 for either sign)
    if right[0] == "mul" and _negative_const(right[1][0]):
        factor, rest = right[1]
        return flipped, (kids[0], (right[0], ((-factor[0], ()), rest)))
    return None


def _infix(t: tuple, digits: int | None = None) -> tuple[str, int]:
    """(text, precedence); ``digits`` set: the display form (`format_display`)."""
    node, kids = t
    if isinstance(node, float):
        text = _fmt_const(node) if digits is None else _short(node, digits)
        return text, (3 if _negative_const(t) else _ATOM)
    if not kids:
        return node, _ATOM
    prim = OPERATORS[node]
    if digits is not None and (flipped := _flip_sign(t)) is not None:
        return _infix(flipped, digits)
    parts = [_infix(k, digits) for k in kids]
    if prim.infix is not None:
        prec = _PREC[node]
        (ls, lp), (rs, rp) = parts
        ls = f"({ls})" if lp < prec else ls
        # for people, a sign never follows an operator: y*(-0.5), not y*-0.5
        rs = f"({rs})" if rp <= prec or (digits is not None and rs.startswith("-")) else rs
        return f"{ls} {prim.infix} {rs}" if prec == 1 else f"{ls}{prim.infix}{rs}", prec
    if node == "neg":
        # '-x**2' is neg(square(x)), but '-1.5**2' is written '-(1.5**2)': a minus before a
        # digit reads as a negative constant to a human (and did to this parser before).
        s, p = parts[0]
        bare = p >= 4 and s[0] not in "0123456789."
        return f"-{s}" if bare else f"-({s})", _PREC["neg"]
    if node == "square":
        s, p = parts[0]
        return (f"{s}**2" if p == _ATOM else f"({s})**2"), _PREC["square"]
    return f"{node}({', '.join(s for s, _ in parts)})", _ATOM


def format_prefix(tree: tuple) -> str:
    """gplearn-style prefix text of a nested tree, e.g. ``sub(exp(y_pred), 1.0)``."""
    node, kids = tree
    if isinstance(node, float):
        return repr(node)
    return node if not kids else f"{node}({', '.join(format_prefix(k) for k in kids)})"
