"""Where a project's files go: one definition of the runs and figures folders.

``$NGL_RUNS_DIR`` / ``$NGL_FIGURES_DIR`` when set, else ``runs/`` / ``figures/`` of the
repository found from the working directory, else of the working directory itself.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_dir", "runs_dir", "figures_dir", "search_run_dir", "repo_root", "folder_of"]


def repo_root(start: Path) -> Path | None:
    """The checkout of ngl that contains ``start`` (a folder with pyproject.toml and ngl/)."""
    for p in [start, *start.parents]:
        if (p / "pyproject.toml").exists() and (p / "ngl").is_dir():
            return p
    return None


def project_dir(env_var: str, name: str) -> Path:
    """``$env_var`` if set, else ``<repository>/<name>`` (found from the cwd), else ``./<name>``."""
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    root = repo_root(Path.cwd().resolve())
    return (root if root is not None else Path.cwd()) / name


def runs_dir() -> Path:
    """Where searches and grids keep their files."""
    return project_dir("NGL_RUNS_DIR", "runs")


def figures_dir() -> Path:
    """Where figures go."""
    return project_dir("NGL_FIGURES_DIR", "figures")


def folder_of(parent: Path, config) -> Path:
    """``parent / config.key``, or the folder ngl 0.1 named by ``config.key_with_run_options``
    (device and data folder in the key) when only that one exists, so old folders go on."""
    new, old = parent / config.key, parent / config.key_with_run_options
    return old if old.is_dir() and not new.exists() else new


def search_run_dir(key: str) -> Path:
    """The default run directory of a search whose spec hashes to ``key``."""
    return runs_dir() / "search" / key
