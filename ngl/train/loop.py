"""A standard training loop for downstream runs: one model, one loss, one seed.

``train_model`` trains on the tensors of a :class:`ngl.data.DataSplits` (no DataLoader: the
datasets used here fit in memory) with Adam/AdamW/SGD, an optional cosine or plateau
schedule, tensor-level augmentation (random crop with zero padding, the authors' Keras-style
random zoom and shift, horizontal flip) and mixed precision on CUDA. It records per-epoch
metrics (train loss, validation/test top-1, top-5 where there are at least 5 classes,
validation cross entropy).

Determinism and resume: shuffling and augmentation draw from one ``torch.Generator`` seeded
with ``seed``; dropout uses torch's global generator, which is seeded too. With
``checkpoint_path`` the run writes model + optimizer + scheduler + epoch + both RNG states
(as plain lists of ints, which ``torch.load(weights_only=True)`` accepts) atomically after
every epoch, so an interrupted run continues from its last finished epoch and, on CPU, ends
with exactly the result of an uninterrupted run.

Non-finite values (the policy of :mod:`ngl.train.optim`, shared by every loop of ``ngl``): a step is
applied only when the loss value and its gradients are finite; otherwise the run stops at once
with ``status="nonfinite"`` and the weights of the last finite step -- it never trains on
silently with NaN weights, nor takes a step with an infinite gradient of a finite loss. Under
AMP the loss's gradient with respect to the logits is checked and overflow of the scaled
parameter gradients is left to the ``GradScaler`` (it skips that step, as AMP intends).

A checkpoint that cannot be loaded (garbage bytes, a truncated file, a checkpoint of another
model) is moved aside to ``<name>.corrupt-<timestamp>`` with a warning and the run starts from
scratch, so one bad file does not make its grid cell fail on every rerun. A readable checkpoint
of another configuration or seed is still refused: that is a wrong path, not a damaged file.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from torch import Tensor, nn
from tqdm.auto import tqdm

from ngl.io.config import STRICT
from ngl.train.optim import TrainSettings, apply_step, forward_backward, optimizer_from_config
from ngl.train.run_state import RunState, save_state, start_or_resume

__all__ = ["TrainConfig", "train_model", "evaluate", "augment_batch", "zoom_shift"]


@pydantic_dataclass(frozen=True, config=STRICT)
class TrainConfig(TrainSettings):
    """Everything that defines how one downstream run trains (hashable, JSON round-trips).

    ``random_crop`` is the zero padding (in pixels) of a random crop back to the input size
    (0: off; 4 is the usual CIFAR setting). ``zoom`` and ``shift`` are the authors' Keras
    ``ImageDataGenerator(zoom_range=zoom, width_shift_range=shift, height_shift_range=shift)``
    (0: off; their example uses 0.2 and 0.1; see :func:`augment_batch`).
    ``schedule="plateau"`` reduces the learning rate by ``plateau_factor`` when validation
    accuracy has not improved for ``plateau_patience`` evaluations (the authors' example:
    factor 0.2, patience 5, min lr 1e-4).
    ``max_steps_per_epoch`` caps an epoch for quick tests (None: the whole training split).
    ``optimizer="sgd"`` uses ``momentum`` and, only when asked, Nesterov momentum.
    """

    schedule: Literal["none", "cosine", "plateau"] = "none"
    plateau_factor: Annotated[float, Field(gt=0, lt=1)] = 0.2
    plateau_patience: Annotated[int, Field(ge=0, le=10**6)] = 5
    min_lr: Annotated[float, Field(ge=0, le=100)] = 0.0
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 10
    random_crop: Annotated[int, Field(ge=0, le=4096)] = 0
    hflip: bool = False
    zoom: Annotated[float, Field(ge=0, lt=1)] = 0.0
    shift: Annotated[float, Field(ge=0, lt=1)] = 0.0
    amp: bool = True
    eval_every: Annotated[int, Field(ge=1, le=100_000)] = 1
    max_steps_per_epoch: Annotated[int, Field(ge=1, le=10**9)] | None = None


# -- augmentation -------------------------------------------------------------------------------
def zoom_shift(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """Zoom and shift every image of ``x`` ``[B, C, H, W]`` (float) about its centre, as Keras does.

    ``scale`` ``[B, 2]`` holds Keras' ``(zx, zy)`` per image: the width and height of the input
    region that fills the output, as a fraction of the image, so ``> 1`` zooms out (content
    shrinks) and ``< 1`` zooms in. ``shift`` ``[B, 2]`` moves the content by ``shift[:, 0] * W``
    pixels to the right and ``shift[:, 1] * H`` pixels down (fractions need not give whole pixels).
    Output pixel ``(i, j)`` samples the input at column ``cx + zx (j - cx) - shift_x W`` (and row
    likewise), ``cx = (W - 1) / 2``, with bilinear interpolation (Keras' ``order=1``); points outside
    the image take the nearest edge pixel (``grid_sample(padding_mode="border")``, Keras' default
    ``fill_mode="nearest"``). Built on ``affine_grid`` + ``grid_sample``; shape, dtype and device
    are kept.
    """
    if not x.is_floating_point():
        raise TypeError(f"zoom_shift needs floating-point images, got {x.dtype}")
    b = x.shape[0]
    scale = scale.to(device=x.device, dtype=x.dtype)
    shift = shift.to(device=x.device, dtype=x.dtype)
    if scale.shape != (b, 2) or shift.shape != (b, 2):
        raise ValueError(f"scale and shift must be [{b}, 2], got {tuple(scale.shape)} and "
                         f"{tuple(shift.shape)}")
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = scale[:, 0]
    theta[:, 1, 1] = scale[:, 1]
    theta[:, :, 2] = -2 * shift  # normalised coordinates span 2: a shift of W pixels is 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(x: Tensor, config: TrainConfig, generator: torch.Generator) -> Tensor:
    """Random crop (zero padding), zoom + shift (edge fill), then horizontal flip of ``[B, C, H, W]``.

    Zoom and shift follow the authors' Keras ``ImageDataGenerator``: per image, ``zx`` and ``zy``
    are drawn independently and uniformly from ``[1 - zoom, 1 + zoom]``, and the horizontal and
    vertical shifts from ``[-shift, shift]`` times the width / height (continuous, not whole
    pixels); :func:`zoom_shift` applies them with bilinear interpolation and nearest-edge fill
    (Keras' default ``fill_mode="nearest"``), where :attr:`TrainConfig.random_crop` pads with zeros.
    With ``zoom = shift = 0`` nothing is drawn, so runs without them are unchanged.

    The random numbers come from ``generator`` (on the CPU) so runs are reproducible on any device.
    """
    if config.random_crop == 0 and not config.hflip and config.zoom == 0 and config.shift == 0:
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
    if config.zoom > 0 or config.shift > 0:
        scale = torch.ones(b, 2)
        if config.zoom > 0:
            scale = 1 - config.zoom + 2 * config.zoom * torch.rand(b, 2, generator=generator)
        move = torch.zeros(b, 2)
        if config.shift > 0:
            move = config.shift * (2 * torch.rand(b, 2, generator=generator) - 1)
        x = zoom_shift(x, scale, move)
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


def _build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The shared builder (:func:`ngl.train.optim.build_optimizer`): Nesterov only if ``config.nesterov``."""
    return optimizer_from_config([p for p in model.parameters() if p.requires_grad], config)


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

    def fresh() -> RunState:
        """The state of a run that starts from scratch."""
        torch.manual_seed(seed)
        opt = _build_optimizer(model, config)
        return RunState(torch.Generator().manual_seed(seed), opt, _build_scheduler(opt, config),
                        torch.amp.GradScaler("cuda", enabled=amp))

    identity = {"config": config.to_dict(), "seed": seed}
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    state = start_or_resume(model, fresh, identity, ckpt, device)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)

    bar = tqdm(total=config.epochs, initial=state.epoch, disable=not progress, desc="epochs",
               leave=False)
    model.train()
    try:
        for epoch in range(state.epoch, config.epochs):
            if state.status != "ok":
                break
            t0 = time.perf_counter()
            row = {"epoch": epoch + 1,
                   **_train_epoch(model, loss, data, config, state, steps_per_epoch, amp)}
            if state.status == "ok":
                row.update(_evaluate_epoch(model, data, config, state, epoch, amp))
            else:
                row["status"] = state.status
            state.elapsed += time.perf_counter() - t0
            state.history.append(row)
            state.epoch = epoch + 1
            if ckpt is not None:
                save_state(ckpt, identity, state, model, device, amp)
            bar.update(1)
            if "val_accuracy" in row:
                bar.set_postfix(loss=f"{row['train_loss']:.4g}", val=f"{row['val_accuracy']:.4f}")
            if callback is not None:
                callback(state.history[-1])
    finally:
        bar.close()
    return _summarise(state.history, state.status, state.steps, state.elapsed,
                      state.resumed_from)


def _train_epoch(model: nn.Module, loss: nn.Module, data, config: TrainConfig, state: RunState,
                 steps_per_epoch: int, amp: bool) -> dict[str, Any]:
    """One epoch of steps in the order of the run's generator; a non-finite step ends it (and
    the run: ``state.status``). Returns the epoch's mean training loss and learning rate."""
    bs, device = config.batch_size, data.y_train.device
    perm = torch.randperm(len(data.y_train), generator=state.generator).to(device)
    total, count = torch.zeros((), device=device), 0
    for i in range(steps_per_epoch):
        idx = perm[i * bs:(i + 1) * bs]
        xb = augment_batch(data.x_train[idx], config, state.generator)
        value, finite = forward_backward(model, loss, xb, data.y_train[idx], state.optimizer,
                                         state.scaler, amp)
        if not bool(finite):  # one host sync per step (ngl.train.optim's policy)
            state.status = "nonfinite"
            break
        apply_step(state.optimizer, state.scaler)
        total += value.detach() * len(idx)
        count += len(idx)
        state.steps += 1
    return {"train_loss": float(total) / count if count else float("nan"),
            "lr": float(state.optimizer.param_groups[0]["lr"])}


def _evaluate_epoch(model: nn.Module, data, config: TrainConfig, state: RunState, epoch: int,
                    amp: bool) -> dict[str, Any]:
    """Validation (and test, unless the split is kept unseen) scores when this epoch is an
    evaluation epoch, then the scheduler's step (a plateau schedule steps on validation)."""
    row: dict[str, Any] = {}
    plateau = isinstance(state.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
        val = evaluate(model, data.x_val, data.y_val, config.eval_batch_size, amp)
        row.update({"val_accuracy": val["accuracy"], "val_ce": val["ce"]})
        if "top5" in val:
            row["val_top5"] = val["top5"]
        if len(data.y_test):  # an empty test split is one a caller keeps unseen
            test = evaluate(model, data.x_test, data.y_test, config.eval_batch_size, amp)
            row.update({"test_accuracy": test["accuracy"], "test_ce": test["ce"]})
            if "top5" in test:
                row["test_top5"] = test["top5"]
        if plateau:
            state.scheduler.step(val["accuracy"])
    if state.scheduler is not None and not plateau:
        state.scheduler.step()
    return row


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
        if "test_accuracy" in best:
            out["test_accuracy_at_best_val"] = best["test_accuracy"]
        out["best_epoch"] = best["epoch"]
    if history:
        out["train_loss"] = history[-1]["train_loss"]
    return out
