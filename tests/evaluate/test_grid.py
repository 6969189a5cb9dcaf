"""Downstream grids: cells, rows, resume (count what is trained), executors incl. Dask."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import ngl.evaluate.grid as ex
from ngl.evaluate.grid import GridConfig, grid_cells, load_results, loss_label, run_cell, run_grid
from ngl.gp.executors import InProcessExecutor
from ngl.io.records import read_rows
from ngl.train.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> GridConfig:
    base = dict(datasets=("digits",), models=("small_cnn",),
                losses=("ce", {"name": "focal", "gamma": 2}), seeds=(0, 1),
                train=TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=3),
                n_train=120, n_val=40, n_test=40, model_kwargs={"width": 4})
    base.update(kw)
    return GridConfig(**base)


def test_config_normalises_and_validates():
    cfg = tiny()
    assert cfg.n_cells == 4
    assert cfg.losses[1] == {"gamma": 2, "name": "focal"}
    assert GridConfig.from_dict(cfg.to_dict()) == cfg
    assert [loss_label(s) for s in cfg.losses] == ["ce", "focal(gamma=2)"]
    assert loss_label({"name": "focal", "gamma": 1, "label": "focal1"}) == "focal1"
    with pytest.raises(ValueError, match="unique"):
        tiny(losses=("ce", "ce"))
    with pytest.raises(ValueError, match=r"losses\[1\]: loss spec .* needs a 'name'"):
        tiny(losses=("ce", {"gamma": 2}))
    with pytest.raises(ValueError, match="seeds"):
        tiny(seeds=(-1,))
    assert tiny(datasets="digits").datasets == ("digits",)


def test_cells_are_stable_and_keys_depend_on_everything_that_matters():
    a, b = grid_cells(tiny()), grid_cells(tiny())
    assert [c["cell_key"] for c in a] == [c["cell_key"] for c in b]
    assert len({c["cell_key"] for c in a}) == 4
    assert [(c["seed"], c["loss"]) for c in a] == [(0, "ce"), (0, "focal(gamma=2)"),
                                                   (1, "ce"), (1, "focal(gamma=2)")]
    other = grid_cells(tiny(train=TrainConfig(epochs=2, batch_size=32, max_steps_per_epoch=3)))
    assert not {c["cell_key"] for c in a} & {c["cell_key"] for c in other}


def test_run_cell_row_has_metrics_versions_and_status():
    cell = grid_cells(tiny(losses=("ngl",), seeds=(0,)))[0]
    row = run_cell(cell)
    assert row["status"] == "ok", row.get("error")
    assert 0 <= row["test_accuracy"] <= 1 and row["steps"] == 3
    assert row["torch_version"] == torch.__version__ and "ngl_version" in row
    assert row["sizes"] == {"train": 120, "val": 40, "test": 40}
    assert row["loss"] == "ngl" and row["seed"] == 0 and row["wall_s"] > 0


def test_a_broken_loss_is_an_error_row_not_a_crash():
    # a config refuses such a loss up front; a cell (a plain dict, e.g. from an executor) that
    # still holds one becomes an error row
    cell = {**grid_cells(tiny(seeds=(0,)))[0], "loss_spec": "no_such_loss"}
    row = run_cell(cell)
    assert row["status"] == "error" and "no_such_loss" in row["error"]


def test_resume_trains_only_the_missing_cells(tmp_path, monkeypatch):
    trained = []
    real = ex.run_cell

    def counting(cell, *a, **k):
        trained.append((cell["loss"], cell["seed"]))
        return real(cell, *a, **k)

    monkeypatch.setattr(ex, "run_cell", counting)
    path = tmp_path / "results.jsonl"
    seen = []

    def stop_after_two(row, df):
        seen.append(len(df))
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(tiny(), path, progress=False, callback=stop_after_two)
    assert len(read_rows(path)) == 2 and seen == [1, 2]
    trained.clear()
    df = run_grid(tiny(), path, progress=False)
    assert trained == [("ce", 1), ("focal(gamma=2)", 1)]  # the first two were not repeated
    assert len(df) == 4 and set(df.status) == {"ok"}
    trained.clear()
    run_grid(tiny(), path, progress=False)
    assert trained == []
    # a larger grid reuses the finished cells of the smaller one
    run_grid(tiny(seeds=(0, 1, 2)), path, progress=False)
    assert sorted(trained) == [("ce", 2), ("focal(gamma=2)", 2)]
    assert len(load_results(path, tiny(seeds=(0, 1, 2)))) == 6
    assert len(load_results(path, tiny())) == 4
    assert not list((tmp_path / "results_checkpoints").glob("*.pt"))  # cleaned after success


def test_error_cells_are_retried(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    cfg = tiny(losses=("ce",), seeds=(0,))

    def broken(spec):
        raise RuntimeError("a loss that fails when it trains")

    monkeypatch.setattr(ex, "build_loss", broken)
    run_grid(cfg, path, progress=False)
    run_grid(cfg, path, progress=False)
    assert [r["status"] for r in read_rows(path)] == ["error", "error"]
    run_grid(cfg, path, progress=False, retry_errors=False)
    assert len(read_rows(path)) == 2


def test_executor_gives_the_same_rows_as_in_process(tmp_path):
    cfg = tiny(seeds=(0,))
    a = run_grid(cfg, tmp_path / "a.jsonl", progress=False)
    b = run_grid(cfg, tmp_path / "b.jsonl", progress=False, executor=InProcessExecutor())
    a, b = a.sort_values("loss"), b.sort_values("loss")  # executors finish in any order
    assert list(a.test_accuracy) == list(b.test_accuracy)
    assert list(a.train_loss) == list(b.train_loss)


def test_same_seed_shares_initial_weights_across_losses(tmp_path):
    # the label-smoothing run with epsilon 0 is CE: identical cells except for the loss name
    cfg = tiny(losses=("ce", {"name": "label_smoothing", "epsilon": 0.0}), seeds=(0,))
    df = run_grid(cfg, tmp_path / "r.jsonl", progress=False)
    assert df.test_accuracy.iloc[0] == df.test_accuracy.iloc[1]
    assert df.train_loss.iloc[0] == pytest.approx(df.train_loss.iloc[1], rel=1e-5)


@pytest.mark.slow
def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    cfg = tiny(seeds=(0,))
    ref = run_grid(cfg, tmp_path / "ref.jsonl", progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        df = run_grid(cfg, tmp_path / "dask.jsonl", executor=client.get_executor(), progress=False)
    assert set(df.status) == {"ok"}
    by_loss = dict(zip(df.loss, df.test_accuracy, strict=True))
    assert by_loss == dict(zip(ref.loss, ref.test_accuracy, strict=True))


def test_table_builder_widget_runs_a_grid(tmp_path):
    from ngl.ui import table_builder

    tb = table_builder(results_path=tmp_path / "w.jsonl", datasets=("digits",),
                       models=("small_cnn",), losses=("ce", "ngl", "focal"),
                       base=dataclasses.replace(tiny(), losses=("ce",)))
    tb.losses.value = ("ce", "ngl")
    tb.n_seeds.value = 2
    cfg = tb.value
    assert cfg.losses == ("ce", "ngl") and cfg.seeds == (0, 1) and cfg.n_train == 120
    tb.run_button.click()  # trains in a background thread
    tb.join(120)
    assert tb.state == "finished" and tb.results is not None and len(tb.results) == 4
    assert tb.table is not None and "NGL" in tb.table.index
    tb.losses.value = ()
    tb.run_button.click()  # an empty selection is reported in the Output, not raised
    assert any("losses" in o.get("text", "") for o in tb.out.outputs)
