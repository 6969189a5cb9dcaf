"""Execute the numbered notebooks headless (quick or full mode), figures into ``figures/``.

Executed copies (with outputs) go to ``runs/executed/``; the committed notebooks stay
output-free. Used by ``make notebooks`` and by the tests.

    python -m ngl.ui.notebook_runner [--full] [--only 01 02] [-p NAME VALUE ...]
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["list_notebooks", "run_notebook", "run_all"]


def list_notebooks(directory: str | os.PathLike) -> list[Path]:
    """The numbered notebooks ``NN_name.ipynb`` in order."""
    paths = sorted(p for p in Path(directory).glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {Path(directory).resolve()}")
    return paths


def run_notebook(path: str | os.PathLike, out_dir: str | os.PathLike, *, quick: bool = True,
                 parameters: Mapping | None = None, figures_dir: str | os.PathLike | None = None,
                 timeout: int = 1800) -> Path:
    """Execute one notebook with papermill in its own directory; return the executed copy."""
    import papermill as pm  # lazy on purpose: an optional, heavy dependency needed only here

    path = Path(path).resolve()
    out = Path(out_dir).resolve() / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    env_keys = {"NGL_QUICK": "1" if quick else "0", "MPLBACKEND": "Agg", "NGL_NOTEBOOK": path.stem}
    if figures_dir is not None:
        env_keys["NGL_FIGURES_DIR"] = str(Path(figures_dir).resolve())
    old = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys)  # the kernel inherits the environment of this process
    try:
        pm.execute_notebook(str(path), str(out), parameters=dict(parameters or {}),
                            cwd=str(path.parent), kernel_name="python3", progress_bar=False,
                            execution_timeout=timeout, log_output=False)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out


def run_all(directory: str | os.PathLike, out_dir: str | os.PathLike, *, quick: bool = True,
            only: Sequence[str] = (), parameters: Mapping | None = None,
            figures_dir: str | os.PathLike | None = None) -> list[tuple[str, float]]:
    """Run every numbered notebook in order (or those whose number is in ``only``)."""
    timings = []
    for nb in list_notebooks(directory):
        if only and nb.name[:2] not in only:
            continue
        start = time.perf_counter()
        print(f"[ngl] running {nb.name} ({'quick' if quick else 'full'} mode) ...", flush=True)
        run_notebook(nb, out_dir, quick=quick, parameters=parameters, figures_dir=figures_dir)
        took = time.perf_counter() - start
        timings.append((nb.name, took))
        print(f"[ngl]   done in {took:.1f} s", flush=True)
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Execute the ngl notebooks headless.")
    ap.add_argument("--notebooks", default="notebooks", help="directory of NN_name.ipynb files")
    ap.add_argument("--out", default="runs/executed", help="where executed copies go")
    ap.add_argument("--figures", default=None, help="figure directory (default: figures/)")
    ap.add_argument("--full", action="store_true", help="full mode (NGL_QUICK=0): for a GPU machine")
    ap.add_argument("--only", nargs="*", default=(), help="notebook numbers, e.g. 01 03")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="papermill parameter override (value parsed as a Python literal)")
    args = ap.parse_args(argv)
    params = {}
    for name, value in args.p:
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    timings = run_all(args.notebooks, args.out, quick=not args.full, only=args.only,
                      parameters=params, figures_dir=args.figures)
    total = sum(t for _, t in timings)
    print(f"[ngl] {len(timings)} notebook(s) in {total:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
