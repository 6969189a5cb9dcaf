"""Independent evaluations go through any ``concurrent.futures.Executor``.

In-process by default; ``distributed.Client(...).get_executor()`` runs them on a Dask
cluster (``LocalCluster`` on one machine, dask-jobqueue for Slurm). No home-made scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, as_completed

__all__ = ["InProcessExecutor", "results_in_order"]


class InProcessExecutor(Executor):
    """Runs each task at ``submit`` in the calling process (the simple, debuggable default)."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            fut.set_exception(exc)
        return fut


def results_in_order(executor: Executor, tasks: list[tuple[Callable, tuple]],
                     progress: Callable[[int], object]) -> Iterator:
    """Yield each task's result in task order. In-process: one task at a time, so every
    finished task reaches the disk before the next starts, and ``progress`` (passed to each
    task) hears each candidate finish; other executors get all tasks at once and their results
    are handed over in order as they complete, so the files a caller appends stay ordered."""
    if isinstance(executor, InProcessExecutor):
        for fn, args in tasks:
            yield fn(*args, progress=progress)
        return
    futures = [executor.submit(fn, *args) for fn, args in tasks]
    pending = {f: k for k, f in enumerate(futures)}
    ready: dict[int, object] = {}
    nxt = 0
    for fut in as_completed(futures):
        ready[pending[fut]] = fut.result()
        while nxt in ready:
            yield ready.pop(nxt)
            nxt += 1
