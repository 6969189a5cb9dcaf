"""Loss expressions: one object tying a GP tree to its text, sympy form, gplearn program and loss.

A :class:`LossExpression` is an immutable prefix program (the representation gplearn uses):
operator names, leaf names and float constants. It parses infix text and gplearn's printed
prefix form, prints infix text that parses back to the same tree, and compiles once to
straight-line torch code (with common subexpressions shared and constant subtrees folded),
so a found loss trains as fast as a hand-written one.

The text is Python's arithmetic, so that it reads the way it evaluates. Precedence, loosest
first: ``+ -``, then ``* /`` (both left-associative), then unary minus, then ``**``. So
``-2**2`` is ``neg(square(2.0))`` = -4, as in Python, ``-x*y`` is ``(-x)*y`` and ``x*-y`` is
allowed. The exponent of ``**`` (or ``^``) is a signed number, as in Python (``2**-1`` is well
formed), but the only power is 2 (operator ``square``). A minus directly before a number is
part of it unless ``**`` follows: ``-0.5`` is the constant -0.5, ``-0.5**2`` is
``neg(square(0.5))``. The printer writes the latter ``-(0.5**2)`` so the text cannot be misread.

The search stores populations as text and parses it back to train, so ``parse(str(e)) == e``
(and the same for :meth:`LossExpression.prefix`) must hold for every tree: it is tested over
random trees of every operator. Text is refused with a ValueError, naming the token and its
position, past :data:`MAX_DEPTH` levels or :data:`MAX_SIZE` nodes, and only ASCII digits,
letters and whitespace are read.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy
import torch
from torch import Tensor, nn

from ngl.gp.primitives import LEAVES, OPERATOR_ALIASES, OPERATORS, Interval, PrimitiveSet
from ngl.losses.base import ElementwiseLoss
from ngl.losses.registry import available_losses, loss_aliases

__all__ = ["LossExpression", "ExpressionLoss", "MAX_DEPTH", "MAX_SIZE", "compile_loss_text"]

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
_PREC = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3, "square": 4}
_ATOM = 5


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


def _fmt_const(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{value:.1f}"
    return repr(value)


@dataclass(frozen=True, eq=True)
class LossExpression:
    """A GP loss tree as a prefix program of operator names, leaf names and float constants."""

    program: tuple[Node, ...]

    def __post_init__(self) -> None:
        prog = tuple(float(n) if isinstance(n, int | float) and not isinstance(n, bool) else n
                     for n in self.program)
        object.__setattr__(self, "program", prog)
        need = 1
        for i, node in enumerate(prog):
            if need == 0:
                raise ValueError(f"program has extra nodes from index {i}: {prog!r}")
            if isinstance(node, float):
                if not math.isfinite(node):
                    raise ValueError(f"constant {node!r} at index {i} must be finite")
                need -= 1
            elif node in OPERATORS:
                need += OPERATORS[node].arity - 1
            elif node in LEAVES:
                need -= 1
            else:
                raise ValueError(
                    f"unknown node {node!r} at index {i}; expected an operator {list(OPERATORS)}, "
                    f"a leaf {list(LEAVES)} or a float"
                )
        if need != 0:
            raise ValueError(f"incomplete program {prog!r}: {need} operand(s) missing")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, pset: PrimitiveSet | None = None) -> LossExpression:
        """Parse infix text (``exp(2.4 - y_pred*(1 + y_real))``) or gplearn's prefix print.

        With ``pset``, only its operators and leaves are accepted and ``X0, X1, ...`` name its
        leaves in order; without, every known operator and leaf is.
        """
        if isinstance(text, LossExpression):
            return text
        if not isinstance(text, str):
            raise TypeError(f"expected expression text (str), got {type(text).__name__}")
        leaves = pset.leaves if pset is not None else tuple(LEAVES)
        operators = pset.operators if pset is not None else tuple(OPERATORS)
        return cls(tuple(_Parser(text, leaves, operators).parse()))

    @classmethod
    def from_program(cls, program, pset: PrimitiveSet) -> LossExpression:
        """From a gplearn ``_Program`` (or its ``.program`` list) whose features are ``pset.leaves``."""
        nodes = getattr(program, "program", program)
        out: list[Node] = []
        for node in nodes:
            if isinstance(node, int | float) and not isinstance(node, bool):
                if isinstance(node, int):
                    if not 0 <= node < len(pset.leaves):
                        raise ValueError(f"feature index {node} out of range for leaves {pset.leaves}")
                    out.append(pset.leaves[node])
                else:
                    out.append(float(node))
            elif hasattr(node, "name") and hasattr(node, "arity"):
                out.append(OPERATOR_ALIASES.get(node.name, node.name))
            else:
                raise ValueError(f"unsupported gplearn node {node!r}")
        return cls(tuple(out))

    def to_program(self, pset: PrimitiveSet, init_depth: tuple[int, int] = (2, 4),
                   p_point_replace: float = 0.05):
        """A gplearn ``_Program`` over ``pset`` (for crossover, mutation, ``export_graphviz``)."""
        from gplearn._program import _Program
        from gplearn.fitness import mean_absolute_error

        missing_ops = sorted(set(self.operators) - set(pset.operators))
        missing_leaves = sorted(set(self.leaves) - set(pset.leaves))
        if missing_ops or missing_leaves:
            raise ValueError(
                f"expression {str(self)!r} uses {missing_ops + missing_leaves}, which the primitive set "
                f"{pset.name!r} lacks (operators {list(pset.operators)}, leaves {list(pset.leaves)})"
            )
        functions = {f.name: f for f in pset.gplearn_functions()}
        prog = [
            n if isinstance(n, float) else functions[n] if n in functions else pset.leaves.index(n)
            for n in self.program
        ]
        arities: dict[int, list] = {}
        for f in functions.values():
            arities.setdefault(f.arity, []).append(f)
        return _Program(
            function_set=list(functions.values()), arities=arities, init_depth=init_depth,
            init_method="half and half", n_features=len(pset.leaves), const_range=pset.const_range,
            metric=mean_absolute_error, p_point_replace=p_point_replace, parsimony_coefficient=0.0,
            random_state=None, feature_names=list(pset.leaves), program=prog,
        )

    # -- structure ----------------------------------------------------------------------------
    def _tree(self) -> tuple:
        """Nested ``(node, children)`` form, built from the prefix program."""

        def build(i: int) -> tuple[tuple, int]:
            node = self.program[i]
            if isinstance(node, float) or node in LEAVES:
                return (node, ()), i + 1
            kids = []
            j = i + 1
            for _ in range(OPERATORS[node].arity):
                kid, j = build(j)
                kids.append(kid)
            return (node, tuple(kids)), j

        return build(0)[0]

    @property
    def size(self) -> int:
        """Number of nodes (gplearn's program length)."""
        return len(self.program)

    @property
    def depth(self) -> int:
        """Tree depth; a single leaf has depth 0 (gplearn's convention).

        Computed without recursion, so the search can measure (and reject) a crossover child
        of any depth.
        """
        stack: list[int] = []
        for node in reversed(self.program):
            if isinstance(node, float) or node in LEAVES:
                stack.append(0)
            else:
                kids = [stack.pop() for _ in range(OPERATORS[node].arity)]
                stack.append(1 + max(kids))
        return stack[0]

    @property
    def operators(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for n in self.program if isinstance(n, str) and n in OPERATORS))

    @property
    def leaves(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for n in self.program if isinstance(n, str) and n in LEAVES))

    @property
    def constants(self) -> tuple[float, ...]:
        return tuple(n for n in self.program if isinstance(n, float))

    @property
    def key(self) -> str:
        """A stable hash of the tree (same across processes and sessions)."""
        return hashlib.sha256(str(self).encode()).hexdigest()[:16]

    # -- text -----------------------------------------------------------------------------------
    def __str__(self) -> str:
        return self._infix(self._tree())[0]

    def __repr__(self) -> str:
        return f"LossExpression({str(self)!r})"

    def _infix(self, t: tuple) -> tuple[str, int]:
        node, kids = t
        if isinstance(node, float):
            return _fmt_const(node), (3 if node < 0 or str(node).startswith("-") else _ATOM)
        if not kids:
            return node, _ATOM
        parts = [self._infix(k) for k in kids]
        prim = OPERATORS[node]
        if prim.infix is not None:
            prec = _PREC[node]
            (ls, lp), (rs, rp) = parts
            ls = f"({ls})" if lp < prec else ls
            rs = f"({rs})" if rp <= prec else rs
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

    def prefix(self) -> str:
        """gplearn-style prefix text, e.g. ``sub(exp(y_pred), 1.0)``."""

        def pre(t: tuple) -> str:
            node, kids = t
            if isinstance(node, float):
                return repr(node)
            return node if not kids else f"{node}({', '.join(pre(k) for k in kids)})"

        return pre(self._tree())

    # -- sympy --------------------------------------------------------------------------------
    def sympy(self, evaluate: bool = True) -> sympy.Expr:
        """The idealised formula (protected operators written as plain maths).

        ``evaluate=False`` keeps the tree's shape (no automatic rewriting such as
        ``exp(2.4 - x) -> 11.02 exp(-x)``), which is what a figure should show.
        """
        symbols = {name: sympy.Symbol(name, real=True) for name in LEAVES}

        def conv(t: tuple) -> sympy.Expr:
            node, kids = t
            if isinstance(node, float):
                return sympy.Integer(int(node)) if node == int(node) else sympy.Float(node, 15)
            if not kids:
                return symbols[node]
            return OPERATORS[node].sympy_fn(*(conv(k) for k in kids))

        with sympy.evaluate(evaluate):
            return conv(self._tree())

    def simplify(self) -> sympy.Expr:
        """sympy's simplification of :meth:`sympy` (for reading and comparing found losses)."""
        return sympy.simplify(self.sympy())

    def latex(self, simplify: bool = False) -> str:
        """LaTeX of the tree as written (or simplified); constants to 5 significant digits."""
        expr = self.simplify() if simplify else self.sympy(evaluate=False)
        names = {sympy.Symbol(n, real=True): leaf.latex for n, leaf in LEAVES.items()}
        with sympy.evaluate(False):
            expr = expr.xreplace({f: sympy.Float(f, 5) for f in expr.atoms(sympy.Float)})
        return sympy.latex(expr, symbol_names=names, full_prec=False, order="none")

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle {self.latex()}$"

    # -- torch ----------------------------------------------------------------------------------
    def compile(self) -> Callable[[Tensor, Tensor], Tensor]:
        """Straight-line torch function ``fn(z, y) -> [N, C]`` element values (cached)."""
        return _compile(self.program)

    def source(self) -> str:
        """The generated Python source of :meth:`compile` (for inspection and debugging)."""
        return _codegen(self.program)[0]

    def to_module(self, reduction: str = "mean", ignore_index: int = -100,
                  validate: bool = True) -> ExpressionLoss:
        """A loss module with the interface of ``nn.CrossEntropyLoss`` (see ``ngl.losses``)."""
        return ExpressionLoss(self, reduction=reduction, ignore_index=ignore_index, validate=validate)


def _const_fold(node: str, args: list[float]) -> float:
    with torch.no_grad():
        vals = [torch.tensor(a, dtype=torch.float64) for a in args]
        return float(OPERATORS[node].torch_fn(*vals))


_LEAF_CODE = {
    "y_pred": "torch.softmax(z, dim=-1)",
    "y_real": "y",
    "logits": "z",
    "log_pred": "torch.log_softmax(z, dim=-1)",
}


def _codegen(program: tuple[Node, ...]) -> tuple[str, dict]:
    """Emit straight-line code; identical subtrees are computed once, constants are folded."""
    expr = LossExpression(program)
    lines: list[str] = []
    namespace: dict = {"torch": torch}
    memo: dict[tuple, tuple[str | float, Interval]] = {}
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def emit(t: tuple) -> tuple[str | float, Interval]:
        """Code name (or folded constant) of subtree ``t`` and an interval holding its values."""
        if t in memo:
            return memo[t]
        node, kids = t
        if isinstance(node, float):
            out: str | float = node
            rng: Interval = (node, node)
        elif not kids:
            out, rng = node, LEAVES[node].bounds
            lines.append(f"{node} = {_LEAF_CODE[node]}")
        else:
            emitted = [emit(k) for k in kids]
            args = [a for a, _ in emitted]
            ranges = [r for _, r in emitted]
            prim = OPERATORS[node]
            if all(isinstance(a, float) for a in args):
                out = _const_fold(node, args)  # type: ignore[arg-type]
                if not math.isfinite(out):
                    raise ValueError(f"constant subtree {node}{tuple(args)} is not finite")
                rng = (out, out)
            else:
                rng = prim.bounds(*ranges)
                if any(math.isnan(b) for b in rng):
                    rng = (-math.inf, math.inf)
                name = fresh("t")
                if prim.infix is not None and node != "div":
                    a, b = (repr(x) if isinstance(x, float) else x for x in args)
                    lines.append(f"{name} = {a} {prim.infix} {b}")
                elif node == "neg":
                    lines.append(f"{name} = -{args[0]}")
                else:
                    # Where the argument ranges make the protection moot (exp of something
                    # <= 30, log of something > 1e-3) the plain torch op is used.
                    fast = prim.fast_fn is not None and prim.fast_ok is not None and prim.fast_ok(*ranges)
                    fn = f"_fast_{node}" if fast else f"_f_{node}"
                    namespace[fn] = prim.fast_fn if fast else prim.torch_fn
                    text_args = []
                    for a in args:
                        if isinstance(a, float):  # function primitives need tensor arguments
                            k = fresh("k")
                            lines.append(f"{k} = z.new_full((), {a!r})")
                            text_args.append(k)
                        else:
                            text_args.append(a)
                    lines.append(f"{name} = {fn}({', '.join(text_args)})")
                out = name
        memo[t] = (out, rng)
        return out, rng

    result, _ = emit(expr._tree())
    if isinstance(result, float):
        ret = f"torch.full_like(z, {result!r})"
    elif result in LEAVES and result == "y_real":
        ret = "y + torch.zeros_like(z)"
    else:
        ret = f"{result}"
    # Leaves first, in a fixed order, then the body (leaf lines were emitted where first used).
    leaf_lines = [ln for ln in lines if ln.split(" = ")[0] in LEAVES]
    body = [ln for ln in lines if ln.split(" = ")[0] not in LEAVES]
    src = "\n".join(
        [f"def loss_fn(z, y):\n    \"\"\"{str(expr)}\"\"\""]
        + [f"    {ln}" for ln in leaf_lines + body]
        + [f"    return {ret}"]
    )
    return src, namespace


@functools.lru_cache(maxsize=4096)
def _compile(program: tuple[Node, ...]) -> Callable[[Tensor, Tensor], Tensor]:
    src, namespace = _codegen(program)
    code = compile(src, f"<ngl expression {LossExpression(program).key}>", "exec")
    exec(code, namespace)
    return namespace["loss_fn"]


class ExpressionLoss(ElementwiseLoss):
    """The loss of a :class:`LossExpression`: element values averaged over classes, like NGL."""

    def __init__(self, expression: LossExpression | str, reduction: str = "mean",
                 ignore_index: int = -100, validate: bool = True):
        expr = LossExpression.parse(expression) if isinstance(expression, str) else expression
        super().__init__(fn=expr.compile(), reduction=reduction, ignore_index=ignore_index,
                         validate=validate)
        self.expression = expr

    def extra_repr(self) -> str:
        return f"{str(self.expression)!r}, " + super().extra_repr()

    def __getstate__(self) -> dict:
        # The compiled function cannot be pickled; it is rebuilt from the program on load,
        # so losses travel to Dask workers and into checkpoints.
        state = self.__dict__.copy()
        state.pop("elementwise", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.elementwise = self.expression.compile()


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _looks_like_expression(text: str) -> bool:
    """True for text meant as a loss expression: it has an operator, a parenthesis or comma,
    or names a leaf or operator (``y_pred``, ``exp``), so its parse error is the useful message."""
    if any(ch in text for ch in "()+-*/^,"):
        return True
    names = set(LEAVES) | set(OPERATORS) | set(OPERATOR_ALIASES)
    return any(word in names for word in _IDENTIFIER.findall(text))


def compile_loss_text(text: str, **kwargs) -> nn.Module:
    """What ``ngl.get_loss`` does with a name it does not know (registered by :mod:`ngl.gp`).

    Text that reads as a loss expression is compiled (a parse error keeps its position); any
    other unknown name is neither a registered loss nor an expression, and says so.
    """
    if _looks_like_expression(text):
        try:
            expr = LossExpression.parse(text)
        except ValueError as err:
            raise ValueError(f"{err} (read as a loss expression: {text!r} is not a registered loss "
                             f"name; see ngl.available_losses())") from err
        return expr.to_module(**kwargs)
    raise ValueError(
        f"unknown loss {text!r}: neither a registered loss name (expected one of "
        f"{available_losses()}, aliases {sorted(loss_aliases())}) nor a loss expression over the "
        f"leaves {list(LEAVES)} such as 'exp(2.4 - y_pred*(1 + y_real))'"
    )
