"""Fitness of candidate losses: train a fresh network with each loss, score it on validation.

This is the expensive inner step of the GP loss search. Two implementations do the same work:

* `train_sequential` -- the plain reference: one model after another.
* `train_population` -- all candidates of a generation at once. Their parameters are stacked
  along a leading population axis and the network runs once per step for everyone with
  `torch.func.vmap(functional_call)`; only the candidate losses run in a Python loop on their
  own slice of the `[P, B, C]` logits. Backward of the summed losses gives every candidate
  exactly its own gradient (the slices do not interact), and Adam/AdamW/SGD are elementwise,
  so one optimizer over the stacked tensors equals one optimizer per candidate.

Common random numbers: within a call every candidate starts from the *same* initial weights
(built under `torch.manual_seed(seed)`), sees the *same* batches in the same order (a
`torch.Generator` seeded with `seed`) and, for networks with dropout, the same dropout masks.
Differences between candidates therefore come from the loss alone, which makes selection far
less noisy than independent seeds would. The caller's global RNG state is left untouched.

Why `vmap` rather than a hand-built "population model" of grouped convolutions: it works for
any `nn.Module` (`model_fn` is free to return any architecture), BatchNorm keeps per-candidate
batch statistics and per-candidate running statistics (the buffers are stacked too, so eval
mode is right), and PyTorch lowers a conv with batched weights to one grouped convolution
anyway -- the same kernel a hand-built population model would call.

Non-finite candidates: a candidate whose loss or any gradient is NaN/inf at some step is
masked out from that step on: its gradients are zeroed and its parameters restored after every
optimizer step, so they stay at the last finite values, and the other candidates are not
disturbed (no tensor mixes candidates). Its result has ``status="nonfinite"``,
``val_accuracy=0.0`` (the worst possible score, so it sorts last and stays a plain float
for selection, JSON and pandas) and ``val_ce=nan`` (not measured).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

__all__ = [
    "LossFn",
    "TrainBudget",
    "FitnessResult",
    "train_sequential",
    "train_population",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""A candidate loss: ``loss(logits[B, C], target[B] int64) -> scalar tensor``."""

_OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainBudget:
    """How one candidate is trained: the same budget for every candidate of a search."""

    steps: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        def whole(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"TrainBudget.{name} must be an int >= {minimum}, got {value!r}")

        def real(name: str, ok: Callable[[float], bool], what: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"TrainBudget.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or not ok(value):
                raise ValueError(f"TrainBudget.{name} must be {what}, got {value!r}")

        whole("steps", 0)
        whole("batch_size", 1)
        whole("eval_batch_size", 1)
        real("lr", lambda v: v > 0, "> 0")
        real("weight_decay", lambda v: v >= 0, ">= 0")
        real("momentum", lambda v: 0 <= v < 1, "in [0, 1)")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"TrainBudget.optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}"
            )


@dataclass(frozen=True)
class FitnessResult:
    """Outcome of training one candidate.

    ``train_time_s`` is wall time of the training loop; in `train_population` it is the
    pass's time divided by the candidates in the pass (the amortised share).
    ``final_train_loss`` is the candidate's own loss on the last batch it attempted (for a
    non-finite candidate, the value that stopped it). ``steps_done`` counts applied updates.
    """

    val_accuracy: float
    val_ce: float
    train_time_s: float
    status: str
    final_train_loss: float
    steps_done: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# shared helpers


def _field(data: Any, name: str) -> Tensor:
    value = data[name] if isinstance(data, dict) else getattr(data, name, None)
    if not isinstance(value, Tensor):
        raise TypeError(f"data.{name} must be a tensor, got {type(value).__name__}")
    return value


def _split(data: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Training and validation tensors, on `device` (a no-op where they already are)."""
    xs = [_field(data, n).to(device) for n in ("x_train", "y_train", "x_val", "y_val")]
    if len(xs[0]) == 0 or len(xs[0]) != len(xs[1]) or len(xs[2]) != len(xs[3]):
        raise ValueError("data must hold non-empty x_train/y_train and matching x_val/y_val")
    return xs[0], xs[1], xs[2], xs[3]


def _batch_indices(n: int, budget: TrainBudget, seed: int, device: torch.device) -> Tensor:
    """``[steps, batch_size]`` sample indices: shuffled epochs, drawn once for all candidates.

    Epochs are concatenated permutations, so each sample is seen once per epoch; drawing
    everything up front keeps the generator out of the hot loop and makes the order identical
    for `train_sequential` and `train_population`.
    """
    total = budget.steps * budget.batch_size
    if total == 0:
        return torch.empty(0, budget.batch_size, dtype=torch.long, device=device)
    g = torch.Generator().manual_seed(seed)
    epochs = -(-total // n)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(epochs)])[:total]
    return order.view(budget.steps, budget.batch_size).to(device)


def _initial_model(model_fn: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """The architecture with the seeded initial weights every candidate starts from."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_fn()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model_fn must return an nn.Module, got {type(model).__name__}")
    return model.to(device)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed dropout & co. for training without touching the caller's RNG state."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _make_optimizer(params: Sequence[Tensor], budget: TrainBudget) -> torch.optim.Optimizer:
    if budget.optimizer == "adam":
        return torch.optim.Adam(params, lr=budget.lr, weight_decay=budget.weight_decay)
    if budget.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=budget.lr, weight_decay=budget.weight_decay)
    return torch.optim.SGD(params, lr=budget.lr, momentum=budget.momentum,
                           weight_decay=budget.weight_decay)


def _scalar_loss(loss_fn: LossFn, logits: Tensor, target: Tensor, index: int) -> Tensor:
    value = loss_fn(logits, target)
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"candidate {index}: loss must return a scalar tensor, got {shape}")
    return value.reshape(()).to(logits.dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_common(losses: Sequence[LossFn], budget: TrainBudget) -> None:
    if not isinstance(budget, TrainBudget):
        raise TypeError(f"budget must be a TrainBudget, got {type(budget).__name__}")
    for i, fn in enumerate(losses):
        if not callable(fn):
            raise TypeError(f"candidate {i}: loss must be callable, got {type(fn).__name__}")


def _result(ok: bool, acc: float, ce: float, time_s: float, last_loss: float,
            steps: int) -> FitnessResult:
    if not ok:
        return FitnessResult(0.0, math.nan, time_s, "nonfinite", last_loss, steps)
    return FitnessResult(acc, ce, time_s, "ok", last_loss, steps)


# ---------------------------------------------------------------------------------------------
# sequential reference


def train_sequential(model_fn: Callable[[], nn.Module], losses: Sequence[LossFn], data: Any,
                     budget: TrainBudget, seed: int,
                     device: str | torch.device = "cpu") -> list[FitnessResult]:
    """Train one model per candidate, one after another; the reference for `train_population`."""
    _check_common(losses, budget)
    device = torch.device(device)
    x_tr, y_tr, x_val, y_val = _split(data, device)
    batches = _batch_indices(len(x_tr), budget, seed, device)
    return [
        _train_one(model_fn, fn, i, x_tr, y_tr, x_val, y_val, batches, budget, seed, device)
        for i, fn in enumerate(losses)
    ]


def _train_one(model_fn: Callable[[], nn.Module], loss_fn: LossFn, index: int, x_tr: Tensor,
               y_tr: Tensor, x_val: Tensor, y_val: Tensor, batches: Tensor,
               budget: TrainBudget, seed: int, device: torch.device) -> FitnessResult:
    model = _initial_model(model_fn, seed, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(params, budget)
    ok, steps_done, last_loss = True, 0, math.nan
    _sync(device)
    start = time.perf_counter()
    with _seeded(seed, device):
        model.train()
        for idx in batches:
            xb, yb = x_tr[idx], y_tr[idx]
            loss = _scalar_loss(loss_fn, model(xb), yb, index)
            opt.zero_grad(set_to_none=False)
            if loss.requires_grad:
                loss.backward()
            else:  # a loss that ignores the logits: zero gradient, like in the batched path
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
            last_loss = loss.detach()
            finite = torch.isfinite(last_loss)
            for p in params:
                finite = finite & torch.isfinite(p.grad).all()
            # One sync per step; acceptable for the reference implementation.
            if not bool(finite):
                ok = False
                break
            opt.step()
            steps_done += 1
    _sync(device)
    elapsed = time.perf_counter() - start
    last = float(last_loss)
    if not ok:
        return _result(False, 0.0, math.nan, elapsed, last, steps_done)
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
    return _result(True, float(correct) / n, float(ce_sum) / n, elapsed, last, steps_done)


# ---------------------------------------------------------------------------------------------
# batched population


def train_population(model_fn: Callable[[], nn.Module], losses: Sequence[LossFn], data: Any,
                     budget: TrainBudget, seed: int, device: str | torch.device = "cpu",
                     max_population_per_pass: int | None = None) -> list[FitnessResult]:
    """Train all candidates together; same results as `train_sequential` up to float rounding.

    `max_population_per_pass` bounds memory: candidates are trained in chunks of at most that
    many, each chunk from the same initial weights and batches, so chunking does not change
    the results.
    """
    _check_common(losses, budget)
    if max_population_per_pass is not None and (
        isinstance(max_population_per_pass, bool)
        or not isinstance(max_population_per_pass, int)
        or max_population_per_pass < 1
    ):
        raise ValueError(
            f"max_population_per_pass must be a positive int or None, got {max_population_per_pass!r}"
        )
    device = torch.device(device)
    x_tr, y_tr, x_val, y_val = _split(data, device)
    batches = _batch_indices(len(x_tr), budget, seed, device)
    chunk = max_population_per_pass or max(len(losses), 1)
    results: list[FitnessResult] = []
    for start in range(0, len(losses), chunk):
        part = list(losses[start:start + chunk])
        results += _train_pass(model_fn, part, start, x_tr, y_tr, x_val, y_val, batches,
                               budget, seed, device)
    return results


def _stack(tensors: dict[str, Tensor], p: int) -> dict[str, Tensor]:
    return {k: v.detach().unsqueeze(0).repeat(p, *([1] * v.ndim)).contiguous()
            for k, v in tensors.items()}


def _per_candidate(mask: Tensor, like: Tensor) -> Tensor:
    """`mask[P]` shaped to broadcast against a stacked tensor `like[P, ...]`."""
    return mask.view(-1, *([1] * (like.ndim - 1)))


def _train_pass(model_fn: Callable[[], nn.Module], losses: list[LossFn], offset: int,
                x_tr: Tensor, y_tr: Tensor, x_val: Tensor, y_val: Tensor, batches: Tensor,
                budget: TrainBudget, seed: int, device: torch.device) -> list[FitnessResult]:
    pop = len(losses)
    model = _initial_model(model_fn, seed, device)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    params = _stack({n: p for n, p in model.named_parameters() if p.requires_grad}, pop)
    for p in params.values():
        p.requires_grad_(True)
    # Buffers (BatchNorm running stats) are stacked as well: each candidate keeps its own.
    buffers = {**_stack(dict(model.named_buffers()), pop), **frozen}
    plist = [params[n] for n in names]
    opt = _make_optimizer(plist, budget)

    def forward(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, (p, b), (x,))

    buffer_dims = {k: (None if k in frozen else 0) for k in buffers}
    # randomness="same": one dropout mask per step shared by all candidates (CRN again).
    batched = vmap(forward, in_dims=(0, buffer_dims, None), randomness="same")

    alive = torch.ones(pop, dtype=torch.bool, device=device)
    steps_done = torch.zeros(pop, dtype=torch.long, device=device)
    last_loss = torch.full((pop,), math.nan, device=device)
    _sync(device)
    start = time.perf_counter()
    with _seeded(seed, device):
        model.train()
        for idx in batches:
            xb, yb = x_tr[idx], y_tr[idx]
            logits = batched(params, buffers, xb)  # [P, B, C]
            values = torch.stack([
                _scalar_loss(fn, logits[i], yb, offset + i) for i, fn in enumerate(losses)
            ])
            for p in plist:
                p.grad = None
            if values.requires_grad:
                values.sum().backward()
            for p in plist:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            last_loss = torch.where(alive, values.detach(), last_loss)
            finite = torch.isfinite(values.detach())
            for p in plist:
                finite &= torch.isfinite(p.grad).flatten(1).all(1)
            alive &= finite
            before = [p.detach().clone() for p in plist]
            for p in plist:
                p.grad.masked_fill_(~_per_candidate(alive, p), 0.0)
            opt.step()
            with torch.no_grad():
                for p, old in zip(plist, before, strict=True):
                    p.copy_(torch.where(_per_candidate(alive, p), p, old))
            steps_done += alive
    _sync(device)
    elapsed = (time.perf_counter() - start) / max(pop, 1)

    model.eval()
    correct = torch.zeros(pop, device=device)
    ce_sum = torch.zeros(pop, device=device)
    with torch.no_grad():
        evaluate = vmap(forward, in_dims=(0, buffer_dims, None), randomness="same")
        for s in range(0, len(x_val), budget.eval_batch_size):
            xb, yb = x_val[s:s + budget.eval_batch_size], y_val[s:s + budget.eval_batch_size]
            logits = evaluate(params, buffers, xb).float()  # [P, B, C]
            correct += (logits.argmax(-1) == yb).sum(1)
            ce = F.cross_entropy(logits.flatten(0, 1), yb.repeat(pop), reduction="none")
            ce_sum += ce.view(pop, -1).sum(1)
    n = len(y_val)
    ok_l, acc_l, ce_l = alive.tolist(), (correct / n).tolist(), (ce_sum / n).tolist()
    last_l, steps_l = last_loss.tolist(), steps_done.tolist()
    return [_result(ok_l[i], acc_l[i], ce_l[i], elapsed, last_l[i], steps_l[i])
            for i in range(pop)]
