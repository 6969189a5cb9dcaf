"""The loss library: values against hand computations, gradients, nn.CrossEntropyLoss semantics."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ngl
from ngl.losses.registry import available_losses, get_loss
from ngl.losses.zoo import (
    NGL,
    BaikalLoss,
    CrossEntropy,
    FocalLoss,
    LabelSmoothingCE,
    PolyLoss,
    SymmetricCE,
)

ALL = available_losses()


def _np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _hand(name: str, z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Independent per-sample numpy computations of each loss (float64)."""
    p = _np_softmax(z)
    y = np.eye(z.shape[1])[t]
    logp = np.log(p)
    C = z.shape[1]
    if name == "ce":
        return -(y * logp).sum(1)
    if name == "ngl":
        return (np.exp(2.4092 - p * (1 + y)) - np.cos(np.cos(np.sin(p)))).mean(1)
    if name == "focal":
        return -(y * (1 - p) ** 2 * logp).sum(1)
    if name == "label_smoothing":
        q = 0.9 * y + 0.1 / C
        return -(q * logp).sum(1)
    if name == "poly":
        return -(y * logp).sum(1) + 1.0 * (1 - (y * p).sum(1))
    if name == "baikal":
        return -(np.log(p) - y / p).mean(1)
    if name == "sce":
        return 0.1 * -(y * logp).sum(1) - (p * np.log(np.clip(y, 1e-4, 1))).sum(1)
    raise KeyError(name)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64) * 2
    t = torch.randint(0, 5, (6,), generator=g)
    return z, t


def test_registry_lists_the_paper_losses():
    assert {"ce", "ngl", "focal", "label_smoothing", "poly", "baikal", "sce"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_value_matches_hand_computation(name, batch):
    z, t = batch
    loss = get_loss(name, reduction="none")
    got = loss(z, t).numpy()
    want = _hand(name, z.numpy(), t.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_ngl_formula_by_hand_at_uniform_prediction():
    # Uniform logits over C=10: p = 0.1 everywhere; true class term exp(2.4092 - 0.2).
    z = torch.zeros(1, 10, dtype=torch.float64)
    t = torch.tensor([3])
    c = math.cos(math.cos(math.sin(0.1)))
    want = (math.exp(2.4092 - 0.2) + 9 * math.exp(2.4092 - 0.1)) / 10 - c
    assert NGL()(z, t).item() == pytest.approx(want, rel=1e-12)


def test_ngl_alpha_is_a_constructor_argument(batch):
    z, t = batch
    a = NGL(alpha=1.0)(z, t)
    b = NGL()(z, t)
    # exp(alpha - ...) scales by e^(alpha difference); the cos term is alpha-free.
    p = torch.softmax(z, -1)
    cos_term = torch.cos(torch.cos(torch.sin(p))).mean()
    assert ((a + cos_term) * math.exp(2.4092 - 1.0)).item() == pytest.approx((b + cos_term).item())


def test_ngl_scaling_variant_applies_sigmoid(batch):
    z, t = batch
    p = torch.sigmoid(torch.softmax(z, -1))
    y = F.one_hot(t, 5).double()
    want = (torch.exp(2.4092 - p * (1 + y)) - torch.cos(torch.cos(torch.sin(p)))).mean()
    assert NGL(scaling=True)(z, t).item() == pytest.approx(want.item())


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_float64(name, batch):
    z, t = batch
    z = z.clone().requires_grad_(True)
    loss = get_loss(name)
    assert torch.autograd.gradcheck(lambda x: loss(x, t), (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_soft_targets(name, batch):
    z, _ = batch
    g = torch.Generator().manual_seed(1)
    y = torch.softmax(torch.randn(6, 5, generator=g, dtype=torch.float64), -1)
    z = z.clone().requires_grad_(True)
    loss = get_loss(name)
    assert torch.autograd.gradcheck(lambda x: loss(x, y), (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_soft_one_hot_targets_equal_index_targets(name, batch):
    z, t = batch
    loss = get_loss(name, reduction="none")
    torch.testing.assert_close(loss(z, t), loss(z, F.one_hot(t, 5).double()))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_ce_matches_torch_including_ignore_index_and_segmentation(reduction):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 4, 3, 5, generator=g)
    t = torch.randint(0, 4, (2, 3, 5), generator=g)
    t[0, 1, :] = 255
    ours = CrossEntropy(reduction=reduction, ignore_index=255)(z, t)
    ref = torch.nn.CrossEntropyLoss(reduction=reduction, ignore_index=255)(z, t)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)


def test_ce_matches_torch_on_soft_targets():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(7, 6, generator=g)
    y = torch.softmax(torch.randn(7, 6, generator=g), -1)
    torch.testing.assert_close(CrossEntropy()(z, y), F.cross_entropy(z, y))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_torch(eps):
    g = torch.Generator().manual_seed(4)
    z = torch.randn(9, 7, generator=g)
    t = torch.randint(0, 7, (9,), generator=g)
    t[2] = -100
    ref = F.cross_entropy(z, t, label_smoothing=eps)
    torch.testing.assert_close(LabelSmoothingCE(epsilon=eps)(z, t), ref)


def test_focal_gamma_zero_is_ce(batch):
    z, t = batch
    torch.testing.assert_close(FocalLoss(gamma=0)(z, t), F.cross_entropy(z, t))


def test_poly_epsilon_zero_is_ce(batch):
    z, t = batch
    torch.testing.assert_close(PolyLoss(epsilon=0)(z, t), F.cross_entropy(z, t))


@pytest.mark.parametrize("name", ALL)
def test_segmentation_shape_equals_flattened_classification(name):
    g = torch.Generator().manual_seed(5)
    z = torch.randn(2, 3, 4, 4, generator=g)
    t = torch.randint(0, 3, (2, 4, 4), generator=g)
    t[1, 0, 0] = -100
    loss = get_loss(name, reduction="none")
    per_pixel = loss(z, t)
    assert per_pixel.shape == (2, 4, 4)
    assert per_pixel[1, 0, 0] == 0
    flat = loss(z.permute(0, 2, 3, 1).reshape(-1, 3), t.reshape(-1))
    torch.testing.assert_close(per_pixel.reshape(-1), flat)
    mean = get_loss(name)(z, t)
    torch.testing.assert_close(mean, flat.sum() / 31)


@pytest.mark.parametrize("name", ALL)
def test_ignored_entries_get_no_gradient(name):
    z = torch.randn(4, 3, requires_grad=True)
    t = torch.tensor([0, -100, 2, -100])
    get_loss(name)(z, t).backward()
    assert torch.all(z.grad[[1, 3]] == 0)
    assert torch.any(z.grad[[0, 2]] != 0)


@pytest.mark.parametrize("name", ALL)
def test_all_ignored_is_zero_not_nan(name):
    z = torch.randn(3, 4, requires_grad=True)
    t = torch.full((3,), -100)
    out = get_loss(name)(z, t)
    out.backward()
    assert out.item() == 0.0 and torch.all(z.grad == 0)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_logits_stay_finite(name, scale):
    z = torch.zeros(4, 10)
    z[:, 0] = scale
    z[1, 3] = -scale
    z.requires_grad_(True)
    t = torch.tensor([0, 3, 5, 9])
    out = get_loss(name)(z, t)
    out.backward()
    assert torch.isfinite(out) and torch.all(torch.isfinite(z.grad))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(name, dtype):
    z = torch.randn(5, 4).to(dtype)
    t = torch.randint(0, 4, (5,))
    out = get_loss(name)(z, t)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, get_loss(name)(z.float(), t))


def test_autocast_cpu_keeps_float32():
    lin = torch.nn.Linear(8, 5)
    x = torch.randn(4, 8)
    t = torch.randint(0, 5, (4,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = lin(x)
        out = NGL()(logits, t)
    assert logits.dtype == torch.bfloat16 and out.dtype == torch.float32 and torch.isfinite(out)


@pytest.mark.parametrize("bad", [10, -1, 17])
def test_out_of_range_target_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=rf"target value {bad} is out of range.*\[0, 9\]"):
        NGL()(torch.randn(3, 10), torch.tensor([0, bad, 1]))


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(4,\)"):
        CrossEntropy()(torch.randn(3, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        CrossEntropy()(torch.randn(5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="probability targets"):
        CrossEntropy()(torch.randn(3, 5), torch.rand(3, 4))
    with pytest.raises(ValueError, match="non-negative"):
        CrossEntropy()(torch.randn(3, 5), -torch.rand(3, 5))


def test_bad_constructor_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="reduction='avg'"):
        NGL(reduction="avg")
    with pytest.raises(ValueError, match="gamma=-1"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="epsilon=1.5"):
        LabelSmoothingCE(epsilon=1.5)
    with pytest.raises(ValueError, match="alpha=nan"):
        NGL(alpha=float("nan"))
    with pytest.raises(ValueError, match="eps=0"):
        BaikalLoss(eps=0)
    with pytest.raises(ValueError, match="clamp=2"):
        SymmetricCE(clamp=2)


def test_get_loss_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"unknown loss 'nope'.*'ce'.*'ngl'"):
        get_loss("nope")


def test_get_loss_aliases_kwargs_and_expressions():
    assert isinstance(get_loss("cross_entropy"), CrossEntropy)
    assert get_loss("focal", gamma=3.0).gamma == 3.0
    assert get_loss("NGL", alpha=2.0).alpha == 2.0
    expr_loss = get_loss("1 - y_pred*y_real")
    z, t = torch.randn(3, 4), torch.tensor([0, 1, 2])
    p = torch.softmax(z, -1)
    want = (1 - p * F.one_hot(t, 4)).mean()
    torch.testing.assert_close(expr_loss(z, t), want)


def test_register_loss_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        ngl.register_loss("ngl", NGL)


def test_ngl_interior_optimum_for_ten_classes():
    """paper.md: NGL's optimum true-class probability is about 0.39 for C = 10."""
    ps = torch.linspace(0.11, 0.99, 881, dtype=torch.float64)
    z = torch.stack([torch.log(ps), *[torch.log((1 - ps) / 9)] * 9], dim=1)
    vals = NGL(reduction="none")(z, torch.zeros(len(ps), dtype=torch.long))
    assert ps[vals.argmin()].item() == pytest.approx(0.39, abs=0.015)


# -- -inf logits (p = 0 for a class): torch's nn.CrossEntropyLoss is finite there ---------------
def _neg_inf_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three samples, C = 4, with -inf logits on non-target classes (one row has two)."""
    inf = float("inf")
    z = torch.tensor([[1.0, -inf, 0.5, -0.3],
                      [-inf, 2.0, -inf, 0.1],
                      [0.2, -0.7, 1.3, -inf]], dtype=torch.float64)
    return z, torch.tensor([0, 3, 2])


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("eps", [None, 0.0, 0.1, 0.3])
def test_neg_inf_logit_matches_torch_cross_entropy_values_and_gradients(eps, reduction):
    """CE (eps None) and label smoothing against nn.CrossEntropyLoss(label_smoothing=eps).

    torch gives a finite CE; with eps > 0 every class has target weight eps/C, so the value is
    +inf in torch as well, with a finite gradient: ours must equal both.
    """
    z, t = _neg_inf_batch()
    ours_fn = CrossEntropy(reduction=reduction) if eps is None else LabelSmoothingCE(eps, reduction)
    ref_fn = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=eps or 0.0)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    ours, ref = ours_fn(z1, t), ref_fn(z2, t)
    torch.testing.assert_close(ours, ref)  # inf only matches inf
    if not eps:
        assert torch.all(torch.isfinite(ours))
    ours.sum().backward()
    ref.sum().backward()
    assert torch.all(torch.isfinite(z1.grad))
    torch.testing.assert_close(z1.grad, z2.grad)


def test_neg_inf_logit_with_probability_targets_equals_index_targets():
    """torch's probability-target CE is NaN here (0 * log 0); ours follows its index-target form."""
    z, t = _neg_inf_batch()
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    ours = CrossEntropy()(z1, F.one_hot(t, 4).double())
    ref = F.cross_entropy(z2, t)
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(z1.grad, z2.grad)


def _closed_form(name: str, z: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample value and d value / d logits, written out by hand for losses of p_t only.

    With p = softmax(z) and s_j = p_t (delta_tj - p_j) = d p_t / d z_j:
    focal (gamma 2): L = -(1-p_t)^2 log p_t,  dL/dp_t = 2 (1-p_t) log p_t - (1-p_t)^2 / p_t;
    poly (eps 1):    L = -log p_t + (1 - p_t),  dL/dp_t = -1/p_t - 1;
    sce (a .1, b 1, A 1e-4): RCE = -sum_c p_c log clamp(y_c, A) = -(1 - p_t) log A, so
                     L = -0.1 log p_t - (1 - p_t) log A,  dL/dp_t = -0.1/p_t + log A.
    """
    p = _np_softmax(z)  # exp(-inf) = 0: the -inf class gets p = 0 exactly
    pt = p[np.arange(len(t)), t]
    onehot = np.eye(z.shape[1])[t]
    s = pt[:, None] * (onehot - p)
    if name == "focal":
        value = -((1 - pt) ** 2) * np.log(pt)
        dpt = 2 * (1 - pt) * np.log(pt) - (1 - pt) ** 2 / pt
    elif name == "poly":
        value = -np.log(pt) + (1 - pt)
        dpt = -1 / pt - 1
    elif name == "sce":
        log_a = math.log(1e-4)
        value = -0.1 * np.log(pt) - (1 - pt) * log_a
        dpt = -0.1 / pt + log_a
    else:
        raise KeyError(name)
    return value, dpt[:, None] * s


@pytest.mark.parametrize("name", ["focal", "poly", "sce"])
def test_neg_inf_logit_focal_poly_sce_match_closed_forms(name):
    z, t = _neg_inf_batch()
    z = z.clone().requires_grad_(True)
    per = get_loss(name, reduction="none")(z, t)
    per.sum().backward()
    value, grad = _closed_form(name, z.detach().numpy(), t.numpy())
    np.testing.assert_allclose(per.detach().numpy(), value, rtol=1e-10)
    np.testing.assert_allclose(z.grad.numpy(), grad, rtol=1e-9, atol=1e-12)
    assert torch.all(z.grad[torch.isinf(z)] == 0)  # p = 0 there: no pull on that logit


def _np_ngl(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    p, y = _np_softmax(z), np.eye(z.shape[1])[t]
    return (np.exp(2.4092 - p * (1 + y)) - np.cos(np.cos(np.sin(p)))).mean(1)


def _np_baikal(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    p, y = np.maximum(_np_softmax(z), 1e-7), np.eye(z.shape[1])[t]
    return -(np.log(p) - y / p).mean(1)


@pytest.mark.parametrize("name,hand", [("ngl", _np_ngl), ("baikal", _np_baikal)])
def test_neg_inf_logit_ngl_and_baikal_against_hand_values_and_finite_differences(name, hand):
    z, t = _neg_inf_batch()
    zr = z.clone().requires_grad_(True)
    per = get_loss(name, reduction="none")(zr, t)
    per.sum().backward()
    zn, tn = z.numpy(), t.numpy()
    np.testing.assert_allclose(per.detach().numpy(), hand(zn, tn), rtol=1e-12)
    # central differences of the numpy formula on every finite logit; the -inf ones get 0
    fd = np.zeros_like(zn)
    h = 1e-6
    for i, j in zip(*np.nonzero(np.isfinite(zn)), strict=True):
        up, dn = zn.copy(), zn.copy()
        up[i, j] += h
        dn[i, j] -= h
        fd[i, j] = (hand(up, tn)[i] - hand(dn, tn)[i]) / (2 * h)
    np.testing.assert_allclose(zr.grad.numpy(), fd, atol=1e-7)


# -- degenerate shapes and arguments --------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_zero_classes_is_a_clear_error(name):
    with pytest.raises(ValueError, match=r"shape \(3, 0\) have C=0 classes.*at least one class"):
        get_loss(name)(torch.zeros(3, 0), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="C=0"):
        get_loss(name)(torch.zeros(2, 0, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))


@pytest.mark.parametrize("name", ALL)
def test_bool_ignore_index_is_a_clear_error(name):
    # True == 1 for Python: it would silently drop every target of class 1.
    with pytest.raises(ValueError, match=r"ignore_index=True \(bool\).*expected an int"):
        get_loss(name, ignore_index=True)
    with pytest.raises(ValueError, match=r"ignore_index=255.0 \(float\)"):
        get_loss(name, ignore_index=255.0)
    assert get_loss(name, ignore_index=np.int64(255)).ignore_index == 255


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(0, 4), (0, 4, 3, 3), (2, 4, 0, 3)])
def test_empty_batch_mean_is_zero_like_an_all_ignored_batch(name, shape):
    """README/base class: a mean over no samples is 0, not NaN, with a gradient of the input's
    (empty) shape -- the same answer as a batch whose entries are all ignored."""
    z = torch.zeros(shape, requires_grad=True)
    t = torch.zeros((shape[0], *shape[2:]), dtype=torch.long)
    out = get_loss(name)(z, t)
    out.backward()
    assert out.shape == () and out.item() == 0.0
    assert z.grad is not None and z.grad.shape == z.shape
    ignored = get_loss(name)(torch.zeros(3, 4), torch.full((3,), -100))
    assert out.item() == ignored.item() == 0.0
    assert get_loss(name, reduction="sum")(z, t).item() == 0.0
    assert get_loss(name, reduction="none")(z, t).shape == t.shape
    soft = get_loss(name)(z.detach(), torch.zeros(shape))  # probability targets: same rule
    assert soft.item() == 0.0


@pytest.mark.parametrize("text,message", [
    ("exp(1 -)", "missing operand before ')' at position 7"),
    ("exp(y_pred))", "unexpected ')' at position 11"),
    ("1 - y_pred)", "unexpected ')' at position 10"),
    ("y_pred y_real", "unexpected token 'y_real' at position 7"),
    ("log(y_pred", "'(' at position 3 is never closed"),
    ("exp", "operator 'exp' needs its arguments in parentheses at position 0"),
])
def test_get_loss_keeps_the_parsers_positioned_message(text, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        get_loss(text)
    assert "unknown loss" not in str(info.value)


def test_get_loss_plain_unknown_name_is_neither_a_loss_nor_an_expression():
    with pytest.raises(ValueError, match=r"unknown loss 'nope': neither a registered loss name "
                                         r".*'ce'.*'ngl'.*nor a loss expression"):
        get_loss("nope")
    with pytest.raises(ValueError, match=r"unknown loss '2.5': neither"):  # a bare constant
        get_loss("2.5")
    # a bare leaf name reads as an expression: mean over all B*C entries of p is exactly 1/C
    assert get_loss("y_pred")(torch.randn(3, 4), torch.tensor([0, 1, 2])).item() == pytest.approx(0.25)
