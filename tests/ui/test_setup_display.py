"""Notebook tables show hall-of-fame formulas whole (pandas cuts text at 50 characters)."""

from __future__ import annotations

import pandas as pd

import ngl


def test_setup_makes_tables_show_long_formulas_whole():
    formula = " + ".join(["exp(2.409 - y_pred*(y_real + 1)) - cos(cos(sin(y_pred)))"] * 3)
    df = pd.DataFrame({"val_accuracy": [0.9], "formula": [formula]})
    try:
        pd.reset_option("display.max_colwidth")
        assert formula not in df._repr_html_()  # pandas' default cuts it with "..."
        ngl.setup(seed=0, style="paper")
        assert formula in df._repr_html_() and formula in repr(df)
    finally:
        pd.reset_option("display.max_colwidth")
