"""CUDA-graph replay of a training step (``train_population(..., cuda_graph=True)``).

On a GPU the small fitness networks are launch-bound: with many candidates one step is
thousands of small kernel launches. `replay` runs a few eager warm-up steps on a side stream,
records one whole step -- forward, the P candidate losses, backward, masking and the optimizer
step -- as a CUDA graph and replays it for the remaining batches, which issues those launches
at once (16-21x the sequential reference on an H200, against 4-6x for the eager batched pass).

A recorded step must not sync with the host; `refuse_validating` turns away, up front and on
every device, losses that would (an ``ngl`` loss built with ``validate=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ngl.fitness.budget import LossFn

__all__ = ["WARMUP_STEPS", "refuse_validating", "replay"]

WARMUP_STEPS = 3
"""Eager steps before capture, so lazy initialisation (optimizer state, library workspaces)
happens outside the recorded graph."""


def replay(step: Callable[[Tensor], None], batches: Tensor, device: torch.device,
           warmup: int = WARMUP_STEPS) -> None:
    """Run ``step(idx)`` for every row of `batches`: `warmup` eager steps, then one captured
    step replayed with each further batch copied into its static index tensor.

    `step` must do device work only (no host sync). With no batches left after the warm-up,
    every step simply runs eagerly.
    """
    warmup = min(warmup, len(batches))
    if warmup == len(batches):
        for idx in batches:
            step(idx)
        return
    static_idx = batches[0].clone()
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for idx in batches[:warmup]:
            step(idx)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static_idx)
    for idx in batches[warmup:]:
        static_idx.copy_(idx)
        graph.replay()


def refuse_validating(losses: Sequence[LossFn]) -> None:
    """``cuda_graph=True`` records the candidate losses inside CUDA-graph capture, where a host
    sync is an error; an ``ngl`` loss built with ``validate=True`` (the default of ``get_loss``
    and ``to_module``) checks its targets with ``.any()``/``int()`` reads, i.e. host syncs.

    Refused on every device, before anything runs, so a script that would fail on a GPU fails
    the same way on a laptop (where the flag is otherwise ignored)."""
    for i, fn in enumerate(losses):
        modules = fn.modules() if isinstance(fn, nn.Module) else [fn]
        culprit = next((m for m in modules if getattr(m, "validate", False) is True), None)
        if culprit is not None:
            text = repr(fn)
            name = text if len(text) <= 120 and "\n" not in text else type(fn).__name__
            if culprit is not fn:
                name += f", through its {type(culprit).__name__}"
            raise ValueError(
                f"cuda_graph=True: candidate {i} ({name}) validates its targets (validate=True), "
                "which syncs with the host inside CUDA-graph capture; build it with "
                "validate=False, e.g. get_loss(name, validate=False) or "
                "LossExpression.parse(text).to_module(validate=False) as ngl.gp.search does")
