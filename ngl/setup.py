"""Explicit global set-up: seeds and figure style (nothing happens on import)."""

from __future__ import annotations

import os

from ngl.io.paths import figures_dir, runs_dir
from ngl.train.seeding import seed_everything
from ngl.ui.style import set_style

__all__ = ["seed_everything", "setup", "quick_mode", "runs_dir", "figures_dir"]


def quick_mode() -> bool:
    """True when ``NGL_QUICK=1``: notebooks and scripts pick laptop-sized settings."""
    return os.environ.get("NGL_QUICK", "0") == "1"


def setup(seed: int = 0, style: str | None = "paper", deterministic: bool = False) -> None:
    """Seed everything and (optionally) apply the figure style used for exported figures."""
    seed_everything(seed, deterministic=deterministic)
    if style is not None:
        set_style(style)
