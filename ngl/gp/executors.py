"""Independent evaluations go through any ``concurrent.futures.Executor``.

In-process by default; ``distributed.Client(...).get_executor()`` runs them on a Dask
cluster (``LocalCluster`` on one machine, dask-jobqueue for Slurm). No home-made scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future

__all__ = ["InProcessExecutor"]


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
