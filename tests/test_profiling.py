"""The arithmetic ceiling behind the population-training speed goal (benchmarks/profiling.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents
                            if (p / "benchmarks").is_dir()) / "benchmarks"))
from profiling import matmul_gflops, speed_ceiling, training_step_flops  # noqa: E402


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10, bias=False))


def test_training_step_flops_matches_closed_form():
    b = 2
    x, y = torch.randn(b, 1, 8, 8), torch.tensor([1, 7])
    conv = 2 * b * 8 * 8 * 4 * 1 * 9  # multiply-adds x 2, per pass
    lin = 2 * b * 256 * 10
    # conv: forward + weight gradient (the images need no gradient); linear: forward,
    # weight gradient and input gradient (the conv below needs it)
    assert training_step_flops(_net(), x, y, F.cross_entropy) == 2 * conv + 3 * lin


def test_training_step_flops_leaves_model_as_it_was():
    net = nn.Sequential(nn.BatchNorm2d(1), _net()).eval()
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2])
    F.cross_entropy(net(x), y).backward()
    before = [p.grad.clone() for p in net.parameters()]
    stats = [b.clone() for b in net.buffers()]
    training_step_flops(net, x, y, F.cross_entropy)
    assert not net.training
    for b, s in zip(net.buffers(), stats, strict=True):
        assert torch.equal(b, s)
    for p, g in zip(net.parameters(), before, strict=True):
        assert torch.equal(p.grad, g)


def test_training_step_flops_scales_with_batch():
    one = training_step_flops(_net(), torch.randn(1, 1, 8, 8), torch.tensor([3]), F.cross_entropy)
    four = training_step_flops(_net(), torch.randn(4, 1, 8, 8), torch.tensor([3, 1, 0, 2]),
                               F.cross_entropy)
    assert four == 4 * one


def test_matmul_gflops_is_a_positive_rate():
    assert matmul_gflops(n=64, repeats=2) > 0
    with pytest.raises(ValueError, match="n=0"):
        matmul_gflops(n=0)


def test_speed_ceiling():
    # 16 candidates x 100 steps x 1 GFLOP at 100 GFLOP/s take at least 16 s
    assert speed_ceiling(32.0, 10**9, 100, 16, 100.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="peak_gflops=0"):
        speed_ceiling(32.0, 10**9, 100, 16, 0)
