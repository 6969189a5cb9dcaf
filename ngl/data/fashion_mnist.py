"""Fashion-MNIST from the official idx files: the idx format, finding the four files, loading them.

The files come from Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``), ``$NGL_DATA_DIR``, an explicit ``root`` or
``download=True`` (torchvision's layout under ``root`` or ``~/.cache/ngl``); see
:func:`find_fashion_mnist` for the search order. :func:`read_idx` reads any idx file, gzipped or
not. ``load_dataset("fashion_mnist")`` (:mod:`ngl.data.loading`) is the usual way in.
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import zlib

import numpy as np
from torchvision import datasets as tv_datasets

from ngl.data.locations import DATA_DIR_ENV, cache_dir, env_dir, explicit_root, source_of
from ngl.data.splits import DataSplits, build_splits, check_labels

__all__ = ["find_fashion_mnist", "read_idx"]

DEBIAN_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")

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

_HOW_TO_GET_FASHION = (
    "To get Fashion-MNIST, do one of:\n"
    "  * apt-get install dataset-fashion-mnist   (Debian/Ubuntu; installs the idx files in "
    f"{DEBIAN_FASHION_MNIST})\n"
    f"  * export {DATA_DIR_ENV}=/path/to/dir      (a directory holding the four idx files, or "
    "its fashion-mnist/ or FashionMNIST/raw/ subfolder)\n"
    "  * load_dataset('fashion_mnist', root=..., download=True)   (downloads via torchvision)"
)


# -- the idx format ----------------------------------------------------------------------------

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


# -- finding and loading the four files -------------------------------------------------------

_FASHION_HOLDING = (
    "the four Fashion-MNIST idx files (or its fashion-mnist/ or FashionMNIST/raw/ subfolder)"
)


def _fashion_candidates(root: str | os.PathLike[str] | None) -> list[pathlib.Path]:
    """Directories searched for the idx files, in order (see :func:`find_fashion_mnist`)."""

    def with_subdirs(d: pathlib.Path) -> list[pathlib.Path]:
        return [d, d / "fashion-mnist", d / "FashionMNIST" / "raw"]

    if root is not None:  # an explicit root is the only place: no fallback to another copy
        return with_subdirs(explicit_root(root, _FASHION_HOLDING))
    places: list[pathlib.Path] = []
    env = env_dir(_FASHION_HOLDING)
    if env is not None:
        places += with_subdirs(env)
    places += [DEBIAN_FASHION_MNIST, cache_dir() / "FashionMNIST" / "raw"]
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


def load_fashion_mnist(
    root: str | os.PathLike[str] | None, val_fraction: float, seed: int, download: bool
) -> DataSplits:
    """The four idx files as ``DataSplits`` (what ``load_dataset("fashion_mnist")`` returns)."""
    try:
        directory = find_fashion_mnist(root)
    except FileNotFoundError:
        if not download:
            raise
        target = pathlib.Path(root).expanduser() if root is not None else cache_dir()
        for train in (True, False):
            tv_datasets.FashionMNIST(str(target), train=train, download=True)
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
        check_labels(labels, 10, lab_path)
    return build_splits(
        "fashion_mnist", 10, FASHION_MNIST_CLASSES,
        arrays["train_images"][:, None], arrays["train_labels"],
        arrays["test_images"][:, None], arrays["test_labels"],
        val_fraction, seed, scale=255.0, source=source_of(directory),
    )  # fmt: skip

