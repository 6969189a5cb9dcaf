"""Explicit global set-up: seeds and figure style (nothing happens on import)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

__all__ = ["seed_everything", "setup", "quick_mode", "runs_dir"]


def quick_mode() -> bool:
    """True when ``NGL_QUICK=1``: notebooks and scripts pick laptop-sized settings."""
    return os.environ.get("NGL_QUICK", "0") == "1"


def runs_dir() -> Path:
    """Where searches and experiments keep their files: ``$NGL_RUNS_DIR`` or the repo's ``runs/``."""
    from ngl.viz import project_dir

    return project_dir("NGL_RUNS_DIR", "runs")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch; ``deterministic`` also asks torch for deterministic kernels."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative int")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def setup(seed: int = 0, style: str | None = "paper", deterministic: bool = False) -> None:
    """Seed everything and (optionally) apply the figure style used for exported figures."""
    seed_everything(seed, deterministic=deterministic)
    if style is not None:
        from ngl.viz import set_style

        set_style(style)
