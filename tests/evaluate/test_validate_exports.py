"""What a validation exports for a paper (issue 23): display names, never registry keys, in the
table (markdown, LaTeX) and the figure; a note when the paper's band is a handful of images."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from ngl.evaluate import ValidateConfig, validate
from ngl.fitness import TrainBudget
from ngl.gp import RunOptions, SearchSpec, run_search
from ngl.losses import NGL_EXPRESSION, display_name
from ngl.train.loop import TrainConfig
from ngl.ui.plots_validation import plot_validation

REFS = ("ce", {"name": "focal", "gamma": 2.0}, "label_smoothing")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    spec = SearchSpec(population_size=4, generations=1, n_train=120, n_val=60,
                      budget=TrainBudget(steps=3, batch_size=32),
                      seed_expressions=(NGL_EXPRESSION,), seed=3, rescore=0)
    run_search(spec, root / "s", RunOptions(chunk_size=4), progress=False)
    cfg = ValidateConfig(top_k=1, references=REFS, seeds=(0, 1), model="small_cnn",
                         train=TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=2),
                         transfer=(), fidelity_top=0, fidelity_sample=0, device="cpu",
                         bootstrap_resamples=200, n_train=120, n_val=60, n_test=60)
    return validate(root / "s", cfg, root / "v", progress=False)


def test_display_name_of_a_label_with_arguments():
    assert display_name("focal(gamma=2.0)") == "Focal (gamma=2.0)"
    assert display_name("label_smoothing") == "Label smoothing"
    assert display_name("exp(y_pred)") == "exp(y_pred)"  # a formula is left alone


def test_tables_use_display_names_not_registry_keys(report):
    tex, md = report.to_latex(), report.to_markdown()
    for shown in ("CE", "Focal (gamma=2.0)", "Label smoothing", "found \\#1"):
        assert shown in tex, tex
    for key in ("focal(gamma", "label\\_smoothing", "\nce &"):
        assert key not in tex
    assert "| Focal (gamma=2.0) |" in md and "| Label smoothing |" in md
    assert "| label_smoothing |" not in md


def test_the_figure_uses_display_names(report):
    fig = plot_validation(report)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert set(ticks) <= {"found #1", "CE", "Focal (gamma=2.0)", "Label smoothing"}, ticks
    assert "Label smoothing" in ticks


def test_a_band_of_few_test_images_is_said(report):
    """±0.5 pp of 60 test images is 0.3 images: the table and the figure say so."""
    assert report.test_images == 60
    assert report.band_images() == pytest.approx((0.3, 60))
    assert "0.3 test images (n_test = 60)" in report.to_markdown()
    assert r"band is 0.3 test images ($n_\mathrm{test}=60$), under 5." in report.to_latex()
    fig = plot_validation(report)
    assert any("0.3 test images" in t.get_text() for t in fig.texts)


def test_no_note_when_the_band_is_wide(report, monkeypatch):
    monkeypatch.setattr(type(report), "test_images", property(lambda self: 10_000))
    assert report.band_note() is None and "Note:" not in report.to_latex()


def test_a_downstream_figure_with_a_found_loss_keeps_its_axes():
    """A 100-character formula as a legend label squeezed the axes to nothing: it is "found
    #1" in the legend, its formula (4 significant digits) in a note."""
    import pandas as pd

    from ngl.ui.plots_downstream import plot_downstream_comparison

    long = ("sin(y_real - -0.85329173645817236)*exp(y_pred/y_pred + 0.12345678912345678*y_real)"
            " + log(1.9876543219876543 + y_pred*y_real)")
    rows = [{"dataset": d, "loss": lo, "seed": s, "test_accuracy": 0.9 + 0.01 * s}
            for d in ("digits", "fashion_mnist") for lo in ("ce", long, "ngl") for s in range(3)]
    fig = plot_downstream_comparison(pd.DataFrame(rows), reference="ce")
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else [
        t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "found #1" in labels and long not in labels and "NGL" in labels
    assert ax.get_ylabel() and ax.get_position().width > 0.3
    assert any("0.8533" in t.get_text() for t in fig.texts)
