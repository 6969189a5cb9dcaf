"""Notebook tables show hall-of-fame formulas whole (pandas cuts text at 50 characters)."""

from __future__ import annotations

import pandas as pd
import pytest

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


def test_a_user_error_in_a_widget_is_one_line_and_a_bug_keeps_its_frames():
    """The rules: bad input gets one line, no traceback; an ngl bug (TypeError...) shows the
    frames a bug report needs."""
    import ipywidgets as W

    from ngl.ui import show_errors

    out = W.Output()

    @show_errors(out)
    def user(_):
        raise FileNotFoundError("CIFAR-10 python files not found (looked in /x)")

    @show_errors(out)
    def bug(_):
        return None + 1

    user(None)
    texts = [o["text"] for o in out.outputs]
    assert texts == ["FileNotFoundError: CIFAR-10 python files not found (looked in /x)\n"]
    out.outputs = ()
    bug(None)
    text = "".join(o["text"] for o in out.outputs)
    assert text.startswith("TypeError: unsupported operand") and 'File "' in text


def test_a_search_dir_that_holds_no_search_is_refused_in_one_line(tmp_path):
    from ngl.ui import search_or_tiny

    with pytest.raises(FileNotFoundError) as err:
        search_or_tiny(tmp_path / "typo")
    msg = str(err.value)
    assert "\n" not in msg and "typo" in msg and "no search there" in msg


def test_a_missing_dataset_says_what_and_where_on_one_line(tmp_path, monkeypatch):
    from ngl.data import missing_dataset

    monkeypatch.setenv("NGL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    why = missing_dataset("cifar10")
    assert why.startswith("CIFAR-10 python files not found (looked in ")
    assert str(tmp_path / "cifar-10-batches-py") in why and "\n" not in why
    assert "Looked in:" not in why and "export" not in why
