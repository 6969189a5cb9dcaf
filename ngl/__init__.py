"""ngl: a research companion for *Next Generation Loss Function for Image Classification*.

Nothing here has side effects on import; call :func:`ngl.setup` for seeds and figure style.
"""

from ngl.expression import ExpressionLoss, LossExpression
from ngl.losses import (
    NGL,
    NGL_ALPHA,
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
from ngl.primitives import PRESETS, PrimitiveSet, preset, sample_expressions
from ngl.setup import quick_mode, seed_everything, setup

__version__ = "0.1.0"

__all__ = [
    "NGL",
    "NGL_ALPHA",
    "PRESETS",
    "BaikalLoss",
    "ClassificationLoss",
    "CrossEntropy",
    "ElementwiseLoss",
    "ExpressionLoss",
    "FocalLoss",
    "LabelSmoothingCE",
    "LossExpression",
    "PolyLoss",
    "PrimitiveSet",
    "SymmetricCE",
    "available_losses",
    "get_loss",
    "preset",
    "quick_mode",
    "register_loss",
    "sample_expressions",
    "seed_everything",
    "setup",
]
