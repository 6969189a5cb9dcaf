"""What a notebook shows: paper figures (viz), widgets and the headless notebook runner."""

from ngl.ui.viz import (
    COLUMN_WIDTH,
    TEXT_WIDTH,
    draw_tree,
    loss_shape_data,
    plot_loss_shapes,
    save_figure,
    set_style,
    tree_layout,
)
from ngl.ui.widgets import (
    PrimitiveSetPicker,
    SearchConfigForm,
    error_html,
    error_text,
    kept_fields,
    primitive_set_picker,
    search_config_form,
    show_errors,
    show_validation,
)

__all__ = [
    "COLUMN_WIDTH",
    "PrimitiveSetPicker",
    "SearchConfigForm",
    "TEXT_WIDTH",
    "draw_tree",
    "error_html",
    "error_text",
    "kept_fields",
    "loss_shape_data",
    "plot_loss_shapes",
    "primitive_set_picker",
    "save_figure",
    "search_config_form",
    "set_style",
    "show_errors",
    "show_validation",
    "tree_layout",
]
