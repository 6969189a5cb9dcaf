"""The ``DataSplits`` container and how it is built: stratified hold-outs, subsets, normalisation.

A GP loss search trains many small networks, so each dataset is held as plain tensors
(``DataSplits``) that can sit on the training device: no DataLoader per step. Everything is
deterministic for a given ``seed``. :func:`build_splits` is the one path from raw arrays to a
``DataSplits`` for every loader: it holds out a stratified validation split, scales pixels to
[0, 1] and normalises every split with per-channel mean/std of the *training* split only, so no
statistic leaks from validation or test data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from sklearn.model_selection import train_test_split

__all__ = ["DataSplits"]


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors field-wise is meaningless
class DataSplits:
    """Train/validation/test tensors of one dataset, ready for full-batch or sliced training.

    ``x_*`` are float32 ``[N, C, H, W]`` normalised with ``mean``/``std`` (per channel, from
    the training split); ``y_*`` are int64 class indices. ``mean``/``std`` are kept so that
    notebooks can show images in pixel units: ``x * std + mean`` gives values in [0, 1].

    ``source`` records where the data was read from (the absolute folder of the files, or
    ``"sklearn"`` for the digits bundled with scikit-learn), so a result can be traced to
    the exact copy it was computed on; subsets and ``.to(device)`` keep it.
    """

    name: str
    num_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        # Catch shape mismatches here rather than as a confusing error deep inside training.
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4:
                raise ValueError(f"x_{split} must be [N, C, H, W], got shape {tuple(x.shape)}")
            if y.ndim != 1 or len(y) != len(x):
                raise ValueError(
                    f"y_{split} must be [N] with N = len(x_{split}) = {len(x)}, "
                    f"got shape {tuple(y.shape)}"
                )
            if x.shape[1:] != self.x_train.shape[1:]:
                raise ValueError(
                    f"x_{split} has sample shape {tuple(x.shape[1:])}, "
                    f"x_train has {tuple(self.x_train.shape[1:])}"
                )
        if self.classes and len(self.classes) != self.num_classes:
            raise ValueError(
                f"{len(self.classes)} class names given for num_classes={self.num_classes}"
            )

    def __repr__(self) -> str:  # the default repr would print every tensor in full
        return (
            f"DataSplits(name={self.name!r}, num_classes={self.num_classes}, "
            f"input_shape={self.input_shape}, train={len(self.y_train)}, "
            f"val={len(self.y_val)}, test={len(self.y_test)}, device={self.device}, "
            f"source={self.source!r})"
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one sample, what a model constructor needs."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device: str | torch.device) -> DataSplits:
        """Copy of the splits on ``device`` (tensors already there are not copied)."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)

    def subset(
        self,
        n_train: int | None = None,
        n_val: int | None = None,
        n_test: int | None = None,
        seed: int = 0,
    ) -> DataSplits:
        """Stratified, seeded sub-sample of each split (``None`` keeps a split whole).

        Class proportions are kept (largest-remainder rounding), every class present in a
        split keeps at least one example when ``n`` allows it, and each split draws from
        its own random stream, so changing ``n_val`` does not change the training subset.
        Original order is kept. Normalisation statistics are not recomputed: the subset is
        a view of the same normalised data.
        """
        out: dict[str, torch.Tensor] = {}
        for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if n is None:
                continue
            rng = np.random.default_rng([seed, k])
            idx = _stratified_indices(y.cpu().numpy(), n, rng, what=f"n_{split}")
            idx_t = torch.from_numpy(idx).to(y.device)
            out[f"x_{split}"] = x[idx_t]
            out[f"y_{split}"] = y[idx_t]
        return dataclasses.replace(self, **out)

    def class_counts(self, split: Literal["train", "val", "test"] = "train") -> list[int]:
        y = getattr(self, f"y_{split}")
        return torch.bincount(y.cpu(), minlength=self.num_classes).tolist()

    def summary(self) -> dict[str, Any]:
        """Sizes, shapes and class counts as plain Python values (prints well, JSON-safe)."""
        return {
            "name": self.name,
            "source": self.source,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "sizes": {s: len(getattr(self, f"y_{s}")) for s in ("train", "val", "test")},
            "class_counts": {s: self.class_counts(s) for s in ("train", "val", "test")},
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
            "dtype": str(self.x_train.dtype),
            "device": str(self.device),
        }


def _stratified_indices(y: np.ndarray, n: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """Sorted indices of ``n`` samples with the class proportions of ``y``."""
    total = len(y)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"{what} must be a non-negative int or None, got {n!r}")
    if n > total:
        raise ValueError(f"{what}={n} is larger than the split ({total} samples)")
    if n == total:
        return np.arange(total)
    labels, counts = np.unique(y, return_counts=True)
    quota = n * counts / total
    alloc = np.floor(quota).astype(np.int64)
    frac = quota - alloc
    order = np.lexsort((labels, -frac))  # largest remainder first, ties by class index
    alloc[order[: n - int(alloc.sum())]] += 1
    if n >= len(labels):  # keep every class represented: take one from the largest class
        for i in np.flatnonzero(alloc == 0):
            alloc[int(np.argmax(alloc))] -= 1
            alloc[i] += 1
    picked = [
        rng.choice(np.flatnonzero(y == c), size=int(a), replace=False)
        for c, a in zip(labels, alloc, strict=True)
        if a > 0
    ]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


# -- from raw arrays to DataSplits (shared by every loader) -------------------------------------


def stratified_split(
    y: np.ndarray, fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (keep, held_out) indices; ``held_out`` is a stratified ``fraction`` of ``y``."""
    try:
        keep, held = train_test_split(
            np.arange(len(y)), test_size=fraction, stratify=y, random_state=seed
        )
    except ValueError as err:  # e.g. fewer held-out samples than classes
        raise ValueError(
            f"cannot hold out a stratified {what} of {fraction!r} from {len(y)} samples "
            f"with {len(np.unique(y))} classes: {err}"
        ) from err
    return np.sort(keep), np.sort(held)


def _normalise(
    x_train: torch.Tensor, *others: torch.Tensor
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Standardise all tensors in place with per-channel statistics of ``x_train`` only."""
    # float64 sums over chunks: exact enough and no full float64 copy of CIFAR (1 GB).
    total = torch.zeros(x_train.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for chunk in x_train.split(4096):
        c = chunk.double()
        total += c.sum(dim=(0, 2, 3)).cpu()
        total_sq += c.square().sum(dim=(0, 2, 3)).cpu()
    count = x_train.numel() // x_train.shape[1]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # constant channel: no scaling
    for x in (x_train, *others):
        x.sub_(mean.to(x).view(1, -1, 1, 1)).div_(std.to(x).view(1, -1, 1, 1))
    return tuple(mean.tolist()), tuple(std.tolist())


def build_splits(
    name: str,
    num_classes: int,
    classes: Sequence[str],
    x_train_all: np.ndarray,
    y_train_all: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    val_fraction: float,
    seed: int,
    scale: float,
    source: str,
) -> DataSplits:
    """Hold out validation data, scale pixels to [0, 1], normalise on the train split."""
    tr, va = stratified_split(y_train_all, val_fraction, seed, "validation split")

    def as_float(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).div_(scale)

    def as_long(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64).copy())

    xs = [as_float(x_train_all[tr]), as_float(x_train_all[va]), as_float(x_test)]
    mean, std = _normalise(*xs)
    return DataSplits(
        name=name,
        num_classes=num_classes,
        x_train=xs[0],
        y_train=as_long(y_train_all[tr]),
        x_val=xs[1],
        y_val=as_long(y_train_all[va]),
        x_test=xs[2],
        y_test=as_long(y_test),
        classes=tuple(classes),
        mean=mean,
        std=std,
        source=source,
    )


def check_labels(y: np.ndarray, num_classes: int, where: object) -> None:
    """Labels read from ``where`` must be class indices in ``[0, num_classes)``."""
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{where}: labels must lie in [0, {num_classes}), found [{y.min()}, {y.max()}]"
        )
