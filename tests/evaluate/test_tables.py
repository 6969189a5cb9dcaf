"""Paper-style tables: statistics against numpy/scipy, bold on the right cell, exports, paper data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ngl.evaluate import (
    PAPER_CAVEAT,
    best_mask,
    compare_with_paper,
    format_table,
    latex_escape,
    paired_test,
    paper_table,
    paper_wide,
    summarise,
    to_latex,
    to_markdown,
)

ACC = {  # dataset -> loss -> accuracies over seeds 0, 1, 2
    "fashion_mnist": {"ce": [0.9002, 0.9061, 0.8998], "ngl": [0.9124, 0.9080, 0.9094],
                      "focal": [0.8990, 0.9050, 0.9001]},
    "digits": {"ce": [0.95, 0.96, 0.94], "ngl": [0.93, 0.95, 0.94],
               "focal": [0.96, 0.97, 0.96]},
}


@pytest.fixture
def results() -> pd.DataFrame:
    rows = [{"dataset": ds, "model": "small_cnn", "loss": loss, "seed": s, "status": "ok",
             "test_accuracy": a}
            for ds, per in ACC.items() for loss, accs in per.items() for s, a in enumerate(accs)]
    rows.append({"dataset": "digits", "model": "small_cnn", "loss": "ngl", "seed": 3,
                 "status": "nonfinite", "test_accuracy": None})
    return pd.DataFrame(rows)


def test_paired_test_matches_scipy():
    a = [0.91, 0.93, 0.92, 0.95, 0.90]
    b = [0.90, 0.91, 0.92, 0.93, 0.88]
    res = paired_test(a, b)
    assert res["n"] == 5 and res["mean_diff"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert res["p_ttest"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert res["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    # known value: differences 1, 2, 3 -> t = 2/(1/sqrt(3)) = 3.4641, df 2 -> p = 0.07418
    assert paired_test([2, 4, 6], [1, 2, 3])["p_ttest"] == pytest.approx(0.074180, abs=1e-5)
    assert math.isnan(paired_test([1.0], [0.5])["p_ttest"])
    same = paired_test([1.0, 2.0], [1.0, 2.0])
    assert math.isnan(same["p_ttest"]) and math.isnan(same["p_wilcoxon"])
    with pytest.raises(ValueError):
        paired_test([1, 2], [1])


def test_summary_mean_std_delta_and_p_against_numpy(results):
    s = summarise(results).set_index(["dataset", "loss"])
    for ds, per in ACC.items():
        ce = np.array(per["ce"]) * 100
        for loss, accs in per.items():
            v = np.array(accs) * 100
            row = s.loc[(ds, loss)]
            assert row["n"] == 3
            assert row["mean"] == pytest.approx(v.mean())
            assert row["std"] == pytest.approx(v.std(ddof=1))
            assert row["delta"] == pytest.approx(np.mean(v - ce))  # every seed is paired here
            assert row["delta_unpaired"] == pytest.approx(v.mean() - ce.mean())
            if loss == "ce":
                assert math.isnan(row["p_ttest"])
            else:
                assert row["p_ttest"] == pytest.approx(stats.ttest_rel(v, ce).pvalue)
                assert row["n_pairs"] == 3
    assert s.loc[("digits", "ngl"), "n_failed"] == 1  # the non-finite run is counted, not averaged
    assert s.loc[("digits", "ce"), "n_failed"] == 0


def test_pairing_is_by_seed_not_by_row_order(results):
    shuffled = results.sample(frac=1.0, random_state=3)
    a = summarise(results).set_index(["dataset", "loss"])
    b = summarise(shuffled).set_index(["dataset", "loss"]).loc[a.index]
    np.testing.assert_allclose(a["p_ttest"], b["p_ttest"], equal_nan=True)


def test_per_model_summary(results):
    two = pd.concat([results, results.assign(model="resnet", test_accuracy=results.test_accuracy - 0.1)])
    by_model = summarise(two, by=("dataset", "model", "loss"))
    assert len(by_model) == 12
    r = by_model.set_index(["dataset", "model", "loss"]).loc[("digits", "resnet", "focal")]
    assert r["mean"] == pytest.approx(np.mean(ACC["digits"]["focal"]) * 100 - 10)
    pooled = summarise(two).set_index(["dataset", "loss"])
    assert pooled.loc[("digits", "ce"), "n"] == 6
    assert pooled.loc[("digits", "ngl"), "n_pairs"] == 6  # paired on (model, seed)
    wide = format_table(by_model)
    assert wide.columns.nlevels == 2


def test_bold_marks_the_best_cell_of_each_column(results):
    s = summarise(results)
    mask = best_mask(s)
    assert mask.loc["ngl", "fashion_mnist"] and mask.loc["focal", "digits"]
    assert mask.values.sum() == 2
    md = to_markdown(s)
    ngl_line = next(line for line in md.splitlines() if line.startswith("| NGL"))
    assert "**90.99 ± 0.22**" in ngl_line
    lower = best_mask(s, higher_is_better=False)
    assert lower.loc["focal", "fashion_mnist"] and lower.loc["ngl", "digits"]
    assert lower.values.sum() == 2


def test_format_table_cells(results):
    tab = format_table(summarise(results), alpha=None)
    assert tab.loc["ce", "fashion_mnist"] == "90.20 ± 0.35"
    assert tab.loc["ngl", "fashion_mnist"] == "90.99 ± 0.22 (+0.79)"
    assert tab.loc["ngl", "digits"].endswith("(\u22121.00)")
    starred = format_table(summarise(results), alpha=0.5)
    assert starred.loc["ngl", "fashion_mnist"].endswith("*")  # p = 0.17 < 0.5


def test_latex_export_uses_booktabs_bold_and_escapes(results):
    results = results.assign(dataset=results.dataset.replace({"digits": "my_data&more"}))
    tex = to_latex(summarise(results), caption="Accuracy & more", label="tab:acc")
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(rule) == 1
    assert r"\begin{tabular}{lrr}" in tex and r"\begin{table}" in tex
    assert r"my\_data\&more" in tex and r"Accuracy \& more" in tex
    assert r"\textbf{90.99 $\pm$ 0.22}" in tex
    assert r"\label{tab:acc}" in tex
    body = to_latex(summarise(results))
    assert not body.startswith(r"\begin{table}") and body.count(r"\\") == 4
    assert latex_escape("a_b%c$d#e{f}~^\\") == (
        r"a\_b\%c\$d\#e\{f\}\textasciitilde{}\textasciicircum{}\textbackslash{}")
    # text-mode "<" would print as an inverted exclamation mark in the default font encoding
    assert latex_escape("p < 0.05 > q | r") == r"p \textless{} 0.05 \textgreater{} q \textbar{} r"
    tex = to_latex(summarise(results, baseline="ce"), caption=None, label="tab:x")
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption"))
    assert "<" not in caption and r"p \textless{} 0.05" in caption


def test_paper_numbers_are_loaded_with_their_caveat():
    p = paper_table()
    assert len(p) == 9 * 8
    ce = p[(p.loss_id == "ce") & (p.kind == "accuracy_percent")].set_index("dataset_id")["value"]
    assert ce["fashion_mnist"] == 94.0 and ce["cifar100"] == 68.2 and len(ce) == 7
    ngl = p[p.loss_id == "ngl"].set_index("dataset_id")["value"]
    assert ngl["pcam"] == 7.07 and ngl["mean"] == 2.11 and ngl["fashion_mnist"] == 0.07
    assert "percentage points" in p.attrs["caveat"] and "2404.12948" in p.attrs["citation"]
    wide = paper_wide()
    assert wide.loc["f3", "Colorectal Histology"] == -62.45
    # the printed 'mean' column is the mean of the seven changes (to rounding)
    deltas = p[(p.kind == "change_vs_ce") & (p.dataset_id != "mean")]
    means = deltas.groupby("loss_id")["value"].mean()
    printed = p[p.dataset_id == "mean"].set_index("loss_id")["value"]
    assert (means - printed.loc[means.index]).abs().max() < 0.02
    # CE's row is absolute accuracy: its mean is the mean accuracy, not a change of 0.00
    assert wide.loc["CE", "mean"] == pytest.approx((94.0 + 69.4 + 88.9 + 92.8 + 94.0 + 68.2
                                                    + 72.5) / 7)


def test_compare_with_paper_side_by_side(results):
    cmp = compare_with_paper(summarise(results))
    assert list(cmp.index) == [("fashion_mnist", "ce"), ("fashion_mnist", "ngl"),
                               ("fashion_mnist", "focal")]  # digits is not in the paper
    row = cmp.loc[("fashion_mnist", "ngl")]
    assert row["paper_ce"] == 94.0 and row["paper_delta"] == 0.07
    assert row["paper_verdict"] == "same" and row["ours_verdict"] == "better"  # +0.79 > 0.5
    assert row["ours_delta"] == pytest.approx((np.mean(ACC["fashion_mnist"]["ngl"])
                                               - np.mean(ACC["fashion_mnist"]["ce"])) * 100)
    assert cmp.attrs["caveat"] == PAPER_CAVEAT
    with pytest.raises(ValueError):
        compare_with_paper(summarise(results, by=("dataset", "model", "loss")))


def test_save_table_writes_next_to_the_figures(results, tmp_path, monkeypatch):
    from ngl.ui import save_table

    monkeypatch.setenv("NGL_FIGURES_DIR", str(tmp_path))
    path = save_table(to_latex(summarise(results)), "downstream", notebook="04_x")
    assert path == tmp_path / "04_x" / "downstream.tex"
    assert r"\toprule" in path.read_text()
    with pytest.raises(ValueError):
        save_table("x", "../evil")


# -- paired change vs the baseline ---------------------------------------------------------------
# Fashion-MNIST, seeds 0-4. CE's seed 3 is non-finite and NGL's seed 4 errored, so the pairs are
# seeds 0, 1, 2. In percent: NGL - CE = 92-90, 92-91, 91-88 = 2, 1, 3 -> mean 2, sd 1, n 3.
# Unpaired: NGL (92+92+91+94)/4 = 92.25, CE (90+91+88+99)/4 = 92.0 -> +0.25, which a reader of
# "(+0.25)" next to a paired p-value would take for the tested change.
PAIRED_CE = {0: 0.90, 1: 0.91, 2: 0.88, 3: None, 4: 0.99}
PAIRED_NGL = {0: 0.92, 1: 0.92, 2: 0.91, 3: 0.94, 4: None}


@pytest.fixture
def gappy() -> pd.DataFrame:
    rows = [{"dataset": "fashion_mnist", "model": "small_cnn", "loss": loss, "seed": seed,
             "status": "ok" if acc is not None else ("nonfinite" if loss == "ce" else "error"),
             "test_accuracy": acc}
            for loss, per in (("ce", PAIRED_CE), ("ngl", PAIRED_NGL)) for seed, acc in per.items()]
    return pd.DataFrame(rows)


def _hand_interval() -> tuple[float, float, float]:
    mean, sd, n = 2.0, 1.0, 3
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)  # t_{0.975, 2} = 4.3027
    return mean, mean - half, mean + half


def test_paired_test_confidence_interval_by_hand():
    mean, lo, hi = _hand_interval()
    res = paired_test([92.0, 92.0, 91.0], [90.0, 91.0, 88.0])
    assert res["mean_diff"] == pytest.approx(mean)
    assert (res["ci_low"], res["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert lo == pytest.approx(2 - 2.4841, abs=1e-4)  # 4.3027 / sqrt(3)
    one = paired_test([1.0], [0.5])
    assert math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])


def test_summary_delta_is_paired_over_seeds_both_finished(gappy):
    s = summarise(gappy).set_index(["dataset", "loss"])
    row = s.loc[("fashion_mnist", "ngl")]
    mean, lo, hi = _hand_interval()
    assert row["n"] == 4 and row["n_failed"] == 1 and row["n_pairs"] == 3
    assert row["delta"] == pytest.approx(mean)
    assert row["delta_ci_low"] == pytest.approx(lo) and row["delta_ci_high"] == pytest.approx(hi)
    # t = mean / (sd / sqrt(n)) = 2 sqrt(3), two-sided with 2 degrees of freedom
    assert row["p_ttest"] == pytest.approx(2 * stats.t.sf(2 * math.sqrt(3), 2))
    assert row["delta_unpaired"] == pytest.approx(92.25 - 92.0)
    base = s.loc[("fashion_mnist", "ce")]
    assert base["delta"] == 0.0 and math.isnan(base["p_ttest"])


def test_exports_show_the_paired_change(gappy):
    summary = summarise(gappy)
    mean, lo, hi = _hand_interval()
    tab = format_table(summary, alpha=None)
    assert tab.loc["ngl", "fashion_mnist"].endswith(f"(+{mean:.2f})")  # not (+0.25)
    with_ci = format_table(summary, alpha=None, show_ci=True).loc["ngl", "fashion_mnist"]
    assert with_ci.endswith(f"(+2.00 [\u2212{abs(lo):.2f}, +{hi:.2f}])")
    assert with_ci.endswith("(+2.00 [\u22120.48, +4.48])")
    md = to_markdown(summary)
    assert "(+2.00)" in md and "(+0.25)" not in md and "paired mean change" in md
    tex = to_latex(summary, caption=None, show_ci=True)
    assert "(+2.00 [$-$0.48, +4.48])" in tex


def test_compare_with_paper_uses_the_paired_change(gappy):
    cmp = compare_with_paper(summarise(gappy))
    row = cmp.loc[("fashion_mnist", "ngl")]
    mean, lo, hi = _hand_interval()
    assert row["ours_delta"] == pytest.approx(mean) and row["n_pairs"] == 3
    assert row["ours_ci_low"] == pytest.approx(lo) and row["ours_ci_high"] == pytest.approx(hi)
    assert row["ours_verdict"] == "better"  # +2.00 > 0.5; the unpaired +0.25 would say "same"


def test_duplicate_pairing_keys_are_a_clear_error(results):
    twice = pd.concat([results, results[results.loss == "ngl"]])
    with pytest.raises(ValueError, match=r"several finished runs with \{'model': 'small_cnn', "
                                         r"'seed': 0\}.*'by' or 'pair_on'"):
        summarise(twice)
