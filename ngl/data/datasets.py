"""Datasets for the loss search and for downstream training.

A GP loss search trains many small networks, so each dataset is loaded once into plain
tensors (``DataSplits``) that can sit on the training device: no DataLoader per step.
Everything is deterministic for a given ``seed`` and nothing is cached globally.

Sources:

* ``digits`` -- scikit-learn's 8x8 digits (ships with scikit-learn, always available);
  the default for tests, quick runs and CI.
* ``fashion_mnist`` -- the four official idx files from a local directory (Debian's
  ``dataset-fashion-mnist`` package, ``NGL_DATA_DIR``, ``root``) or ``download=True``.
* ``cifar10`` / ``cifar100`` -- the official python-pickle archives, read here directly
  (torchvision is only used to download them).

Every split is normalised with per-channel mean/std of its *training* split only, so no
statistic leaks from validation or test data.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import os
import pathlib
import pickle
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    "DataSplits",
    "available_datasets",
    "find_cifar",
    "find_fashion_mnist",
    "load_dataset",
    "read_cifar",
    "read_idx",
]

DATA_DIR_ENV = "NGL_DATA_DIR"
DEBIAN_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")

_DATASETS = ("digits", "fashion_mnist", "cifar10", "cifar100")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# The four idx files, keyed by role; each entry lists accepted file names in preference order
# (un-gzipped first because it reads faster; the dotted names are the original MNIST site's).
_FASHION_FILES: dict[str, tuple[str, ...]] = {
    "train_images": ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz",
                     "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz",
                     "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz",
                    "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz",
                    "t10k-labels.idx1-ubyte"),
}  # fmt: skip

_CIFAR_DIRS = {10: "cifar-10-batches-py", 100: "cifar-100-python"}
_CIFAR_FILES = {
    10: ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch", "batches.meta"),
    100: ("train", "test", "meta"),
}  # fmt: skip

_HOW_TO_GET_FASHION = (
    "To get Fashion-MNIST, do one of:\n"
    "  * apt-get install dataset-fashion-mnist   (Debian/Ubuntu; installs the idx files in "
    f"{DEBIAN_FASHION_MNIST})\n"
    f"  * export {DATA_DIR_ENV}=/path/to/dir      (a directory holding the four idx files, or "
    "its fashion-mnist/ or FashionMNIST/raw/ subfolder)\n"
    "  * load_dataset('fashion_mnist', root=..., download=True)   (downloads via torchvision)"
)


# --------------------------------------------------------------------------------------------
# The container
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(_DATASETS)


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
    searched (see :func:`find_fashion_mnist`, :func:`find_cifar`). With ``download=True``
    missing data is fetched with torchvision into ``root`` or ``~/.cache/ngl``. The folder
    the data came from is recorded in ``DataSplits.source``.
    """
    key = name.lower().replace("-", "_")
    if key not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {available_datasets()}")
    if val_fraction is not None:
        _check_fraction(val_fraction)

    if key == "digits":
        splits = _load_digits(0.25 if val_fraction is None else val_fraction, seed)
    elif key == "fashion_mnist":
        splits = _load_fashion_mnist(root, 0.1 if val_fraction is None else val_fraction,
                                     seed, download)  # fmt: skip
    else:
        num_classes: Literal[10, 100] = 10 if key == "cifar10" else 100
        splits = _load_cifar(root, num_classes, 0.1 if val_fraction is None else val_fraction,
                             seed, download)  # fmt: skip
    return splits.to(device)


def _check_fraction(val_fraction: float) -> None:
    ok = isinstance(val_fraction, int | float | np.floating) and not isinstance(val_fraction, bool)
    if not ok or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")


# --------------------------------------------------------------------------------------------
# Shared helpers: splitting and normalisation
# --------------------------------------------------------------------------------------------


def _stratified_split(
    y: np.ndarray, fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (keep, held_out) indices; ``held_out`` is a stratified ``fraction`` of ``y``."""
    from sklearn.model_selection import train_test_split

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


def _build_splits(
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
    tr, va = _stratified_split(y_train_all, val_fraction, seed, "validation split")

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


def _check_labels(y: np.ndarray, num_classes: int, where: object) -> None:
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{where}: labels must lie in [0, {num_classes}), found [{y.min()}, {y.max()}]"
        )


def _cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "ngl"


def _env_dir(holding: str) -> pathlib.Path | None:
    """``$NGL_DATA_DIR`` as a path; set to a file is an error, not a silently skipped place.

    ``holding`` says what the directory should contain, for the error message.
    """
    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    return _directory(value, f"{DATA_DIR_ENV}={value}", holding)


def _explicit_root(root: str | os.PathLike[str], holding: str) -> pathlib.Path:
    """``root`` as a path; a file there is reported as such (a download could not go there)."""
    return _directory(root, f"root={str(root)!r}", holding)


def _directory(value: str | os.PathLike[str], label: str, holding: str) -> pathlib.Path:
    path = pathlib.Path(value).expanduser()
    if path.exists() and not path.is_dir():
        kind = "a file" if path.is_file() else "not a directory"
        raise NotADirectoryError(f"{label} is {kind}, expected a directory holding {holding}")
    return path


def _source(directory: pathlib.Path) -> str:
    """The absolute folder the files were read from (symlinks kept: it is what was asked)."""
    return os.path.abspath(directory)


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def _load_digits(val_fraction: float, seed: int) -> DataSplits:
    """scikit-learn digits: fixed, seeded, stratified split (20 % test, then validation)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images[:, None, :, :]  # [1797, 1, 8, 8], values 0..16
    y = bunch.target.astype(np.int64)
    rest, test = _stratified_split(y, 0.2, seed, "test split")
    return _build_splits(
        "digits", 10, [str(c) for c in range(10)],
        x[rest], y[rest], x[test], y[test], val_fraction, seed, scale=16.0, source="sklearn",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# idx files / Fashion-MNIST
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (the MNIST format), gzipped or not, into a native-endian array.

    Format: two zero bytes, a type code, the number of dimensions, one big-endian uint32
    per dimension, then the data in C order. Gzip is detected from the content, not the
    name. Any deviation raises ``ValueError`` naming the file and what was expected.
    """
    path = pathlib.Path(path)
    raw = path.read_bytes()
    gzipped = raw[:2] == b"\x1f\x8b"
    if gzipped:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # bad header/CRC, truncated, bad deflate
            raise ValueError(
                f"{path}: corrupt gzip stream ({type(err).__name__}: {err}); "
                "expected a complete gzip file holding one idx array"
            ) from err
    # A .gz name with content that is neither gzip nor idx is usually an HTML error page
    # or a partial download: say so rather than only quoting a magic number.
    not_gzip = (
        " (the name ends in .gz but the content is not gzip data either)"
        if path.name.endswith(".gz") and not gzipped
        else ""
    )
    if len(raw) < 4:
        raise ValueError(
            f"{path}: too short for an idx header ({len(raw)} bytes, need >= 4){not_gzip}"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: bad idx magic number 0x{raw[:4].hex()}{not_gzip}; expected 0x0000TTNN "
            f"with type TT in {{{', '.join(f'{t:02x}' for t in _IDX_DTYPES)}}} and NN "
            "dimensions (e.g. 0x00000803 for images, 0x00000801 for labels)"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: header declares {ndim} dimensions but the file ends early")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow on absurd headers
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: idx header declares shape {dims} of {dtype.name} "
            f"({expected} data bytes) but the file holds {len(raw) - header} data bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


_FASHION_HOLDING = (
    "the four Fashion-MNIST idx files (or its fashion-mnist/ or FashionMNIST/raw/ subfolder)"
)


def _fashion_candidates(root: str | os.PathLike[str] | None) -> list[pathlib.Path]:
    """Directories searched for the idx files, in order (see :func:`find_fashion_mnist`)."""

    def with_subdirs(d: pathlib.Path) -> list[pathlib.Path]:
        return [d, d / "fashion-mnist", d / "FashionMNIST" / "raw"]

    if root is not None:  # an explicit root is the only place: no fallback to another copy
        return with_subdirs(_explicit_root(root, _FASHION_HOLDING))
    places: list[pathlib.Path] = []
    env = _env_dir(_FASHION_HOLDING)
    if env is not None:
        places += with_subdirs(env)
    places += [DEBIAN_FASHION_MNIST, _cache_dir() / "FashionMNIST" / "raw"]
    return list(dict.fromkeys(places))  # drop duplicates, keep order


def _fashion_files(directory: pathlib.Path) -> tuple[dict[str, pathlib.Path], list[str]]:
    found, missing = {}, []
    for role, names in _FASHION_FILES.items():
        hit = next((directory / n for n in names if (directory / n).is_file()), None)
        if hit is None:
            missing.append(names[0] + "[.gz]")
        else:
            found[role] = hit
    return found, missing


def find_fashion_mnist(root: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Directory holding the four Fashion-MNIST idx files (``.gz`` or not).

    With ``root``, only ``root`` and its ``fashion-mnist/`` and ``FashionMNIST/raw/``
    subfolders (torchvision's layout) are searched: asking for one copy and silently getting
    another would make results untraceable. Without it, looks in ``$NGL_DATA_DIR`` (and the
    same subfolders), Debian's ``/usr/share/datasets/fashion-mnist`` and torchvision
    downloads in ``~/.cache/ngl``. Raises ``FileNotFoundError`` listing every place and why
    it did not qualify; ``NotADirectoryError`` if ``root`` or ``$NGL_DATA_DIR`` is a file.
    """
    report = []
    for place in _fashion_candidates(root):
        if not place.is_dir():
            report.append(f"  {place}: no such directory")
            continue
        _, missing = _fashion_files(place)
        if not missing:
            return place
        report.append(f"  {place}: missing {', '.join(missing)}")
    expected = ", ".join(names[0] + "[.gz]" for names in _FASHION_FILES.values())
    if root is not None:
        raise FileNotFoundError(
            f"Fashion-MNIST idx files not found under root={str(root)!r}: expected {expected} "
            "in it or in one of its subfolders. Looked in:\n" + "\n".join(report) + "\n"
            f"An explicit root is the only place searched ({DATA_DIR_ENV} and the default "
            "places are not): fix the path, pass root=None, or pass download=True to fetch "
            "the files into it."
        )
    raise FileNotFoundError(
        f"Fashion-MNIST idx files not found (expected {expected}). Looked in:\n"
        + "\n".join(report)
        + "\n"
        + _HOW_TO_GET_FASHION
    )


def _load_fashion_mnist(
    root: str | os.PathLike[str] | None, val_fraction: float, seed: int, download: bool
) -> DataSplits:
    try:
        directory = find_fashion_mnist(root)
    except FileNotFoundError:
        if not download:
            raise
        target = pathlib.Path(root).expanduser() if root is not None else _cache_dir()
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(str(target), train=train, download=True)
        directory = find_fashion_mnist(target)

    files, _ = _fashion_files(directory)
    arrays = {role: read_idx(p) for role, p in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        img_path, lab_path = files[f"{split}_images"], files[f"{split}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{img_path}: expected uint8 images of shape [N, H, W], "
                f"got {images.dtype.name} {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"{lab_path}: expected {len(images)} labels (one per image in {img_path.name}),"
                f" got shape {labels.shape}"
            )
        _check_labels(labels, 10, lab_path)
    return _build_splits(
        "fashion_mnist", 10, FASHION_MNIST_CLASSES,
        arrays["train_images"][:, None], arrays["train_labels"],
        arrays["test_images"][:, None], arrays["test_labels"],
        val_fraction, seed, scale=255.0, source=_source(directory),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------

# The CIFAR pickles hold only dicts, lists, strings and numpy arrays; refusing every other
# global means a tampered file cannot run code when unpickled.
_PICKLE_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # no numpy 2 warning
        return super().find_class(module, name)


def _unpickle(path: pathlib.Path) -> dict[str, Any]:
    """Load one CIFAR pickle; keys come back as ``str`` whether pickled as bytes or str."""
    with path.open("rb") as f:  # open errors (permissions, ...) already name the file
        try:
            obj = _CifarUnpickler(f, encoding="latin1").load()
        except Exception as err:
            # A damaged pickle fails in many ways (EOFError, UnpicklingError, LookupError from
            # a garbled codec name, MemoryError from a garbled length, numpy's own errors...):
            # all of them mean this file is not a usable CIFAR pickle, so say which file.
            raise ValueError(
                f"{path}: not a CIFAR python pickle ({type(err).__name__}: {err}); expected "
                "a file from the official python archive (a pickled dict)"
            ) from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _as_array(value: Any, dtype: type | None, what: str, path: pathlib.Path) -> np.ndarray:
    """``np.asarray(value, dtype)`` whose failure names the file and field, not just numpy."""
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as err:
        kind = "an array" if dtype is None else f"a list of {np.dtype(dtype).name} values"
        raise ValueError(
            f"{path}: {what} must be {kind}, got {type(value).__name__} ({err})"
        ) from err


def _field(d: dict[str, Any], key: str, path: pathlib.Path) -> Any:
    if key not in d:
        raise ValueError(f"{path}: missing key {key!r} (has {sorted(d)})")
    return d[key]


def _cifar_candidates(
    root: str | os.PathLike[str] | None, num_classes: Literal[10, 100]
) -> list[pathlib.Path]:
    """Directories that may hold the CIFAR files: each base dir, and its archive subfolder."""
    holding = f"{_CIFAR_DIRS[num_classes]}/ (or its contents)"
    if root is not None:  # an explicit root is the only place: no fallback to another copy
        bases = [_explicit_root(root, holding)]
    else:
        env = _env_dir(holding)
        bases = ([] if env is None else [env]) + [_cache_dir()]
    places = [p for b in bases for p in (b / _CIFAR_DIRS[num_classes], b)]
    return list(dict.fromkeys(places))


def find_cifar(
    root: str | os.PathLike[str] | None = None, num_classes: Literal[10, 100] = 10
) -> pathlib.Path:
    """Directory holding the CIFAR-10/100 python files (``cifar-10-batches-py`` contents).

    Looks in ``root`` only when it is given (no silent fallback to another copy), else in
    ``$NGL_DATA_DIR`` and ``~/.cache/ngl``; each as given and in its
    ``cifar-10-batches-py/`` (``cifar-100-python/``) subfolder, torchvision's layout.
    Raises ``FileNotFoundError`` listing every place and why it did not qualify;
    ``NotADirectoryError`` if ``root`` or ``$NGL_DATA_DIR`` is a file.
    """
    if num_classes not in _CIFAR_DIRS:
        raise ValueError(f"num_classes must be 10 or 100, got {num_classes!r}")
    report = []
    for place in _cifar_candidates(root, num_classes):
        if not place.is_dir():
            report.append(f"  {place}: no such directory")
            continue
        missing = [n for n in _CIFAR_FILES[num_classes] if not (place / n).is_file()]
        if not missing:
            return place
        report.append(f"  {place}: missing {', '.join(missing)}")
    name = f"CIFAR-{num_classes}"
    if root is not None:
        raise FileNotFoundError(
            f"{name} python files not found under root={str(root)!r}: expected "
            f"{', '.join(_CIFAR_FILES[num_classes])} in it or in its "
            f"{_CIFAR_DIRS[num_classes]}/ subfolder. Looked in:\n" + "\n".join(report) + "\n"
            f"An explicit root is the only place searched ({DATA_DIR_ENV} and "
            "~/.cache/ngl are not): fix the path, pass root=None, or pass download=True to "
            "fetch the files into it."
        )
    raise FileNotFoundError(
        f"{name} python files not found. Looked in:\n" + "\n".join(report) + "\n"
        f"To get {name}, do one of:\n"
        f"  * export {DATA_DIR_ENV}=/path/to/dir   (holding {_CIFAR_DIRS[num_classes]}/ from "
        f"the official python archive)\n"
        f"  * load_dataset('cifar{num_classes}', root=..., download=True)   "
        "(downloads via torchvision)"
    )


def read_cifar(
    root: str | os.PathLike[str] | None, num_classes: Literal[10, 100]
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[str, ...]]:
    """Read CIFAR-10/100 from the official python pickles (torchvision's layout).

    Returns ``((x_train, y_train), (x_test, y_test), classes)`` with uint8 images
    ``[N, 3, 32, 32]`` and int64 labels (CIFAR-100: the 100 fine labels). torchvision's
    own classes verify file checksums, which rejects re-packed or test copies; the format
    is simple enough to read here. Any malformed file is a ``ValueError`` naming it.
    """
    return _read_cifar_dir(find_cifar(root, num_classes), num_classes)


def _read_cifar_dir(
    directory: pathlib.Path, num_classes: Literal[10, 100]
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[str, ...]]:
    """:func:`read_cifar` on the folder that holds the files (no search)."""
    label_key = "labels" if num_classes == 10 else "fine_labels"
    if num_classes == 10:
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_file, meta_file, names_key = "test_batch", "batches.meta", "label_names"
    else:
        train_files, test_file, meta_file, names_key = ["train"], "test", "meta", "fine_label_names"

    def read(files: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for fname in files:
            path = directory / fname
            d = _unpickle(path)
            data = _as_array(_field(d, "data", path), None, "'data'", path)
            labels = _as_array(_field(d, label_key, path), np.int64, f"{label_key!r}", path)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(
                    f"{path}: expected 'data' as uint8 [N, 3072], "
                    f"got {data.dtype.name} {data.shape}"
                )
            if labels.shape != (len(data),):
                raise ValueError(
                    f"{path}: expected {len(data)} {label_key!r}, got shape {labels.shape}"
                )
            _check_labels(labels, num_classes, path)
            xs.append(data.reshape(-1, 3, 32, 32))  # rows are R(1024) G(1024) B(1024)
            ys.append(labels)
        return np.concatenate(xs), np.concatenate(ys)

    train, test = read(train_files), read([test_file])
    meta_path = directory / meta_file
    raw_names = _field(_unpickle(meta_path), names_key, meta_path)
    if isinstance(raw_names, str | bytes) or not isinstance(raw_names, Sequence | np.ndarray):
        raise ValueError(
            f"{meta_path}: expected {names_key!r} as a list of {num_classes} names, "
            f"got {type(raw_names).__name__}"
        )
    names = tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in raw_names)
    if len(names) != num_classes:
        raise ValueError(f"{meta_path}: expected {num_classes} {names_key}, got {len(names)}")
    return train, test, names


def _load_cifar(
    root: str | os.PathLike[str] | None,
    num_classes: Literal[10, 100],
    val_fraction: float,
    seed: int,
    download: bool,
) -> DataSplits:
    try:
        directory = find_cifar(root, num_classes)
    except FileNotFoundError:
        if not download:
            raise
        target = pathlib.Path(root).expanduser() if root is not None else _cache_dir()
        from torchvision.datasets import CIFAR10, CIFAR100

        (CIFAR10 if num_classes == 10 else CIFAR100)(str(target), train=True, download=True)
        directory = find_cifar(target, num_classes)
    (x_tr, y_tr), (x_te, y_te), classes = _read_cifar_dir(directory, num_classes)
    return _build_splits(
        f"cifar{num_classes}", num_classes, classes, x_tr, y_tr, x_te, y_te,
        val_fraction, seed, scale=255.0, source=_source(directory),
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
