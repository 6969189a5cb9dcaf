"""A standard training loop for downstream runs: one model, one loss, one seed.

``train_model`` trains on the tensors of a :class:`ngl.data.DataSplits` (no DataLoader: the
datasets used here fit in memory) with Adam/AdamW/SGD, an optional cosine or plateau
schedule, tensor-level augmentation (random crop with zero padding, horizontal flip) and
mixed precision on CUDA. It records per-epoch metrics (train loss, validation/test top-1,
top-5 where there are at least 5 classes, validation cross entropy).

Determinism and resume: shuffling and augmentation draw from one ``torch.Generator`` seeded
with ``seed``; dropout uses torch's global generator, which is seeded too. With
``checkpoint_path`` the run writes model + optimizer + scheduler + epoch + both RNG states
(as plain lists of ints, which ``torch.load(weights_only=True)`` accepts) atomically after
every epoch, so an interrupted run continues from its last finished epoch and, on CPU, ends
with exactly the result of an uninterrupted run.

A non-finite training loss stops the run at once with ``status="nonfinite"``; it never
trains on silently with NaN weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TrainConfig", "train_model", "evaluate", "augment_batch", "NonFiniteLossError"]

_OPTIMIZERS = ("adam", "adamw", "sgd")
_SCHEDULES = ("none", "cosine", "plateau")


class NonFiniteLossError(RuntimeError):
    """Raised internally when the training loss is NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines how one downstream run trains (hashable, JSON round-trips).

    ``random_crop`` is the zero padding (in pixels) of a random crop back to the input size
    (0: off; 4 is the usual CIFAR setting). ``schedule="plateau"`` reduces the learning rate
    by ``plateau_factor`` when validation accuracy has not improved for ``plateau_patience``
    evaluations (the authors' example: factor 0.2, patience 5, min lr 1e-4).
    ``max_steps_per_epoch`` caps an epoch for quick tests (None: the whole training split).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "none"
    plateau_factor: float = 0.2
    plateau_patience: int = 5
    min_lr: float = 0.0
    epochs: int = 10
    batch_size: int = 128
    random_crop: int = 0
    hflip: bool = False
    amp: bool = True
    eval_every: int = 1
    eval_batch_size: int = 1024
    max_steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}; expected one of {_OPTIMIZERS}")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}; expected one of {_SCHEDULES}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={self.lr!r} must be a positive float")
        if self.weight_decay < 0 or self.min_lr < 0:
            raise ValueError("weight_decay and min_lr must be >= 0")
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an int >= 1")
        if self.random_crop < 0:
            raise ValueError(f"random_crop={self.random_crop!r} must be >= 0 (padding in pixels)")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError("max_steps_per_epoch must be None or >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)

    @property
    def key(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


# -- augmentation -------------------------------------------------------------------------------
def augment_batch(x: Tensor, config: TrainConfig, generator: torch.Generator) -> Tensor:
    """Random crop with zero padding and/or horizontal flip of a batch ``[B, C, H, W]``.

    The random numbers come from ``generator`` (on the CPU) so runs are reproducible on any device.
    """
    if config.random_crop == 0 and not config.hflip:
        return x
    b, c, h, w = x.shape
    if config.random_crop > 0:
        p = config.random_crop
        padded = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[bi, ci, rows, cols]
    if config.hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


# -- evaluation --------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024,
             amp: bool = False) -> dict[str, float]:
    """Top-1, top-5 (where there are >= 5 classes) and mean cross entropy of ``model`` on (x, y)."""
    was_training = model.training
    model.eval()
    n = len(y)
    correct1 = correct5 = 0
    ce_sum = 0.0
    num_classes = None
    try:
        for start in range(0, n, batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp):
                logits = model(xb)
            logits = logits.float()
            num_classes = logits.shape[1]
            ce_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            top = logits.topk(min(5, num_classes), dim=1).indices
            correct1 += int((top[:, 0] == yb).sum())
            correct5 += int((top == yb[:, None]).any(dim=1).sum())
    finally:
        model.train(was_training)
    out = {"accuracy": correct1 / max(n, 1), "ce": ce_sum / max(n, 1)}
    if num_classes is not None and num_classes >= 5:
        out["top5"] = correct5 / max(n, 1)
    return out


# -- checkpoints -------------------------------------------------------------------------------
def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _rng_list(state: Tensor) -> list[int]:
    return [int(v) for v in state.tolist()]


def _rng_tensor(values: list[int]) -> Tensor:
    return torch.tensor(values, dtype=torch.uint8)


def _build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=config.momentum > 0)


def _build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs,
                                                          eta_min=config.min_lr)
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.plateau_factor,
            patience=config.plateau_patience, min_lr=config.min_lr)
    return None


# -- the loop ------------------------------------------------------------------------------------
def train_model(model: nn.Module, loss: nn.Module, data, config: TrainConfig, seed: int = 0,
                device: str | torch.device = "cpu", checkpoint_path: str | os.PathLike | None = None,
                progress: bool = True,
                callback: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train ``model`` with ``loss`` on ``data`` (a ``DataSplits``); return metrics as plain values.

    The returned dict holds ``status`` (``"ok"`` or ``"nonfinite"``), ``history`` (one dict per
    evaluated epoch: ``epoch``, ``train_loss``, ``lr``, ``val_accuracy``, ``val_top5``,
    ``val_ce``, ``test_accuracy``, ``test_top5``), the final ``test_accuracy``/``val_accuracy``
    (of the last evaluated epoch), ``best_val_accuracy`` and ``test_accuracy_at_best_val``,
    ``epochs_run``, ``steps``, ``time_s`` (training time over all sessions of a resumed run) and
    ``resumed_from_epoch``. The model is left with the final weights.

    ``callback(epoch_row)`` is called after every epoch (after the checkpoint is written), e.g.
    for live plots; an exception it raises interrupts the run like a KeyboardInterrupt would.
    """
    if seed < 0:
        raise ValueError(f"seed={seed!r} must be >= 0")
    device = torch.device(device)
    data = data.to(device)
    model.to(device)
    loss = loss.to(device)
    amp = bool(config.amp and device.type == "cuda")
    n_train = len(data.y_train)
    if n_train == 0:
        raise ValueError("the training split is empty")

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = _build_optimizer(model, config)
    scheduler = _build_scheduler(optimizer, config)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    history: list[dict] = []
    start_epoch, steps, elapsed, status = 0, 0, 0.0, "ok"
    resumed_from = None
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state.get("config") != config.to_dict() or state.get("seed") != seed:
            raise ValueError(f"{ckpt} belongs to another run (config or seed differ); "
                             "delete it or use another checkpoint_path")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        generator.set_state(_rng_tensor(state["generator"]))
        torch.set_rng_state(_rng_tensor(state["torch_rng"]))
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(_rng_tensor(state["cuda_rng"]), device)
        history = json.loads(state["history"])
        start_epoch, steps, elapsed = int(state["epoch"]), int(state["steps"]), float(state["time_s"])
        status = state.get("status", "ok")
        resumed_from = start_epoch

    bs = config.batch_size
    steps_per_epoch = math.ceil(n_train / bs)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)

    from tqdm.auto import tqdm

    bar = tqdm(total=config.epochs, initial=start_epoch, disable=not progress, desc="epochs",
               leave=False)
    model.train()
    try:
        for epoch in range(start_epoch, config.epochs):
            if status != "ok":
                break
            t0 = time.perf_counter()
            perm = torch.randperm(n_train, generator=generator).to(device)
            total, count = torch.zeros((), device=device), 0
            for i in range(steps_per_epoch):
                idx = perm[i * bs:(i + 1) * bs]
                xb = augment_batch(data.x_train[idx], config, generator)
                yb = data.y_train[idx]
                with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp):
                    out = model(xb)
                value = loss(out.float(), yb)
                if not bool(torch.isfinite(value)):
                    status = "nonfinite"
                    break
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(value).backward()
                scaler.step(optimizer)
                scaler.update()
                total += value.detach() * len(idx)
                count += len(idx)
                steps += 1
            row: dict[str, Any] = {"epoch": epoch + 1,
                                   "train_loss": float(total) / count if count else float("nan"),
                                   "lr": float(optimizer.param_groups[0]["lr"])}
            if status == "ok" and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
                val = evaluate(model, data.x_val, data.y_val, config.eval_batch_size, amp)
                test = evaluate(model, data.x_test, data.y_test, config.eval_batch_size, amp)
                row.update({"val_accuracy": val["accuracy"], "val_ce": val["ce"],
                            "test_accuracy": test["accuracy"], "test_ce": test["ce"]})
                if "top5" in val:
                    row.update({"val_top5": val["top5"], "test_top5": test["top5"]})
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(val["accuracy"])
            if status == "ok" and scheduler is not None and not isinstance(
                    scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step()
            if status != "ok":
                row["status"] = status
            elapsed += time.perf_counter() - t0
            history.append(row)
            if ckpt is not None:
                _save_checkpoint(ckpt, {
                    "config": config.to_dict(), "seed": seed, "epoch": epoch + 1, "steps": steps,
                    "time_s": elapsed, "status": status, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict() if amp else None,
                    "generator": _rng_list(generator.get_state()),
                    "torch_rng": _rng_list(torch.get_rng_state()),
                    "cuda_rng": (_rng_list(torch.cuda.get_rng_state(device))
                                 if device.type == "cuda" else None),
                    "history": json.dumps(history),
                })
            bar.update(1)
            if "val_accuracy" in row:
                bar.set_postfix(loss=f"{row['train_loss']:.4g}", val=f"{row['val_accuracy']:.4f}")
            if callback is not None:
                callback(row)
    finally:
        bar.close()
    return _summarise(history, status, steps, elapsed, resumed_from)


def _summarise(history: list[dict], status: str, steps: int, elapsed: float,
               resumed_from: int | None) -> dict[str, Any]:
    evaluated = [h for h in history if "val_accuracy" in h]
    out: dict[str, Any] = {"status": status, "history": history, "epochs_run": len(history),
                           "steps": steps, "time_s": elapsed, "resumed_from_epoch": resumed_from}
    if evaluated:
        last = evaluated[-1]
        best = max(evaluated, key=lambda h: h["val_accuracy"])
        out.update({k: last[k] for k in ("val_accuracy", "val_ce", "test_accuracy", "test_ce",
                                         "val_top5", "test_top5") if k in last})
        out["best_val_accuracy"] = best["val_accuracy"]
        out["test_accuracy_at_best_val"] = best["test_accuracy"]
        out["best_epoch"] = best["epoch"]
    if history:
        out["train_loss"] = history[-1]["train_loss"]
    return out
