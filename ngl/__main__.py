"""Command line: long searches on a GPU server, same engine as the notebooks.

    python -m ngl search --config run.json [--run-dir DIR] [--dask-scheduler tcp://host:8786]
    python -m ngl resume DIR
    python -m ngl show DIR            # generation summary and hall of fame
    python -m ngl example-config      # print a config to start from
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ngl.gp.search import RunDirError, SearchConfig, load_result, resume, run_search
from ngl.io.config import ConfigError, load_config_file, require_available
from ngl.io.records import InUseError


def _executor(address: str | None):
    if not address:
        return None, None
    from distributed import Client

    client = Client(address)
    return client, client.get_executor()


def _print_summary(summary: dict, _search) -> None:
    print(f"[ngl] generation {int(summary['generation'])}: best {summary['best']:.4f}, "
          f"median {summary['median']:.4f}, trained {int(summary['trained'])}, "
          f"cached {int(summary['cache_hits'])}, rejected {int(summary['rejected'])}, "
          f"{summary['wall_time_s']:.1f} s", flush=True)


def _show(result) -> None:
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_colwidth", 80):
        print(result.generation_summary().to_string(index=False))
        hof = result.hall_of_fame()
        if len(hof):
            print("\nhall of fame:")
            print(hof[["val_accuracy", "size", "generation", "expression"]].to_string(index=False))
    print(f"\nrun directory: {result.run_dir}  (complete: {result.complete})")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ngl", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search", help="run (or continue) a GP loss search")
    s.add_argument("--config", required=True, help="JSON file of SearchConfig fields")
    s.add_argument("--run-dir", default=None, help="default: runs/search/<config key>")
    s.add_argument("--dask-scheduler", default=None, help="address of a Dask scheduler")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    r = sub.add_parser("resume", help="continue a search from its checkpoint")
    r.add_argument("run_dir")
    r.add_argument("--dask-scheduler", default=None)
    r.add_argument("--quiet", action="store_true")
    sh = sub.add_parser("show", help="summarise a search directory")
    sh.add_argument("run_dir")
    sub.add_parser("example-config", help="print an example configuration")
    args = ap.parse_args(argv)

    try:
        return _run(args)
    except (ConfigError, RunDirError, InUseError, FileNotFoundError) as exc:
        # a user error: one line naming the file/field, no traceback, nothing written
        print(f"ngl {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "example-config":
        print(SearchConfig().to_json())
        return 0
    if args.cmd == "show":
        _show(load_result(args.run_dir))
        return 0
    if args.cmd == "search":
        config = load_config_file(SearchConfig, args.config)
        try:
            require_available(config.resolved_device())
        except ConfigError as exc:
            raise ConfigError(f"{args.config}: {exc}") from None
    else:
        config = load_result(args.run_dir).config
        require_available(config.resolved_device())
    client, executor = _executor(args.dask_scheduler)
    try:
        if args.cmd == "search":
            result = run_search(config, args.run_dir, executor=executor, progress=not args.quiet,
                                callback=_print_summary)
        else:
            result = resume(args.run_dir, executor=executor, progress=not args.quiet,
                            callback=_print_summary)
    finally:
        if client is not None:
            client.close()
    _show(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
