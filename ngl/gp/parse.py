"""Loss-expression text: the tokenizer and parser and the limits on it (the printers are
:mod:`ngl.gp.formatting`; their names are here too).

A loss expression is an immutable prefix program (the representation gplearn uses): operator
names, leaf names and float constants. This module turns text into such a program and back;
:class:`ngl.gp.expression.LossExpression` wraps it.

The text is Python's arithmetic, so that it reads the way it evaluates. Precedence, loosest
first: ``+ -``, then ``* /`` (both left-associative), then unary minus, then ``**``. So
``-2**2`` is ``neg(square(2.0))`` = -4, as in Python, ``-x*y`` is ``(-x)*y`` and ``x*-y`` is
allowed. The exponent of ``**`` (or ``^``) is a signed number, as in Python (``2**-1`` is well
formed), but the only power is 2 (operator ``square``). A minus directly before a number is
part of it unless ``**`` follows: ``-0.5`` is the constant -0.5, ``-0.5**2`` is
``neg(square(0.5))``. The printer writes the latter ``-(0.5**2)`` so the text cannot be misread.
gplearn's printed prefix form (``sub(exp(y_pred), 1.0)``, features ``X0, X1, ...``) is the same
grammar with function calls only.

The search stores populations as text and parses it back to train, so printing and parsing
must agree -- ``LossExpression.parse(str(e)) == e``, and the same for
:meth:`~ngl.gp.expression.LossExpression.prefix` -- for every tree: it is tested over random
trees of every operator. Text is refused with a ValueError, naming the
token and its position, past :data:`MAX_DEPTH` levels or :data:`MAX_SIZE` nodes, and only ASCII
digits, letters and whitespace are read.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

# the printers have their own module; parse and print are imported from here
from ngl.gp.formatting import format_display, format_infix, format_latex, format_prefix
from ngl.gp.primitives import LEAVES, OPERATOR_ALIASES, OPERATORS

__all__ = [
    "MAX_DEPTH",
    "MAX_SIZE",
    "Node",
    "format_display",
    "format_infix",
    "format_latex",
    "format_prefix",
    "looks_like_expression",
    "parse_program",
    "program_tree",
    "text_key",
]

Node = str | float

#: Deepest tree the parser accepts (a single leaf has depth 0), and the deepest nesting of
#: parentheses. Every tree a search keeps is far shallower (its ``max_depth`` defaults to 8);
#: the limit keeps parsing, printing, sympy and the compiler clear of Python's recursion limit,
#: so bad text raises a ValueError instead of a RecursionError.
MAX_DEPTH = 64
#: Most nodes (gplearn's program length) the parser accepts: bounds the time and memory that
#: one piece of text can cost (a search's ``max_size`` defaults to 40).
MAX_SIZE = 1000

# ASCII only: Python's ``\d`` also matches digits such as '٣', and str.isdigit even '²'.
_WS_RE = re.compile(r"[ \t\n\r\f\v]*")
_TOKEN_RE = re.compile(
    r"(?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/^(),])"
)
_INFIX_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # num | name | op | end
    text: str
    pos: int


_Sub = tuple[list[Node], int]  # a parsed subtree: its prefix program and its depth


def _excerpt(text: str, pos: int, width: int = 60) -> str:
    """The text for an error message; long text is cut to a window around ``pos``."""
    if len(text) <= 2 * width:
        return repr(text)
    lo, hi = max(0, pos - width), min(len(text), pos + width)
    return f"{'...' if lo else ''}{text[lo:hi]!r}{'...' if hi < len(text) else ''}"


class _Parser:
    """Recursive descent over infix text with function calls (covers gplearn's prefix form).

    Tokens are read one at a time and every subtree carries its depth and the node count, so
    text past :data:`MAX_DEPTH` or :data:`MAX_SIZE` is refused where it crosses the limit,
    before any deeper recursion and without reading the rest.
    """

    def __init__(self, text: str, leaves: Sequence[str], operators: Sequence[str]):
        self.text = text
        self.leaves = list(leaves)
        self.operators = list(operators)
        self.end = 0  # where the scanner goes on
        self.nesting = 0  # open parentheses
        self.nodes = 0
        self.tok = self._scan()

    # token helpers
    def _scan(self) -> _Tok:
        pos = _WS_RE.match(self.text, self.end).end()
        if pos == len(self.text):
            self.end = pos
            return _Tok("end", "", pos)
        m = _TOKEN_RE.match(self.text, pos)
        if m is None:
            raise ValueError(f"unexpected character {self.text[pos]!r} at position {pos} in "
                             f"{_excerpt(self.text, pos)}")
        self.end = m.end()
        kind = m.lastgroup
        assert kind is not None
        return _Tok(kind, m.group(kind), pos)

    def _next(self) -> _Tok:
        t = self.tok
        self.tok = self._scan()
        return t

    def _is_op(self, *texts: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in texts

    def _err(self, msg: str, tok: _Tok, hint: str = "") -> ValueError:
        tail = f"; {hint}" if hint else ""
        return ValueError(f"{msg} at position {tok.pos} in {_excerpt(self.text, tok.pos)}{tail}")

    # tree building, with the limits
    def _leaf(self, node: Node, tok: _Tok) -> _Sub:
        self._count(tok)
        return [node], 0

    def _node(self, op: str, kids: Sequence[_Sub], tok: _Tok) -> _Sub:
        depth = 1 + max(d for _, d in kids)
        if depth > MAX_DEPTH:
            raise self._err(f"expression too deep: more than the limit MAX_DEPTH={MAX_DEPTH} levels "
                            f"(reached at {tok.text!r})", tok)
        self._count(tok)
        return [op, *(n for prog, _ in kids for n in prog)], depth

    def _count(self, tok: _Tok) -> None:
        self.nodes += 1
        if self.nodes > MAX_SIZE:
            raise self._err(f"expression too long: more than the limit MAX_SIZE={MAX_SIZE} nodes "
                            f"(reached at {tok.text!r})", tok)

    def _open(self, tok: _Tok) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self._err(f"expression too deep: parentheses nested more than the limit "
                            f"MAX_DEPTH={MAX_DEPTH} levels", tok)

    # grammar (Python's precedence: + - < * / < unary - < **)
    def parse(self) -> list[Node]:
        if self.tok.kind == "end":
            raise ValueError("empty loss expression: expected text such as 'exp(1 - y_pred*y_real)'")
        out, _ = self._expr()
        if self.tok.kind != "end":
            t = self.tok
            if t.text == ")":
                raise self._err("unbalanced parentheses: unexpected ')'", t)
            raise self._err(f"unexpected token {t.text!r}", t)
        return out

    def _expr(self) -> _Sub:
        left = self._term()
        while self._is_op("+", "-"):
            op_tok = self._next()
            self._need_operand()
            left = self._node(_INFIX_OPS[op_tok.text], [left, self._term()], op_tok)
        return left

    def _term(self) -> _Sub:
        left = self._unary()
        while self._is_op("*", "/"):
            op_tok = self._next()
            self._need_operand()
            left = self._node(_INFIX_OPS[op_tok.text], [left, self._unary()], op_tok)
        return left

    def _need_operand(self) -> None:
        if self.tok.kind == "end" or self.tok.text in (")", ",", "*", "/", "**", "^"):
            raise self._err(f"missing operand before {self.tok.text or 'end of text'!r}", self.tok)

    def _unary(self) -> _Sub:
        """Signs, then a power: ``-2**2`` is ``neg(square(2))`` as in Python, ``-2`` a constant."""
        signs: list[_Tok] = []
        while self._is_op("-", "+"):  # a loop, not recursion: '------y' cannot blow the stack
            signs.append(self._next())
            self._need_operand()
        first = self.tok
        operand = self._power(self._atom())
        if signs and first.kind == "num" and operand[1] == 0:
            # '-0.5' is the constant -0.5 (so printed constants round-trip); '-0.5**2' is not.
            value = operand[0][0]
            operand = ([-value if signs.pop().text == "-" else value], 0)
        for sign in reversed(signs):
            if sign.text == "-":
                operand = self._node("neg", [operand], sign)
        return operand

    def _power(self, base: _Sub) -> _Sub:
        """``base**2`` -> ``square``; the exponent is a signed number, as in Python (``2**-1``)."""
        if not self._is_op("**", "^"):
            return base
        op_tok = self._next()
        start, sign = self.tok, 1.0
        while self._is_op("-", "+"):
            sign = -sign if self._next().text == "-" else sign
        if self.tok.kind != "num" or sign * float(self.tok.text) != 2.0:
            got = self.text[start.pos:self.tok.pos + len(self.tok.text)].strip() or "end of text"
            raise self._err(f"only the power 2 is supported after {op_tok.text!r} (operator "
                            f"'square'), got {got!r}", start)
        self._next()
        self._allow("square", op_tok)
        out = self._node("square", [base], op_tok)
        if self._is_op("**", "^"):
            raise self._err(f"{self.tok.text!r} after a power: Python reads a**2**2 as a**(2**2); "
                            "write (a**2)**2", self.tok)
        return out

    def _allow(self, op: str, tok: _Tok) -> None:
        if op not in self.operators:
            raise self._err(f"operator {op!r} (from {tok.text!r}) is not in the primitive set", tok,
                            f"its operators are {self.operators}")

    def _atom(self) -> _Sub:
        t = self._next()
        if t.kind == "num":
            value = float(t.text)
            if not math.isfinite(value):
                raise self._err(f"constant {t.text!r} is too large for a float", t)
            return self._leaf(value, t)
        if t.kind == "op" and t.text == "(":
            self._open(t)
            inner = self._expr()
            if not self._is_op(")"):
                raise self._err(f"unbalanced parentheses: '(' at position {t.pos} is never closed; found "
                                f"{self.tok.text or 'end of text'!r}", self.tok)
            self._next()
            self.nesting -= 1
            return inner
        if t.kind == "name":
            return self._name(t)
        if t.kind == "end":
            raise self._err("unexpected end of text: an operand is missing", t)
        raise self._err(f"unexpected token {t.text!r}", t)

    def _name(self, t: _Tok) -> _Sub:
        name = OPERATOR_ALIASES.get(t.text, t.text)
        is_call = self._is_op("(")
        if name in OPERATORS:
            if not is_call:
                raise self._err(f"operator {t.text!r} needs its arguments in parentheses", t)
            self._allow(name, t)
            open_tok = self._next()
            self._open(open_tok)
            args: list[_Sub] = []
            if not self._is_op(")"):
                while True:
                    args.append(self._expr())
                    if self._is_op(","):
                        self._next()
                        continue
                    break
            if not self._is_op(")"):
                raise self._err(
                    f"unbalanced parentheses: '(' at position {open_tok.pos} is never closed; found "
                    f"{self.tok.text or 'end of text'!r}", self.tok)
            self._next()
            self.nesting -= 1
            arity = OPERATORS[name].arity
            if len(args) != arity:
                raise self._err(f"wrong arity: {t.text!r} takes {arity} argument(s), got {len(args)}", t)
            return self._node(name, args, t)
        leaf = self._leaf_name(t.text)
        if leaf is None:
            raise self._err(f"unknown symbol {t.text!r}", t,
                            f"expected an operator {self.operators} or a leaf {self.leaves}")
        if is_call:
            raise self._err(f"leaf {t.text!r} is not a function", t)
        return self._leaf(leaf, t)

    def _leaf_name(self, text: str) -> str | None:
        if text in self.leaves:
            return text
        m = re.fullmatch(r"X([0-9]+)", text)  # gplearn's default feature names
        if m and int(m.group(1)) < len(self.leaves):
            return self.leaves[int(m.group(1))]
        return None


def parse_program(text: str, leaves: Sequence[str], operators: Sequence[str]) -> tuple[Node, ...]:
    """The prefix program of infix or prefix `text` over the given leaves and operators
    (``X0, X1, ...`` name the leaves in order); a ValueError says what is wrong and where."""
    return tuple(_Parser(text, leaves, operators).parse())


def program_tree(program: Sequence[Node]) -> tuple:
    """Nested ``(node, children)`` form of a (valid) prefix program."""

    def build(i: int) -> tuple[tuple, int]:
        node = program[i]
        if isinstance(node, float) or node in LEAVES:
            return (node, ()), i + 1
        kids = []
        j = i + 1
        for _ in range(OPERATORS[node].arity):
            kid, j = build(j)
            kids.append(kid)
        return (node, tuple(kids)), j

    return build(0)[0]


def text_key(text: str) -> str:
    """A stable hash of printed text (the same across processes and sessions)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def looks_like_expression(text: str) -> bool:
    """True for text meant as a loss expression: it has an operator, a parenthesis or comma,
    or names a leaf or operator (``y_pred``, ``exp``), so its parse error is the useful message."""
    if any(ch in text for ch in "()+-*/^,"):
        return True
    names = set(LEAVES) | set(OPERATORS) | set(OPERATOR_ALIASES)
    return any(word in names for word in _IDENTIFIER.findall(text))
