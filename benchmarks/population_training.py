"""Sequential vs population-batched fitness training: same work, timed side by side.

Trains P candidate losses (CE-like family: CE, label smoothing, focal with several gammas,
poly-1, NGL, ...) with `ngl.population.train_sequential` and `train_population`, checks that
both give the same fitness, and prints the speedup as the last line, in JSON.

    python benchmarks/population_training.py --population 16 --steps 100 --device cpu

The run also prints the arithmetic ceiling (`ngl.profiling`): the FLOPs of one candidate's
training step, this machine's measured matmul throughput, and so the largest speedup that any
batched run of the same arithmetic could reach. Where one candidate's step is already bound by
its convolutions, that ceiling -- not the batching -- limits the speedup.

Both sides run with the same `torch.set_num_threads` (and, on CUDA, the same TF32 setting). With `--repeats N` the two sides are
timed alternately N times and the fastest run of each is kept (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ngl.models import build_model
from ngl.population import (
    CPU_PASS_SIZE,
    FitnessResult,
    TrainBudget,
    default_pass_size,
    train_population,
    train_sequential,
)
from ngl.profiling import matmul_gflops, speed_ceiling, training_step_flops

LossFn = Callable[[Tensor, Tensor], Tensor]


def _focal(gamma: float) -> LossFn:
    def loss(z: Tensor, y: Tensor) -> Tensor:
        logp = torch.log_softmax(z, -1).gather(1, y[:, None]).squeeze(1)
        return (-((1 - logp.exp()) ** gamma) * logp).mean()

    return loss


def _ngl(alpha: float = 2.4092) -> LossFn:
    def loss(z: Tensor, y: Tensor) -> Tensor:
        p = torch.softmax(z, -1)
        onehot = F.one_hot(y, z.shape[-1]).to(p.dtype)
        return torch.exp(alpha - p * (1 + onehot)).mean() - torch.cos(torch.cos(torch.sin(p))).mean()

    return loss


def _poly1(eps: float) -> LossFn:
    def loss(z: Tensor, y: Tensor) -> Tensor:
        pt = torch.softmax(z, -1).gather(1, y[:, None]).squeeze(1)
        return F.cross_entropy(z, y) + eps * (1 - pt).mean()

    return loss


def _brier(z: Tensor, y: Tensor) -> Tensor:
    p = torch.softmax(z, -1)
    return ((p - F.one_hot(y, z.shape[-1]).to(p.dtype)) ** 2).sum(-1).mean()


def _logit_penalty(z: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(z, y) + 1e-3 * (z**2).mean()


def candidate_losses(n: int) -> list[tuple[str, LossFn]]:
    """`n` CE-like losses (the family a GP search around CE produces), cycled if n > 16."""
    base: list[tuple[str, LossFn]] = [
        ("ce", nn.CrossEntropyLoss()),
        ("ce_ls0.05", nn.CrossEntropyLoss(label_smoothing=0.05)),
        ("ce_ls0.1", nn.CrossEntropyLoss(label_smoothing=0.1)),
        ("ce_ls0.2", nn.CrossEntropyLoss(label_smoothing=0.2)),
        ("focal0.5", _focal(0.5)),
        ("focal1", _focal(1.0)),
        ("focal2", _focal(2.0)),
        ("focal3", _focal(3.0)),
        ("focal5", _focal(5.0)),
        ("ngl", _ngl()),
        ("ngl_a2", _ngl(2.0)),
        ("poly1", _poly1(1.0)),
        ("poly-0.5", _poly1(-0.5)),
        ("brier", _brier),
        ("ce_logit_l2", _logit_penalty),
        ("ce_x2", lambda z, y: 2 * F.cross_entropy(z, y)),
    ]
    return [base[i % len(base)] for i in range(n)]


def _digits(device: str) -> object:
    from ngl.data import load_dataset

    return load_dataset("digits", device=device)


def _agree(a: list[FitnessResult], b: list[FitnessResult], n_val: int) -> tuple[bool, dict]:
    """Same fitness up to float rounding: a couple of flipped validation samples at most."""
    d_acc = max(abs(x.val_accuracy - y.val_accuracy) for x, y in zip(a, b, strict=True))
    d_ce = max(
        (abs(x.val_ce - y.val_ce) / max(1.0, abs(x.val_ce)) for x, y in zip(a, b, strict=True)
         if math.isfinite(x.val_ce) and math.isfinite(y.val_ce)),
        default=0.0,
    )
    same_status = all(x.status == y.status for x, y in zip(a, b, strict=True))
    ok = same_status and d_acc <= max(3 / n_val, 0.01) + 1e-9 and d_ce <= 1e-2
    return ok, {"max_abs_diff_val_accuracy": d_acc, "max_rel_diff_val_ce": d_ce,
                "same_status": same_status}


def _arithmetic(model_fn: Callable[[], nn.Module], data: object, args: argparse.Namespace,
                device: torch.device, seq_s: float, pop_s: float) -> dict:
    """FLOPs per candidate step, matmul peak, achieved rates and the same-arithmetic ceiling."""
    x = data.x_train[: args.batch_size].to(device)  # type: ignore[attr-defined]
    y = data.y_train[: args.batch_size].to(device)  # type: ignore[attr-defined]
    flops = training_step_flops(model_fn().to(device), x, y, F.cross_entropy)
    peak = matmul_gflops(device, repeats=20)
    work = args.population * args.steps * flops / 1e9
    ceiling = speed_ceiling(seq_s, flops, args.steps, args.population, peak)
    needed = args.goal * work / seq_s
    print(f"arithmetic: {flops / 1e6:.1f} MFLOP per candidate step (convolutions and matmuls, "
          f"forward+backward); matmul peak here {peak:.1f} GFLOP/s; sequential ran at "
          f"{work / seq_s:.1f} GFLOP/s, batched at {work / pop_s:.1f} GFLOP/s; no batched run of "
          f"this arithmetic can beat sequential by more than {ceiling:.2f}x here; "
          f"{args.goal:g}x needs the whole batched run at {needed:.1f} GFLOP/s "
          f"({100 * needed / peak:.0f}% of the matmul peak)")
    return {"mflop_per_candidate_step": round(flops / 1e6, 1),
            "matmul_peak_gflops": round(peak, 1),
            "sequential_gflops": round(work / seq_s, 1), "batched_gflops": round(work / pop_s, 1),
            "ceiling_same_arithmetic": round(ceiling, 2),
            "goal": args.goal, "goal_needs_fraction_of_peak": round(needed / peak, 2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--width", type=int, default=None, help="SmallCNN/SmallInception width")
    ap.add_argument("--method", default="auto", choices=["auto", "folded", "vmap"])
    ap.add_argument("--chunk", type=int, default=0,
                    help=f"max_population_per_pass; 0 = train_population's 'auto' "
                         f"({CPU_PASS_SIZE} on CPU, all on GPU)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads for both sides (default: torch's default)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--goal", type=float, default=3.0,
                    help="speedup goal whose arithmetic cost is reported (the issue's CPU goal)")
    ap.add_argument("--cuda-graph", action="store_true",
                    help="batched side: replay the training step as a CUDA graph (CUDA only)")
    ap.add_argument("--tf32", action="store_true",
                    help="allow TF32 on CUDA (off by default: the agreement check then compares "
                         "true float32 runs; TF32 rounding, amplified over many steps, can make "
                         "deep networks drift apart beyond the check's tolerance)")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
    chunk = args.chunk or default_pass_size(device)
    data = _digits(args.device)
    c, h, _ = data.input_shape
    kw = {} if args.width is None else {"width": args.width}

    def model_fn() -> nn.Module:
        return build_model(args.model, c, data.num_classes, h, **kw)

    named = candidate_losses(args.population)
    losses = [fn for _, fn in named]
    budget = TrainBudget(steps=args.steps, batch_size=args.batch_size)

    # Warm-up outside the timings: the first convolution of a process pays one-time
    # library initialisation (seconds on CPU, cuDNN handles on GPU) that belongs to neither side.
    warm = TrainBudget(steps=2, batch_size=args.batch_size)
    train_sequential(model_fn, losses[:2], data, warm, args.seed, device=device)
    train_population(model_fn, losses[:2], data, warm, args.seed, device=device,
                     method=args.method, cuda_graph=args.cuda_graph)

    seq_times, pop_times = [], []
    seq = pop = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        seq = train_sequential(model_fn, losses, data, budget, args.seed, device=device)
        seq_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pop = train_population(model_fn, losses, data, budget, args.seed, device=device,
                               max_population_per_pass=chunk, method=args.method,
                               cuda_graph=args.cuda_graph)
        pop_times.append(time.perf_counter() - t0)
    assert seq is not None and pop is not None

    print(f"{'candidate':<14}{'seq acc':>9}{'pop acc':>9}{'seq ce':>9}{'pop ce':>9}  status")
    for (name, _), s, p in zip(named, seq, pop, strict=True):
        print(f"{name:<14}{s.val_accuracy:9.4f}{p.val_accuracy:9.4f}{s.val_ce:9.4f}"
              f"{p.val_ce:9.4f}  {s.status}/{p.status}")
    ok, diffs = _agree(seq, pop, len(data.y_val))
    print(f"agreement: {'ok' if ok else 'MISMATCH'} {diffs}")
    print(f"device={device} threads={threads} model={args.model} method={args.method} "
          f"chunk={chunk} steps={args.steps} batch={args.batch_size} "
          f"seq runs={[round(t, 2) for t in seq_times]} pop runs={[round(t, 2) for t in pop_times]}")
    s_best, p_best = min(seq_times), min(pop_times)
    roof = _arithmetic(model_fn, data, args, device, s_best, p_best)
    summary = {"population": args.population, "sequential_s": round(s_best, 3),
               "batched_s": round(p_best, 3), "speedup": round(s_best / p_best, 2),
               "agree": ok, "device": str(device), "threads": threads, "chunk": chunk,
               "steps": args.steps, "cuda_graph": args.cuda_graph, **roof}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
