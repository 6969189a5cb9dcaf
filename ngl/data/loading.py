"""The front door to the datasets: ``load_dataset``, ``load_cached`` and the bundled digits.

Each dataset is loaded once into plain tensors (:class:`ngl.data.splits.DataSplits`) with
train / validation / test splits. Everything is deterministic for a given ``seed`` and nothing
is cached globally except by :func:`load_cached`, per process.

Sources:

* ``digits`` -- scikit-learn's 8x8 digits (ships with scikit-learn, always available);
  the default for tests, quick runs and CI. Read here.
* ``fashion_mnist`` -- the four official idx files from a local directory (Debian's
  ``dataset-fashion-mnist`` package, ``NGL_DATA_DIR``, ``root``) or ``download=True``
  (:mod:`ngl.data.fashion_mnist`).
* ``cifar10`` / ``cifar100`` -- the official python-pickle archives, read directly
  (torchvision is only used to download them; :mod:`ngl.data.cifar`).

Every split is normalised with per-channel mean/std of its *training* split only, so no
statistic leaks from validation or test data.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

import numpy as np
import torch
from sklearn.datasets import load_digits

from ngl.data.cifar import find_cifar, load_cifar
from ngl.data.fashion_mnist import find_fashion_mnist, load_fashion_mnist
from ngl.data.splits import DataSplits, build_splits, stratified_split

__all__ = ["available_datasets", "load_cached", "load_dataset", "missing_dataset"]

_DATASETS = ("digits", "fashion_mnist", "cifar10", "cifar100")


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(_DATASETS)


def missing_dataset(name: str, root: str | os.PathLike | None = None) -> str | None:
    """Why `name` cannot be loaded here (its files are not found), or None when it can.

    Looks for the files only (no reading, no download), so a form can mark a dataset before
    anyone picks it; the reason is the finder's message on one line (what, and where it looked).
    """
    if name not in _DATASETS:
        return f"unknown dataset {name!r}; expected one of {list(_DATASETS)}"
    try:
        if name == "fashion_mnist":
            find_fashion_mnist(root)
        elif name in ("cifar10", "cifar100"):
            find_cifar(root, 10 if name == "cifar10" else 100)
    except (FileNotFoundError, NotADirectoryError) as exc:
        return _short_reason(str(exc))
    return None


def _short_reason(message: str) -> str:
    """A finder's message on one line: what is missing and where it looked (without the advice
    that follows), e.g. "CIFAR-10 python files not found (looked in /a, /b)"."""
    lines = message.splitlines()
    head = lines[0].removesuffix("Looked in:").rstrip(" .")
    places = []
    for line in lines[1:]:
        if not line.startswith("  ") or line.lstrip().startswith("*"):
            break
        places.append(line.strip().rsplit(": ", 1)[0])
    return f"{head} (looked in {', '.join(places)})" if places else head


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    val_fraction: float | None = None,
    seed: int = 0,
    download: bool = False,
    device: str | torch.device = "cpu",
) -> DataSplits:
    """Load ``name`` as normalised train/validation/test tensors on ``device``.

    ``val_fraction`` is the stratified share of the *training* data held out for
    validation. ``None`` means the dataset's default: 0.1 of the official training set for
    Fashion-MNIST and CIFAR (the authors' hold-out), and for ``digits`` 0.25 of the
    non-test data, i.e. a 60/20/20 train/val/test split (digits has no official test set;
    its test split is a fixed, seeded, stratified 20 %).

    ``seed`` is the *data* seed: it only decides which examples are held out (the
    validation split and, for ``digits``, the test split). Nothing else is drawn here, so
    pass a data seed that is separate from the model-initialisation or search seed if the
    split is to stay fixed while those vary.

    ``root`` is, when given, the only place searched for file-based datasets: a ``root``
    that does not hold the files is a ``FileNotFoundError`` naming it, never a silent
    fallback to another copy. Without ``root``, ``$NGL_DATA_DIR`` and the default places are
    searched (see :func:`ngl.data.find_fashion_mnist`, :func:`ngl.data.find_cifar`). With
    ``download=True`` missing data is fetched with torchvision into ``root`` or
    ``~/.cache/ngl``. The folder the data came from is recorded in ``DataSplits.source``.
    """
    key = name.lower().replace("-", "_")
    if key not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {available_datasets()}")
    if val_fraction is not None:
        _check_fraction(val_fraction)

    if key == "digits":
        if root is not None:  # an explicit folder that cannot apply is refused, not ignored
            raise ValueError(f"root={str(root)!r}: digits is embedded in scikit-learn and is not "
                             "read from a folder; leave root / data_root unset")
        splits = _load_digits(0.25 if val_fraction is None else val_fraction, seed)
    elif key == "fashion_mnist":
        splits = load_fashion_mnist(root, 0.1 if val_fraction is None else val_fraction,
                                    seed, download)  # fmt: skip
    else:
        num_classes: Literal[10, 100] = 10 if key == "cifar10" else 100
        splits = load_cifar(root, num_classes, 0.1 if val_fraction is None else val_fraction,
                            seed, download)  # fmt: skip
    return splits.to(device)


def _check_fraction(val_fraction: float) -> None:
    ok = isinstance(val_fraction, int | float | np.floating) and not isinstance(val_fraction, bool)
    if not ok or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")


def _load_digits(val_fraction: float, seed: int) -> DataSplits:
    """scikit-learn digits: fixed, seeded, stratified split (20 % test, then validation)."""
    bunch = load_digits()
    x = bunch.images[:, None, :, :]  # [1797, 1, 8, 8], values 0..16
    y = bunch.target.astype(np.int64)
    rest, test = stratified_split(y, 0.2, seed, "test split")
    return build_splits(
        "digits", 10, [str(c) for c in range(10)],
        x[rest], y[rest], x[test], y[test], val_fraction, seed, scale=16.0, source="sklearn",
    )  # fmt: skip


@functools.lru_cache(maxsize=4)
def load_cached(name: str, root: str | None = None, n_train: int | None = None,
                n_val: int | None = None, n_test: int | None = None, seed: int = 0) -> DataSplits:
    """``load_dataset`` + stratified ``subset``, cached per process (CPU tensors).

    ``seed`` is the data seed: it draws the validation hold-out (and the digits test split,
    see :func:`load_dataset`) and the stratified subset, and nothing else. Callers pass
    their config's data seed here, not the model/search seed, so that the split stays put
    while training seeds vary. Searches and grids call it once per worker for every chunk or
    cell; do not modify the returned tensors in place.
    """
    data = load_dataset(name, root=root, seed=seed)
    if n_train is not None or n_val is not None or n_test is not None:
        data = data.subset(n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)
    return data
