"""Population-batched fitness: every candidate of a generation trained at once, then scored.

This is the expensive inner step of the GP loss search. Two implementations do the same work:

* `train_sequential` (:mod:`ngl.fitness.reference`) -- the plain reference: one model after
  another.
* `train_population` (here) -- all candidates of a generation at once: one network evaluation
  and one backward per step for the whole population; only the candidate losses run in a
  Python loop, each on its own slice of the `[P, B, C]` logits. Backward of the summed losses
  gives every candidate exactly its own gradient (no tensor mixes candidates), and
  Adam/AdamW/SGD are elementwise, so one optimizer over the stacked parameters equals one per
  candidate.

Common random numbers (:mod:`ngl.fitness.common`): within a call every candidate starts from
the *same* initial weights (built under `torch.manual_seed(seed)`), sees the *same* batches in
the same order (a `torch.Generator` seeded with `seed`) and, for networks with dropout, the
same dropout masks. Differences between candidates therefore come from the loss alone, which
makes selection far less noisy than independent seeds would. The caller's global RNG state is
left untouched.

Two ways to run P networks as one (``method=``; ``"auto"`` picks), one module each:

* ``"folded"`` (:mod:`ngl.fitness.folded`): the population is folded into the channel axis --
  grouped convolutions, BatchNorms over P*C channels, batched matmuls. Few, large kernels and
  no per-op batching machinery. It needs a network of Conv/BatchNorm/Linear plus
  parameter-free layers whose forward does not mix channels (residual adds are fine;
  `torch.cat` along channels, as in Inception blocks, is not), so `"auto"` runs a
  two-candidate check against the plain network before using it.
* ``"vmap"`` (:mod:`ngl.fitness.vmap`): `torch.func.vmap(functional_call)` over stacked
  parameters and buffers (BatchNorm running stats per candidate). Works for any `nn.Module`,
  dropout included (``randomness="same"``: one mask for all candidates); more dispatch
  overhead per op.

Where it pays (measured, see benchmarks/population_training.py): on a GPU the small fitness
networks are launch-bound: the eager batched pass is 4-6x faster than the sequential reference
and the CUDA-graph replay (``cuda_graph=True``, :mod:`ngl.fitness.cuda_graph`) 16-21x (H200,
P = 16-64). On a 2-core CPU the gain is small (about 1.0-1.2x for the width-32 SmallCNN on
digits) because there is little overhead to remove: one candidate's step is 916 MFLOP of
convolutions, which the sequential reference already runs at ~46 GFLOP/s against a
~157 GFLOP/s hardware peak, with BatchNorm, ReLU and Adam (not counted) taking most of the
rest. The benchmark prints that arithmetic ceiling (`profiling`). A 16-candidate pass also
spills activations out of cache, so CPU passes hold `CPU_PASS_SIZE` candidates
(``max_population_per_pass="auto"``).

Non-finite candidates (the policy of `ngl.train.optim`, shared by every training loop of ngl:
loss and gradients finite, else no step): a candidate whose loss or any gradient is NaN/inf at
some step is masked out from that step on: its gradients are zeroed and its parameters
restored after every optimizer step, so they stay at the last finite values, and the other
candidates are not disturbed (no tensor mixes candidates). Its result has
``status="nonfinite"``, ``val_accuracy=0.0`` (the worst possible score, so it sorts last and
stays a plain float for selection, JSON and pandas) and ``val_ce=nan`` (not measured).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ngl.fitness.budget import FitnessResult, LossFn, TrainBudget, make_result
from ngl.fitness.common import (
    batch_indices,
    check_arguments,
    initial_model,
    make_optimizer,
    scalar_loss,
    seeded,
    split_data,
    sync,
)
from ngl.fitness.cuda_graph import refuse_validating, replay
from ngl.fitness.folded import FoldedEngine, foldable, verify_folded
from ngl.fitness.vmap import VmapEngine

__all__ = [
    "CPU_PASS_SIZE",
    "default_pass_size",
    "train_population",
]

CPU_PASS_SIZE = 4
"""Candidates per batched pass on CPU (``max_population_per_pass="auto"``).

Measured on 2 cores (width-32 SmallCNN, digits, 16 candidates, 50 steps; the same comparison
as ``benchmarks/population_training.py --chunk N``): passes of 2-8 candidates ran 1.0-1.2x
faster than sequential training, one pass of all 16 about 0.8x, because its activations no
longer fit in cache."""


def default_pass_size(device: str | torch.device) -> int | None:
    """What ``max_population_per_pass="auto"`` means on `device`: `CPU_PASS_SIZE` on CPU, all
    candidates in one pass (None) on accelerators, where one big pass amortises launches."""
    return CPU_PASS_SIZE if torch.device(device).type == "cpu" else None


_METHODS = ("auto", "folded", "vmap")


class _Engine(Protocol):
    """What the training loop needs from a batched population network (`FoldedEngine`,
    `VmapEngine`): ``[P, B, C]`` logits and the stacked trainable tensors, candidate-major."""

    pop: int
    params: list[Tensor]

    def __call__(self, x: Tensor) -> Tensor: ...

    def train(self, mode: bool) -> None: ...


def _resolve_method(method: str, model: nn.Module, probe: Tensor) -> str:
    """"auto" -> "folded" where the folded network checks out, else "vmap"."""
    if method == "vmap":
        return method
    ok = foldable(model) and verify_folded(model, probe)
    if method == "folded" and not ok:
        raise ValueError(
            "this model cannot be folded (it has layers other than Conv/BatchNorm/Linear "
            "with state, dropout, or a forward that mixes channels); use method='vmap'"
        )
    return "folded" if ok else "vmap"


def train_population(model_fn: Callable[[], nn.Module], losses: Sequence[LossFn], data: Any,
                     budget: TrainBudget, seed: int, device: str | torch.device = "cpu",
                     max_population_per_pass: int | str | None = "auto",
                     method: str = "auto", cuda_graph: bool = False) -> list[FitnessResult]:
    """Train all candidates together; same results as `train_sequential` up to float rounding.

    `cuda_graph=True` (CUDA only) records one whole training step -- forward, the P candidate
    losses, backward, masking and the optimizer step -- as a CUDA graph after a few eager
    warm-up steps and replays it: with many candidates the step is thousands of small kernel
    launches, which the replay issues at once. Losses must not sync with the host: one built
    with ``validate=True`` (``get_loss``'s default) is refused with a ValueError, on any device;
    pass ``validate=False`` (the search's own compiled losses already do).

    `method` picks how the P networks run as one:

    * ``"folded"``: the population folded into the channel axis -- every Conv becomes one
      grouped convolution over P*C channels, every BatchNorm one BatchNorm over P*C channels
      (per-candidate statistics for free), every Linear one batched matmul. Fewest kernel
      launches and no per-op batching machinery; needs a network built from Conv/BatchNorm/
      Linear plus parameter-free layers, without dropout, whose forward code does not mix
      channels (residual adds are fine, `torch.cat` along channels is not).
    * ``"vmap"``: `torch.func.vmap` over `functional_call` with stacked parameters and
      buffers; works for any network (dropout gets one mask shared by all candidates).
    * ``"auto"`` (default): folded where a check on two candidates confirms it computes the
      same as the plain network, vmap otherwise.

    `max_population_per_pass` bounds memory: candidates are trained in chunks of at most that
    many, each chunk from the same initial weights and batches, so chunking does not change
    the results beyond float rounding. ``None``: all at once. ``"auto"`` (default):
    `CPU_PASS_SIZE` on CPU, where chunks of a few candidates stay in cache and a 16-candidate
    pass is slower than training them one by one; all at once on accelerators.
    """
    check_arguments(losses, budget)
    if cuda_graph:
        refuse_validating(losses)
    device = torch.device(device)
    if max_population_per_pass == "auto":
        max_population_per_pass = default_pass_size(device)
    if max_population_per_pass is not None and (
        isinstance(max_population_per_pass, bool)
        or not isinstance(max_population_per_pass, int)
        or max_population_per_pass < 1
    ):
        raise ValueError(
            "max_population_per_pass must be a positive int, None or 'auto', "
            f"got {max_population_per_pass!r}"
        )
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    x_tr, y_tr, x_val, y_val = split_data(data, device)
    batches = batch_indices(len(x_tr), budget, seed, device)
    if losses:  # decide once, not per chunk
        probe = x_tr[: min(len(x_tr), 8)]
        method = _resolve_method(method, initial_model(model_fn, seed, device), probe)
    chunk = max_population_per_pass or max(len(losses), 1)
    results: list[FitnessResult] = []
    for start in range(0, len(losses), chunk):
        part = list(losses[start:start + chunk])
        results += _train_pass(model_fn, part, start, x_tr, y_tr, x_val, y_val, batches,
                               budget, seed, device, method,
                               cuda_graph=cuda_graph and device.type == "cuda")
    return results


def _blocks(t: Tensor, pop: int) -> Tensor:
    """A stacked tensor seen as `[P, rest]` (every engine keeps candidates in leading blocks)."""
    return t.view(pop, -1)


def _train_pass(model_fn: Callable[[], nn.Module], losses: list[LossFn], offset: int,
                x_tr: Tensor, y_tr: Tensor, x_val: Tensor, y_val: Tensor, batches: Tensor,
                budget: TrainBudget, seed: int, device: torch.device,
                method: str, cuda_graph: bool = False) -> list[FitnessResult]:
    """One pass: the candidates `losses` (numbered from `offset`) trained as one batched
    network with the masked step below, eagerly or replayed as a CUDA graph, then scored."""
    pop = len(losses)
    model = initial_model(model_fn, seed, device)
    engine: _Engine = FoldedEngine(model, pop) if method == "folded" else VmapEngine(model, pop)
    plist = engine.params
    opt = make_optimizer(plist, budget, capturable=cuda_graph)

    alive = torch.ones(pop, dtype=torch.bool, device=device)
    steps_done = torch.zeros(pop, dtype=torch.long, device=device)
    last_loss = torch.full((pop,), math.nan, device=device)

    def step(idx: Tensor) -> None:
        """One training step for all candidates; device work only (no host sync), so it can
        be recorded as a CUDA graph."""
        nonlocal last_loss
        xb, yb = x_tr[idx], y_tr[idx]
        logits = engine(xb)  # [P, B, C]
        values = torch.stack([
            scalar_loss(fn, logits[i], yb, offset + i) for i, fn in enumerate(losses)
        ])
        for p in plist:
            p.grad = None
        if values.requires_grad:
            values.sum().backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.contiguous() for p in plist]
        finite = torch.isfinite(values.detach())
        for gr in grads:
            finite &= torch.isfinite(_blocks(gr, pop)).all(1)
        last_loss.copy_(torch.where(alive, values.detach(), last_loss))
        alive.copy_(alive & finite)
        keep = alive.view(pop, 1)
        before = []
        for p, gr in zip(plist, grads, strict=True):
            p.grad = _blocks(gr, pop).masked_fill_(~keep, 0.0).view_as(p)
            before.append(p.detach().clone())
        opt.step()
        with torch.no_grad():
            for p, old in zip(plist, before, strict=True):
                _blocks(p, pop).copy_(torch.where(keep, _blocks(p, pop), _blocks(old, pop)))
        steps_done.add_(alive)

    sync(device)
    start = time.perf_counter()
    with seeded(seed, device):
        engine.train(True)
        if cuda_graph:
            replay(step, batches, device)
        else:
            for idx in batches:
                step(idx)
    sync(device)
    elapsed = (time.perf_counter() - start) / max(pop, 1)

    engine.train(False)
    correct = torch.zeros(pop, device=device)
    ce_sum = torch.zeros(pop, device=device)
    with torch.no_grad():
        for s in range(0, len(x_val), budget.eval_batch_size):
            xb, yb = x_val[s:s + budget.eval_batch_size], y_val[s:s + budget.eval_batch_size]
            logits = engine(xb).float()  # [P, B, C]
            correct += (logits.argmax(-1) == yb).sum(1)
            ce = F.cross_entropy(logits.flatten(0, 1), yb.repeat(pop), reduction="none")
            ce_sum += ce.view(pop, -1).sum(1)
    n = len(y_val)
    ok_l, acc_l, ce_l = alive.tolist(), (correct / n).tolist(), (ce_sum / n).tolist()
    last_l, steps_l = last_loss.tolist(), steps_done.tolist()
    return [make_result(ok_l[i], acc_l[i], ce_l[i], elapsed, last_l[i], steps_l[i])
            for i in range(pop)]
