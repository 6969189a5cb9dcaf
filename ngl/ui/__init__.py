"""What a notebook shows: paper figures (viz), widgets and the headless notebook runner."""

from ngl.ui.browsers import (
    HallOfFameBrowser,
    LossExplorer,
    SearchPicker,
    hall_of_fame_browser,
    latest_search,
    loss_explorer,
    search_or_tiny,
    search_picker,
    search_runs,
)
from ngl.ui.downstream import (
    LiveTable,
    TableBuilder,
    parse_seeds,
    resize_seeds,
    summary_so_far,
    table_builder,
)
from ngl.ui.forms import (
    PrimitiveSetPicker,
    SearchSpecForm,
    primitive_set_picker,
    search_spec_form,
)
from ngl.ui.inline import (
    show_inline,
)
from ngl.ui.plots_analysis import (
    plot_gradient_scale,
    plot_optimum_confidence,
    plot_reliability_diagram,
    plot_sensitivity,
)
from ngl.ui.plots_calibration import (
    KIND_COLORS,
    KIND_MARKERS,
    plot_calibration_cost,
    plot_calibration_scatter,
)
from ngl.ui.plots_compare import plot_compare, plot_pareto
from ngl.ui.plots_downstream import (
    plot_downstream_comparison,
    plot_training_curves,
    training_history,
)
from ngl.ui.plots_losses import (
    draw_tree,
    loss_shape_data,
    plot_loss_shapes,
    tree_layout,
)
from ngl.ui.plots_search import (
    LivePlot,
    earlier_generations,
    plot_search_progress,
    plot_tuning,
    reference_scores,
)
from ngl.ui.plots_validation import (
    plot_fidelity,
    plot_validation,
)
from ngl.ui.runner import (
    SearchRunner,
    search_runner,
)
from ngl.ui.style import (
    COLUMN_WIDTH,
    TEXT_WIDTH,
    current_notebook,
    save_figure,
    save_table,
    set_style,
)
from ngl.ui.tensorboard import TensorBoardLogger
from ngl.ui.widget_kit import (
    error_html,
    error_text,
    kept_fields,
    show_errors,
    show_validation,
)

__all__ = [
    "TensorBoardLogger",
    "KIND_COLORS",
    "KIND_MARKERS",
    "plot_calibration_cost",
    "plot_calibration_scatter",
    "plot_fidelity",
    "plot_validation",
    "plot_tuning",
    "COLUMN_WIDTH",
    "HallOfFameBrowser",
    "LivePlot",
    "LiveTable",
    "LossExplorer",
    "PrimitiveSetPicker",
    "SearchRunner",
    "SearchSpecForm",
    "TEXT_WIDTH",
    "TableBuilder",
    "draw_tree",
    "error_html",
    "error_text",
    "hall_of_fame_browser",
    "kept_fields",
    "latest_search",
    "search_or_tiny",
    "SearchPicker",
    "search_picker",
    "search_runs",
    "loss_explorer",
    "loss_shape_data",
    "parse_seeds",
    "plot_downstream_comparison",
    "plot_gradient_scale",
    "plot_loss_shapes",
    "plot_optimum_confidence",
    "plot_reliability_diagram",
    "plot_search_progress",
    "plot_compare",
    "plot_pareto",
    "reference_scores",
    "plot_sensitivity",
    "plot_training_curves",
    "primitive_set_picker",
    "resize_seeds",
    "current_notebook",
    "earlier_generations",
    "save_figure",
    "save_table",
    "search_runner",
    "search_spec_form",
    "set_style",
    "show_errors",
    "show_inline",
    "show_validation",
    "summary_so_far",
    "table_builder",
    "training_history",
    "tree_layout",
]
