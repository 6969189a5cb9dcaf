"""How candidate losses are trained to score them: reference loop and population-batched engines."""

# ngl.fitness.common holds the shared start of every engine (data split, batches, initial
# model): internal helpers, imported from that module where needed, not re-exported here.
from ngl.fitness.budget import (
    FitnessResult,
    LossFn,
    SuccessiveHalving,
    TrainBudget,
    make_result,
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
    "SuccessiveHalving",
    "TrainBudget",
    "VmapEngine",
    "WARMUP_STEPS",
    "default_pass_size",
    "fold",
    "foldable",
    "make_result",
    "refuse_validating",
    "replay",
    "train_population",
    "train_sequential",
    "verify_folded",
]
