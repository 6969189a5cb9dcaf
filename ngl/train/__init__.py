"""One training core: optimizer builder, non-finite policy, seeding and the downstream training loop."""

from ngl.train.loop import (
    TrainConfig,
    augment_batch,
    evaluate,
    train_model,
    zoom_shift,
)
from ngl.train.optim import (
    OPTIMIZERS,
    TrainSettings,
    all_finite,
    apply_step,
    build_optimizer,
    forward_backward,
    optimizer_from_config,
)
from ngl.train.seeding import (
    seed_everything,
)

__all__ = [
    "OPTIMIZERS",
    "TrainConfig",
    "TrainSettings",
    "all_finite",
    "apply_step",
    "augment_batch",
    "build_optimizer",
    "evaluate",
    "forward_backward",
    "optimizer_from_config",
    "seed_everything",
    "train_model",
    "zoom_shift",
]
