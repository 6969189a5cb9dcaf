"""How candidate losses are trained to score them: reference loop and population-batched engines."""

from ngl.fitness.budget import (
    FitnessResult,
    LossFn,
    TrainBudget,
    make_result,
)
from ngl.fitness.common import (
    batch_indices,
    check_arguments,
    initial_model,
    make_optimizer,
    scalar_loss,
    seeded,
    split_data,
    sync,
)
from ngl.fitness.cuda_graph import (
    WARMUP_STEPS,
    refuse_validating,
    replay,
)
from ngl.fitness.folded import (
    FoldedEngine,
    fold,
    foldable,
    verify_folded,
)
from ngl.fitness.population import (
    CPU_PASS_SIZE,
    default_pass_size,
    train_population,
)
from ngl.fitness.reference import (
    train_sequential,
)
from ngl.fitness.vmap import (
    VmapEngine,
)

__all__ = [
    "CPU_PASS_SIZE",
    "FitnessResult",
    "FoldedEngine",
    "LossFn",
    "TrainBudget",
    "VmapEngine",
    "WARMUP_STEPS",
    "batch_indices",
    "check_arguments",
    "default_pass_size",
    "fold",
    "foldable",
    "initial_model",
    "make_optimizer",
    "make_result",
    "refuse_validating",
    "replay",
    "scalar_loss",
    "seeded",
    "split_data",
    "sync",
    "train_population",
    "train_sequential",
    "verify_folded",
]
