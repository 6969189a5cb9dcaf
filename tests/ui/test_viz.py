"""Figures: data behind the plots, byte-stable export, tree layout."""

from __future__ import annotations

import importlib
import json
import pkgutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import ngl  # noqa: E402
import ngl.ui  # noqa: E402
from ngl.ui import (  # noqa: E402
    COLUMN_WIDTH,
    draw_tree,
    loss_shape_data,
    plot_loss_shapes,
    save_figure,
    set_style,
    tree_layout,
)


def test_loss_shape_data_is_tidy_and_finds_known_optima():
    df = loss_shape_data({"CE": ngl.get_loss("ce"), "NGL": ngl.get_loss("ngl")}, num_classes=10)
    assert set(df.columns) >= {"loss_name", "p_true", "loss", "dloss_dp", "normalised"}
    ce = df[df.loss_name == "CE"]
    np.testing.assert_allclose(ce["loss"], -np.log(ce["p_true"]), rtol=1e-9)
    np.testing.assert_allclose(ce["dloss_dp"], -1 / ce["p_true"], rtol=1e-6)
    ngl_part = df[df.loss_name == "NGL"]
    assert ngl_part.loc[ngl_part["loss"].idxmin(), "p_true"] == pytest.approx(0.39, abs=0.02)
    assert ngl_part["normalised"].min() == 0 and ngl_part["normalised"].max() == 1
    assert ngl.get_loss("ce").reduction == "mean"  # restored after plotting


def test_plot_loss_shapes_draws_the_data():
    losses = {"CE": ngl.get_loss("ce"), "NGL": ngl.get_loss("ngl")}
    fig = plot_loss_shapes(losses, num_classes=5, n_points=50)
    ax0, ax1 = fig.axes[:2]
    df = loss_shape_data(losses, num_classes=5, n_points=50)
    np.testing.assert_allclose(ax0.lines[0].get_ydata(), df[df.loss_name == "CE"]["normalised"])
    np.testing.assert_allclose(ax1.lines[1].get_ydata(), df[df.loss_name == "NGL"]["dloss_dp"])
    plt.close(fig)


def test_loss_shape_errors():
    with pytest.raises(ValueError, match="num_classes=1"):
        loss_shape_data({"CE": ngl.get_loss("ce")}, num_classes=1)
    with pytest.raises(ValueError, match="no losses"):
        loss_shape_data({})


def test_save_figure_is_byte_stable_and_writes_sidecar(tmp_path):
    def make():
        set_style("paper")
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2))
        ax.plot([0, 1, 2], [1, 0, 2], label="a")
        ax.legend()
        return fig

    paths1 = save_figure(make(), "demo", notebook="nb", config={"seed": 1}, directory=tmp_path / "a")
    paths2 = save_figure(make(), "demo", notebook="nb", config={"seed": 1}, directory=tmp_path / "b")
    assert [p.name for p in paths1] == ["demo.pdf", "demo.png", "demo.json"]
    for p1, p2 in zip(paths1, paths2, strict=True):
        assert p1.read_bytes() == p2.read_bytes(), p1.name
    side = json.loads(paths1[2].read_text())
    assert side["config"] == {"seed": 1} and side["notebook"] == "nb"
    pdf = paths1[0].read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType embedded, no Type 3 fonts
    assert not list((tmp_path / "a").glob("*.tmp"))


def test_save_figure_default_location_and_bad_names(tmp_path, monkeypatch):
    monkeypatch.setenv("NGL_FIGURES_DIR", str(tmp_path))
    monkeypatch.setenv("NGL_NOTEBOOK", "07_demo")
    fig, _ = plt.subplots()
    paths = save_figure(fig, "x")
    assert paths[0] == tmp_path / "07_demo" / "x.pdf"
    with pytest.raises(ValueError, match="plain file stem"):
        save_figure(fig, "../x")
    with pytest.raises(ValueError, match="formats"):
        save_figure(fig, "x", formats=("jpg",))
    with pytest.raises(ValueError, match="style='fancy'"):
        set_style("fancy")
    plt.close(fig)


def test_tree_layout_places_children_below_parents():
    expr = ngl.LossExpression.parse("exp(2.4092 - y_pred*(1 + y_real)) - cos(cos(sin(y_pred)))")
    nodes, edges = tree_layout(expr)
    assert len(nodes) == expr.size and len(edges) == expr.size - 1
    assert [lab for _, _, lab in nodes][:3] == ["sub", "exp", "sub"]
    assert min(y for _, y, _ in nodes) == -expr.depth
    for a, b in edges:
        assert nodes[b][1] == nodes[a][1] - 1
    leaves_x = sorted(x for x, y, lab in nodes if lab in ("y_pred", "y_real", "2.409", "1"))
    assert leaves_x == [0.0, 1.0, 2.0, 3.0, 4.0]
    fig = draw_tree(expr)
    assert len(fig.axes[0].texts) == expr.size
    plt.close(fig)


def test_ngl_ui_exports_every_public_name_of_its_modules():
    seen: dict[str, object] = {}
    for info in pkgutil.iter_modules(ngl.ui.__path__):
        if info.name in ("notebook_runner", "viz", "widgets"):  # a CLI; two compatibility modules
            continue
        mod = importlib.import_module(f"ngl.ui.{info.name}")
        assert mod.__doc__ and mod.__all__, info.name
        for name in mod.__all__:
            assert name not in seen, f"{name} is exported by two modules"
            seen[name] = getattr(mod, name)
            assert getattr(ngl.ui, name) is seen[name], name
    assert sorted(ngl.ui.__all__) == sorted(seen)


@pytest.mark.parametrize("session, want", [
    ("/work/main/notebooks/02_search.ipynb", "02_search"),  # jupyter-server's JPY_SESSION_NAME
    ("notebooks/03_analysis.ipynb", "03_analysis"),
    ("Console 1-2a3b", "misc"),  # a console, not a notebook
    ("", "misc"),
])
def test_figures_go_to_the_notebook_jupyterlab_runs(tmp_path, monkeypatch, session, want):
    """JupyterLab sets no NGL_NOTEBOOK; the kernel's JPY_SESSION_NAME names the notebook."""
    from ngl.ui.style import current_notebook

    monkeypatch.delenv("NGL_NOTEBOOK", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", session)
    monkeypatch.setenv("NGL_FIGURES_DIR", str(tmp_path))
    assert current_notebook() == want
    fig, _ = plt.subplots()
    assert save_figure(fig, "x")[0] == tmp_path / want / "x.pdf"
    plt.close(fig)
    monkeypatch.setenv("NGL_NOTEBOOK", "07_demo")  # the runner's name wins
    assert current_notebook() == "07_demo"
