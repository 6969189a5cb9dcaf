"""Tables for people with one seed: an undefined std / interval / p prints as an en dash, never
nan, while the numeric summary keeps NaN. Expected strings are written out by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ngl.evaluate import compare_with_paper, format_table, summarise, to_latex, to_markdown
from ngl.evaluate.paper import format_comparison
from ngl.evaluate.summary import UNDEFINED, format_number, format_summary

DASH = "\u2013"  # en dash
MINUS = "\u2212"


@pytest.fixture
def one_seed() -> pd.DataFrame:
    """One finished seed per loss: CE 90.12 %, NGL 90.64 %, focal 89.90 % on Fashion-MNIST."""
    return pd.DataFrame([
        {"dataset": "fashion_mnist", "model": "small_cnn", "loss": loss, "seed": 0, "status": "ok",
         "test_accuracy": acc}
        for loss, acc in (("ce", 0.9012), ("ngl", 0.9064), ("focal", 0.8990))])


@pytest.fixture
def hand_summary() -> pd.DataFrame:
    """A one-seed summary written by hand, as :func:`summarise` lays it out."""
    nan = math.nan
    out = pd.DataFrame({
        "dataset": ["digits", "digits"], "loss": ["ce", "ngl"], "n": [1, 1],
        "mean": [95.5, 96.25], "std": [nan, nan], "n_failed": [0, 0],
        "delta": [0.0, 0.75], "delta_ci_low": [nan, nan], "delta_ci_high": [nan, nan],
        "n_pairs": [0, 1], "p_ttest": [nan, nan], "p_wilcoxon": [nan, nan],
        "delta_unpaired": [0.0, 0.75]})
    out.attrs.update({"metric": "test_accuracy", "scale": 100.0, "baseline": "ce",
                      "by": ["dataset", "loss"]})
    return out


def test_undefined_is_an_en_dash():
    assert UNDEFINED == DASH
    assert format_number(math.nan) == DASH and format_number(None) == DASH
    assert format_number(-0.484, 2, sign=True) == f"{MINUS}0.48"
    assert format_number(0.5, 2, sign=True) == "+0.50" and format_number(90.123) == "90.12"


def test_format_table_with_one_seed_shows_dashes(hand_summary):
    tab = format_table(hand_summary, alpha=None)
    assert tab.loc["ce", "digits"] == f"95.50 ± {DASH}"
    assert tab.loc["ngl", "digits"] == f"96.25 ± {DASH} (+0.75)"
    with_ci = format_table(hand_summary, alpha=None, show_ci=True)
    assert with_ci.loc["ngl", "digits"] == f"96.25 ± {DASH} (+0.75 [{DASH}, {DASH}])"
    assert hand_summary["std"].isna().all()  # the numbers stay NaN


def test_every_view_of_a_one_seed_grid_is_free_of_nan(one_seed):
    summary = summarise(one_seed)
    assert summary["std"].isna().all() and summary["delta_ci_low"].isna().all()
    tab = format_table(summary, alpha=0.05, show_ci=True)
    assert tab.loc["ce", "fashion_mnist"] == f"90.12 ± {DASH}"
    # paired change from the one pair: 90.64 - 90.12 = +0.52; its interval needs two pairs
    assert tab.loc["ngl", "fashion_mnist"] == f"90.64 ± {DASH} (+0.52 [{DASH}, {DASH}])"
    assert tab.loc["focal", "fashion_mnist"] == f"89.90 ± {DASH} ({MINUS}0.22 [{DASH}, {DASH}])"
    md = to_markdown(summary)
    assert f"| NGL | **90.64 ± {DASH}** (+0.52) |" in md
    tex = to_latex(summary, caption="one seed")
    for text in (md, tex, tab.to_string()):
        assert "nan" not in text.lower()


def test_format_summary_one_and_two_seeds(one_seed):
    view = format_summary(summarise(one_seed)).set_index("loss")
    assert list(view.columns) == ["dataset", "n", "mean ± std", "Δ vs CE", "95% CI", "pairs",
                                  "p (t-test)"]
    assert view.loc["ngl", "mean ± std"] == f"90.64 ± {DASH}"
    assert view.loc["ngl", "Δ vs CE"] == "+0.52" and view.loc["ngl", "95% CI"] == f"[{DASH}, {DASH}]"
    assert view.loc["ngl", "p (t-test)"] == DASH and view.loc["ngl", "pairs"] == "1"
    assert view.loc["ce", "Δ vs CE"] == "baseline"
    assert "nan" not in view.to_string().lower()
    # two seeds, by hand: CE 90, 91 -> 90.50 ± 0.71; NGL 91, 93 -> 92.00 ± 1.41; differences 1, 2:
    # mean 1.5, sd 1/sqrt(2), se 0.5, t_{0.975, 1} = 12.706 -> [-4.85, +7.85];
    # t = 3 with 1 df (Cauchy): p = 2 (1/2 - atan(3)/pi) = 0.2048
    two = pd.DataFrame([{"dataset": "digits", "model": "m", "loss": loss, "seed": s, "status": "ok",
                         "test_accuracy": a}
                        for loss, accs in (("ce", (0.90, 0.91)), ("ngl", (0.91, 0.93)))
                        for s, a in enumerate(accs)])
    view = format_summary(summarise(two)).set_index("loss")
    assert view.loc["ce", "mean ± std"] == "90.50 ± 0.71"
    assert view.loc["ngl", "mean ± std"] == "92.00 ± 1.41"
    assert view.loc["ngl", "Δ vs CE"] == "+1.50"
    assert view.loc["ngl", "95% CI"] == f"[{MINUS}4.85, +7.85]"
    assert 2 * (0.5 - math.atan(3) / math.pi) == pytest.approx(0.2048, abs=1e-4)
    assert view.loc["ngl", "p (t-test)"] == "0.2"


def test_format_comparison_with_one_seed(one_seed):
    side = compare_with_paper(summarise(one_seed))
    assert side["ours_std"].isna().all()  # the numbers stay NaN
    view = format_comparison(side)
    ngl = view.loc[("fashion_mnist", "ngl")]
    assert ngl["paper CE (%)"] == "94.0"  # paper_results.csv: CE on Fashion-MNIST 94.0
    assert ngl["paper Δ"] == "+0.07"  # f5 (NGL) on Fashion-MNIST: 0.07 as printed
    assert ngl["paper verdict"] == "same"
    assert ngl["ours mean ± std"] == f"90.64 ± {DASH}"
    assert ngl["ours Δ [95% CI]"] == f"+0.52 [{DASH}, {DASH}]"
    assert ngl["ours verdict"] == "better" and ngl["p (t-test)"] == DASH
    ce = view.loc[("fashion_mnist", "ce")]
    assert ce["ours Δ [95% CI]"] == DASH and ce["paper verdict"] == DASH and ce["paper Δ"] == DASH
    assert "nan" not in view.to_string().lower() and "--" not in view.to_string()
    assert view.attrs["caveat"] == side.attrs["caveat"]
