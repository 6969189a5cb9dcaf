"""After a search: downstream grids, paper-style tables, analysis of NGL, segmentation, ImageNet.

In the order of the research flow:

* :mod:`ngl.evaluate.grid` -- train every (dataset, model, loss, seed) cell once, resumable.
* :mod:`ngl.evaluate.summary` -- mean ± std per (dataset, loss) and paired tests against CE.
* :mod:`ngl.evaluate.validate` -- a search's found losses retrained on held-out test data over
  seeds, with paired statistics, transfer and search fidelity (``python -m ngl validate``).
* :mod:`ngl.evaluate.proxy_calibration` -- does a search fitness (a proxy) rank losses as full
  training does? Rank correlation with CIs, regret and cost per proxy (``python -m ngl calibrate``).
* :mod:`ngl.evaluate.ranking` -- Spearman/Kendall with bootstrap intervals, shared by both.
* :mod:`ngl.evaluate.tables` -- the summary as a paper-style table (strings, LaTeX, markdown).
* :mod:`ngl.evaluate.paper` -- the paper's reported numbers, and ours side by side with them.
* :mod:`ngl.evaluate.presets` -- the paper's own protocol (ResNet50 / InceptionV3, its head,
  optimizer, schedule and augmentation) as ready-made grids, for a GPU and the datasets.
* :mod:`ngl.evaluate.loss_properties` -- why NGL behaves as it does, without training: the
  confidence it drives a sample to and its gradient scale against CE's.
* :mod:`ngl.evaluate.calibration` -- ECE, reliability diagrams, temperature scaling.
* :mod:`ngl.evaluate.sensitivity` -- training sweeps over alpha, optimizer and length.
* :mod:`ngl.evaluate.segmentation` -- NGL per pixel on a tiny segmentation task.
* :mod:`ngl.evaluate.imagenet` -- the ImageNet recipe (a script: ``python -m ngl.evaluate.imagenet``).
"""

from ngl.evaluate.calibration import (
    calibration_latex,
    calibration_report,
    collect_logits,
    expected_calibration_error,
    fit_temperature,
    mean_confidence,
    reliability_diagram_data,
)
from ngl.evaluate.grid import (
    DONE_STATUSES,
    GridConfig,
    grid_cells,
    load_results,
    loss_label,
    run_cell,
    run_grid,
)
from ngl.evaluate.loss_properties import (
    gradient_scale,
    gradient_scale_table,
    optimum_confidence,
    optimum_table,
    sgd_lr_for,
)
from ngl.evaluate.paper import (
    PAPER_CAVEAT,
    PAPER_CITATION,
    SAME_AS_CE_BAND,
    compare_with_paper,
    format_comparison,
    paper_table,
    paper_wide,
)
from ngl.evaluate.presets import (
    PAPER_DATASETS,
    PAPER_LOSSES,
    PAPER_PRESETS,
    PAPER_TRAIN,
    paper_preset,
)
from ngl.evaluate.proxy_calibration import (
    CalibrationConfig,
    CalibrationReport,
    Proxy,
    calibrate,
    config_for,
    load_calibration,
    proxy_of,
)
from ngl.evaluate.ranking import rank_agreement
from ngl.evaluate.segmentation import (
    VOID,
    TinySegNet,
    confusion_matrix,
    make_shapes,
    miou,
    train_segmentation,
)
from ngl.evaluate.sensitivity import (
    DEFAULT_OPTIMIZERS,
    alpha_sweep,
    length_sweep,
    optimizer_sweep,
    sweep,
    train_and_evaluate,
)
from ngl.evaluate.summary import (
    UNDEFINED,
    format_number,
    format_summary,
    paired_test,
    summarise,
)
from ngl.evaluate.tables import (
    DATASET_NAMES,
    LOSS_NAMES,
    best_mask,
    format_table,
    latex_escape,
    to_latex,
    to_markdown,
)
from ngl.evaluate.validate import (
    DEFAULT_REFERENCES,
    DEFAULT_TRAIN,
    ValidateConfig,
    ValidationReport,
    fidelity_correlation,
    load_validation,
    validate,
    validation_dir,
    verdicts,
)

__all__ = [
    "CalibrationConfig",
    "CalibrationReport",
    "Proxy",
    "calibrate",
    "config_for",
    "load_calibration",
    "proxy_of",
    "rank_agreement",
    "DEFAULT_REFERENCES",
    "DEFAULT_TRAIN",
    "ValidateConfig",
    "ValidationReport",
    "fidelity_correlation",
    "load_validation",
    "validate",
    "validation_dir",
    "verdicts",
    "DATASET_NAMES",
    "DEFAULT_OPTIMIZERS",
    "DONE_STATUSES",
    "GridConfig",
    "LOSS_NAMES",
    "PAPER_CAVEAT",
    "PAPER_CITATION",
    "PAPER_DATASETS",
    "PAPER_LOSSES",
    "PAPER_PRESETS",
    "PAPER_TRAIN",
    "SAME_AS_CE_BAND",
    "TinySegNet",
    "VOID",
    "alpha_sweep",
    "best_mask",
    "calibration_latex",
    "calibration_report",
    "format_comparison",
    "format_number",
    "format_summary",
    "UNDEFINED",
    "collect_logits",
    "compare_with_paper",
    "confusion_matrix",
    "expected_calibration_error",
    "fit_temperature",
    "format_table",
    "gradient_scale",
    "gradient_scale_table",
    "grid_cells",
    "latex_escape",
    "length_sweep",
    "load_results",
    "loss_label",
    "make_shapes",
    "mean_confidence",
    "miou",
    "optimizer_sweep",
    "optimum_confidence",
    "optimum_table",
    "paired_test",
    "paper_preset",
    "paper_table",
    "paper_wide",
    "reliability_diagram_data",
    "run_cell",
    "run_grid",
    "sgd_lr_for",
    "summarise",
    "sweep",
    "to_latex",
    "to_markdown",
    "train_and_evaluate",
    "train_segmentation",
]
