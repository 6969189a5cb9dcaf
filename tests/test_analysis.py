"""Known answers for ngl.analysis: optimum confidence, gradient scale, calibration, sweeps."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from ngl import NGL, CrossEntropy, FocalLoss, LabelSmoothingCE, LossExpression, viz
from ngl import analysis as A

NGL_TEXT = "exp(2.4092 - y_pred*(1 + y_real)) - cos(cos(sin(y_pred)))"


# -- optimum confidence ------------------------------------------------------------------------
@pytest.mark.parametrize("c", [2, 10, 100])
def test_ce_drives_true_class_to_one(c):
    assert A.optimum_confidence(CrossEntropy(), c) > 0.999


@pytest.mark.parametrize("eps,c", [(0.1, 10), (0.2, 2), (0.3, 100)])
def test_label_smoothing_optimum_is_one_minus_eps_plus_eps_over_c(eps, c):
    p = A.optimum_confidence(LabelSmoothingCE(epsilon=eps), c)
    assert p == pytest.approx(1 - eps + eps / c, abs=1e-5)


@pytest.mark.parametrize("c,expected", [(2, 0.57), (10, 0.39), (100, 0.36)])
def test_ngl_has_interior_optimum(c, expected):
    d = A.optimum_confidence(NGL(), c, return_details=True)
    assert d["p_true"] == pytest.approx(expected, abs=0.01)
    # the free optimisation over all logits agrees with the symmetric family
    assert d["p_free"] == pytest.approx(d["p_symmetric"], abs=1e-3)
    assert d["loss_free"] >= d["loss_symmetric"] - 1e-9


def test_found_expression_loss_gives_the_same_optimum_as_ngl():
    expr = LossExpression.parse(NGL_TEXT).to_module()
    assert A.optimum_confidence(expr, 10) == pytest.approx(A.optimum_confidence(NGL(), 10), abs=1e-4)


def test_optimum_table_is_tidy_and_restores_reduction():
    loss = NGL()
    table = A.optimum_table({"ce": CrossEntropy(), "ngl": loss}, classes=[2, 10], free_check=False)
    assert list(table.columns[:3]) == ["loss", "num_classes", "p_true"]
    assert len(table) == 4
    assert table.set_index(["loss", "num_classes"]).loc[("ngl", 10), "uniform"] == pytest.approx(0.1)
    assert loss.reduction == "mean"


def test_optimum_rejects_bad_class_count():
    with pytest.raises(ValueError, match="num_classes"):
        A.optimum_confidence(NGL(), 1)


# -- gradient scale -------------------------------------------------------------------------
@pytest.mark.parametrize("c,expected,tol", [(2, 0.36, 0.01), (10, 0.08, 0.005), (100, 0.001, 0.0005)])
def test_ngl_gradient_is_about_one_over_c_squared_of_ce(c, expected, tol):
    assert A.gradient_scale(NGL(), c, "uniform") == pytest.approx(expected, abs=tol)


def test_gradient_scale_of_ce_is_one_and_label_smoothing_known():
    assert A.gradient_scale(CrossEntropy(), 10, "trained") == pytest.approx(1.0)
    # label smoothing at uniform: gradient (1-eps)(p - onehot) -> ratio 1 - eps
    assert A.gradient_scale(LabelSmoothingCE(epsilon=0.1), 10, "uniform") == pytest.approx(0.9)
    with pytest.raises(ValueError, match="at="):
        A.gradient_scale(NGL(), 10, at="nowhere")


def test_gradient_scale_table_and_sgd_lr():
    t = A.gradient_scale_table({"ngl": NGL(), "focal": FocalLoss()}, classes=[2, 10])
    assert set(t["at"]) == {"uniform", "trained"} and len(t) == 8
    lr = A.sgd_lr_for(NGL(), 10, 0.05)
    assert lr == pytest.approx(0.05 / 0.0815, rel=0.02)


# -- calibration ----------------------------------------------------------------------------------
def _synthetic(n=40000, c=5, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    probs = torch.softmax(logits, -1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)  # labels drawn from the prediction
    return logits, probs, labels


def test_ece_of_a_calibrated_predictor_is_near_zero_and_of_an_overconfident_one_is_not():
    logits, probs, labels = _synthetic()
    assert A.expected_calibration_error(probs, labels) < 0.01
    over = torch.softmax(3 * logits, -1)
    ece_over = A.expected_calibration_error(over, labels)
    assert ece_over > 0.1
    assert A.mean_confidence(over) > A.mean_confidence(probs)


def test_reliability_diagram_data_bins_add_up():
    _, probs, labels = _synthetic(n=2000)
    d = A.reliability_diagram_data(probs, labels, n_bins=10)
    assert len(d) == 10 and d["count"].sum() == 2000
    assert d["fraction"].sum() == pytest.approx(1.0)
    ece = float((d["fraction"] * d["gap"].abs()).fillna(0).sum())
    assert ece == pytest.approx(A.expected_calibration_error(probs, labels, n_bins=10))
    with pytest.raises(ValueError):
        A.reliability_diagram_data(probs, labels[:10])


@pytest.mark.parametrize("t_true", [0.25, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(t_true):
    logits, _, labels = _synthetic(n=10000)
    scaled = t_true * logits  # an over- (T>1) or under-confident (T<1) network
    t = A.fit_temperature(scaled, labels)
    assert t == pytest.approx(t_true, rel=0.05)
    rep = A.calibration_report(scaled, labels, scaled, labels)
    assert rep["ece_ts"] < 0.02 < rep["ece"]
    assert rep["nll_ts"] < rep["nll"]
    assert set(rep) >= {"accuracy", "ece", "confidence", "nll", "temperature", "ece_ts",
                        "confidence_ts", "nll_ts"}


# -- sweeps ---------------------------------------------------------------------------------------
def test_sweep_collects_one_row_per_value_and_seed():
    calls = []

    def fn(v, s):
        calls.append((v, s))
        return {"test_accuracy": v / 10 + s, "history": [1, 2]}

    df = A.sweep(fn, [1, 2, 3], seeds=(0, 1), name="alpha")
    assert len(df) == 6 and list(df.columns) == ["alpha", "seed", "test_accuracy"]
    assert calls[0] == (1, 0)


@pytest.fixture(scope="module")
def tiny_digits():
    from ngl.data import load_dataset

    return load_dataset("digits", seed=0).subset(200, 100, 100, seed=0)


def test_training_sweeps_run_end_to_end(tiny_digits):
    from ngl.train import TrainConfig

    cfg = TrainConfig(epochs=2, batch_size=64, max_steps_per_epoch=2, lr=3e-3)
    res = A.train_and_evaluate("ngl", tiny_digits, cfg, seed=0, width=8)
    assert res["status"] == "ok" and 0 <= res["test_accuracy"] <= 1
    assert {"ece", "ece_ts", "temperature"} <= set(res)
    assert isinstance(res["reliability"], pd.DataFrame)

    opt = A.optimizer_sweep(tiny_digits, ["ce", "ngl"], {"adam": ("adam", 1e-3, False),
                                                          "sgd_scaled": ("sgd", 0.05, True)},
                            cfg, seeds=(0,), width=8, calibration=False)
    assert len(opt) == 4
    lrs = opt.set_index(["loss", "optimizer"])["lr"]
    assert lrs[("ce", "sgd_scaled")] == pytest.approx(0.05)
    assert lrs[("ngl", "sgd_scaled")] == pytest.approx(A.sgd_lr_for(NGL(), 10, 0.05))

    length = A.length_sweep(tiny_digits, 2, ["ce", "ngl"], cfg, width=8)
    assert len(length) == 4
    assert (length[length["loss"] == "ce"]["gain"] == 0).all()

    alpha = A.alpha_sweep(tiny_digits, [2.0], cfg, width=8, calibration=False)
    assert list(alpha["alpha"]) == [2.0]


# -- figures ------------------------------------------------------------------------------------
def test_figures_plot_the_data():
    opt = A.optimum_table({"ce": CrossEntropy(), "ngl": NGL()}, classes=[2, 10], free_check=False)
    fig = viz.plot_optimum_confidence(opt)
    ngl_line = [ln for ln in fig.axes[0].lines if ln.get_label() == "ngl"][0]
    assert np.allclose(ngl_line.get_ydata(), opt[opt["loss"] == "ngl"]["p_true"])
    plt.close(fig)

    g = A.gradient_scale_table({"ngl": NGL()}, classes=[2, 10])
    fig = viz.plot_gradient_scale(g)
    assert len(fig.axes[0].lines) == 3
    plt.close(fig)

    _, probs, labels = _synthetic(n=1000)
    fig = viz.plot_reliability_diagram({"a": A.reliability_diagram_data(probs, labels)})
    assert "ECE" in fig.axes[0].get_title()
    plt.close(fig)

    df = pd.DataFrame({"alpha": [1.0, 2.0, 1.0, 2.0], "seed": [0, 0, 1, 1],
                       "test_accuracy": [0.5, 0.7, 0.6, 0.8]})
    fig = viz.plot_sensitivity(df, "alpha", reference=2.4092)
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), [0.55, 0.75])
    plt.close(fig)
    cat = pd.DataFrame({"optimizer": ["adam", "sgd"] * 2, "loss": ["ce", "ce", "ngl", "ngl"],
                        "test_accuracy": [0.9, 0.8, 0.9, 0.2]})
    fig = viz.plot_sensitivity(cat, "optimizer", hue="loss")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["adam", "sgd"]
    plt.close(fig)
    assert math.isfinite(0.0)
