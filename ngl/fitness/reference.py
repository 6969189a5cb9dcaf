"""The reference fitness loop: one candidate after another, one plain model each.

`train_sequential` is what `ngl.fitness.population.train_population` must equal up to float
rounding, and the baseline its speed is measured against (benchmarks/population_training.py).
It follows ``ngl.train.optim``'s non-finite policy with one host sync per step: a candidate
whose loss or any gradient is NaN/inf stops there, without taking that step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

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
from ngl.train.optim import all_finite

__all__ = ["train_sequential"]


def train_sequential(model_fn: Callable[[], nn.Module], losses: Sequence[LossFn], data: Any,
                     budget: TrainBudget, seed: int,
                     device: str | torch.device = "cpu") -> list[FitnessResult]:
    """Train one model per candidate, one after another; the reference for `train_population`."""
    check_arguments(losses, budget)
    device = torch.device(device)
    x_tr, y_tr, x_val, y_val = split_data(data, device)
    batches = batch_indices(len(x_tr), budget, seed, device)
    return [
        _train_one(model_fn, fn, i, x_tr, y_tr, x_val, y_val, batches, budget, seed, device)
        for i, fn in enumerate(losses)
    ]


def _train_one(model_fn: Callable[[], nn.Module], loss_fn: LossFn, index: int, x_tr: Tensor,
               y_tr: Tensor, x_val: Tensor, y_val: Tensor, batches: Tensor,
               budget: TrainBudget, seed: int, device: torch.device) -> FitnessResult:
    model = initial_model(model_fn, seed, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, budget)
    ok, steps_done, last_loss = True, 0, math.nan
    sync(device)
    start = time.perf_counter()
    with seeded(seed, device):
        model.train()
        for t, idx in enumerate(batches):
            for group in opt.param_groups:
                group["lr"] = budget.lr_at(t)
            xb, yb = x_tr[idx], y_tr[idx]
            loss = scalar_loss(loss_fn, model(xb), yb, index)
            opt.zero_grad(set_to_none=False)
            if loss.requires_grad:
                loss.backward()
            else:  # a loss that ignores the logits: zero gradient, like in the batched path
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
            last_loss = loss.detach()
            # One sync per step (ngl.train.optim's policy: loss and gradients finite, else no step);
            # acceptable for the reference implementation.
            if not bool(all_finite(last_loss, (p.grad for p in params))):
                ok = False
                break
            opt.step()
            steps_done += 1
    sync(device)
    elapsed = time.perf_counter() - start
    last = float(last_loss)
    if not ok:
        return make_result(False, 0.0, math.nan, elapsed, last, steps_done)
    model.eval()
    correct = torch.zeros((), device=device)
    ce_sum = torch.zeros((), device=device)
    with torch.no_grad():
        for s in range(0, len(x_val), budget.eval_batch_size):
            xb, yb = x_val[s:s + budget.eval_batch_size], y_val[s:s + budget.eval_batch_size]
            logits = model(xb).float()
            correct += (logits.argmax(-1) == yb).sum()
            ce_sum += F.cross_entropy(logits, yb, reduction="sum")
    n = len(y_val)
    return make_result(True, float(correct) / n, float(ce_sum) / n, elapsed, last, steps_done)
