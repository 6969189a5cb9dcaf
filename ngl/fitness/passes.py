"""The machinery under :func:`ngl.fitness.population.train_population`: one call's shared
state (`PopulationRun`: data, batches, the initial network, the dropout stream) and the batched
passes it trains (`PopulationPass`: the masked step, scoring, and regrouping the survivors of a
halving rung into smaller passes). Public for benchmarks that time one pass step by step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ngl.fitness.budget import (
    FitnessResult,
    LossFn,
    SuccessiveHalving,
    TrainBudget,
    make_result,
)
from ngl.fitness.common import (
    batch_indices,
    initial_model,
    make_optimizer,
    scalar_loss,
    split_data,
    sync,
)
from ngl.fitness.cuda_graph import replay
from ngl.fitness.folded import FoldedEngine, foldable, verify_folded
from ngl.fitness.vmap import SingleEngine, VmapEngine
from ngl.train.optim import build_optimizer

__all__ = ["PopulationRun", "PopulationPass", "resolve_method"]


class _Engine(Protocol):
    """What the training loop needs from a batched population network (`FoldedEngine`,
    `VmapEngine`): ``[P, B, C]`` logits and the stacked trainable tensors, candidate-major."""

    pop: int
    params: list[Tensor]

    def __call__(self, x: Tensor) -> Tensor: ...

    def tensors(self) -> list[Tensor]: ...

    def shared(self) -> list[Tensor]: ...

    def train(self, mode: bool) -> None: ...


def resolve_method(method: str, model: nn.Module, probe: Tensor) -> str:
    """"auto" -> "folded" where the folded network checks out, else "vmap"."""
    if method == "vmap":
        return method
    ok = foldable(model) and verify_folded(model, probe)
    if method == "folded" and not ok:
        raise ValueError(
            "this model cannot be folded (it has layers other than Conv/BatchNorm/Linear "
            "with state, dropout, or a forward that mixes channels); use method='vmap'"
        )
    return "folded" if ok else "vmap"


def _blocks(t: Tensor, pop: int) -> Tensor:
    """A stacked tensor seen as `[P, rest]` (every engine keeps candidates in leading blocks)."""
    return t.view(pop, -1)


class PopulationRun:
    """One call of `train_population`: the data, the batches, the shared initial network and
    the dropout random stream, which every pass continues from where the last rung left it.
    Public (with `PopulationPass`) for benchmarks that time one pass step by step."""

    def __init__(self, model_fn: Callable[[], nn.Module], losses: list[LossFn], data: Any,
                 budget: TrainBudget, seed: int, device: torch.device, method: str,
                 cuda_graph: bool, compile: bool = False) -> None:
        self.losses, self.budget, self.seed, self.device = losses, budget, seed, device
        self.cuda_graph, self.compile = cuda_graph, compile
        self.x_tr, self.y_tr, self.x_val, self.y_val = split_data(data, device)
        self.batches = batch_indices(len(self.x_tr), budget, seed, device)
        self.model = initial_model(model_fn, seed, device)
        probe = self.x_tr[: min(len(self.x_tr), 8)]
        self.method = resolve_method(method, self.model, probe)  # decided once, not per pass
        self.rng_state: list[Tensor] | None = None  # None: start from `seed`

    def train(self, pass_size: int, halving: SuccessiveHalving | None,
              progress: Callable[[int], object] | None = None) -> list[FitnessResult]:
        done = progress or (lambda _n: None)
        n = len(self.losses)
        stops = halving.rung_steps(self.budget.steps) if halving else (self.budget.steps,)
        time_s = [0.0] * n
        accs: list[list[float]] = [[] for _ in range(n)]
        ces: list[list[float]] = [[] for _ in range(n)]
        final: dict[int, tuple[bool, float, float, float, int]] = {}
        passes = [PopulationPass(self, list(range(s, min(s + pass_size, n)))) for s in range(0, n, pass_size)]
        start = 0
        for k, stop in enumerate(stops):
            state = self.rng_state
            for ps in passes:
                elapsed, self.rng_state = ps.train(self.batches[start:stop], state)
                for cid, ok, acc, ce, last, steps in ps.score():
                    time_s[cid] += elapsed / ps.pop
                    accs[cid].append(acc if ok else 0.0)  # the non-finite policy's score
                    ces[cid].append(ce if ok else math.nan)
                    final[cid] = (ok, acc, ce, last, steps)
                if halving is None or k == len(stops) - 1:
                    done(ps.pop)
            start = stop
            if halving is None or k == len(stops) - 1:
                break
            # rank: alive first, then accuracy at this rung; equal accuracies (common early on,
            # when most losses still predict alike) by the lower validation CE, then by order
            active = sorted((c for ps in passes for c in ps.ids), key=lambda c: (
                not final[c][0], -final[c][1],
                final[c][2] if math.isfinite(final[c][2]) else math.inf, c))
            keep = sorted(c for c in active[: halving.survivors(len(active))] if final[c][0])
            done(len(active) - len(keep))
            if not keep:
                break
            passes = _regroup(self, passes, keep, pass_size)
        return [make_result(*final[c][:3], time_s[c], *final[c][3:],
                            rung=None if halving is None else len(accs[c]) - 1,
                            rung_accuracies=() if halving is None else tuple(accs[c]),
                            rung_ces=() if halving is None else tuple(ces[c]))
                for c in range(n)]


@contextlib.contextmanager
def _rng_stream(state: list[Tensor] | None, seed: int, device: torch.device,
                out: list[list[Tensor]]) -> Iterator[None]:
    """Continue the training random stream (dropout) from `state` (None: from `seed`) without
    touching the caller's; its state at the end is appended to `out`."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        if state is None:
            torch.manual_seed(seed)
        else:
            torch.set_rng_state(state[0])
            if cuda:
                torch.cuda.set_rng_state(state[1], device)
        yield
        out.append([torch.get_rng_state()] + ([torch.cuda.get_rng_state(device)] if cuda else []))


class PopulationPass:
    """Candidates `ids` trained as one batched network with the masked step below."""

    def __init__(self, run: PopulationRun, ids: list[int]) -> None:
        self.run, self.ids, self.pop = run, ids, len(ids)
        self.losses = [run.losses[i] for i in ids]
        self.engine: _Engine = (FoldedEngine(run.model, self.pop) if run.method == "folded"
                                else SingleEngine(run.model, 1) if self.pop == 1
                                else VmapEngine(run.model, self.pop))
        if run.compile and isinstance(self.engine, FoldedEngine):
            self.engine.net = torch.compile(self.engine.net, dynamic=False)
        self.params = self.engine.params
        device = run.device
        budget = run.budget
        # the learning-rate schedule: a Python float per step when eager; inside a CUDA graph
        # the rate is a device tensor the recorded step reads from a table (Adam/AdamW only)
        self.t = 0
        self.scheduled = budget.schedule != "constant"
        self.graph_lr = self.scheduled and run.cuda_graph
        if self.graph_lr:
            self.lr = torch.tensor(budget.lr, device=device)
            self.lr_table = torch.tensor([budget.lr_at(t) for t in range(budget.steps)] or
                                         [budget.lr], device=device)
            self.t_dev = torch.zeros((), dtype=torch.long, device=device)
            self.opt = build_optimizer(self.params, optimizer=budget.optimizer, lr=self.lr,
                                       weight_decay=budget.weight_decay, capturable=True)
        else:
            self.opt = make_optimizer(self.params, budget, capturable=run.cuda_graph)
        self.alive = torch.ones(self.pop, dtype=torch.bool, device=device)
        self.steps_done = torch.zeros(self.pop, dtype=torch.long, device=device)
        self.last_loss = torch.full((self.pop,), math.nan, device=device)

    def step(self, idx: Tensor) -> None:
        """One training step for all candidates; device work only (no host sync), so it can
        be recorded as a CUDA graph."""
        pop, plist, run = self.pop, self.params, self.run
        xb, yb = run.x_tr[idx], run.y_tr[idx]
        logits = self.engine(xb)  # [P, B, C]
        values = torch.stack([
            scalar_loss(fn, logits[i], yb, cid)
            for i, (cid, fn) in enumerate(zip(self.ids, self.losses, strict=True))
        ])
        for p in plist:
            p.grad = None
        if values.requires_grad:
            values.sum().backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.contiguous() for p in plist]
        finite = torch.isfinite(values.detach())
        for gr in grads:
            finite &= torch.isfinite(_blocks(gr, pop)).all(1)
        self.last_loss.copy_(torch.where(self.alive, values.detach(), self.last_loss))
        self.alive.copy_(self.alive & finite)
        keep = self.alive.view(pop, 1)
        before = []
        for p, gr in zip(plist, grads, strict=True):
            p.grad = _blocks(gr, pop).masked_fill_(~keep, 0.0).view_as(p)
            before.append(p.detach().clone())
        if self.graph_lr:
            self.lr.copy_(self.lr_table[self.t_dev])
            self.t_dev.add_(1)
        elif self.scheduled:
            for group in self.opt.param_groups:
                group["lr"] = run.budget.lr_at(self.t)
        self.t += 1
        self.opt.step()
        with torch.no_grad():
            for p, old in zip(plist, before, strict=True):
                _blocks(p, pop).copy_(torch.where(keep, _blocks(p, pop), _blocks(old, pop)))
        self.steps_done.add_(self.alive)

    def train(self, batches: Tensor, rng: list[Tensor] | None) -> tuple[float, list[Tensor]]:
        """Train on `batches`, the random stream continuing from `rng`; (seconds, new stream)."""
        run, out = self.run, []
        sync(run.device)
        start = time.perf_counter()
        with _rng_stream(rng, run.seed, run.device, out):
            self.engine.train(True)
            if run.cuda_graph and len(batches):
                replay(self.step, batches, run.device)
            else:
                for idx in batches:
                    self.step(idx)
        sync(run.device)
        return time.perf_counter() - start, out[0]

    def score(self) -> list[tuple[int, bool, float, float, float, int]]:
        """(candidate, alive, accuracy, CE, last loss, steps) on the validation split, now."""
        run, pop = self.run, self.pop
        self.engine.train(False)
        correct = torch.zeros(pop, device=run.device)
        ce_sum = torch.zeros(pop, device=run.device)
        size = run.budget.eval_batch_size
        with torch.no_grad():
            for s in range(0, len(run.x_val), size):
                xb, yb = run.x_val[s:s + size], run.y_val[s:s + size]
                logits = self.engine(xb).float()  # [P, B, C]
                correct += (logits.argmax(-1) == yb).sum(1)
                ce = F.cross_entropy(logits.flatten(0, 1), yb.repeat(pop), reduction="none")
                ce_sum += ce.view(pop, -1).sum(1)
        n = len(run.y_val)
        cols = (self.alive.tolist(), (correct / n).tolist(), (ce_sum / n).tolist(),
                self.last_loss.tolist(), self.steps_done.tolist())
        return [(cid, *(c[i] for c in cols)) for i, cid in enumerate(self.ids)]


def _regroup(run: PopulationRun, passes: list[PopulationPass], keep: list[int], pass_size: int) -> list[PopulationPass]:
    """New, smaller passes holding only the candidates `keep`: their slices of every stacked
    parameter, running statistic and optimizer state, gathered out of the old passes."""
    where = {cid: (ps, i) for ps in passes for i, cid in enumerate(ps.ids)}
    out = []
    for s in range(0, len(keep), pass_size):
        ids = keep[s:s + pass_size]
        new = PopulationPass(run, ids)
        parts: list[tuple[PopulationPass, Tensor]] = []
        for ps in passes:
            local = [where[c][1] for c in ids if where[c][0] is ps]
            if local:
                parts.append((ps, torch.tensor(local, device=run.device)))

        sources = [(ps.engine.tensors(), ps.pop, ix) for ps, ix in parts]
        with torch.no_grad():
            for j, t in enumerate(new.engine.tensors()):
                t.copy_(torch.cat([_blocks(ts[j], pop)[ix] for ts, pop, ix in sources]).view_as(t))
            for t, src in zip(new.engine.shared(), parts[0][0].engine.shared(), strict=True):
                t.copy_(src)
            for name in ("alive", "steps_done", "last_loss"):
                getattr(new, name).copy_(torch.cat([getattr(ps, name)[ix] for ps, ix in parts]))
            new.t = parts[0][0].t  # every pass has taken the same steps of the schedule
            if new.graph_lr:
                new.t_dev.copy_(parts[0][0].t_dev)
            for j, p in enumerate(new.params):
                first = parts[0][0]
                state = first.opt.state.get(first.params[j], {})
                new.opt.state[p] = {
                    key: (torch.cat([_blocks(ps.opt.state[ps.params[j]][key], ps.pop)[ix]
                                     for ps, ix in parts]).view_as(p)
                          if isinstance(v, Tensor) and v.shape == first.params[j].shape
                          else v.clone() if isinstance(v, Tensor) else v)
                    for key, v in state.items()}
        out.append(new)
    return out
