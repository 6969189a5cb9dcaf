"""A search watched in TensorBoard: per generation the best, median and quartile fitness,
diversity and tree size as scalars, every candidate's fitness as a histogram, the hall of fame
as a text table and the progress figure as an image (``torch.utils.tensorboard``).

    logger = ngl.ui.TensorBoardLogger("runs/tb/my_search")
    ngl.search(spec, callback=logger)          # or: python -m ngl search --tensorboard DIR
    # tensorboard --logdir runs/tb
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["TensorBoardLogger"]

SCALARS = ("best", "median", "q25", "q75", "distinct_functions", "mean_size", "rejected",
           "cache_hits", "trained")


class TensorBoardLogger:
    """A search callback (``callback(summary_row, search)``) writing TensorBoard events into
    ``logdir``. ``figures=False`` skips the per-generation figure (it costs a render)."""

    def __init__(self, logdir: str | os.PathLike, figures: bool = True, hall_of_fame: int = 10):
        import torch.utils.tensorboard  # noqa: F401 - refused now if tensorboard is missing

        self.logdir = Path(logdir)
        self.writer = None  # made at the first generation: nothing is written before a run
        self.figures = figures
        self.hall_of_fame = hall_of_fame

    def __call__(self, summary: dict, search) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from ngl.gp.result import load_result

        if self.writer is None:
            self.writer = SummaryWriter(log_dir=str(self.logdir))
        gen = int(summary["generation"])
        w = self.writer
        for name in SCALARS:
            value = summary.get(name)
            if value is not None and np.isfinite(float(value)):
                w.add_scalar(f"search/{name}", float(value), gen)
        if "wall_time_s" in summary:
            w.add_scalar("search/wall_time_s", float(summary["wall_time_s"]), gen)
        result = load_result(search.run_dir)
        rows = result.history[result.history["generation"] == gen]
        fit = rows["fitness"].astype(float).to_numpy()
        if len(fit):
            w.add_histogram("candidates/fitness", fit, gen)
        hof = result.hall_of_fame(self.hall_of_fame)
        if len(hof):
            lines = ["| rank | loss | search-val. acc. | size |", "|---|---|---|---|"]
            lines += [f"| {i + 1} | `{r['formula']}` | {r['val_accuracy']:.4f} | {int(r['size'])} |"
                      for i, r in hof.iterrows()]
            w.add_text("hall_of_fame", "\n".join(lines), gen)
        if self.figures:
            import matplotlib.pyplot as plt

            from ngl.ui.plots_search import plot_search_progress

            fig = plot_search_progress(result.generation_summary())
            w.add_figure("progress", fig, gen, close=True)
            plt.close(fig)
        w.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
