"""Overhead of a compiled loss expression against the hand-written loss it spells out.

Forward + backward of the parsed NGL text and of ``ngl.NGL`` on the same ``[B, C]`` tensors,
timed side by side (interleaved rounds, median of each), in one process. The last line is
JSON with ``ratio = compiled / hand-written`` (goal: <= 1.1).

    .venv/bin/python benchmarks/expression_overhead.py [--batch 256 --classes 100 --rounds 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import ngl
from ngl.losses import NGL_EXPRESSION

NGL_TEXT = NGL_EXPRESSION


def _time(loss: torch.nn.Module, z: torch.Tensor, t: torch.Tensor, inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        zz = z.detach().requires_grad_(True)
        loss(zz, t).backward()
    return (time.perf_counter() - start) / inner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--inner", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    z = torch.randn(args.batch, args.classes, generator=g)
    t = torch.randint(0, args.classes, (args.batch,), generator=g)
    hand = ngl.get_loss("ngl")
    compiled = ngl.LossExpression.parse(NGL_TEXT).to_module()
    assert torch.equal(hand(z, t), compiled(z, t)), "compiled NGL must equal hand-written NGL"

    for loss in (hand, compiled):  # warm-up
        _time(loss, z, t, args.inner)
    hand_s, comp_s = [], []
    for r in range(args.rounds):  # interleave, alternating order, so drift hits both alike
        pair = [(hand, hand_s), (compiled, comp_s)]
        for loss, acc in pair if r % 2 == 0 else pair[::-1]:
            acc.append(_time(loss, z, t, args.inner))
    h, c = statistics.median(hand_s), statistics.median(comp_s)
    print(f"hand-written NGL : {h * 1e6:8.1f} us per forward+backward ({args.batch}x{args.classes})")
    print(f"compiled NGL text: {c * 1e6:8.1f} us per forward+backward")
    print(json.dumps({"shape": [args.batch, args.classes], "threads": args.threads,
                      "hand_us": round(h * 1e6, 2), "compiled_us": round(c * 1e6, 2),
                      "ratio": round(c / h, 4)}))


if __name__ == "__main__":
    main()
