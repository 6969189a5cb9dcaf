"""The vmap engine: P networks as one through ``torch.func.vmap`` over stacked parameters.

``vmap(functional_call)`` runs the plain network once per candidate's slice of the stacked
parameters and buffers (BatchNorm running statistics per candidate). It works for any
``nn.Module``, dropout included (``randomness="same"``: one mask for all candidates, common
random numbers again), at more dispatch overhead per op than the folded engine
(:mod:`ngl.fitness.folded`); ``method="auto"`` falls back to it where folding does not fit.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.func import functional_call, vmap

__all__ = ["SingleEngine", "VmapEngine"]


class VmapEngine:
    """The population through ``vmap``: ``engine(x)`` gives ``[P, B, C]`` logits and ``params``
    the stacked trainable tensors, ``[P, ...]`` each."""

    def __init__(self, model: nn.Module, pop: int) -> None:
        self.pop, self.model = pop, model
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self.p = {k: v.requires_grad_(True) for k, v in _stack(trainable, pop).items()}
        # Buffers (BatchNorm running stats) are stacked as well: each candidate keeps its own.
        self.b = {**_stack(dict(model.named_buffers()), pop), **frozen}
        self.params = list(self.p.values())

        def forward(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(model, (p, b), (x,))

        dims = {k: (None if k in frozen else 0) for k in self.b}
        self._stacked = [k for k, d in dims.items() if d == 0]
        # randomness="same": one dropout mask per step shared by all candidates (CRN again).
        self.fn = vmap(forward, in_dims=(0, dims, None), randomness="same")

    def tensors(self) -> list[Tensor]:
        """Every per-candidate tensor (parameters, then buffers), ``[P, ...]`` each."""
        return self.params + [self.b[k] for k in self._stacked]

    def shared(self) -> list[Tensor]:
        """Nothing: every buffer is stacked per candidate; frozen parameters never change."""
        return []

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(self.p, self.b, x)

    def train(self, mode: bool) -> None:
        self.model.train(mode)


class SingleEngine(VmapEngine):
    """A pass of one candidate: the same ``[1, ...]`` stacked tensors as `VmapEngine`, run
    through the plain network on their first slice, without ``vmap``'s per-op dispatch.

    It computes what ``vmap`` over one candidate computes -- the same parameters, BatchNorm
    statistics updated in place through the slices, and dropout drawing the same mask from the
    same stream (``randomness="same"`` draws the unbatched shape) -- at the plain network's
    speed, which on a 2-core CPU beats every batched pass (``benchmarks/population_training.py``).
    """

    def __init__(self, model: nn.Module, pop: int) -> None:
        if pop != 1:
            raise ValueError(f"SingleEngine trains one candidate, got {pop}")
        super().__init__(model, pop)
        stacked = set(self._stacked)

        def forward(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            first = {k: v[0] for k, v in p.items()}
            bufs = {k: (v[0] if k in stacked else v) for k, v in b.items()}
            return functional_call(model, (first, bufs), (x,)).unsqueeze(0)

        self.fn = forward


def _stack(tensors: dict[str, Tensor], pop: int) -> dict[str, Tensor]:
    return {k: v.detach().unsqueeze(0).repeat(pop, *([1] * v.ndim)).contiguous()
            for k, v in tensors.items()}
