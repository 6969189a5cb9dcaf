"""One protocol for "anything that is a loss expression" (issue 23): a hall-of-fame entry is
accepted wherever an expression is, and compared with the expression itself (independent)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from ngl.evaluate import GridConfig
from ngl.gp import LossExpression, as_expression
from ngl.gp.result import HallOfFameEntry
from ngl.losses import NGL_EXPRESSION, build_loss_spec, get_loss
from ngl.ui.plots_losses import draw_tree, loss_shape_data, tree_layout

EXPR = LossExpression.parse(NGL_EXPRESSION)
ENTRY = HallOfFameEntry(rank=1, expression=EXPR, val_accuracy=0.9, size=EXPR.size,
                        generation=3)


def test_as_expression_takes_text_expressions_and_entries():
    assert as_expression(EXPR) is EXPR
    assert as_expression(NGL_EXPRESSION) == EXPR
    assert as_expression(ENTRY) is EXPR
    with pytest.raises(TypeError, match="hall-of-fame entry"):
        as_expression(3.0)


def test_draw_tree_takes_an_entry():
    fig = draw_tree(ENTRY)  # raised AttributeError '_tree' before
    assert tree_layout(ENTRY) == tree_layout(EXPR)
    assert len(fig.axes) == 1


def test_plot_loss_shapes_takes_an_entry_and_text():
    by_entry = loss_shape_data({"found #1": ENTRY})
    by_module = loss_shape_data({"found #1": EXPR.to_module()})
    by_text = loss_shape_data({"found #1": NGL_EXPRESSION})
    assert by_entry.equals(by_module) and by_text.equals(by_module)


def test_grid_and_get_loss_take_an_entry():
    cfg = GridConfig(losses=("ce", ENTRY))
    assert cfg.losses == ("ce", str(EXPR))
    z, t = torch.randn(6, 10), torch.randint(0, 10, (6,))
    assert torch.equal(get_loss(ENTRY)(z, t), EXPR.to_module()(z, t))
    assert torch.equal(build_loss_spec(ENTRY)(z, t), EXPR.to_module()(z, t))
