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
rest. The benchmark prints that arithmetic ceiling (`profiling`). Under the calibrated fitness
(DenseCNN, 100 cosine steps) no batched CPU pass paid at all (passes of 2, 4, 8: 0.92x, 0.85x,
0.86x of the sequential loop), so CPU passes hold `CPU_PASS_SIZE` = 1 candidate
(``max_population_per_pass="auto"``), trained by `ngl.fitness.vmap.SingleEngine`: the plain
network on the stacked parameters, with the same masking and the same results as a batched pass.

Non-finite candidates (the policy of `ngl.train.optim`, shared by every training loop of ngl:
loss and gradients finite, else no step): a candidate whose loss or any gradient is NaN/inf at
some step is masked out from that step on: its gradients are zeroed and its parameters
restored after every optimizer step, so they stay at the last finite values, and the other
candidates are not disturbed (no tensor mixes candidates). Its result has
``status="nonfinite"``, ``val_accuracy=0.0`` (the worst possible score, so it sorts last and
stays a plain float for selection, JSON and pandas) and ``val_ce=nan`` (not measured).

Successive halving (``halving=SuccessiveHalving(...)``): the candidates train in lockstep to the
first rung (e.g. 1/9 of the steps), are scored on the validation split, and only the best
``ceil(n / eta)`` go on; the others stop with their score at that rung. The survivors' slices of
the stacked parameters, running statistics and optimizer state are gathered into a new, smaller
batched network (re-folded, not masked), so the compute really shrinks. Every step's learning
rate is fixed by the budget (constant or cosine over its steps) and the batches and dropout stream go on where they stopped, so a survivor
trained to the end computes what it would have computed without halving (up to float rounding,
as for any change of which candidates share a pass).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ngl.fitness.budget import (
    FitnessResult,
    LossFn,
    SuccessiveHalving,
    TrainBudget,
)
from ngl.fitness.common import (
    check_arguments,
)
from ngl.fitness.cuda_graph import refuse_validating
from ngl.fitness.passes import PopulationPass, PopulationRun

__all__ = [
    "CPU_PASS_SIZE",
    "PopulationPass",
    "PopulationRun",
    "default_pass_size",
    "train_population",
]

CPU_PASS_SIZE = 1
"""Candidates per batched pass on CPU (``max_population_per_pass="auto"``): one, trained by
the plain network (`SingleEngine`).

Measured on 2 cores with the search's default fitness (`dense_cnn`, 100 cosine steps, digits,
8 candidates, fastest of 2; ``benchmarks/population_training.py --population 8 --chunk N
--repeats 2``): against one-at-a-time training, passes of 1 ran at 0.91x, of 4 at 0.85x, of 8
at 0.86x (``vmap`` over one candidate alone: 0.76x). A batched pass of several networks does
not pay on two cores; on accelerators one big pass does."""


def default_pass_size(device: str | torch.device) -> int | None:
    """What ``max_population_per_pass="auto"`` means on `device`: `CPU_PASS_SIZE` on CPU, all
    candidates in one pass (None) on accelerators, where one big pass amortises launches."""
    return CPU_PASS_SIZE if torch.device(device).type == "cpu" else None


_METHODS = ("auto", "folded", "vmap")


def train_population(model_fn: Callable[[], nn.Module], losses: Sequence[LossFn], data: Any,
                     budget: TrainBudget, seed: int, device: str | torch.device = "cpu",
                     max_population_per_pass: int | str | None = "auto",
                     method: str = "auto", cuda_graph: bool = False,
                     halving: SuccessiveHalving | None = None,
                     compile: bool = False,
                     progress: Callable[[int], object] | None = None) -> list[FitnessResult]:
    """Train all candidates together; same results as `train_sequential` up to float rounding.

    `cuda_graph=True` (CUDA only) records one whole training step -- forward, the P candidate
    losses, backward, masking and the optimizer step -- as a CUDA graph after a few eager
    warm-up steps and replays it: with many candidates the step is thousands of small kernel
    launches, which the replay issues at once. Losses must not sync with the host: one built
    with ``validate=True`` (``get_loss``'s default) is refused with a ValueError, on any device;
    pass ``validate=False`` (the search's own compiled losses already do). With halving, each
    pass records one graph per rung (the population size changes between rungs).

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
    `CPU_PASS_SIZE` (one) on CPU, where no batched pass beats training the candidates one by
    one; all at once on accelerators.

    `halving`: successive halving over all of `losses` (see the module docstring); every
    result then says the rung its candidate reached and its accuracy at each rung.

    `compile=True` compiles the folded network with ``torch.compile`` (once per population
    size, reused by later passes of that size in the same process; the losses, masking and
    optimizer stay eager). It changes float rounding only. It pays once a process trains
    enough steps to earn back the compile time (``benchmarks/compile_folded.py`` measures
    both); it is ignored by the vmap engine and refused with `cuda_graph`.

    `progress(n)` is called whenever `n` more candidates have finished training (a pass ended,
    or halving stopped them at a rung), so a progress bar can advance inside one call.
    """
    check_arguments(losses, budget)
    if cuda_graph:
        refuse_validating(losses)
    if halving is not None:
        if not isinstance(halving, SuccessiveHalving):
            raise TypeError(f"halving must be a SuccessiveHalving or None, "
                            f"got {type(halving).__name__}")
        halving.check(budget.steps, "halving")
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
    if compile and cuda_graph:
        raise ValueError("compile=True and cuda_graph=True do not combine (a compiled network "
                         "cannot be recorded into this CUDA graph); pick one")
    if cuda_graph and budget.schedule != "constant" and budget.optimizer == "sgd":
        raise ValueError(f"cuda_graph=True with schedule={budget.schedule!r} needs "
                         "optimizer='adam' or 'adamw' (the recorded step reads its learning "
                         "rate from a device tensor, which SGD does not take); use "
                         "cuda_graph=False or schedule='constant'")
    if not losses:
        return []
    run = PopulationRun(model_fn, list(losses), data, budget, seed, device, method,
               cuda_graph=cuda_graph and device.type == "cuda", compile=compile)
    return run.train(max_population_per_pass or len(losses), halving, progress)


