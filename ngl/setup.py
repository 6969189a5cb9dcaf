"""Explicit global set-up: seeds and figure style (nothing happens on import)."""

from __future__ import annotations

import os

import pandas as pd

from ngl.io.paths import figures_dir, runs_dir
from ngl.train.seeding import seed_everything

__all__ = ["seed_everything", "setup", "quick_mode", "runs_dir", "figures_dir"]


def quick_mode() -> bool:
    """True when ``NGL_QUICK=1``: notebooks and scripts pick laptop-sized settings."""
    return os.environ.get("NGL_QUICK", "0") == "1"


def setup(seed: int = 0, style: str | None = "paper", deterministic: bool = False) -> None:
    """Seed everything and (optionally) apply the figure style used for exported figures.

    With a style (the notebooks' call) tables also show text whole: pandas would cut a
    hall-of-fame formula at 50 characters with "...", leaving no way to read it there.
    """
    seed_everything(seed, deterministic=deterministic)
    if style is not None:
        # imported here, not at the top: ``import ngl`` on a GPU server must not load
        # matplotlib.pyplot, seaborn or ipywidgets (tests/test_import.py checks it)
        from ngl.ui.style import set_style

        set_style(style)
        pd.set_option("display.max_colwidth", None)
