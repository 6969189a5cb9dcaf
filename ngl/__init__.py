"""ngl: a research companion for *Next Generation Loss Function for Image Classification*.

Nothing here has side effects on import; call :func:`ngl.setup` for seeds and figure style.
"""

from ngl.gp.expression import ExpressionLoss, LossExpression
from ngl.gp.primitives import PRESETS, PrimitiveSet, preset
from ngl.gp.sampling import sample_expressions
from ngl.losses.base import ClassificationLoss, ElementwiseLoss
from ngl.losses.registry import available_losses, get_loss, register_loss
from ngl.losses.zoo import (
    NGL,
    NGL_ALPHA,
    BaikalLoss,
    CrossEntropy,
    FocalLoss,
    LabelSmoothingCE,
    PolyLoss,
    SymmetricCE,
)
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
