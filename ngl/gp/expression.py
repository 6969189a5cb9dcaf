"""Loss expressions: one object tying a GP tree to its text, sympy form, gplearn program and loss.

A :class:`LossExpression` is an immutable prefix program (the representation gplearn uses):
operator names, leaf names and float constants. It parses infix text and gplearn's printed
prefix form and prints infix text that parses back to the same tree (:mod:`ngl.gp.parse`: the
grammar, the printers and the limits :data:`MAX_DEPTH`, :data:`MAX_SIZE`), compiles once to
straight-line torch code (:mod:`ngl.gp.compiler`), so a found loss trains as fast as a
hand-written one, and becomes a loss module, :class:`ExpressionLoss`. `compile_loss_text` is
what ``ngl.get_loss`` does with text that is not a registered loss name.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy
from gplearn._program import _Program
from gplearn.fitness import mean_absolute_error
from torch import Tensor, nn

from ngl.gp.compiler import compile_program, generate_source
from ngl.gp.parse import (
    MAX_DEPTH,
    MAX_SIZE,
    Node,
    format_display,
    format_infix,
    format_latex,
    format_prefix,
    looks_like_expression,
    parse_program,
    program_tree,
    text_key,
)
from ngl.gp.primitives import LEAVES, OPERATOR_ALIASES, OPERATORS, PrimitiveSet
from ngl.losses.base import ElementwiseLoss
from ngl.losses.registry import available_losses, loss_aliases

__all__ = ["LossExpression", "ExpressionLoss", "MAX_DEPTH", "MAX_SIZE", "compile_loss_text",
           "as_expression", "faithful_simplification"]


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
        return cls(parse_program(text, leaves, operators))

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
        return program_tree(self.program)

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
        return text_key(str(self))

    # -- text -----------------------------------------------------------------------------------
    def __loss_expression__(self) -> LossExpression:
        """The loss-expression protocol (:func:`as_expression`): it is one."""
        return self

    def __str__(self) -> str:
        return format_infix(self._tree())

    def __repr__(self) -> str:
        return f"LossExpression({str(self)!r})"

    def prefix(self) -> str:
        """gplearn-style prefix text, e.g. ``sub(exp(y_pred), 1.0)``."""
        return format_prefix(self._tree())

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

    def display(self, digits: int = 4) -> str:
        """The text for people (tables, labels, legends): long constants to `digits`
        significant digits (typed ones such as 2.4092 as written), ``a + -c`` as ``a - c``.
        ``str(expression)`` stays the exact, stored and hashed form."""
        return format_display(self._tree(), digits)

    def tidy(self, digits: int = 4) -> str:
        """The shortest readable form for a table or a log: sympy's simplification
        (``y_pred/y_pred`` gone, ``a - -c`` as ``a + c``, constants folded) with constants to
        ``digits`` significant digits when it is shorter than :meth:`display` *and* computes
        the trained (protected) function on probe inputs, else :meth:`display`. sympy
        simplifies as if division, log and sqrt were unprotected (``y_pred*y_real/y_real`` is
        ``y_pred`` to it, but 1 where ``y_real`` = 0 here): such a form is never shown. Only for
        reading: ``str(expression)`` keeps full precision."""
        shown = self.display(digits)
        expr = faithful_simplification(str(self))
        if expr is None:
            return shown
        with sympy.evaluate(False):
            expr = expr.xreplace({f: sympy.Float(f, digits) for f in expr.atoms(sympy.Float)})
        text = sympy.sstr(expr, full_prec=False)
        return text if len(text) < 0.9 * len(shown) else shown  # a mere reordering is not worth it

    def tidy_latex(self, digits: int = 4) -> str:
        """LaTeX of :meth:`tidy`'s form: the simplification when it is faithful and shorter,
        else the tree as written."""
        plain = self.latex(digits=digits)
        if faithful_simplification(str(self)) is None:
            return plain
        tidy = self.latex(simplify=True, digits=digits)
        return tidy if len(tidy) < 0.9 * len(plain) else plain

    def latex(self, simplify: bool = False, digits: int = 4) -> str:
        """LaTeX of the tree as written (`display`'s constants and signs, fractions for ``/``),
        or of sympy's simplification of it."""
        if not simplify:
            return format_latex(self._tree(), digits)
        expr = self.simplify()
        names = {sympy.Symbol(n, real=True): leaf.latex for n, leaf in LEAVES.items()}
        with sympy.evaluate(False):
            expr = expr.xreplace({f: sympy.Float(f, digits) for f in expr.atoms(sympy.Float)})
        return sympy.latex(expr, symbol_names=names, full_prec=False, order="none")

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle {self.latex()}$"

    # -- torch ----------------------------------------------------------------------------------
    def compile(self) -> Callable[[Tensor, Tensor], Tensor]:
        """Straight-line torch function ``fn(z, y) -> [N, C]`` element values (cached)."""
        return compile_program(self.program)

    def source(self) -> str:
        """The generated Python source of :meth:`compile` (for inspection and debugging)."""
        return generate_source(self.program)[0]

    def to_module(self, reduction: str = "mean", ignore_index: int = -100,
                  validate: bool = True) -> ExpressionLoss:
        """A loss module with the interface of ``nn.CrossEntropyLoss`` (see ``ngl.losses``)."""
        return ExpressionLoss(self, reduction=reduction, ignore_index=ignore_index, validate=validate)


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


def compile_loss_text(text: str, **kwargs) -> nn.Module:
    """What ``ngl.get_loss`` does with a name it does not know (registered by :mod:`ngl.gp`).

    Text that reads as a loss expression is compiled (a parse error keeps its position); any
    other unknown name is neither a registered loss nor an expression, and says so.
    """
    if looks_like_expression(text):
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


def as_expression(obj: Any) -> LossExpression:
    """Anything that is a loss expression, as one: a :class:`LossExpression`, its text, or an
    object with ``__loss_expression__()`` (a hall-of-fame entry). The one protocol every
    function taking an expression uses, instead of its own type checks."""
    if isinstance(obj, LossExpression):
        return obj
    if isinstance(obj, str):
        return LossExpression.parse(obj)
    method = getattr(obj, "__loss_expression__", None)
    if callable(method):
        return as_expression(method())
    raise TypeError(f"expected a loss expression (LossExpression, its text, or an object with "
                    f"__loss_expression__(), e.g. a hall-of-fame entry), got {type(obj).__name__}")


@functools.lru_cache(maxsize=4096)
def faithful_simplification(text: str) -> sympy.Expr | None:
    """sympy's simplification of an expression when it computes what the trained expression
    computes (protected operators and all) on probe inputs: softmax probabilities of random
    logits against one-hot and soft targets, to 1e-6. None when it does not, or when sympy
    cannot simplify it (cached: hall-of-fame tables redraw)."""
    import numpy as np
    import torch

    expr = LossExpression.parse(text)
    try:
        simple = expr.simplify()
        names = [n for n in LEAVES if sympy.Symbol(n, real=True) in simple.free_symbols]
        fn = sympy.lambdify([sympy.Symbol(n, real=True) for n in names], simple, "numpy")
    except Exception:  # noqa: BLE001 - a form sympy cannot handle is shown as written
        return None
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(64, 10, generator=gen, dtype=torch.float64) * 3
    hard = torch.nn.functional.one_hot(torch.randint(0, 10, (64,), generator=gen), 10).double()
    soft = torch.softmax(torch.randn(64, 10, generator=gen, dtype=torch.float64), -1)
    for y in (hard, soft):
        with torch.no_grad():
            want = expr.compile()(z, y).double().numpy()
        leaves = {"y_pred": torch.softmax(z, -1), "y_real": y, "logits": z,
                  "log_pred": torch.log_softmax(z, -1)}
        with np.errstate(all="ignore"):
            got = np.broadcast_to(np.asarray(fn(*(leaves[n].numpy() for n in names)),
                                             dtype=float), want.shape)
        if not np.allclose(got, want, rtol=1e-6, atol=1e-9, equal_nan=True):
            return None
    return simple
