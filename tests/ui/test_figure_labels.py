"""Figures that drop into a paper: display names, legends off the data, no colliding ticks,
no hidden lines, large inline display. Checked on the drawn figure with matplotlib's own geometry
(window extents, transforms), at the paper size the functions draw at."""

from __future__ import annotations

import io
import itertools
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

import ngl  # noqa: E402
from ngl import ui  # noqa: E402
from ngl.losses import display_name, loss_aliases  # noqa: E402

RAW_KEYS = {"ce", "ngl", "focal", "label_smoothing", "sce", "poly", "baikal"}


@pytest.fixture(autouse=True)
def paper_style():
    """Paper fonts and sizes, restored afterwards; every figure closed."""
    with matplotlib.rc_context():
        ui.set_style("paper")
        yield
    plt.close("all")


# -- geometry on the drawn figure ------------------------------------------------------------------
def drawn(fig: plt.Figure) -> plt.Figure:
    fig.canvas.draw()
    return fig


def data_points_px(ax: plt.Axes) -> np.ndarray:
    """Display coordinates of every data vertex the axes draws: lines (markers, errorbar points,
    reference lines), collections (bands, error bars, scatter points) and patches (bars, spans)."""
    pts = [line.get_transform().transform(line.get_xydata()) for line in ax.lines
           if len(line.get_xydata())]
    for coll in ax.collections:
        pts += [coll.get_transform().transform(p.vertices) for p in coll.get_paths() if len(p.vertices)]
        offsets = coll.get_offsets()
        if len(offsets) and not (len(offsets) == 1 and np.all(offsets == 0)):
            pts.append(coll.get_offset_transform().transform(offsets))
    pts += [p.get_transform().transform(p.get_path().vertices) for p in ax.patches]
    pts = [p[np.isfinite(p).all(axis=1)] for p in pts]
    inside = [p[_in_box(ax.bbox, p, tol=0.5)] for p in pts]  # what is shown (clipped to the axes)
    return np.concatenate(inside) if inside else np.empty((0, 2))


def _in_box(box: Bbox, p: np.ndarray, tol: float = 0.0) -> np.ndarray:
    return ((p[:, 0] >= box.x0 - tol) & (p[:, 0] <= box.x1 + tol)
            & (p[:, 1] >= box.y0 - tol) & (p[:, 1] <= box.y1 + tol))


def legends(fig: plt.Figure) -> list:
    return [leg for leg in [*(ax.get_legend() for ax in fig.axes), *fig.legends] if leg is not None]


def assert_legends_clear_of_data(fig: plt.Figure) -> None:
    """Every legend lies inside the figure and covers no data point of any axes."""
    drawn(fig)
    found = legends(fig)
    assert found, "the figure has no legend"
    fig_box = fig.bbox
    for leg in found:
        box = leg.get_window_extent()
        assert fig_box.x0 - 1 <= box.x0 and box.x1 <= fig_box.x1 + 1, "legend cut off left/right"
        assert fig_box.y0 - 1 <= box.y0 and box.y1 <= fig_box.y1 + 1, "legend cut off top/bottom"
        for ax in fig.axes:
            pts = data_points_px(ax)
            covered = _in_box(box, pts)
            assert not covered.any(), f"legend covers data at {pts[covered][:3]}"


def visible_ticklabels(axis) -> list:
    lo, hi = sorted(axis.get_view_interval())
    span = max(hi - lo, 1e-12)
    out = []
    for loc, label in zip(axis.get_majorticklocs(), axis.get_ticklabels(), strict=False):
        if label.get_visible() and label.get_text() and lo - 1e-9 * span <= loc <= hi + 1e-9 * span:
            out.append(label)
    return out


def assert_ticklabels_apart(fig: plt.Figure) -> None:
    """No two tick labels of one axis overlap (window extents, 0.5 px tolerance)."""
    drawn(fig)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            boxes = [(t.get_text(), t.get_window_extent()) for t in visible_ticklabels(axis)]
            for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
                w = min(a.x1, b.x1) - max(a.x0, b.x0)
                h = min(a.y1, b.y1) - max(a.y0, b.y0)
                assert not (w > 0.5 and h > 0.5), f"tick labels {ta!r} and {tb!r} overlap"


def drawn_texts(fig: plt.Figure) -> list[str]:
    """Every text a reader sees: titles, axis labels, tick labels, legend entries."""
    drawn(fig)
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title(loc) for loc in ("left", "center", "right")]
        out += [ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        out += [t.get_text() for t in ax.texts]
    for leg in legends(fig):
        out += [t.get_text() for t in leg.get_texts()]
    return [t for t in out if t]


def assert_no_raw_keys(fig: plt.Figure) -> None:
    words = {w.strip("()[]:,±−-") for t in drawn_texts(fig) for w in t.replace("\n", " ").split()}
    raw = (RAW_KEYS | set(loss_aliases())) & words
    assert not raw, f"raw registry keys drawn: {raw} in {drawn_texts(fig)}"


def legend_labels(fig: plt.Figure) -> list[str]:
    return [t.get_text() for leg in legends(fig) for t in leg.get_texts()]


# -- hand-made data (no training) ------------------------------------------------------------------
LOSSES = ("ce", "focal", "label_smoothing", "ngl")
CLASSES = (2, 3, 5, 10, 20, 50, 100, 200, 1000)


def _optimum() -> pd.DataFrame:
    """Optima as the paper's formulas give them: CE and focal 1 (one line on the other), label
    smoothing 1 - eps + eps/C, NGL a made-up curve below 0.6."""
    rows = []
    for c in CLASSES:
        for loss, p in (("ce", 1.0), ("focal", 1.0), ("label_smoothing", 1 - 0.1 + 0.1 / c),
                        ("ngl", 0.35 + 0.22 / np.log2(c + 1))):
            rows.append({"loss": loss, "num_classes": c, "p_true": p, "uniform": 1 / c})
    return pd.DataFrame(rows)


def _grad_scale() -> pd.DataFrame:
    return pd.DataFrame([{"loss": loss, "num_classes": c, "at": at, "ratio": k / c ** 2}
                         for loss, k in (("ngl", 1.4), ("focal", 0.9)) for at in ("uniform", "trained")
                         for c in CLASSES])


def _diagram(shift: float) -> pd.DataFrame:
    lower = np.linspace(0, 1, 16)[:-1]
    conf = lower + 1 / 30
    acc = np.clip(conf + shift, 0, 1)
    count = np.full(15, 40)
    return pd.DataFrame({"bin_lower": lower, "bin_upper": lower + 1 / 15, "confidence": conf,
                         "accuracy": acc, "count": count, "fraction": count / count.sum(),
                         "gap": acc - conf})


def _grid(metric_of) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": d, "model": "small_cnn", "loss": loss, "seed": s,
                          "test_accuracy": metric_of(d, loss, s)}
                         for d in ("digits", "fashion_mnist", "cifar10") for loss in LOSSES
                         for s in range(3)])


def _results() -> pd.DataFrame:
    """Accuracies near the top of the axis (0.95-0.99): where an inside legend would sit."""
    base = {"digits": 0.97, "fashion_mnist": 0.90, "cifar10": 0.80}
    off = {"ce": 0.0, "focal": -0.004, "label_smoothing": 0.003, "ngl": 0.006}
    return _grid(lambda d, loss, s: base[d] + off[loss] + 0.002 * s)


def _curves() -> pd.DataFrame:
    return pd.DataFrame([{"epoch": e, "loss": loss, "seed": s, "train_loss": (2 + k) / (e + 1),
                          "val_accuracy": 0.5 + 0.09 * e + 0.01 * k + 0.003 * s}
                         for k, loss in enumerate(LOSSES) for s in range(2) for e in range(6)])


def _sensitivity_opt() -> pd.DataFrame:
    return pd.DataFrame([{"optimizer": o, "loss": loss, "seed": s, "test_accuracy": a + 0.01 * s}
                         for o, accs in (("adam", (0.95, 0.95)), ("sgd", (0.93, 0.40)),
                                         ("sgd_scaled", (0.93, 0.94)))
                         for loss, a in zip(("ce", "ngl"), accs, strict=True) for s in range(2)])


def _length() -> pd.DataFrame:
    return pd.DataFrame([{"epoch": e, "loss": loss, "seed": s,
                          "test_accuracy": 0.6 + 0.06 * e + (0.01 if loss == "ngl" else 0) + 0.005 * s}
                         for loss in ("ce", "ngl") for s in range(2) for e in range(1, 7)])


def _length_two_panels() -> plt.Figure:
    """Notebook 05's training-length figure: accuracy per loss, and NGL's gain next to it."""
    df = _length()
    df["gain"] = 100 * (df["test_accuracy"] - df["epoch"].map(
        df[df["loss"] == "ce"].groupby("epoch")["test_accuracy"].mean()))
    fig, axes = plt.subplots(1, 2, figsize=(ui.TEXT_WIDTH * 0.7, 2.2))
    ui.plot_sensitivity(df, "epoch", hue="loss", ax=axes[0])
    ui.plot_sensitivity(df[df["loss"] == "ngl"], "epoch", y="gain", ax=axes[1], ylabel="NGL − CE (points)")
    return fig


def _alpha() -> pd.DataFrame:
    return pd.DataFrame([{"alpha": a, "seed": s, "test_accuracy": 0.95 - 0.01 * abs(a - 2.4) + 0.002 * s}
                         for a in (1.0, 1.8, 2.4092, 3.0, 4.0) for s in range(2)])


LEGEND_FIGURES = {  # the figures of notebooks 04 and 05 that carry a legend
    "downstream_comparison": lambda d: ui.plot_downstream_comparison(d["results"], reference="ce"),
    "downstream_absolute": lambda d: ui.plot_downstream_comparison(d["results"]),
    "training_curves": lambda d: ui.plot_training_curves(d["curves"], columns=["train_loss", "val_accuracy"]),
    "optimum_confidence": lambda d: ui.plot_optimum_confidence(d["optimum"]),
    "gradient_scale": lambda d: ui.plot_gradient_scale(d["grad_scale"]),
    "sensitivity_alpha": lambda d: ui.plot_sensitivity(_alpha(), "alpha", reference=2.4092,
                                                       baseline=("ce", 0.945)),
    "sensitivity_optimizer": lambda d: ui.plot_sensitivity(_sensitivity_opt(), "optimizer", hue="loss"),
    "sensitivity_length": lambda d: ui.plot_sensitivity(_length(), "epoch", hue="loss"),
    "sensitivity_length_two_panels": lambda d: _length_two_panels(),
    "reliability": lambda d: ui.plot_reliability_diagram(
        {"ce": _diagram(-0.1), "ngl": _diagram(0.25), "CE + T-scaling": _diagram(0.0),
         "NGL + T-scaling": _diagram(0.02)}),
    "loss_shapes": lambda d: ui.plot_loss_shapes(
        {k: ngl.get_loss(k) for k in ("ce", "ngl", "focal", "label_smoothing")}, n_points=60),
    "search_progress": lambda d: ui.plot_search_progress(_search_summary()),  # 02, 03, the runner
}


def all_data() -> dict:
    return {"optimum": _optimum(), "grad_scale": _grad_scale(), "results": _results(),
            "curves": _curves()}


@pytest.fixture(scope="module")
def data() -> dict:
    return all_data()


@pytest.fixture
def optimum(data) -> pd.DataFrame:
    return data["optimum"]


@pytest.fixture
def results(data) -> pd.DataFrame:
    return data["results"]


# -- 1: display names ------------------------------------------------------------------------------
def test_display_name_resolves_aliases_and_leaves_other_names_alone():
    assert [display_name(k) for k in ("ngl", "ce", "label_smoothing", "focal")] == [
        "NGL", "CE", "Label smoothing", "Focal"]
    assert display_name("f5") == "NGL" and display_name("ls") == "Label smoothing"  # aliases
    assert display_name("CROSS_ENTROPY") == "CE"
    for other in ("exp(2.4092 - y_pred*(1 + y_real))", "#1", "found #2", "focal γ=2", "NGL (as expression)"):
        assert display_name(other) == other
    assert ngl.losses.display_name is display_name


@pytest.mark.parametrize("name", sorted(LEGEND_FIGURES))
def test_figures_print_display_names_not_registry_keys(name, data):
    fig = LEGEND_FIGURES[name](data)
    assert_no_raw_keys(fig)


def test_display_names_in_the_drawn_texts(data):
    fig = LEGEND_FIGURES["downstream_comparison"](data)
    assert sorted(legend_labels(fig)) == ["Focal", "Label smoothing", "NGL", "±0.5 of CE"]
    assert fig.axes[0].get_ylabel() == "test accuracy − CE (points)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["Digits", "Fashion-MNIST", "CIFAR-10"]
    fig = LEGEND_FIGURES["sensitivity_optimizer"](data)
    assert legend_labels(fig) == ["CE", "NGL"]
    fig = LEGEND_FIGURES["reliability"](data)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["CE", "NGL", "CE + T-scaling",
                                                                  "NGL + T-scaling"]
    fig = LEGEND_FIGURES["gradient_scale"](data)
    assert legend_labels(fig)[:4] == ["NGL (uniform)", "NGL (trained)", "Focal (uniform)", "Focal (trained)"]
    # the data a figure is drawn from keep the registry keys
    assert set(data["optimum"]["loss"]) == set(LOSSES)


def test_validation_figure_names_reference_losses():
    table = pd.DataFrame({"loss": ["expr_a", "ngl", "label_smoothing"], "delta": [0.4, 0.1, -0.2],
                          "delta_ci_low": [0.1, -0.3, -0.6], "delta_ci_high": [0.7, 0.5, 0.2]})
    report = SimpleNamespace(plan={"dataset": "digits"}, config=SimpleNamespace(model="small_cnn", margin=0.5),
                             table=table, transfer=pd.DataFrame(columns=["dataset", "model", *table.columns]),
                             names=lambda: {"expr_a": "found #1"}, out_dir="x")
    fig = ui.plot_validation(report)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["found #1", "NGL", "Label smoothing"]


# -- 2: legends do not cover data ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LEGEND_FIGURES))
def test_legend_covers_no_data(name, data):
    assert_legends_clear_of_data(LEGEND_FIGURES[name](data))


def test_the_overlap_check_sees_an_inside_legend(results):
    """The check itself: a legend put on the data is caught."""
    fig = ui.plot_downstream_comparison(results)
    fig.axes[0].legend(loc="center")
    with pytest.raises(AssertionError, match="covers data"):
        assert_legends_clear_of_data(fig)


# -- 3: tick labels apart --------------------------------------------------------------------------
def _search_summary() -> pd.DataFrame:
    g = np.arange(30)
    return pd.DataFrame({"generation": g, "q25": 0.5 + 0.01 * g, "q75": 0.6 + 0.01 * g,
                         "median": 0.55 + 0.01 * g, "best": 0.7 + 0.008 * g,
                         "distinct_functions": 100 - g, "mean_size": 10 + 0.3 * g,
                         "rejected": 5 + g % 4, "cache_hits": g})


def _tuning() -> SimpleNamespace:
    gens = np.repeat(np.arange(-1, 12), 6)
    rng = np.random.default_rng(0)
    consts = [(2.4 + rng.normal(0, 0.3), 1.0 + rng.normal(0, 0.1)) for _ in gens]
    per = pd.DataFrame({"generation": np.arange(-1, 12), "c0": 2.4, "c1": 1.0,
                        "best": np.linspace(0.9, 0.95, 13), "median": np.linspace(0.85, 0.93, 13)})
    return SimpleNamespace(history=pd.DataFrame({"generation": gens, "constants": consts}),
                           per_generation=lambda: per, start={"val_accuracy": 0.9}, run_dir="x")


MULTI_PANEL = {
    "loss_shapes": lambda d: ui.plot_loss_shapes(
        {k: ngl.get_loss(k) for k in ("ce", "ngl", "focal", "label_smoothing")}),
    "loss_shapes_c100": lambda d: ui.plot_loss_shapes({"ce": ngl.get_loss("ce"), "ngl": ngl.NGL()},
                                                      num_classes=100),
    # found losses whose slope spans ten decades: one symlog label per decade used to collide
    "loss_shapes_found": lambda d: ui.plot_loss_shapes(
        {"CE": ngl.get_loss("ce"),
         "#1": ngl.LossExpression.parse("exp(1/(y_pred + 0.1))").to_module(validate=False),
         "#2": ngl.LossExpression.parse("-log(y_pred)*exp(y_pred*10)").to_module(validate=False)}),
    "training_curves": LEGEND_FIGURES["training_curves"],
    "training_curves_3": lambda d: ui.plot_training_curves(
        d["curves"].assign(test_accuracy=d["curves"]["val_accuracy"] - 0.01)),
    "reliability": LEGEND_FIGURES["reliability"],
    "search_progress": lambda d: ui.plot_search_progress(_search_summary()),
    "tuning": lambda d: ui.plot_tuning(_tuning(), names=["α", "β"], reference=[2.4092, None]),
}


@pytest.mark.parametrize("name", sorted(MULTI_PANEL))
def test_tick_labels_do_not_collide_at_paper_size(name, data):
    fig = MULTI_PANEL[name](data)
    assert len(fig.axes) >= 2
    width = fig.get_figwidth()
    assert width <= ui.TEXT_WIDTH + 1e-9
    assert_ticklabels_apart(fig)


def test_tick_labels_of_loss_shapes_in_a_column(data):
    fig, axes = plt.subplots(1, 2, figsize=(ui.COLUMN_WIDTH * 1.6, 2.2), layout="constrained")
    ui.plot_loss_shapes({"ce": ngl.get_loss("ce"), "ngl": ngl.NGL()}, axes=axes)
    assert_ticklabels_apart(fig)


def test_the_collision_check_sees_colliding_ticks():
    fig, ax = plt.subplots(figsize=(1.0, 1.0))
    ax.set_xticks(np.arange(12), [f"label {k}" for k in range(12)])
    with pytest.raises(AssertionError, match="overlap"):
        assert_ticklabels_apart(fig)


# -- 4: lines do not hide each other ----------------------------------------------------------------
def _styles(ax: plt.Axes, labels: list[str]) -> dict[str, tuple]:
    by_label = {line.get_label(): line for line in ax.lines}
    return {lab: (str(by_label[lab].get_linestyle()), by_label[lab].get_marker()) for lab in labels}


def test_every_loss_of_the_optimum_figure_has_its_own_line_style_and_marker(optimum):
    fig = ui.plot_optimum_confidence(optimum)
    names = [display_name(k) for k in dict.fromkeys(optimum["loss"])]
    styles = _styles(fig.axes[0], names)
    assert len(set(styles.values())) == len(names), styles
    # CE and focal share every point (optimum p_true = 1) ...
    ce, focal = (fig.axes[0].lines[names.index(n)] for n in ("CE", "Focal"))
    np.testing.assert_array_equal(ce.get_ydata(), focal.get_ydata())
    # ... and both stay visible: hollow markers of different shapes, different dash patterns
    assert ce.get_marker() != focal.get_marker() and ce.get_linestyle() != focal.get_linestyle()
    assert ce.get_markerfacecolor() == "none" and focal.get_markerfacecolor() == "none"


@pytest.mark.parametrize("name, labels", [
    ("training_curves", ["CE", "Focal", "Label smoothing", "NGL"]),
    ("sensitivity_length", ["CE", "NGL"]),
    ("loss_shapes", ["CE", "NGL", "Focal", "Label smoothing"]),
])
def test_equal_series_stay_distinguishable_elsewhere(name, labels, data):
    fig = LEGEND_FIGURES[name](data)
    for ax in fig.axes:
        present = [lab for lab in labels if lab in {ln.get_label() for ln in ax.lines}]
        if present:
            styles = _styles(ax, present)
            assert len(set(styles.values())) == len(present), styles


def test_comparison_points_differ_in_marker(results):
    fig = ui.plot_downstream_comparison(results)
    markers = [c.lines[0].get_marker() for c in fig.axes[0].containers]
    assert len(markers) == len(LOSSES) == len(set(markers))


# -- 5: large inline display, paper-size files ------------------------------------------------------
def test_show_inline_displays_large_and_keeps_the_paper_size(monkeypatch, optimum, tmp_path):
    shown = []
    monkeypatch.setattr("ngl.ui.inline.display", lambda obj: shown.append(obj))
    fig = ui.plot_optimum_confidence(optimum)
    paths = ui.save_figure(fig, "opt", notebook="test", directory=tmp_path)
    ui.show_inline(fig)
    (img,) = shown
    with PILImage.open(io.BytesIO(img.data)) as png:
        w, h = png.size
    assert img.width == w and w >= 2 * 340  # a 3.4 in column figure: 340 px at 100 dpi
    assert h / w == pytest.approx(2.3 / ui.COLUMN_WIDTH, abs=0.01)
    assert list(fig.get_size_inches()) == [ui.COLUMN_WIDTH, 2.3]  # the figure itself unchanged
    with PILImage.open(paths[1]) as png:  # the exported PNG: paper size at 300 dpi
        assert png.size == (round(ui.COLUMN_WIDTH * 300), round(2.3 * 300))
    assert not plt.fignum_exists(fig.number)  # closed: the inline backend will not show it again
    shown.clear()
    wide = plt.figure(figsize=(ui.TEXT_WIDTH, 2.0))
    ui.show_inline(wide, close=False)
    assert shown[0].width <= 1300  # a text-width figure still fits a JupyterLab column
    ui.show_inline(wide, width_px=500)
    with PILImage.open(io.BytesIO(shown[1].data)) as png:
        assert png.size[0] == 500
    with pytest.raises(ValueError, match="width_px"):
        ui.show_inline(wide, width_px=0)
