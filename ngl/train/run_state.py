"""What a resumed training run continues from, and its checkpoint file.

`train_model` is four named steps on a `RunState`: :func:`start_or_resume` (a fresh state, or
the one in the checkpoint; an unreadable checkpoint is moved aside and the run starts over),
training steps (:func:`ngl.train.optim.forward_backward` / ``apply_step``), evaluation, and
:func:`save_state` after every epoch (atomic: a kill leaves the previous checkpoint whole).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ngl.io.records import atomic_write

__all__ = ["RunState", "start_or_resume", "save_state"]


@dataclass
class RunState:
    """The random stream, optimizer, scheduler, scaler and counters of one training run."""

    generator: torch.Generator
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    history: list[dict] = field(default_factory=list)
    epoch: int = 0
    steps: int = 0
    elapsed: float = 0.0
    status: str = "ok"
    resumed_from: int | None = None


def start_or_resume(model: torch.nn.Module, fresh: Callable[[], RunState], identity: dict,
                    checkpoint: Path | None, device: torch.device) -> RunState:
    """The state to train from: the checkpoint's when it belongs to this run (``identity``:
    its config and seed; another run's checkpoint is refused), else ``fresh()``. A checkpoint
    that cannot be read or loaded is set aside with a warning and the run starts over."""
    state = fresh()
    saved = _read(checkpoint, device) if checkpoint is not None and checkpoint.exists() else None
    if saved is None:
        return state
    assert checkpoint is not None
    if any(saved.get(k) != v for k, v in identity.items()):
        raise ValueError(f"{checkpoint} belongs to another run (config or seed differ); "
                         "delete it or use another checkpoint_path")
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        state.history = json.loads(saved["history"])
        state.epoch, state.steps = int(saved["epoch"]), int(saved["steps"])
        state.elapsed, state.status = float(saved["time_s"]), str(saved.get("status", "ok"))
        model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        if state.scheduler is not None and saved.get("scheduler") is not None:
            state.scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):
            state.scaler.load_state_dict(saved["scaler"])
        state.generator.set_state(_rng_tensor(saved["generator"]))
        torch.set_rng_state(_rng_tensor(saved["torch_rng"]))
        if device.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(_rng_tensor(saved["cuda_rng"]), device)
        state.resumed_from = state.epoch
    except Exception as exc:  # noqa: BLE001 - a damaged file must not sink the run forever
        # Loading may have failed half way: undo it all and start from scratch.
        model.load_state_dict(initial)
        state = fresh()
        _set_aside(checkpoint, exc)
    return state


def save_state(checkpoint: Path, identity: dict, state: RunState, model: torch.nn.Module,
               device: torch.device, amp: bool) -> None:
    """Write everything :func:`start_or_resume` reads back, atomically."""
    payload = {
        **identity, "epoch": state.epoch, "steps": state.steps, "time_s": state.elapsed,
        "status": state.status, "model": model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        "scaler": state.scaler.state_dict() if amp else None,
        "generator": _rng_list(state.generator.get_state()),
        "torch_rng": _rng_list(torch.get_rng_state()),
        "cuda_rng": (_rng_list(torch.cuda.get_rng_state(device)) if device.type == "cuda"
                     else None),
        "history": json.dumps(state.history),
    }
    atomic_write(checkpoint, lambda tmp: torch.save(payload, tmp))


def _read(path: Path, device: torch.device) -> dict | None:
    """The checkpoint's state dict, or None (and the file moved aside) if it cannot be read."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"expected a dict of run state, found {type(state).__name__}")
        missing = {"config", "seed", "model", "history"} - set(state)
        if missing:  # e.g. a bare model state_dict: not a train_model checkpoint at all
            raise ValueError(f"not a train_model checkpoint (no {sorted(missing)})")
    except Exception as exc:  # noqa: BLE001 - garbage, truncation, foreign pickles: all unreadable
        _set_aside(path, exc)
        return None
    return state


def _set_aside(path: Path, exc: BaseException) -> None:
    """Rename an unusable checkpoint to ``<name>.corrupt-<timestamp>`` (kept for a post-mortem,
    out of the way of the rerun) and warn, naming the file and the problem."""
    problem = f"{type(exc).__name__}: {exc}"
    if len(problem) > 300:
        problem = problem[:300] + " ..."
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        os.replace(path, dest)
        where = f"moved it to {dest}"
    except OSError as err:
        where = f"could not move it aside ({err}); the next checkpoint overwrites it"
    warnings.warn(f"checkpoint {path} cannot be loaded ({problem}); {where} and training this "
                  "run from scratch", RuntimeWarning, stacklevel=4)


def _rng_list(state: Tensor) -> list[int]:
    return [int(v) for v in state.tolist()]


def _rng_tensor(values: list[int]) -> Tensor:
    return torch.tensor(values, dtype=torch.uint8)
