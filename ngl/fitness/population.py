"""Fitness of candidate losses: train a fresh network with each loss, score it on validation.

This is the expensive inner step of the GP loss search. Two implementations do the same work:

* `train_sequential` -- the plain reference: one model after another.
* `train_population` -- all candidates of a generation at once: one network evaluation and
  one backward per step for the whole population; only the candidate losses run in a Python
  loop, each on its own slice of the `[P, B, C]` logits. Backward of the summed losses gives
  every candidate exactly its own gradient (no tensor mixes candidates), and Adam/AdamW/SGD
  are elementwise, so one optimizer over the stacked parameters equals one per candidate.

Common random numbers: within a call every candidate starts from the *same* initial weights
(built under `torch.manual_seed(seed)`), sees the *same* batches in the same order (a
`torch.Generator` seeded with `seed`) and, for networks with dropout, the same dropout masks.
Differences between candidates therefore come from the loss alone, which makes selection far
less noisy than independent seeds would. The caller's global RNG state is left untouched.

Two ways to run P networks as one (``method=``; ``"auto"`` picks):

* ``"folded"``: the population is folded into the channel axis. Each Conv becomes one grouped
  convolution over P*C channels (the first one, on the shared images, an ordinary convolution
  with P*C output channels), each BatchNorm one BatchNorm over P*C channels -- per-candidate
  batch *and* running statistics for free, so eval mode is right -- and each Linear one
  batched matmul. Few, large kernels and no per-op batching machinery. It needs a network of
  Conv/BatchNorm/Linear plus parameter-free layers whose forward does not mix channels
  (residual adds are fine; `torch.cat` along channels, as in Inception blocks, is not), so
  `"auto"` runs a two-candidate check against the plain network before using it.
* ``"vmap"``: `torch.func.vmap(functional_call)` over stacked parameters and buffers
  (BatchNorm running stats per candidate). Works for any `nn.Module`, dropout included
  (``randomness="same"``: one mask for all candidates); more dispatch overhead per op.

Where it pays (measured, see benchmarks/population_training.py): on a GPU the small fitness
networks are launch-bound: the eager batched pass is 4-6x faster than the sequential reference
and the CUDA-graph replay (``cuda_graph=True``) 16-21x (H200, P = 16-64). On a 2-core CPU the
gain is small (about 1.0-1.2x for the width-32 SmallCNN on digits) because there is little
overhead to remove: one candidate's step is 916 MFLOP of convolutions, which the sequential
reference already runs at ~46 GFLOP/s against a ~157 GFLOP/s hardware peak, with BatchNorm,
ReLU and Adam (not counted) taking most of the rest. The benchmark prints that arithmetic
ceiling (`profiling`). A 16-candidate pass also spills activations out of cache, so CPU
passes hold `CPU_PASS_SIZE` candidates (``max_population_per_pass="auto"``).

Non-finite candidates (the policy of `ngl.train.optim`, shared by every training loop of ngl: loss
and gradients finite, else no step): a candidate whose loss or any gradient is NaN/inf at some
step is masked out from that step on: its gradients are zeroed and its parameters restored after every
optimizer step, so they stay at the last finite values, and the other candidates are not
disturbed (no tensor mixes candidates). Its result has ``status="nonfinite"``,
``val_accuracy=0.0`` (the worst possible score, so it sorts last and stays a plain float
for selection, JSON and pandas) and ``val_ce=nan`` (not measured).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ngl.io.config import STRICT, ConfigMixin
from ngl.train.optim import all_finite, optimizer_from_config

__all__ = [
    "LossFn",
    "TrainBudget",
    "FitnessResult",
    "train_sequential",
    "train_population",
    "CPU_PASS_SIZE",
    "default_pass_size",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""A candidate loss: ``loss(logits[B, C], target[B] int64) -> scalar tensor``."""


CPU_PASS_SIZE = 4
"""Candidates per batched pass on CPU (``max_population_per_pass="auto"``).

Measured on 2 cores (width-32 SmallCNN, digits, 16 candidates, 50 steps; the same comparison
as ``benchmarks/population_training.py --chunk N``): passes of 2-8 candidates ran 1.0-1.2x
faster than sequential training, one pass of all 16 about 0.8x, because its activations no
longer fit in cache."""


def default_pass_size(device: str | torch.device) -> int | None:
    """What ``max_population_per_pass="auto"`` means on `device`: `CPU_PASS_SIZE` on CPU, all
    candidates in one pass (None) on accelerators, where one big pass amortises launches."""
    return CPU_PASS_SIZE if torch.device(device).type == "cpu" else None


@pydantic_dataclass(frozen=True, config=STRICT)
class TrainBudget(ConfigMixin):
    """How one candidate is trained: the same budget for every candidate of a search.

    ``optimizer="sgd"`` uses ``momentum`` and, only when asked, ``nesterov`` (the same
    optimizer builder as downstream training, :func:`ngl.train.loop.build_optimizer`).
    """

    steps: Annotated[int, Field(ge=0)] = 200
    batch_size: Annotated[int, Field(ge=1)] = 128
    lr: Annotated[float, Field(gt=0)] = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    eval_batch_size: Annotated[int, Field(ge=1)] = 1024

    def __post_init__(self) -> None:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ValueError(f"TrainBudget.nesterov=True needs optimizer='sgd' with momentum > 0, "
                             f"got optimizer={self.optimizer!r}, momentum={self.momentum}")


@dataclass(frozen=True)
class FitnessResult:
    """Outcome of training one candidate.

    ``train_time_s`` is wall time of the training loop; in `train_population` it is the
    pass's time divided by the candidates in the pass (the amortised share).
    ``final_train_loss`` is the candidate's own loss on the last batch it attempted (for a
    non-finite candidate, the value that stopped it). ``steps_done`` counts applied updates.
    """

    val_accuracy: float
    val_ce: float
    train_time_s: float
    status: str
    final_train_loss: float
    steps_done: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# shared helpers


def _field(data: Any, name: str) -> Tensor:
    value = data[name] if isinstance(data, dict) else getattr(data, name, None)
    if not isinstance(value, Tensor):
        raise TypeError(f"data.{name} must be a tensor, got {type(value).__name__}")
    return value


def _split(data: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Training and validation tensors, on `device` (a no-op where they already are)."""
    xs = [_field(data, n).to(device) for n in ("x_train", "y_train", "x_val", "y_val")]
    if len(xs[0]) == 0 or len(xs[0]) != len(xs[1]) or len(xs[2]) != len(xs[3]):
        raise ValueError("data must hold non-empty x_train/y_train and matching x_val/y_val")
    return xs[0], xs[1], xs[2], xs[3]


def _batch_indices(n: int, budget: TrainBudget, seed: int, device: torch.device) -> Tensor:
    """``[steps, batch_size]`` sample indices: shuffled epochs, drawn once for all candidates.

    Epochs are concatenated permutations, so each sample is seen once per epoch; drawing
    everything up front keeps the generator out of the hot loop and makes the order identical
    for `train_sequential` and `train_population`.
    """
    total = budget.steps * budget.batch_size
    if total == 0:
        return torch.empty(0, budget.batch_size, dtype=torch.long, device=device)
    g = torch.Generator().manual_seed(seed)
    epochs = -(-total // n)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(epochs)])[:total]
    return order.view(budget.steps, budget.batch_size).to(device)


def _initial_model(model_fn: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """The architecture with the seeded initial weights every candidate starts from."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_fn()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model_fn must return an nn.Module, got {type(model).__name__}")
    return model.to(device)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed dropout & co. for training without touching the caller's RNG state."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _make_optimizer(params: Sequence[Tensor], budget: TrainBudget,
                    capturable: bool = False) -> torch.optim.Optimizer:
    """The shared builder (:func:`ngl.train.optim.build_optimizer`), so "sgd" means the same
    optimizer in the search as in downstream training (Nesterov only if ``budget.nesterov``)."""
    return optimizer_from_config(params, budget, capturable=capturable)


def _scalar_loss(loss_fn: LossFn, logits: Tensor, target: Tensor, index: int) -> Tensor:
    value = loss_fn(logits, target)
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"candidate {index}: loss must return a scalar tensor, got {shape}")
    return value.reshape(()).to(logits.dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_common(losses: Sequence[LossFn], budget: TrainBudget) -> None:
    if not isinstance(budget, TrainBudget):
        raise TypeError(f"budget must be a TrainBudget, got {type(budget).__name__}")
    for i, fn in enumerate(losses):
        if not callable(fn):
            raise TypeError(f"candidate {i}: loss must be callable, got {type(fn).__name__}")


def _result(ok: bool, acc: float, ce: float, time_s: float, last_loss: float,
            steps: int) -> FitnessResult:
    if not ok:
        return FitnessResult(0.0, math.nan, time_s, "nonfinite", last_loss, steps)
    return FitnessResult(acc, ce, time_s, "ok", last_loss, steps)


# ---------------------------------------------------------------------------------------------
# sequential reference


def train_sequential(model_fn: Callable[[], nn.Module], losses: Sequence[LossFn], data: Any,
                     budget: TrainBudget, seed: int,
                     device: str | torch.device = "cpu") -> list[FitnessResult]:
    """Train one model per candidate, one after another; the reference for `train_population`."""
    _check_common(losses, budget)
    device = torch.device(device)
    x_tr, y_tr, x_val, y_val = _split(data, device)
    batches = _batch_indices(len(x_tr), budget, seed, device)
    return [
        _train_one(model_fn, fn, i, x_tr, y_tr, x_val, y_val, batches, budget, seed, device)
        for i, fn in enumerate(losses)
    ]


def _train_one(model_fn: Callable[[], nn.Module], loss_fn: LossFn, index: int, x_tr: Tensor,
               y_tr: Tensor, x_val: Tensor, y_val: Tensor, batches: Tensor,
               budget: TrainBudget, seed: int, device: torch.device) -> FitnessResult:
    model = _initial_model(model_fn, seed, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(params, budget)
    ok, steps_done, last_loss = True, 0, math.nan
    _sync(device)
    start = time.perf_counter()
    with _seeded(seed, device):
        model.train()
        for idx in batches:
            xb, yb = x_tr[idx], y_tr[idx]
            loss = _scalar_loss(loss_fn, model(xb), yb, index)
            opt.zero_grad(set_to_none=False)
            if loss.requires_grad:
                loss.backward()
            else:  # a loss that ignores the logits: zero gradient, like in the batched path
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
            last_loss = loss.detach()
            # One sync per step (ngl.train.optim's policy: loss and gradients finite, else no step);
            # acceptable for the reference implementation.
            if not bool(all_finite(last_loss, (p.grad for p in params))):
                ok = False
                break
            opt.step()
            steps_done += 1
    _sync(device)
    elapsed = time.perf_counter() - start
    last = float(last_loss)
    if not ok:
        return _result(False, 0.0, math.nan, elapsed, last, steps_done)
    model.eval()
    correct = torch.zeros((), device=device)
    ce_sum = torch.zeros((), device=device)
    with torch.no_grad():
        for s in range(0, len(x_val), budget.eval_batch_size):
            xb, yb = x_val[s:s + budget.eval_batch_size], y_val[s:s + budget.eval_batch_size]
            logits = model(xb).float()
            correct += (logits.argmax(-1) == yb).sum()
            ce_sum += F.cross_entropy(logits, yb, reduction="sum")
    n = len(y_val)
    return _result(True, float(correct) / n, float(ce_sum) / n, elapsed, last, steps_done)


# ---------------------------------------------------------------------------------------------
# batched population: two engines behind one training loop

_METHODS = ("auto", "folded", "vmap")
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


def _foldable(model: nn.Module) -> bool:
    """Whether every stateful or random piece of `model` is a layer `_fold` knows.

    Parameter-free modules (activations, pooling, flatten, residual adds in a custom
    forward) act per channel and need no change; anything else with parameters or buffers
    (LayerNorm, attention, ...) or randomness would mix or break the folded layout.
    Custom forward code that mixes channels (torch.cat along channels, channel shuffle)
    is not visible here; `_verify_folded` catches it.
    """
    for m in model.modules():
        if type(m) in _FOLDERS:
            continue
        if isinstance(m, _RANDOM) or any(True for _ in m.parameters(recurse=False)) or any(
            b is not None for b in m.buffers(recurse=False)
        ):
            return False
    return True


def _fold(models: list[nn.Module]) -> nn.Module:
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


class _Engine:
    """What the training loop needs from a batched population network."""

    pop: int
    params: list[Tensor]

    def __call__(self, x: Tensor) -> Tensor:  # [P, B, C] logits
        raise NotImplementedError

    def train(self, mode: bool) -> None:
        raise NotImplementedError


class _FoldedEngine(_Engine):
    def __init__(self, model: nn.Module, pop: int) -> None:
        self.pop, self.net = pop, _fold([model] * pop)
        self.params = [p for p in self.net.parameters() if p.requires_grad]

    def __call__(self, x: Tensor) -> Tensor:
        out = self.net(x)  # [B, P*C], candidate-major
        return out.unflatten(-1, (self.pop, -1)).movedim(-2, 0)

    def train(self, mode: bool) -> None:
        self.net.train(mode)


class _VmapEngine(_Engine):
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
        # randomness="same": one dropout mask per step shared by all candidates (CRN again).
        self.fn = vmap(forward, in_dims=(0, dims, None), randomness="same")

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(self.p, self.b, x)

    def train(self, mode: bool) -> None:
        self.model.train(mode)


def _stack(tensors: dict[str, Tensor], pop: int) -> dict[str, Tensor]:
    return {k: v.detach().unsqueeze(0).repeat(pop, *([1] * v.ndim)).contiguous()
            for k, v in tensors.items()}


def _verify_folded(model: nn.Module, probe: Tensor) -> bool:
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
        net = _fold([a, b])
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


def _resolve_method(method: str, model: nn.Module, probe: Tensor) -> str:
    """"auto" -> "folded" where the folded network checks out, else "vmap"."""
    if method == "vmap":
        return method
    ok = _foldable(model) and _verify_folded(model, probe)
    if method == "folded" and not ok:
        raise ValueError(
            "this model cannot be folded (it has layers other than Conv/BatchNorm/Linear "
            "with state, dropout, or a forward that mixes channels); use method='vmap'"
        )
    return "folded" if ok else "vmap"


def train_population(model_fn: Callable[[], nn.Module], losses: Sequence[LossFn], data: Any,
                     budget: TrainBudget, seed: int, device: str | torch.device = "cpu",
                     max_population_per_pass: int | str | None = "auto",
                     method: str = "auto", cuda_graph: bool = False) -> list[FitnessResult]:
    """Train all candidates together; same results as `train_sequential` up to float rounding.

    `cuda_graph=True` (CUDA only) records one whole training step -- forward, the P candidate
    losses, backward, masking and the optimizer step -- as a CUDA graph after a few eager
    warm-up steps and replays it: with many candidates the step is thousands of small kernel
    launches, which the replay issues at once. Losses must not sync with the host: one built
    with ``validate=True`` (``get_loss``'s default) is refused with a ValueError, on any device;
    pass ``validate=False`` (the search's own compiled losses already do).

    `method` picks how the P networks run as one:

    * ``"folded"``: the population folded into the channel axis -- every Conv becomes one
      grouped convolution over P*C channels, every BatchNorm one BatchNorm over P*C channels
      (per-candidate statistics for free), every Linear one batched matmul. Fewest kernel
      launches and no per-op batching machinery; needs a network built from Conv/BatchNorm/
      Linear plus parameter-free layers, without dropout, whose forward code does not mix
      channels (residual adds are fine, `torch.cat` along channels is not).
    * ``"vmap"``: `torch.func.vmap` over `functional_call` with stacked parameters and
      buffers; works for any network (dropout gets one mask shared by all candidates).
    * ``"auto"`` (default): folded where a check on two candidates confirms it computes the
      same as the plain network, vmap otherwise.

    `max_population_per_pass` bounds memory: candidates are trained in chunks of at most that
    many, each chunk from the same initial weights and batches, so chunking does not change
    the results beyond float rounding. ``None``: all at once. ``"auto"`` (default):
    `CPU_PASS_SIZE` on CPU, where chunks of a few candidates stay in cache and a 16-candidate
    pass is slower than training them one by one; all at once on accelerators.
    """
    _check_common(losses, budget)
    if cuda_graph:
        _refuse_validating(losses)
    device = torch.device(device)
    if max_population_per_pass == "auto":
        max_population_per_pass = default_pass_size(device)
    if max_population_per_pass is not None and (
        isinstance(max_population_per_pass, bool)
        or not isinstance(max_population_per_pass, int)
        or max_population_per_pass < 1
    ):
        raise ValueError(
            "max_population_per_pass must be a positive int, None or 'auto', "
            f"got {max_population_per_pass!r}"
        )
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    x_tr, y_tr, x_val, y_val = _split(data, device)
    batches = _batch_indices(len(x_tr), budget, seed, device)
    if losses:  # decide once, not per chunk
        probe = x_tr[: min(len(x_tr), 8)]
        method = _resolve_method(method, _initial_model(model_fn, seed, device), probe)
    chunk = max_population_per_pass or max(len(losses), 1)
    results: list[FitnessResult] = []
    for start in range(0, len(losses), chunk):
        part = list(losses[start:start + chunk])
        results += _train_pass(model_fn, part, start, x_tr, y_tr, x_val, y_val, batches,
                               budget, seed, device, method,
                               cuda_graph=cuda_graph and device.type == "cuda")
    return results


def _refuse_validating(losses: Sequence[LossFn]) -> None:
    """``cuda_graph=True`` records the candidate losses inside CUDA-graph capture, where a host
    sync is an error; an ``ngl`` loss built with ``validate=True`` (the default of ``get_loss``
    and ``to_module``) checks its targets with ``.any()``/``int()`` reads, i.e. host syncs.

    Refused on every device, before anything runs, so a script that would fail on a GPU fails
    the same way on a laptop (where the flag is otherwise ignored)."""
    for i, fn in enumerate(losses):
        modules = fn.modules() if isinstance(fn, nn.Module) else [fn]
        culprit = next((m for m in modules if getattr(m, "validate", False) is True), None)
        if culprit is not None:
            text = repr(fn)
            name = text if len(text) <= 120 and "\n" not in text else type(fn).__name__
            if culprit is not fn:
                name += f", through its {type(culprit).__name__}"
            raise ValueError(
                f"cuda_graph=True: candidate {i} ({name}) validates its targets (validate=True), "
                "which syncs with the host inside CUDA-graph capture; build it with "
                "validate=False, e.g. get_loss(name, validate=False) or "
                "LossExpression.parse(text).to_module(validate=False) as ngl.gp.search does")


def _blocks(t: Tensor, pop: int) -> Tensor:
    """A stacked tensor seen as `[P, rest]` (every engine keeps candidates in leading blocks)."""
    return t.view(pop, -1)


def _train_pass(model_fn: Callable[[], nn.Module], losses: list[LossFn], offset: int,
                x_tr: Tensor, y_tr: Tensor, x_val: Tensor, y_val: Tensor, batches: Tensor,
                budget: TrainBudget, seed: int, device: torch.device,
                method: str, cuda_graph: bool = False) -> list[FitnessResult]:
    pop = len(losses)
    model = _initial_model(model_fn, seed, device)
    engine: _Engine = _FoldedEngine(model, pop) if method == "folded" else _VmapEngine(model, pop)
    plist = engine.params
    opt = _make_optimizer(plist, budget, capturable=cuda_graph)

    alive = torch.ones(pop, dtype=torch.bool, device=device)
    steps_done = torch.zeros(pop, dtype=torch.long, device=device)
    last_loss = torch.full((pop,), math.nan, device=device)
    static_idx = batches[0].clone() if len(batches) else None

    def step(idx: Tensor) -> None:
        """One training step for all candidates; device work only (no host sync), so it can
        be recorded as a CUDA graph."""
        nonlocal last_loss
        xb, yb = x_tr[idx], y_tr[idx]
        logits = engine(xb)  # [P, B, C]
        values = torch.stack([
            _scalar_loss(fn, logits[i], yb, offset + i) for i, fn in enumerate(losses)
        ])
        for p in plist:
            p.grad = None
        if values.requires_grad:
            values.sum().backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.contiguous() for p in plist]
        finite = torch.isfinite(values.detach())
        for gr in grads:
            finite &= torch.isfinite(_blocks(gr, pop)).all(1)
        last_loss.copy_(torch.where(alive, values.detach(), last_loss))
        alive.copy_(alive & finite)
        keep = alive.view(pop, 1)
        before = []
        for p, gr in zip(plist, grads, strict=True):
            p.grad = _blocks(gr, pop).masked_fill_(~keep, 0.0).view_as(p)
            before.append(p.detach().clone())
        opt.step()
        with torch.no_grad():
            for p, old in zip(plist, before, strict=True):
                _blocks(p, pop).copy_(torch.where(keep, _blocks(p, pop), _blocks(old, pop)))
        steps_done.add_(alive)

    _sync(device)
    start = time.perf_counter()
    with _seeded(seed, device):
        engine.train(True)
        warmup = min(3, len(batches)) if cuda_graph else len(batches)
        if cuda_graph and warmup < len(batches):
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for idx in batches[:warmup]:
                    step(idx)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step(static_idx)
            for idx in batches[warmup:]:
                static_idx.copy_(idx)
                graph.replay()
        else:
            for idx in batches:
                step(idx)
    _sync(device)
    elapsed = (time.perf_counter() - start) / max(pop, 1)

    engine.train(False)
    correct = torch.zeros(pop, device=device)
    ce_sum = torch.zeros(pop, device=device)
    with torch.no_grad():
        for s in range(0, len(x_val), budget.eval_batch_size):
            xb, yb = x_val[s:s + budget.eval_batch_size], y_val[s:s + budget.eval_batch_size]
            logits = engine(xb).float()  # [P, B, C]
            correct += (logits.argmax(-1) == yb).sum(1)
            ce = F.cross_entropy(logits.flatten(0, 1), yb.repeat(pop), reduction="none")
            ce_sum += ce.view(pop, -1).sum(1)
    n = len(y_val)
    ok_l, acc_l, ce_l = alive.tolist(), (correct / n).tolist(), (ce_sum / n).tolist()
    last_l, steps_l = last_loss.tolist(), steps_done.tolist()
    return [_result(ok_l[i], acc_l[i], ce_l[i], elapsed, last_l[i], steps_l[i])
            for i in range(pop)]
