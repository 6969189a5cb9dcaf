"""What a worker does with a chunk of candidates: load the search's data once, train them together.

Everything travels in plain arguments (spec and options as dicts, losses as text or loss specs),
so any ``concurrent.futures.Executor`` (a Dask cluster's too) can run :func:`evaluate_chunk`
(the population's candidates) and :func:`evaluate_losses` (a search's references and rescoring).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ngl.data import load_cached
from ngl.fitness import SuccessiveHalving, train_population
from ngl.gp.expression import LossExpression
from ngl.gp.spec import RunOptions, SearchSpec
from ngl.losses.registry import build_loss_spec
from ngl.models import build_model

__all__ = ["evaluate_chunk", "evaluate_losses", "load_search_data"]


@functools.lru_cache(maxsize=2)
def load_search_data(dataset: str, root: str | None, n_train: int | None, n_val: int | None,
               seed: int, device: str):
    """The search's data on its device, once per worker process (``seed`` is the data seed)."""
    return load_cached(dataset, root, n_train, n_val, None, seed).to(device)


def _train(sp: SearchSpec, opts: RunOptions, losses: Sequence[nn.Module], seed: int,
           halving: SuccessiveHalving | None,
           progress: Callable[[int], object] | None) -> list[dict]:
    """Train ``losses`` together on the search's data, model and budget from ``seed``."""
    device = opts.resolved_device()
    data = load_search_data(sp.dataset, opts.data_root, sp.n_train, sp.n_val, sp.data_seed, device)
    c, h, _w = data.input_shape
    model_fn = functools.partial(build_model, sp.model, c, data.num_classes, h)
    results = train_population(model_fn, losses, data, sp.budget, seed=seed, device=device,
                               cuda_graph=opts.cuda_graph, halving=halving,
                               compile=opts.compile, progress=progress)
    return [{**r.to_dict(), "split": "search_validation"} for r in results]


def evaluate_chunk(spec: dict, options: dict, texts: Sequence[str],
                   progress: Callable[[int], object] | None = None) -> list[dict]:
    """Train the candidate losses ``texts`` together; a plain, picklable function for executors.
    ``progress(n)`` (in-process only) hears as candidates finish."""
    sp, opts = SearchSpec.from_dict(spec), RunOptions.from_dict(options)
    losses = [LossExpression.parse(t).to_module(validate=False) for t in texts]
    return _train(sp, opts, losses, sp.seed, sp.halving, progress)


def evaluate_losses(spec: dict, options: dict, losses: Sequence[str | dict[str, Any]],
                    seed: int | None = None,
                    progress: Callable[[int], object] | None = None) -> list[dict]:
    """:func:`evaluate_chunk` for loss specs (a registered name, a dict with ``name`` and
    keyword arguments, or loss-expression text): the search's references and its rescoring.

    Same data, model and budget as the candidates, always the whole budget (no successive
    halving); ``seed`` (default: the search's own) draws the initial weights and batches.
    """
    sp, opts = SearchSpec.from_dict(spec), RunOptions.from_dict(options)
    modules = [build_loss_spec(s, validate=False) for s in losses]
    return _train(sp, opts, modules, sp.seed if seed is None else seed, None, progress)
