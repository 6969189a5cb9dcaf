"""How candidate losses are trained to score them: reference loop and population-batched engines."""

from ngl.fitness.population import (
    CPU_PASS_SIZE,
    FitnessResult,
    LossFn,
    TrainBudget,
    default_pass_size,
    train_population,
    train_sequential,
)

__all__ = [
    "CPU_PASS_SIZE",
    "FitnessResult",
    "LossFn",
    "TrainBudget",
    "default_pass_size",
    "train_population",
    "train_sequential",
]
