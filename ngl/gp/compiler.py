"""Compiling a loss expression to straight-line torch code.

A prefix program becomes one Python function ``loss_fn(z, y) -> [N, C]`` of element values
(``z`` the logits, ``y`` the one-hot target), generated as source text and compiled once per
program (cached): identical subtrees are computed once, constant subtrees are folded, and an
interval analysis carries a range for every subtree (leaves from their bounds, operators through
:attr:`ngl.gp.primitives.Primitive.bounds`). Where the ranges make a protected operator's guard
moot (``exp`` of something <= 30, ``log`` of something > 1e-3) the plain torch op is used, so a
found loss trains as fast as a hand-written one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from ngl.gp.parse import Node, format_infix, program_tree, text_key
from ngl.gp.primitives import LEAVES, OPERATORS, Interval

__all__ = ["compile_program", "generate_source"]

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


def generate_source(program: tuple[Node, ...]) -> tuple[str, dict]:
    """The source of ``loss_fn(z, y)`` for a (valid) program and the namespace it runs in.

    Straight-line code: identical subtrees are computed once, constants are folded.
    """
    tree = program_tree(program)
    text = format_infix(tree)
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

    result, _ = emit(tree)
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
        [f"def loss_fn(z, y):\n    \"\"\"{text}\"\"\""]
        + [f"    {ln}" for ln in leaf_lines + body]
        + [f"    return {ret}"]
    )
    return src, namespace


@functools.lru_cache(maxsize=4096)
def compile_program(program: tuple[Node, ...]) -> Callable[[Tensor, Tensor], Tensor]:
    """The compiled ``loss_fn(z, y)`` of a (valid) program, cached per program."""
    src, namespace = generate_source(program)
    name = text_key(format_infix(program_tree(program)))
    code = compile(src, f"<ngl expression {name}>", "exec")
    exec(code, namespace)
    return namespace["loss_fn"]
