"""CIFAR-10/100 from the official python archives: safe unpickling, finding the files, loading.

The pickles are read here directly (torchvision's own classes verify file checksums, which rejects
re-packed or test copies) with an unpickler that refuses every global but numpy's array
reconstruction, so a tampered file cannot run code. torchvision is only used for
``download=True``. See :func:`find_cifar` for where the files are looked for;
``load_dataset("cifar10")`` (:mod:`ngl.data.loading`) is the usual way in.
"""

from __future__ import annotations

import os
import pathlib
import pickle
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from torchvision import datasets as tv_datasets

from ngl.data.locations import DATA_DIR_ENV, cache_dir, env_dir, explicit_root, source_of
from ngl.data.splits import DataSplits, build_splits, check_labels

__all__ = ["find_cifar", "read_cifar"]

_CIFAR_DIRS = {10: "cifar-10-batches-py", 100: "cifar-100-python"}
_CIFAR_FILES = {
    10: ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch", "batches.meta"),
    100: ("train", "test", "meta"),
}  # fmt: skip

# -- reading the pickles -----------------------------------------------------------------------

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


# -- finding and loading the files -------------------------------------------------------------


def _cifar_candidates(
    root: str | os.PathLike[str] | None, num_classes: Literal[10, 100]
) -> list[pathlib.Path]:
    """Directories that may hold the CIFAR files: each base dir, and its archive subfolder."""
    holding = f"{_CIFAR_DIRS[num_classes]}/ (or its contents)"
    if root is not None:  # an explicit root is the only place: no fallback to another copy
        bases = [explicit_root(root, holding)]
    else:
        env = env_dir(holding)
        bases = ([] if env is None else [env]) + [cache_dir()]
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
            check_labels(labels, num_classes, path)
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


def load_cifar(
    root: str | os.PathLike[str] | None,
    num_classes: Literal[10, 100],
    val_fraction: float,
    seed: int,
    download: bool,
) -> DataSplits:
    """The official python pickles as ``DataSplits`` (what ``load_dataset("cifar10")`` returns)."""
    try:
        directory = find_cifar(root, num_classes)
    except FileNotFoundError:
        if not download:
            raise
        target = pathlib.Path(root).expanduser() if root is not None else cache_dir()
        download_cls = tv_datasets.CIFAR10 if num_classes == 10 else tv_datasets.CIFAR100
        download_cls(str(target), train=True, download=True)
        directory = find_cifar(target, num_classes)
    (x_tr, y_tr), (x_te, y_te), classes = _read_cifar_dir(directory, num_classes)
    return build_splits(
        f"cifar{num_classes}", num_classes, classes, x_tr, y_tr, x_te, y_te,
        val_fraction, seed, scale=255.0, source=source_of(directory),
    )  # fmt: skip
