"""How much arithmetic a training step needs, and how fast this machine can do it.

Batching the candidates of a generation removes per-operation overhead (Python dispatch,
kernel launches); it cannot remove arithmetic. When a single candidate's training step is
already dominated by convolutions running near the machine's matrix-multiply throughput, no
batched formulation of the *same* arithmetic can be much faster than training the candidates
one after another. These helpers put a number on that ceiling so a speed goal can be checked
against it rather than argued about:

    ceiling = sequential time per candidate step / (FLOPs per step / peak FLOP/s)

`benchmarks/population_training.py` prints it next to the measured speedup.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["training_step_flops", "matmul_gflops", "speed_ceiling"]


def training_step_flops(model: nn.Module, x: Tensor, y: Tensor,
                        loss_fn: Callable[[Tensor, Tensor], Tensor]) -> int:
    """FLOPs of one forward + backward of `model` on the batch `(x, y)` (matmuls and convs).

    Counted by torch's `FlopCounterMode` (2 FLOPs per multiply-add; elementwise work such as
    BatchNorm, activations and the optimizer is not counted, so the ceiling derived from it
    is optimistic). The model is left as it was: gradients, buffers (BatchNorm running
    statistics) and train/eval mode are restored.
    """
    grads = {p: None if p.grad is None else p.grad.clone() for p in model.parameters()}
    buffers = [(b, b.clone()) for b in model.buffers()]
    was_training = model.training
    model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            loss = loss_fn(model(x), y)
            if loss.requires_grad:
                loss.backward()
    finally:
        for p, g in grads.items():
            p.grad = g
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        model.train(was_training)
    return int(counter.get_total_flops())


def matmul_gflops(device: str | torch.device = "cpu", n: int = 1024, repeats: int = 10,
                  dtype: torch.dtype = torch.float32) -> float:
    """Measured dense `n x n` matmul throughput in GFLOP/s: this machine's practical peak.

    Uses the current `torch.get_num_threads()` on CPU, so call it under the same thread
    setting as the work it is compared with.
    """
    if n < 1 or repeats < 1:
        raise ValueError(f"n and repeats must be >= 1, got n={n!r}, repeats={repeats!r}")
    device = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    b = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def speed_ceiling(sequential_s: float, flops_per_step: int, steps: int, population: int,
                  peak_gflops: float) -> float:
    """Largest speedup any batched run of the same arithmetic could reach over `sequential_s`.

    The batched run must still do ``population * steps * flops_per_step`` FLOPs; at best it
    does them at `peak_gflops` and nothing else costs time.
    """
    if min(sequential_s, peak_gflops) <= 0 or min(flops_per_step, steps, population) < 1:
        raise ValueError(
            "speed_ceiling needs positive times, FLOPs, steps, population and peak; got "
            f"sequential_s={sequential_s!r}, flops_per_step={flops_per_step!r}, steps={steps!r}, "
            f"population={population!r}, peak_gflops={peak_gflops!r}"
        )
    least_s = population * steps * flops_per_step / (peak_gflops * 1e9)
    return sequential_s / least_s
