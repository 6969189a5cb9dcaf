"""The start every engine shares, so that candidates differ by their loss alone.

Common random numbers: within a call every candidate starts from the *same* initial weights
(`initial_model`, built under ``torch.manual_seed(seed)``), sees the *same* batches in the same
order (`batch_indices`, a ``torch.Generator`` seeded with ``seed``) and, for networks with
dropout, the same dropout masks (`seeded`). The caller's global RNG state is left untouched.
Also here: the data on the device (`split_data`), the argument checks, the loss contract
(`scalar_loss`), the optimizer (`make_optimizer`) and the device sync around timed work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ngl.fitness.budget import LossFn, TrainBudget
from ngl.train.optim import optimizer_from_config

__all__ = [
    "batch_indices",
    "check_arguments",
    "initial_model",
    "make_optimizer",
    "scalar_loss",
    "seeded",
    "split_data",
    "sync",
]


def _field(data: Any, name: str) -> Tensor:
    value = data[name] if isinstance(data, dict) else getattr(data, name, None)
    if not isinstance(value, Tensor):
        raise TypeError(f"data.{name} must be a tensor, got {type(value).__name__}")
    return value


def split_data(data: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Training and validation tensors, on `device` (a no-op where they already are)."""
    xs = [_field(data, n).to(device) for n in ("x_train", "y_train", "x_val", "y_val")]
    if len(xs[0]) == 0 or len(xs[0]) != len(xs[1]) or len(xs[2]) != len(xs[3]):
        raise ValueError("data must hold non-empty x_train/y_train and matching x_val/y_val")
    return xs[0], xs[1], xs[2], xs[3]


def batch_indices(n: int, budget: TrainBudget, seed: int, device: torch.device) -> Tensor:
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


def initial_model(model_fn: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """The architecture with the seeded initial weights every candidate starts from."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_fn()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model_fn must return an nn.Module, got {type(model).__name__}")
    return model.to(device)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed dropout & co. for training without touching the caller's RNG state."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def make_optimizer(params: Sequence[Tensor], budget: TrainBudget,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """The shared builder (:func:`ngl.train.optim.build_optimizer`), so "sgd" means the same
    optimizer in the search as in downstream training (Nesterov only if ``budget.nesterov``)."""
    return optimizer_from_config(params, budget, capturable=capturable)


def scalar_loss(loss_fn: LossFn, logits: Tensor, target: Tensor, index: int) -> Tensor:
    """Candidate `index`'s loss on one batch, checked to be a scalar, in the logits' dtype."""
    value = loss_fn(logits, target)
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"candidate {index}: loss must return a scalar tensor, got {shape}")
    return value.reshape(()).to(logits.dtype)


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock timings cover it (nothing to wait for on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_arguments(losses: Sequence[LossFn], budget: TrainBudget) -> None:
    """The checks every engine makes first: a `TrainBudget` and callable losses."""
    if not isinstance(budget, TrainBudget):
        raise TypeError(f"budget must be a TrainBudget, got {type(budget).__name__}")
    for i, fn in enumerate(losses):
        if not callable(fn):
            raise TypeError(f"candidate {i}: loss must be callable, got {type(fn).__name__}")
