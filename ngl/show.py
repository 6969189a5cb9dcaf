"""What ``python -m ngl show`` (and a running search) prints and saves: the per-generation
summary, references and hall of fame as text, the hall of fame as LaTeX, the fitness figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ngl.gp import SearchResult
from ngl.io.config import ConfigError

__all__ = ["print_summary", "show_search", "check_figure_path", "save_show_plot"]


def print_summary(summary: dict, _search) -> None:
    print(f"[ngl] generation {int(summary['generation'])}: best {summary['best']:.4f}, "
          f"median {summary['median']:.4f}, trained {int(summary['trained'])}, "
          f"cached {int(summary['cache_hits'])}, rejected {int(summary['rejected'])}, "
          f"{summary['wall_time_s']:.1f} s", flush=True)


_FIGURE_SUFFIXES = (".pdf", ".png", ".svg")


def check_figure_path(path: str) -> None:
    p = Path(path)
    if p.suffix.lower() not in _FIGURE_SUFFIXES:
        raise ConfigError(f"--plot {path}: expected a file ending in {', '.join(_FIGURE_SUFFIXES)}")
    if p.is_dir():
        raise ConfigError(f"--plot {path}: is a directory, expected a file name")
    if not p.parent.is_dir():
        raise ConfigError(f"--plot {path}: the folder {p.parent} does not exist")


def save_show_plot(result: SearchResult, path: Path) -> None:
    """The fitness figure into ``path`` and the hall of fame table into ``path`` with .tex."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ngl.io.records import atomic_write, write_text_atomic
    from ngl.ui.plots_search import plot_search_progress

    fig = plot_search_progress(result.generation_summary())
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:]))
    plt.close(fig)
    tex = write_text_atomic(path.with_suffix(".tex"), result.to_latex())
    print(f"[ngl] wrote {path} and {tex}")


def show_search(result: SearchResult) -> None:
    with pd.option_context("display.width", 160, "display.max_colwidth", 80):
        print(result.generation_summary().to_string(index=False))
        refs = result.references
        if len(refs):
            print("\nreferences (trained once with the search's budget, seed and data; never in "
                  "the population):")
            print(refs.to_string(index=False))
        hof = result.hall_of_fame()
        if len(hof):
            halving = result.spec.halving is not None
            rescored = "fitness_mean" in hof and hof["fitness_mean"].notna().any()
            ce = result.ce_reference
            print("\nhall of fame (search-validation accuracy"
                  + ("; successive halving: ranked by the rung reached, then accuracy" if halving
                     else "")
                  + (f"; delta_ce: minus the {ce!r} reference's" if ce else "")
                  + ("; mean ± std over the search's seed and the rescoring seeds"
                     + (", the rescored entries ranked by the mean" if result.rescore_done
                        else " (rescoring not finished: resume completes it)")
                     if rescored else "")
                  + "; formulas to 4 significant digits, exact text in history.jsonl):")
            if rescored:
                hof = hof.assign(**{"mean ± std": [
                    "" if m != m else f"{m:.4f} ± {s:.4f}" if s == s else f"{m:.4f}"
                    for m, s in zip(hof["fitness_mean"], hof["fitness_std"], strict=True)]})
            cols = ["val_accuracy", *(["rung"] if halving else []),
                    *(["delta_ce"] if ce else []),
                    *(["mean ± std", "n_seeds"] + (["delta_ce_mean"] if ce else [])
                      if rescored else []),
                    "size", "generation", "formula"]
            if "chance" in hof and hof["chance"].any():  # marked, as in the hall of fame
                hof = hof.assign(chance=hof["chance"].map({True: "chance", False: ""}))
                cols.insert(-1, "chance")
            print(hof[cols].to_string(index=False))
    print(f"\nrun directory: {result.run_dir}  (complete: {result.complete})")
