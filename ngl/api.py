"""The front door: the four calls the notebooks, the command line and a researcher's script use.

    result = ngl.search(spec)              # run a GP loss search (or continue the same one)
    result = ngl.resume(run_dir)           # continue a killed or stopped search
    result = ngl.load(run_dir)             # read a finished or running search
    table  = ngl.grid(grid_config)         # train dataset x model x loss x seed downstream

A search is a :class:`~ngl.gp.SearchSpec` (what determines the result; its hash names the run
directory) plus how to run it (device, chunk size, CUDA graphs, data folder), given here as
keywords: switching device or chunk size resumes the same search instead of starting another.
``result.best`` and each of ``result.entries()`` give ``.to_module()``, ``.sympy()`` and
``.latex()``; ``result.to_latex()`` is the hall of fame as a paper table.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import pandas as pd

from ngl.evaluate import GridConfig, run_grid
from ngl.gp import GPSearch, RunOptions, SearchResult, SearchSpec, load_result
from ngl.gp import resume as _resume
from ngl.io.paths import folder_of, runs_dir

__all__ = ["search", "resume", "load", "grid"]


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, where an interrupt is the normal way to stop a search."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _stoppable(run: Callable[[], SearchResult], run_dir: Callable[[], Path]) -> SearchResult:
    """Run a search; in a notebook, an interrupt ("stop" in JupyterLab) prints one line and
    returns what is on disk instead of a torch traceback (scripts still get the interrupt)."""
    try:
        return run()
    except KeyboardInterrupt:
        if not _in_notebook():
            raise
        partial = load_result(run_dir())
        print(f"stopped - run again to resume ({len(partial.history)} candidates kept in "
              f"{partial.run_dir})", file=sys.stderr)
        return partial


def search(spec: SearchSpec, run_dir: str | os.PathLike | None = None, *,
           device: str | None = None, chunk_size: int | None = None,
           cuda_graph: bool | None = None, compile: bool | None = None,
           data_root: str | None = None,
           hall_of_fame_size: int | None = None, executor: Executor | None = None,
           progress: bool = True,
           callback: Callable[[dict, GPSearch], None] | None = None) -> SearchResult:
    """Run the search ``spec`` in ``run_dir`` (default ``runs/search/<spec.key>``).

    Re-running the same spec continues it; the run options (``device``, ``chunk_size``,
    ``cuda_graph``, ``compile``, ``data_root``, ``hall_of_fame_size``) never change which
    search it is.
    ``executor`` is any ``concurrent.futures.Executor`` (a Dask client's for a cluster).
    In a notebook, interrupting the kernel stops the search with one line ("stopped - run
    again to resume") and returns the partial result; in a script the interrupt propagates.
    """
    # the keywords are RunOptions' fields, spelt out for help() and editors
    # (tests/gp/test_run_options.py keeps them equal to the dataclass)
    options = RunOptions().replaced(device=device, chunk_size=chunk_size, cuda_graph=cuda_graph,
                                    compile=compile, data_root=data_root,
                                    hall_of_fame_size=hall_of_fame_size)
    gp = GPSearch(spec, run_dir, options, executor=executor, progress=progress,
                  callback=callback)
    return _stoppable(gp.run, lambda: gp.run_dir)


def resume(run_dir: str | os.PathLike, *, device: str | None = None,
           chunk_size: int | None = None, cuda_graph: bool | None = None,
           compile: bool | None = None,
           data_root: str | None = None, hall_of_fame_size: int | None = None,
           executor: Executor | None = None, progress: bool = True,
           callback: Callable[[dict, GPSearch], None] | None = None) -> SearchResult:
    """Continue the search in ``run_dir`` with its last run options, unless overridden here."""
    base = load_result(run_dir).options
    options = base.replaced(device=device, chunk_size=chunk_size, cuda_graph=cuda_graph,
                            compile=compile, data_root=data_root,
                            hall_of_fame_size=hall_of_fame_size)
    return _stoppable(lambda: _resume(run_dir, options, executor=executor, progress=progress,
                                      callback=callback), lambda: Path(run_dir))


def load(run_dir: str | os.PathLike) -> SearchResult:
    """A finished or partial search as it is on disk (only its spec and history are read)."""
    return load_result(run_dir)


def grid(config: GridConfig, results_path: str | os.PathLike | None = None, *,
         executor: Executor | None = None, progress: bool = True,
         callback: Callable[[dict, pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """Train every cell of ``config`` not yet in ``results_path`` (default
    ``runs/grid/<config.key>/results.jsonl``) and return the grid's rows."""
    path = Path(results_path) if results_path is not None else \
        folder_of(runs_dir() / "grid", config) / "results.jsonl"
    return run_grid(config, path, executor=executor, progress=progress, callback=callback)
