"""What a worker does with a chunk of candidates: load the search's data once, train them together.

Everything travels in plain arguments (spec and options as dicts, losses as text), so any
``concurrent.futures.Executor`` (a Dask cluster's too) can run :func:`evaluate_chunk`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from ngl.data import load_cached
from ngl.fitness import train_population
from ngl.gp.expression import LossExpression
from ngl.gp.spec import RunOptions, SearchSpec
from ngl.models import build_model

__all__ = ["evaluate_chunk"]


@functools.lru_cache(maxsize=2)
def _load_data(dataset: str, root: str | None, n_train: int | None, n_val: int | None,
               seed: int, device: str):
    """The search's data on its device, once per worker process (``seed`` is the data seed)."""
    return load_cached(dataset, root, n_train, n_val, None, seed).to(device)


def evaluate_chunk(spec: dict, options: dict, texts: Sequence[str],
                   progress: Callable[[int], object] | None = None) -> list[dict]:
    """Train the candidate losses ``texts`` together; a plain, picklable function for executors.
    ``progress(n)`` (in-process only) hears as candidates finish."""
    sp, opts = SearchSpec.from_dict(spec), RunOptions.from_dict(options)
    device = opts.resolved_device()
    data = _load_data(sp.dataset, opts.data_root, sp.n_train, sp.n_val, sp.data_seed, device)
    c, h, _w = data.input_shape
    model_fn = functools.partial(build_model, sp.model, c, data.num_classes, h)
    losses = [LossExpression.parse(t).to_module(validate=False) for t in texts]
    results = train_population(model_fn, losses, data, sp.budget, seed=sp.seed, device=device,
                               cuda_graph=opts.cuda_graph, halving=sp.halving,
                               compile=opts.compile, progress=progress)
    return [{**r.to_dict(), "split": "search_validation"} for r in results]
