"""The search runner (notebook 02) trains in a background thread; stopped and resumed there, it
must give what the same search gives uninterrupted in the main thread. On a GPU this runs as
notebook 02's full mode does, with CUDA graphs (captured per thread and stream)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ngl.fitness import TrainBudget
from ngl.gp import RunOptions, SearchSpec
from ngl.gp.search import run_search
from ngl.losses import NGL_EXPRESSION
from ngl.ui import search_runner

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_runner_thread_stopped_and_resumed_equals_the_main_thread_search(tmp_path, device):
    spec = SearchSpec(population_size=8, generations=3, dataset="digits", n_train=600, n_val=300,
                      budget=TrainBudget(steps=30, batch_size=64), seed=3,
                      seed_expressions=(NGL_EXPRESSION,))
    options = RunOptions(device=device, chunk_size=4, cuda_graph=device == "cuda")
    main = run_search(spec, tmp_path / "main", options, progress=False).history

    runner = search_runner(spec, tmp_path / "thread", options, plot_every=0.0)
    stopped = []

    def stop_after_first(summary, search):
        runner._on_generation(summary, search)
        if not stopped:
            stopped.append(True)
            runner.stop()

    runner.start()
    runner.search.callback = stop_after_first
    part = runner.wait()
    assert runner.state == "stopped" and not part.complete
    runner.resume()
    done = runner.wait()
    assert runner.state == "finished" and done.complete
    a = main.sort_values(["generation", "index"]).reset_index(drop=True)
    b = done.history.sort_values(["generation", "index"]).reset_index(drop=True)
    assert list(a["expression"]) == list(b["expression"])
    assert list(a["status"]) == list(b["status"])
    ok = a["status"] == "ok"
    # one validation sample of 300 at most; the CE to float32 noise of a replayed graph
    assert np.abs(a.loc[ok, "val_accuracy"] - b.loc[ok, "val_accuracy"]).max() <= 1 / 300 + 1e-9
    assert np.allclose(a.loc[ok, "val_ce"], b.loc[ok, "val_ce"], rtol=1e-3, atol=1e-4)
