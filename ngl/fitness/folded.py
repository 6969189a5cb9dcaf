"""The folded engine: P networks as one, the population folded into the channel axis.

Each Conv becomes one grouped convolution over P*C channels (the first one, on the shared
images, an ordinary convolution with P*C output channels), each BatchNorm one BatchNorm over
P*C channels -- per-candidate batch *and* running statistics for free, so eval mode is right --
and each Linear one batched matmul. Few, large kernels and no per-op batching machinery.

It needs a network of Conv/BatchNorm/Linear plus parameter-free layers whose forward does not
mix channels (residual adds are fine; ``torch.cat`` along channels, as in Inception blocks, is
not). `foldable` checks the layers; `verify_folded` runs a two-candidate check against the
plain network, which is how ``method="auto"`` decides (:mod:`ngl.fitness.population`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FoldedEngine", "fold", "foldable", "verify_folded"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_RANDOM = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
           nn.FeatureAlphaDropout)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _cat_param(tensors: list[Tensor], like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(torch.cat([t.detach() for t in tensors]).contiguous(),
                        requires_grad=like.requires_grad)


class _FoldedConv(nn.Module):
    """P convolutions as one grouped convolution over P*C channels (candidate-major).

    A shared input (the images, C channels rather than P*C) goes through an ordinary
    convolution with the P weight sets stacked as output channels: no copy of the input.
    """

    def __init__(self, convs: list[nn.Module]) -> None:
        super().__init__()
        c = convs[0]
        assert isinstance(c, _CONVS)
        self.pop, self.in_single, self.groups = len(convs), c.in_channels, c.groups
        self.stride, self.padding, self.dilation = c.stride, c.padding, c.dilation
        self.padding_mode, self.pad = c.padding_mode, c._reversed_padding_repeated_twice
        self.fn = _CONV_FN[len(c.kernel_size)]
        self.weight = _cat_param([m.weight for m in convs], c.weight)
        self.bias = None if c.bias is None else _cat_param([m.bias for m in convs], c.bias)

    def forward(self, x: Tensor) -> Tensor:
        groups = self.pop * self.groups
        if self.pop > 1 and x.shape[1] == self.in_single:  # shared input
            if self.groups == 1:
                groups = 1
            else:
                x = x.repeat(1, self.pop, *([1] * (x.ndim - 2)))
        padding = self.padding
        if self.padding_mode != "zeros":
            x, padding = F.pad(x, self.pad, mode=self.padding_mode), 0
        return self.fn(x, self.weight, self.bias, self.stride, padding, self.dilation, groups)


class _FoldedBatchNorm(nn.Module):
    """P BatchNorms as one over P*C channels: per-candidate batch and running statistics."""

    def __init__(self, norms: list[nn.Module]) -> None:
        super().__init__()
        n = norms[0]
        assert isinstance(n, _NORMS)
        self.pop, self.in_single = len(norms), n.num_features
        self.inner = type(n)(self.pop * n.num_features, eps=n.eps, momentum=n.momentum,
                             affine=n.affine, track_running_stats=n.track_running_stats,
                             device=n.weight.device if n.affine else None)
        for name, t in list(n.named_parameters(recurse=False)):
            setattr(self.inner, name, _cat_param([getattr(m, name) for m in norms], t))
        for name, t in list(n.named_buffers(recurse=False)):
            if t is None:
                continue
            if t.ndim == 0:  # num_batches_tracked: one counter, the same for everyone
                self.inner.register_buffer(name, t.detach().clone())
            else:
                stacked = torch.cat([getattr(m, name).detach() for m in norms]).contiguous()
                self.inner.register_buffer(name, stacked)

    def forward(self, x: Tensor) -> Tensor:
        if self.pop > 1 and x.shape[1] == self.in_single:
            x = x.repeat(1, self.pop, *([1] * (x.ndim - 2)))
        return self.inner(x)


class _FoldedLinear(nn.Module):
    """P linear layers on the last axis, folded as P blocks of features: a batched matmul."""

    def __init__(self, linears: list[nn.Module]) -> None:
        super().__init__()
        lin = linears[0]
        assert isinstance(lin, nn.Linear)
        self.pop, self.in_single = len(linears), lin.in_features
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]),
                                   requires_grad=lin.weight.requires_grad)
        self.bias = None if lin.bias is None else nn.Parameter(
            torch.stack([m.bias.detach() for m in linears]), requires_grad=lin.bias.requires_grad)

    def forward(self, x: Tensor) -> Tensor:
        if self.pop > 1 and x.shape[-1] == self.in_single:  # shared input
            out = torch.einsum("...f,pof->...po", x, self.weight)
        else:
            out = torch.einsum("...pf,pof->...po", x.unflatten(-1, (self.pop, -1)), self.weight)
        if self.bias is not None:
            out = out + self.bias
        return out.flatten(-2)


_FOLDERS: dict[type[nn.Module], Callable[[list[nn.Module]], nn.Module]] = {
    **dict.fromkeys(_CONVS, _FoldedConv),
    **dict.fromkeys(_NORMS, _FoldedBatchNorm),
    nn.Linear: _FoldedLinear,
}


def foldable(model: nn.Module) -> bool:
    """Whether every stateful or random piece of `model` is a layer `fold` knows.

    Parameter-free modules (activations, pooling, flatten, residual adds in a custom
    forward) act per channel and need no change; anything else with parameters or buffers
    (LayerNorm, attention, ...) or randomness would mix or break the folded layout.
    Custom forward code that mixes channels (torch.cat along channels, channel shuffle)
    is not visible here; `verify_folded` catches it.
    """
    for m in model.modules():
        if type(m) in _FOLDERS:
            continue
        if isinstance(m, _RANDOM) or any(True for _ in m.parameters(recurse=False)) or any(
            b is not None for b in m.buffers(recurse=False)
        ):
            return False
    return True


def fold(models: list[nn.Module]) -> nn.Module:
    """One network computing all `models` (same architecture) side by side, channels folded."""
    template = copy.deepcopy(models[0])
    names = [n for n, m in models[0].named_modules() if type(m) in _FOLDERS]
    for name in names:
        parts = [m.get_submodule(name) for m in models]
        new = _FOLDERS[type(parts[0])](parts)
        if name:
            parent_name, _, child = name.rpartition(".")
            setattr(template.get_submodule(parent_name) if parent_name else template, child, new)
        else:
            template = new
    return template


def verify_folded(model: nn.Module, probe: Tensor) -> bool:
    """Check the folded network against the plain one for two different candidates.

    Runs one training-mode forward (BatchNorm batch statistics, running-stat update) and
    one eval-mode forward on a few real samples; a folded layout that custom forward code
    breaks shows up as a mismatch. Works on copies, so `model` is untouched.
    """
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    g = torch.Generator().manual_seed(12345)
    with torch.no_grad():
        for p in b.parameters():
            noise = torch.randn(p.shape, generator=g).to(device=p.device, dtype=p.dtype)
            p.mul_(1 + 0.5 * noise).add_(0.1 * noise)
    try:
        net = fold([a, b])
        for mode in (True, False):
            for m in (a, b, net):
                m.train(mode)
            with torch.no_grad():
                got = net(probe).unflatten(-1, (2, -1)).movedim(-2, 0)
                want = torch.stack([a(probe), b(probe)])
            if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-3, atol=1e-4):
                return False
    except (RuntimeError, ValueError, IndexError):
        return False
    return True


class FoldedEngine:
    """The population as one folded network: ``engine(x)`` gives ``[P, B, C]`` logits and
    ``params`` the stacked trainable tensors, candidate-major (P leading blocks each)."""

    def __init__(self, model: nn.Module, pop: int) -> None:
        self.pop, self.net = pop, fold([model] * pop)
        self.params = [p for p in self.net.parameters() if p.requires_grad]

    def tensors(self) -> list[Tensor]:
        """Every per-candidate tensor (parameters, then running statistics), candidate-major:
        ``t.view(pop, -1)[i]`` is candidate i's part. Successive halving moves candidates
        between engines through these."""
        return list(self.net.parameters()) + [b for b in self.net.buffers() if b.ndim > 0]

    def shared(self) -> list[Tensor]:
        """Tensors one for all candidates (BatchNorm's ``num_batches_tracked`` counters)."""
        return [b for b in self.net.buffers() if b.ndim == 0]

    def __call__(self, x: Tensor) -> Tensor:
        out = self.net(x)  # [B, P*C], candidate-major
        return out.unflatten(-1, (self.pop, -1)).movedim(-2, 0)

    def train(self, mode: bool) -> None:
        self.net.train(mode)

