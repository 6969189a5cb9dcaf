"""Classification losses called like ``nn.CrossEntropyLoss`` and the registry ``get_loss`` reads."""

from ngl.losses.base import (
    ClassificationLoss,
    ElementwiseLoss,
)
from ngl.losses.registry import (
    available_losses,
    build_loss_spec,
    canonical_loss_name,
    display_name,
    get_loss,
    loss_aliases,
    loss_spec_label,
    loss_specs_field,
    normalise_loss_spec,
    normalise_loss_specs,
    per_sample_losses,
    register_loss,
    register_text_compiler,
)
from ngl.losses.zoo import (
    NGL,
    NGL_ALPHA,
    NGL_EXPRESSION,
    BaikalLoss,
    CrossEntropy,
    FocalLoss,
    LabelSmoothingCE,
    PolyLoss,
    SymmetricCE,
)

__all__ = [
    "BaikalLoss",
    "ClassificationLoss",
    "CrossEntropy",
    "ElementwiseLoss",
    "FocalLoss",
    "LabelSmoothingCE",
    "NGL",
    "NGL_ALPHA",
    "NGL_EXPRESSION",
    "PolyLoss",
    "SymmetricCE",
    "available_losses",
    "build_loss_spec",
    "canonical_loss_name",
    "display_name",
    "get_loss",
    "loss_aliases",
    "loss_spec_label",
    "loss_specs_field",
    "normalise_loss_spec",
    "normalise_loss_specs",
    "per_sample_losses",
    "register_loss",
    "register_text_compiler",
]
