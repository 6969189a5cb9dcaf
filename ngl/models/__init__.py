"""Networks for search fitness and downstream runs (small CNNs, ResNet/Inception variants, paper head)."""

from ngl.models.networks import (
    OWN_MODELS,
    DenseCNN,
    ResNetCIFAR,
    SmallCNN,
    SmallInception,
    available_models,
    build_model,
    paper_head,
)

__all__ = [
    "OWN_MODELS",
    "ResNetCIFAR",
    "SmallCNN",
    "DenseCNN",
    "SmallInception",
    "available_models",
    "build_model",
    "paper_head",
]
