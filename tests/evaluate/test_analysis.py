"""Known answers for ngl.evaluate: optimum confidence, gradient scale, calibration, sweeps."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

import ngl.evaluate as A
from ngl import NGL, CrossEntropy, FocalLoss, LabelSmoothingCE, LossExpression
from ngl import ui as viz  # the figures of ngl.ui

NGL_TEXT = "exp(2.4092 - y_pred*(1 + y_real)) - cos(cos(sin(y_pred)))"
ALPHA = 2.4092


# -- closed forms, derived by hand (independent of ngl's code) ------------------------------------
def _dccs(x: float) -> float:
    """d/dx cos(cos(sin x)) = sin(cos(sin x)) * sin(sin x) * cos x."""
    return math.sin(math.cos(math.sin(x))) * math.sin(math.sin(x)) * math.cos(x)


def _ngl_optimum_closed_form(c: int) -> float:
    """Root in p of d NGL / d p along ``p_true = p``, others ``q = (1 - p)/(C - 1)``.

    NGL(p) = (1/C) [e^(a-2p) - h(p) + (C-1)(e^(a-q) - h(q))] with h = cos cos sin and
    dq/dp = -1/(C-1), so C dNGL/dp = e^(a-q) + h'(q) - 2 e^(a-2p) - h'(p).
    """
    from scipy.optimize import brentq

    def g(p: float) -> float:
        q = (1 - p) / (c - 1)
        return math.exp(ALPHA - q) + _dccs(q) - 2 * math.exp(ALPHA - 2 * p) - _dccs(p)

    return brentq(g, 1.0 / c, 1.0 - 1e-12, xtol=1e-14)


def _ce_grad_norm_uniform(c: int) -> float:
    """CE's logit gradient is p - y; at p = 1/C its norm is sqrt((1 - 1/C)^2 + (C - 1)/C^2)."""
    return math.sqrt((1 - 1 / c) ** 2 + (c - 1) / c**2)


def _ngl_grad_ratio_uniform(c: int) -> float:
    """NGL's / CE's logit-gradient norm at uniform logits (one sample, target class 0).

    With g_k = dNGL/dp_k = (1/C)[-(1+y_k) e^(a - p_k(1+y_k)) + h'(p_k)] and softmax's Jacobian at
    p = 1/C, dNGL/dz_j = (1/C)(g_j - mean g); the h' terms cancel (all p equal), and
    g_t - g_o = (e^(a-1/C) - 2 e^(a-2/C))/C. The gradient is then (g_t - g_o)/C^2 times
    (C-1, -1, ..., -1), of norm |g_t - g_o| sqrt(C(C-1))/C^2, and dividing by CE's
    sqrt((C-1)/C) leaves |2 e^(a-2/C) - e^(a-1/C)| / C^2.
    """
    return abs(2 * math.exp(ALPHA - 2 / c) - math.exp(ALPHA - 1 / c)) / c**2


def _np_ngl(z: np.ndarray, t: int) -> float:
    e = np.exp(z - z.max())
    p = e / e.sum()
    y = np.eye(len(z))[t]
    return float((np.exp(ALPHA - p * (1 + y)) - np.cos(np.cos(np.sin(p)))).mean())


# -- optimum confidence ------------------------------------------------------------------------
@pytest.mark.parametrize("c", [2, 10, 100])
def test_ce_drives_true_class_to_one(c):
    assert A.optimum_confidence(CrossEntropy(), c) > 0.999


@pytest.mark.parametrize("eps,c", [(0.1, 10), (0.2, 2), (0.3, 100)])
def test_label_smoothing_optimum_is_one_minus_eps_plus_eps_over_c(eps, c):
    p = A.optimum_confidence(LabelSmoothingCE(epsilon=eps), c)
    assert p == pytest.approx(1 - eps + eps / c, abs=1e-5)


@pytest.mark.parametrize("c,paper", [(2, 0.57), (10, 0.39), (100, 0.36)])
def test_ngl_has_interior_optimum(c, paper):
    d = A.optimum_confidence(NGL(), c, return_details=True)
    exact = _ngl_optimum_closed_form(c)
    assert d["p_true"] == pytest.approx(exact, abs=1e-6)
    assert exact == pytest.approx(paper, abs=0.01)  # the numbers paper.md states
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
@pytest.mark.parametrize("c,paper,tol", [(2, 0.36, 0.01), (10, 0.08, 0.005), (100, 0.001, 0.0005)])
def test_ngl_gradient_is_about_one_over_c_squared_of_ce(c, paper, tol):
    exact = _ngl_grad_ratio_uniform(c)
    assert A.gradient_scale(NGL(), c, "uniform") == pytest.approx(exact, rel=1e-10)
    raw = A.gradient_scale(NGL(), c, "uniform", relative=False)
    assert raw == pytest.approx(exact * _ce_grad_norm_uniform(c), rel=1e-10)
    assert exact == pytest.approx(paper, abs=tol)  # the numbers paper.md states


@pytest.mark.parametrize("c,p_true", [(2, 0.7), (10, 0.25), (10, 0.9)])
def test_ngl_gradient_norm_matches_central_differences(c, p_true):
    """Away from uniform: the norm of a central-difference gradient of NGL written in numpy."""
    z = np.zeros(c)
    z[0] = math.log(p_true) - math.log((1 - p_true) / (c - 1))  # softmax(z)[0] = p_true
    h = 1e-6
    fd = np.array([(_np_ngl(z + h * e, 0) - _np_ngl(z - h * e, 0)) / (2 * h) for e in np.eye(c)])
    got = A.gradient_scale(NGL(), c, p_true, relative=False)
    assert got == pytest.approx(float(np.linalg.norm(fd)), rel=1e-6)


@pytest.mark.parametrize("c", [2, 10, 100])
def test_ce_gradient_norm_closed_forms(c):
    assert A.gradient_scale(CrossEntropy(), c, "uniform", relative=False) == pytest.approx(
        _ce_grad_norm_uniform(c), rel=1e-12)
    # p_true = 0.9, others 0.1/(C-1): p - y = (-0.1, 0.1/(C-1), ...), norm 0.1 sqrt(1 + 1/(C-1))
    assert A.gradient_scale(CrossEntropy(), c, "trained", relative=False) == pytest.approx(
        0.1 * math.sqrt(1 + 1 / (c - 1)), rel=1e-9)


def test_gradient_scale_of_label_smoothing_known():
    # label smoothing at uniform: gradient p - q = (1-eps)(p - onehot) -> ratio 1 - eps
    assert A.gradient_scale(LabelSmoothingCE(epsilon=0.1), 10, "uniform") == pytest.approx(0.9)
    with pytest.raises(ValueError, match="at="):
        A.gradient_scale(NGL(), 10, at="nowhere")


def test_gradient_scale_table_and_sgd_lr():
    t = A.gradient_scale_table({"ngl": NGL(), "focal": FocalLoss()}, classes=[2, 10])
    assert set(t["at"]) == {"uniform", "trained"} and len(t) == 8
    lr = A.sgd_lr_for(NGL(), 10, 0.05)
    assert lr == pytest.approx(0.05 / _ngl_grad_ratio_uniform(10), rel=1e-10)


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
    with pytest.raises(ValueError):
        A.reliability_diagram_data(probs, labels[:10])


def test_reliability_and_ece_by_hand():
    """Six predictions, two bins (0, 0.5] and (0.5, 1]; 0.5 itself belongs to the lower bin.

    Lower bin: confidences 0.4, 0.45, 0.5 (mean 0.45), correct 1, 0, 0 (accuracy 1/3).
    Upper bin: confidences 0.8, 0.7, 0.9 (mean 0.8), correct 1, 0, 1 (accuracy 2/3).
    ECE = 3/6 |1/3 - 0.45| + 3/6 |2/3 - 0.8| = 0.5 (0.11667 + 0.13333) = 0.125.
    """
    probs = np.array([[0.4, 0.35, 0.25], [0.45, 0.3, 0.25], [0.5, 0.25, 0.25],
                      [0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.05, 0.05, 0.9]])
    labels = np.array([0, 1, 1, 0, 2, 2])
    d = A.reliability_diagram_data(probs, labels, n_bins=2)
    np.testing.assert_allclose(d["count"], [3, 3])
    np.testing.assert_allclose(d["confidence"], [0.45, 0.8])
    np.testing.assert_allclose(d["accuracy"], [1 / 3, 2 / 3])
    np.testing.assert_allclose(d["gap"], [1 / 3 - 0.45, 2 / 3 - 0.8])
    assert A.expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.125)
    assert A.mean_confidence(probs) == pytest.approx((0.4 + 0.45 + 0.5 + 0.8 + 0.7 + 0.9) / 6)


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
    from ngl.train.loop import TrainConfig

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
    assert lrs[("ngl", "sgd_scaled")] == pytest.approx(0.05 / _ngl_grad_ratio_uniform(10), rel=1e-10)

    length = A.length_sweep(tiny_digits, 2, ["ce", "ngl"], cfg, width=8)
    assert len(length) == 4
    assert (length[length["loss"] == "ce"]["gain"] == 0).all()

    alpha = A.alpha_sweep(tiny_digits, [2.0], cfg, width=8, calibration=False)
    assert list(alpha["alpha"]) == [2.0]


# -- figures ------------------------------------------------------------------------------------
def test_figures_plot_the_data():
    opt = A.optimum_table({"ce": CrossEntropy(), "ngl": NGL()}, classes=[2, 10], free_check=False)
    fig = viz.plot_optimum_confidence(opt)
    ngl_line = [ln for ln in fig.axes[0].lines if ln.get_label() == "NGL"][0]  # display name
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
