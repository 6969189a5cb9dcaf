"""ngl: a research companion for *Next Generation Loss Function for Image Classification*.

The front door (see ARCHITECTURE.md for the subpackages behind it)::

    import ngl
    ngl.setup(seed=0, style="paper")                       # explicit: nothing happens on import
    spec = ngl.SearchSpec(primitive_set=ngl.preset("paper"), population_size=32, generations=10)
    result = ngl.search(spec)                              # ngl.resume(dir), ngl.load(dir)
    result.best.to_module(), result.best.latex(), result.to_latex()
    report = ngl.validate(result.run_dir)                  # held-out test, seeds, transfer, fidelity
    ngl.calibrate(ngl.CalibrationConfig(dataset="digits"))  # does the fitness rank as full training?
    ngl.grid(ngl.GridConfig(losses=("ce", "ngl", str(result.best))))

Importing ngl has no side effects on seeds, styles or files.
"""

from ngl.api import grid, load, resume, search
from ngl.evaluate import CalibrationConfig, GridConfig, ValidateConfig, calibrate, validate
from ngl.fitness import SuccessiveHalving, TrainBudget
from ngl.gp import (
    PRESETS,
    ExpressionLoss,
    LossExpression,
    PrimitiveSet,
    RunOptions,
    SearchResult,
    SearchSpec,
    compare,
    preset,
    register_operator,
    sample_expressions,
    tune_constants,
)
from ngl.losses import (
    NGL,
    NGL_ALPHA,
    NGL_EXPRESSION,
    BaikalLoss,
    ClassificationLoss,
    CrossEntropy,
    ElementwiseLoss,
    FocalLoss,
    LabelSmoothingCE,
    PolyLoss,
    SymmetricCE,
    available_losses,
    get_loss,
    register_loss,
)
from ngl.setup import quick_mode, seed_everything, setup
from ngl.train import TrainConfig

__version__ = "0.1.0"

__all__ = [
    "NGL",
    "NGL_ALPHA",
    "NGL_EXPRESSION",
    "PRESETS",
    "BaikalLoss",
    "CalibrationConfig",
    "ClassificationLoss",
    "CrossEntropy",
    "ElementwiseLoss",
    "ExpressionLoss",
    "FocalLoss",
    "GridConfig",
    "LabelSmoothingCE",
    "LossExpression",
    "compare",
    "register_operator",
    "PolyLoss",
    "PrimitiveSet",
    "RunOptions",
    "SearchResult",
    "SearchSpec",
    "SuccessiveHalving",
    "SymmetricCE",
    "TrainBudget",
    "TrainConfig",
    "ValidateConfig",
    "available_losses",
    "calibrate",
    "get_loss",
    "grid",
    "load",
    "preset",
    "quick_mode",
    "register_loss",
    "resume",
    "sample_expressions",
    "tune_constants",
    "validate",
    "search",
    "seed_everything",
    "setup",
]
