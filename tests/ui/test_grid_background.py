"""The table builder's Run grid trains in a background thread: the kernel stays free, stop keeps
every finished row, and Run grid again finishes the grid with no row lost or doubled."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import ngl.evaluate.grid as grid
from ngl.evaluate.grid import GridConfig, run_grid
from ngl.io.records import exclusive_lock, read_rows
from ngl.train.loop import TrainConfig
from ngl.ui import table_builder

CFG = GridConfig(datasets=("digits",), models=("small_cnn",), losses=("ce", "ngl"), seeds=(0, 1),
                 train=TrainConfig(epochs=1, batch_size=64), n_train=120, n_val=60, n_test=60,
                 model_kwargs={"width": 4})


@pytest.fixture
def gate(monkeypatch):
    """Every cell waits for ``gate.open`` before it trains; ``gate.started`` lists the cells begun."""
    real = grid.run_cell

    class Gate:
        open = threading.Event()
        started: list[str] = []

    def gated(cell, checkpoint_dir):
        Gate.started.append(cell["cell_key"])
        assert Gate.open.wait(60), "the test never opened the gate"
        return real(cell, checkpoint_dir)

    monkeypatch.setattr(grid, "run_cell", gated)
    Gate.started = []
    Gate.open = threading.Event()
    return Gate


def _wait(pred, timeout=30.0):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_run_grid_returns_at_once_and_stop_keeps_the_finished_row(tmp_path, gate):
    path = tmp_path / "r.jsonl"
    tb = table_builder(path, base=CFG, datasets=("digits",), models=("small_cnn",),
                       losses=("ce", "ngl"))
    t0 = time.monotonic()
    tb.run_button.click()  # what the browser's click does
    assert time.monotonic() - t0 < 2.0  # the button returned: the kernel is free
    assert tb.running and tb.state == "running"
    assert tb.run_button.disabled and not tb.stop_button.disabled
    _wait(lambda: len(gate.started) == 1)  # the first cell is in progress (held at the gate)
    assert sum(1 for _ in read_rows(path)) == 0
    tb.stop_button.click()
    assert tb.state == "stopping" and "stopping" in tb.status.value
    gate.open.set()
    tb.join(120)
    assert not tb.running and tb.state == "stopped"
    rows = list(read_rows(path))
    assert len(rows) == 1 and rows[0]["status"] == "ok"  # the cell in progress finished
    assert len(gate.started) == 1  # no further cell started after stop
    assert "stopped" in tb.status.value and "3 not run yet" in tb.status.value
    assert not tb.run_button.disabled and tb.stop_button.disabled

    tb.run_button.click()  # Run grid again: the three cells not done, nothing twice
    tb.join(300)
    assert tb.state == "finished"
    rows = list(read_rows(path))
    assert len(rows) == 4 and len({r["cell_key"] for r in rows}) == 4
    assert "4 runs done" in tb.status.value and tb.progress.value == 4
    assert tb.table is not None and set(tb.table.index) == {"CE", "NGL"}  # display names
    assert list(tb.table.columns) == ["Digits"]


def test_an_error_in_the_background_is_shown_in_one_line(tmp_path):
    path = tmp_path / "r.jsonl"
    tb = table_builder(path, base=CFG, datasets=("digits",), models=("small_cnn",),
                       losses=("ce", "ngl"))
    with exclusive_lock(f"{path}.lock", str(path)):  # another run holds the results file
        tb.start()
        tb.join(30)
    assert tb.state == "error"
    assert "in use by another run" in tb.status.value and "Traceback" not in tb.status.value
    assert not tb.run_button.disabled
    assert not path.exists() or not list(read_rows(path))


def test_an_invalid_selection_is_refused_before_a_thread_starts(tmp_path):
    tb = table_builder(tmp_path / "r.jsonl", base=CFG, datasets=("digits",),
                       models=("small_cnn",), losses=("ce", "ngl"))
    tb.seeds.value = "0, x"
    with pytest.raises(ValueError, match="seeds"):
        tb.start()
    assert tb.thread is None and tb.state == "idle"
    with pytest.raises(RuntimeError, match="no grid is running"):
        tb.stop()


def test_run_grid_should_stop_with_an_executor_drops_only_cells_not_started(tmp_path):
    """With a pool of one worker, a stop after the first row cancels the queued cells; the rows
    written are whole and a second run_grid finishes the grid without doubles."""
    path = tmp_path / "r.jsonl"
    finished: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        out = run_grid(CFG, path, executor=pool, progress=False,
                       callback=lambda row, _res: finished.append(row["cell_key"]),
                       should_stop=lambda: len(finished) >= 1)
    assert 1 <= len(out) < 4 and len(finished) == len(out)
    again = run_grid(CFG, path, progress=False)
    rows = list(read_rows(path))
    assert len(again) == 4 and len(rows) == 4 and len({r["cell_key"] for r in rows}) == 4
