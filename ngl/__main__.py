"""Command line: long searches on a GPU server, through the same front door as the notebooks.

    python -m ngl search --spec spec.json [--run-dir DIR] [--device cuda] [--chunk-size 64]
                         [--cuda-graph] [--compile] [--data-root DIR] [--dask-scheduler tcp://host:8786]
    python -m ngl resume DIR [--device ...]    # continue; run options default to the last used
    python -m ngl show DIR                     # generation summary and hall of fame
    python -m ngl example-spec                 # print a spec to start from
    python -m ngl validate DIR [--config validate.json] [--seeds 0,1,2,3,4] [--top-k 3] ...
                                               # held-out test, transfer, fidelity
    python -m ngl calibrate --config calibrate.json [--out DIR] [--proxies-only]
                                               # does a search fitness rank losses as full
                                               # training does? (proxy vs target, rho, cost)
    python -m ngl example-calibration-config   # print a calibration config to start from

The spec file holds what determines the search (its hash names the run directory); how it
runs is given on the command line and never changes which search it is. User errors (a bad
file, a field, a busy or inconsistent run directory) are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import ngl
from ngl.gp import RunOptions, SearchSpec, read_run_files
from ngl.gp.spec import OPTION_FIELDS, OPTION_HELP, SPEC_FIELDS
from ngl.io.config import ConfigError, check_device, load_config_file, require_available
from ngl.io.paths import search_run_dir
from ngl.io.records import InUseError, RunFileError, loads_strict
from ngl.show import check_figure_path, print_summary, save_show_plot, show_search


def _executor(address: str | None):
    if not address:
        return None, None
    # dask is an optional dependency of the [notebooks] extra: imported only when asked for
    from distributed import Client

    client = Client(address)
    return client, client.get_executor()


def _run_options(p: argparse.ArgumentParser) -> None:
    """One flag per `RunOptions` field, typed by the field (unset: the run's saved choice)."""
    defaults = RunOptions()
    for name in OPTION_FIELDS:
        flag, default = "--" + name.replace("_", "-"), getattr(defaults, name)
        helptext = f"{OPTION_HELP[name]} (default {default!r}; unset: the run's saved choice)"
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=helptext)
        else:
            p.add_argument(flag, type=int if isinstance(default, int) else str, default=None,
                           help=helptext)
    p.add_argument("--dask-scheduler", default=None, help="address of a Dask scheduler")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write TensorBoard events into DIR (tensorboard --logdir DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ngl", description=__doc__.splitlines()[0])
    ap.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                    help="import MODULE first, e.g. one that calls ngl.register_operator "
                         "(before the command: python -m ngl --import my_ops show RUN)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search", help="run (or continue) a GP loss search")
    s.add_argument("--spec", "--config", dest="spec", required=True,
                   help="JSON file of SearchSpec fields (python -m ngl example-spec)")
    s.add_argument("--run-dir", default=None, help="default: runs/search/<spec key>")
    _run_options(s)
    r = sub.add_parser("resume", help="continue a search from its checkpoint")
    r.add_argument("run_dir")
    _run_options(r)
    sh = sub.add_parser("show", help="summarise a search directory")
    sh.add_argument("run_dir")
    sh.add_argument("--latex", action="store_true",
                    help="print the hall of fame as a LaTeX table (booktabs) as well")
    sh.add_argument("--plot", default=None, metavar="FILE",
                    help="save the fitness figure to FILE (.pdf, .png, .svg) and the hall of "
                         "fame as a LaTeX table beside it (FILE with .tex)")
    sub.add_parser("example-validate-config", help="print a validation config to start from")
    sub.add_parser("example-spec", aliases=["example-config"], help="print a spec to start from")
    _validate_parser(sub)
    _calibrate_parser(sub)
    args = ap.parse_args(argv)
    try:
        _import_modules(args.imports)
        return _run(args)
    except (ValueError, OSError, InUseError) as exc:
        # a user error (a config, a damaged or edited run file, a read-only folder, a full
        # disk, a file where a folder belongs...): one line naming the file or field, no
        # traceback, nothing written; anything else is a bug and keeps its traceback
        print(f"ngl {args.cmd}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _import_modules(names: list[str]) -> None:
    """The ``--import`` modules (user operators, losses), imported before anything runs."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"--import {name}: {exc}") from None


def _one_line(exc: BaseException) -> str:
    """The error as one line: an OSError of the system (not ngl's own) names its file."""
    if isinstance(exc, OSError) and not isinstance(exc, RunFileError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _run(args: argparse.Namespace) -> int:
    if args.cmd in ("example-spec", "example-config"):
        print(SearchSpec().to_json())
        return 0
    if args.cmd == "show":
        result = ngl.load(args.run_dir)
        if args.plot is not None:  # checked before anything is printed or written
            check_figure_path(args.plot)
        show_search(result)
        if args.latex:
            print("\n" + result.to_latex())
        if args.plot is not None:
            save_show_plot(result, Path(args.plot))
        return 0
    if args.cmd == "example-validate-config":
        from ngl.evaluate.validate import ValidateConfig

        print(ValidateConfig().to_json())
        return 0
    if args.cmd == "validate":
        return _validate(args)
    if args.cmd in ("calibrate", "example-calibration-config"):
        return _calibrate(args)
    options = {name: getattr(args, name) for name in OPTION_FIELDS}
    # the flags are run options: checked as such first, and named as flags in errors
    given = {k: v for k, v in options.items() if v is not None}
    try:
        RunOptions.from_dict(given)
    except ConfigError as exc:
        raise ConfigError(f"command-line options: {exc}") from None
    if args.cmd == "search":
        spec = load_config_file(SearchSpec, args.spec)
        device = args.device or "auto"
    else:
        device = args.device or read_run_files(Path(args.run_dir)).options.device
    try:
        require_available(device if device != "auto" else "cpu")
    except ConfigError as exc:
        where = "--device" if args.device else f"{args.run_dir}/options.json"
        raise ConfigError(f"{where}: {exc}") from None
    if args.cmd == "search":
        run_dir = args.run_dir or search_run_dir(spec.key)
        print(f"[ngl] search {spec.key} in {run_dir}; after an interruption: "
              f"python -m ngl resume {run_dir}", flush=True)
    client, executor = _executor(args.dask_scheduler)
    callback = print_summary
    if args.tensorboard:
        from ngl.ui.tensorboard import TensorBoardLogger

        logger = TensorBoardLogger(args.tensorboard)

        def callback(summary, search):  # the printed line, then the events
            print_summary(summary, search)
            logger(summary, search)
    try:
        if args.cmd == "search":
            result = ngl.search(spec, args.run_dir, executor=executor, progress=not args.quiet,
                                callback=callback, **options)
        else:
            result = ngl.resume(args.run_dir, executor=executor, progress=not args.quiet,
                                callback=callback, **options)
    finally:
        if client is not None:
            client.close()
        if args.tensorboard:
            logger.close()
    show_search(result)
    return 0


_VALIDATE_FLAGS = {"top_k": "--top-k", "seeds": "--seeds", "model": "--model",
                   "n_train": "--n-train", "n_val": "--n-val", "n_test": "--n-test",
                   "transfer": "--transfer", "fidelity_top": "--fidelity-top",
                   "fidelity_sample": "--fidelity-sample", "fidelity_seeds": "--fidelity-seeds",
                   "references": "--references",
                   "device": "--device", "data_root": "--data-root"}


def _validate_parser(sub) -> None:
    v = sub.add_parser("validate", help="retrain a search's best losses on held-out test data")
    v.add_argument("run_dir")
    v.add_argument("--config", default=None, help="JSON file of ValidateConfig fields")
    v.add_argument("--top-k", type=int, default=None, help="found losses to validate (5)")
    v.add_argument("--seeds", default=None, help="comma-separated training seeds (0,1,2,3,4)")
    v.add_argument("--references", default=None,
                   help="comma-separated reference losses, e.g. ce,ngl,focal,label_smoothing "
                        "(a dict spec such as focal with gamma=1 goes in --config)")
    v.add_argument("--epochs", type=int, default=None, help="downstream epochs (4)")
    v.add_argument("--model", default=None, help="downstream model (dense_cnn)")
    v.add_argument("--n-train", type=int, default=None, help="training subset (all)")
    v.add_argument("--n-val", type=int, default=None, help="validation subset (all)")
    v.add_argument("--n-test", type=int, default=None, help="test subset (all)")
    v.add_argument("--transfer", action="append", default=None, metavar="DATASET:MODEL",
                   help="extra (dataset, model) pair, repeatable; 'none' for no transfer")
    v.add_argument("--fidelity-top", type=int, default=None, help="hall-of-fame entries (10)")
    v.add_argument("--fidelity-sample", type=int, default=None, help="random candidates (10)")
    v.add_argument("--fidelity-seeds", default=None, help="comma-separated seeds (0)")
    v.add_argument("--grids", default=None, help="comma-separated grids to run now "
                   "(main, transfer:D/M, fidelity); default all")
    v.add_argument("--out", default=None, help="default: runs/validate/<search>/<config key>")
    v.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    v.add_argument("--data-root", default=None, help="folder holding the dataset's files")
    v.add_argument("--quiet", action="store_true", help="no progress bars")


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{flag}={text!r}: expected comma-separated integers, "
                          "e.g. 0,1,2,3,4") from None


def _validate_config_file(path: str) -> dict:
    """A ValidateConfig file; a search spec given by mistake is one line saying so, not a line
    per unknown field."""
    from ngl.evaluate.validate import ValidateConfig

    try:
        return load_config_file(ValidateConfig, path).to_dict()
    except ConfigError as exc:
        error = exc
    try:
        data = loads_strict(Path(path).read_bytes())
    except (ValueError, OSError):
        raise error from None
    if isinstance(data, dict) and data and set(data) <= set(SPEC_FIELDS) and not (
            set(data) <= set(ValidateConfig.__dataclass_fields__)):
        raise ConfigError(f"{path}: this is a search spec (SearchSpec fields), not a "
                          "validation config; `python -m ngl example-validate-config` prints "
                          "one to start from") from None
    raise error from None


def _validate(args: argparse.Namespace) -> int:
    from ngl.evaluate.validate import ValidateConfig, validate

    base = _validate_config_file(args.config) if args.config else {}
    given: dict = {}
    for name in _VALIDATE_FLAGS:
        value = getattr(args, name)
        if value is None:
            continue
        if name in ("seeds", "fidelity_seeds"):
            value = _int_list(value, _VALIDATE_FLAGS[name])
        if name == "transfer":
            value = [] if value == ["none"] else value
        if name == "references":
            value = [t.strip() for t in value.split(",") if t.strip()]
        given[name] = value
    if args.epochs is not None:
        given["train"] = {**base.get("train", ValidateConfig().train.to_dict()),
                          "epochs": args.epochs}
    try:  # the flags alone first, so that an error names the flag
        ValidateConfig.from_dict(given)
    except ConfigError as exc:
        raise ConfigError(f"command-line options: {exc}") from None
    config = ValidateConfig.from_dict({**base, **given})
    require_available(config.device if config.device != "auto" else "cpu")
    grids = tuple(g for g in args.grids.split(",") if g) if args.grids else None
    report = validate(args.run_dir, config, args.out, progress=not args.quiet, grids=grids)
    _validation_figures(report)
    print(report.to_markdown())
    state = "complete" if report.complete else "partial (run the same command to continue)"
    print(f"[ngl] validation {state}: {report.out_dir}")
    return 0


def _save_figures(report, plots: dict, notebook: str) -> None:
    """Each figure of ``plots`` (name -> function of the report) into the report's folder;
    a figure with nothing finished yet is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ngl.ui.style import save_figure

    for name, plot in plots.items():
        try:
            fig = plot(report)
        except ValueError:  # nothing finished yet for this figure
            continue
        save_figure(fig, name, notebook=notebook, directory=report.out_dir,
                    config=report.config.to_dict())
        plt.close(fig)


def _validation_figures(report) -> None:
    from ngl.ui.plots_validation import plot_fidelity, plot_validation

    _save_figures(report, {"validation": plot_validation, "fidelity": plot_fidelity}, "validate")


def _calibrate_parser(sub) -> None:
    c = sub.add_parser("calibrate", help="measure how well candidate search fitnesses (proxies) "
                       "rank a panel of losses as full training does",
                       description="Train a panel of losses (references, plain losses, random "
                       "trees, a search's candidates) under each proxy fitness and under the "
                       "target training (validate's), all scored on the search-validation "
                       "split; report Spearman/Kendall with bootstrap CIs, top-k regret and "
                       "cost, and recommend the cheapest proxy that holds. Resumable: run the "
                       "same command again to continue.")
    c.add_argument("--config", default=None,
                   help="JSON file of CalibrationConfig fields (python -m ngl "
                        "example-calibration-config); default: the defaults on digits")
    c.add_argument("--out", default=None, help="default: runs/calibrate/<config key>")
    c.add_argument("--proxies-only", action="store_true",
                   help="score the proxies only, leave the target for a later sitting")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    c.add_argument("--data-root", default=None, help="folder holding the dataset's files")
    c.add_argument("--chunk-size", type=int, default=4,
                   help="losses trained together per proxy (the unit of resume)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.add_parser("example-calibration-config", help="print a calibration config to start from")


def _calibrate(args: argparse.Namespace) -> int:
    from ngl.evaluate.proxy_calibration import CalibrationConfig, calibrate

    if args.cmd == "example-calibration-config":
        print(CalibrationConfig().to_json())
        return 0
    config = load_config_file(CalibrationConfig, args.config) if args.config else \
        CalibrationConfig()
    try:
        check_device(args.device)
        require_available(args.device if args.device != "auto" else "cpu")
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"--device: {exc}") from None
    if args.chunk_size < 1:
        raise ConfigError(f"--chunk-size {args.chunk_size}: expected a positive integer")
    report = calibrate(config, args.out, device=args.device, data_root=args.data_root,
                       chunk_size=args.chunk_size, progress=not args.quiet,
                       proxies_only=args.proxies_only)
    _calibration_figures(report)
    print(report.to_markdown())
    state = "complete" if report.complete else "partial (run the same command to continue)"
    print(f"[ngl] calibration {state}: {report.out_dir}")
    return 0


def _calibration_figures(report) -> None:
    from ngl.ui.plots_calibration import plot_calibration_cost, plot_calibration_scatter

    _save_figures(report, {"calibration_cost": plot_calibration_cost,
                           "calibration_scatter": plot_calibration_scatter}, "calibrate")


if __name__ == "__main__":
    sys.exit(main())
