"""Where dataset files are looked for: ``root``, ``$NGL_DATA_DIR`` and the ngl cache folder.

The file-based loaders (:mod:`ngl.data.fashion_mnist`, :mod:`ngl.data.cifar`) share these rules:
an explicit ``root`` is the only place searched (asking for one copy and silently getting
another would make results untraceable); without it ``$NGL_DATA_DIR`` and
``$XDG_CACHE_HOME/ngl`` (``~/.cache/ngl``, where ``download=True`` puts files) are searched. A
``root`` or ``$NGL_DATA_DIR`` that is a file is a ``NotADirectoryError``, never a place silently
skipped. :func:`source_of` is what ``DataSplits.source`` records.
"""

from __future__ import annotations

import os
import pathlib

__all__: list[str] = []  # helpers of the loaders, not part of the ngl.data API

DATA_DIR_ENV = "NGL_DATA_DIR"


def cache_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/ngl`` (``~/.cache/ngl``): where downloads go when no ``root`` is given."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "ngl"


def env_dir(holding: str) -> pathlib.Path | None:
    """``$NGL_DATA_DIR`` as a path; set to a file is an error, not a silently skipped place.

    ``holding`` says what the directory should contain, for the error message.
    """
    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    return _directory(value, f"{DATA_DIR_ENV}={value}", holding)


def explicit_root(root: str | os.PathLike[str], holding: str) -> pathlib.Path:
    """``root`` as a path; a file there is reported as such (a download could not go there)."""
    return _directory(root, f"root={str(root)!r}", holding)


def _directory(value: str | os.PathLike[str], label: str, holding: str) -> pathlib.Path:
    path = pathlib.Path(value).expanduser()
    if path.exists() and not path.is_dir():
        kind = "a file" if path.is_file() else "not a directory"
        raise NotADirectoryError(f"{label} is {kind}, expected a directory holding {holding}")
    return path


def source_of(directory: pathlib.Path) -> str:
    """The absolute folder the files were read from (symlinks kept: it is what was asked)."""
    return os.path.abspath(directory)
