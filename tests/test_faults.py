"""Fault injection: nothing lost, nothing doubled, bad input refused before anything is written.

Every test damages a run the way a crash, a second process or a careless edit would, and checks
the outcome against an *uninterrupted* run of the same configuration (the independent
reference), or checks that the damage is refused with one line naming the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import ngl
from ngl.__main__ import main
from ngl.evaluate.grid import GridConfig, load_results, run_grid
from ngl.fitness import TrainBudget
from ngl.gp import (
    GPSearch,
    RunDirError,
    RunOptions,
    SearchSpec,
    load_result,
    resume,
    run_dir_lock,
)
from ngl.gp import run_search as _run_search
from ngl.io.config import ConfigError
from ngl.io.records import (
    InUseError,
    append_rows,
    atomic_write,
    exclusive_lock,
    read_rows,
    write_json_atomic,
)
from ngl.losses import NGL_EXPRESSION
from ngl.train.loop import TrainConfig

NGL_TEXT = NGL_EXPRESSION
COLS = ["generation", "index", "expression", "status", "cache_hit", "origin", "parents",
        "val_accuracy", "fitness"]
POP, GENS = 4, 3


def tiny(**kw) -> SearchSpec:
    base = dict(population_size=POP, generations=GENS, n_train=120, n_val=60,
                budget=TrainBudget(steps=3, batch_size=32), seed_expressions=(NGL_TEXT,), seed=3)
    base.update(kw)
    return SearchSpec(**base)


def run_search(spec: SearchSpec, run_dir: Path, **kw):
    """A search with one candidate per chunk: every row is its own unit of resume."""
    return _run_search(spec, run_dir, RunOptions(chunk_size=1), **kw)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[SearchSpec, Path, pd.DataFrame]:
    """The uninterrupted reference run."""
    cfg = tiny()
    run_dir = tmp_path_factory.mktemp("faults") / "straight"
    result = run_search(cfg, run_dir, progress=False)
    assert result.complete and len(result.history) == POP * GENS
    return cfg, run_dir, result.history[COLS]


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "search.lock").unlink(missing_ok=True)
    return dst


def assert_same_history(run_dir: Path, reference: pd.DataFrame) -> None:
    result = load_result(run_dir)
    assert result.complete
    raw = read_rows(run_dir / "history.jsonl")
    idents = [(r["generation"], r["index"]) for r in raw]
    assert len(idents) == len(set(idents)), "a (generation, index) was written twice"
    pd.testing.assert_frame_equal(result.history[COLS], reference)


# -- records: torn and newline-less tails --------------------------------------------------------
def test_newline_less_last_row_survives_the_next_append(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')  # complete row, newline lost
    assert [r["a"] for r in read_rows(path)] == [1, 2]
    append_rows(path, [{"a": 3}])
    assert [r["a"] for r in read_rows(path)] == [1, 2, 3]


def test_torn_last_row_is_cut_before_the_next_append(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": 2')  # killed mid-write
    assert [r["a"] for r in read_rows(path)] == [1]
    append_rows(path, [{"a": 3}])
    assert path.read_text() == '{"a": 1}\n{"a": 3}\n'


def test_json_writer_refuses_non_finite_numbers(tmp_path):
    path = tmp_path / "config.json"
    with pytest.raises(ValueError, match=r"budget\.lr = inf"):
        write_json_atomic(path, {"budget": {"lr": float("inf")}})
    assert not path.exists()


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old")

    def crash(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(path, crash)
    assert path.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [path]
    atomic_write(path, lambda tmp: tmp.write_bytes(b"new"))
    assert path.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [path]


def test_infinite_parsimony_is_refused():
    with pytest.raises(ValueError, match="parsimony_coefficient"):
        tiny(parsimony_coefficient=float("inf"))
    with pytest.raises(ValueError, match="finite"):
        SearchSpec.from_json('{"parsimony_coefficient": Infinity}')


# -- search: resume after every kind of interruption ---------------------------------------------
def cut_history(run_dir: Path, n_rows: int, torn: str = "") -> None:
    lines = (run_dir / "history.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "history.jsonl").write_text("".join(lines[:n_rows]) + torn)


@pytest.mark.parametrize("n_rows", [0, 1, POP - 1, POP, POP + 2, 2 * POP + 1, 3 * POP])
def test_missing_checkpoint_is_rebuilt_from_the_history(straight, tmp_path, n_rows):
    """A kill at any row boundary, with the checkpoint lost too, resumes to the same result."""
    cfg, src, reference = straight
    run_dir = copy_run(src, tmp_path / "run")
    cut_history(run_dir, n_rows)
    (run_dir / "checkpoint.json").unlink()
    resume(run_dir, progress=False)
    assert_same_history(run_dir, reference)


def test_torn_history_tail_resumes_to_the_same_result(straight, tmp_path):
    cfg, src, reference = straight
    run_dir = copy_run(src, tmp_path / "run")
    cut_history(run_dir, POP + 1, torn='{"generation": 1, "index": 1, "expr')
    ckpt = json.loads((run_dir / "checkpoint.json").read_text())
    (run_dir / "checkpoint.json").unlink()  # the checkpoint of the kill point was generation 1
    run_search(cfg, run_dir, progress=False)
    assert ckpt["generation"] == GENS
    assert_same_history(run_dir, reference)


def test_newline_less_history_tail_is_not_retrained(straight, tmp_path):
    cfg, src, reference = straight
    run_dir = copy_run(src, tmp_path / "run")
    path = run_dir / "history.jsonl"
    cut_history(run_dir, POP + 2)
    path.write_text(path.read_text().rstrip("\n"))  # the last complete row lost its newline
    (run_dir / "checkpoint.json").unlink()
    resume(run_dir, progress=False)
    assert_same_history(run_dir, reference)
    assert path.read_text().count("\n") == POP * GENS


def test_stale_checkpoint_older_than_history_is_refused(straight, tmp_path):
    cfg, src, _ = straight
    run_dir = copy_run(src, tmp_path / "run")
    ckpt = json.loads((run_dir / "checkpoint.json").read_text())
    write_json_atomic(run_dir / "checkpoint.json", {**ckpt, "generation": 1})
    before = (run_dir / "history.jsonl").read_bytes()
    with pytest.raises(RunDirError, match="older than the history"):
        resume(run_dir, progress=False)
    assert (run_dir / "history.jsonl").read_bytes() == before


@pytest.mark.parametrize("content", ["", "garbage{", "null", "[]", '{"generation": 1}',
                                     '{"generation": 1, "population": [], "rng_state": 5, '
                                     '"spec_key": "KEY"}'])
def test_corrupt_checkpoint_names_the_file_and_show_still_works(straight, tmp_path, content,
                                                                capsys):
    cfg, src, reference = straight
    run_dir = copy_run(src, tmp_path / "run")
    (run_dir / "checkpoint.json").write_text(content.replace("KEY", cfg.key))
    before = (run_dir / "history.jsonl").read_bytes()
    with pytest.raises(RunDirError, match=r"checkpoint\.json.*move checkpoint\.json aside"):
        resume(run_dir, progress=False)
    assert (run_dir / "history.jsonl").read_bytes() == before
    assert main(["resume", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.json" in err and len(err.strip().splitlines()) == 1
    # show reads the history alone
    assert main(["show", str(run_dir)]) == 0
    assert "complete: True" in capsys.readouterr().out
    pd.testing.assert_frame_equal(load_result(run_dir).history[COLS], reference)


def test_edited_config_is_refused_with_what_differs(straight, tmp_path):
    cfg, src, _ = straight
    run_dir = copy_run(src, tmp_path / "run")
    cut_history(run_dir, POP + 1)
    ckpt = json.loads((run_dir / "checkpoint.json").read_text())
    ckpt["generation"] = 1  # the checkpoint as it was at that point
    write_json_atomic(run_dir / "checkpoint.json", ckpt)
    edited = json.loads((run_dir / "spec.json").read_text())
    edited["budget"]["steps"] = 5
    write_json_atomic(run_dir / "spec.json", edited)
    before = (run_dir / "history.jsonl").read_bytes()
    with pytest.raises(RunDirError, match=r"budget\.steps: 3 -> 5"):
        resume(run_dir, progress=False)
    (run_dir / "checkpoint.json").unlink()  # without a checkpoint the history's rows tell
    with pytest.raises(RunDirError, match="rows of another spec"):
        resume(run_dir, progress=False)
    assert (run_dir / "history.jsonl").read_bytes() == before


def test_other_config_in_the_same_directory_is_refused(straight, tmp_path):
    cfg, src, _ = straight
    run_dir = copy_run(src, tmp_path / "run")
    with pytest.raises(RunDirError, match=r"seed: 3 -> 4"):
        run_search(tiny(seed=4), run_dir, progress=False)


def test_duplicated_rows_are_counted_once(straight, tmp_path):
    cfg, src, reference = straight
    run_dir = copy_run(src, tmp_path / "run")
    rows = read_rows(run_dir / "history.jsonl")
    append_rows(run_dir / "history.jsonl", rows[:3])  # an old run directory with doubled rows
    pd.testing.assert_frame_equal(load_result(run_dir).history[COLS], reference)


# -- search: one process per run directory -------------------------------------------------------
def test_a_locked_run_directory_is_refused_at_once(straight, tmp_path, capsys):
    cfg, src, _ = straight
    run_dir = copy_run(src, tmp_path / "run")
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(cfg.to_json())
    before = (run_dir / "history.jsonl").read_bytes()
    with run_dir_lock(run_dir):
        t0 = time.perf_counter()
        with pytest.raises(InUseError, match="in use by another run"):
            run_search(cfg, run_dir, progress=False)
        assert time.perf_counter() - t0 < 5
        assert main(["search", "--config", str(cfg_file), "--run-dir", str(run_dir)]) == 2
        assert "in use" in capsys.readouterr().err
    assert (run_dir / "history.jsonl").read_bytes() == before


def test_two_search_processes_on_one_directory(tmp_path):
    """The real thing: two `python -m ngl search` at once; one runs, the other exits 2 at once.

    The first is paused (SIGSTOP) mid-run so the overlap does not depend on timing."""
    cfg = tiny(budget=TrainBudget(steps=30, batch_size=32), generations=2)
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(cfg.to_json())
    run_dir = tmp_path / "run"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "ngl", "search", "--spec", str(cfg_file), "--run-dir",
           str(run_dir), "--chunk-size", "1", "--quiet"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not read_rows(run_dir / "history.jsonl") and time.time() < deadline:
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)
        assert first.poll() is None, "the first search ended before it could be paused"
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 2, second.stderr
        assert "in use" in second.stderr and "Traceback" not in second.stderr
        assert first.wait(timeout=300) == 0, first.stderr.read().decode()[-2000:]
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.kill()
    rows = read_rows(run_dir / "history.jsonl")
    assert sorted((r["generation"], r["index"]) for r in rows) == \
        [(g, i) for g in range(2) for i in range(POP)]


def _kill_when(proc: subprocess.Popen, history: Path, ready, timeout: float = 300) -> int:
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            rows = read_rows(history)
            if ready(rows):
                os.kill(proc.pid, signal.SIGKILL)
                return len(rows)
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    raise AssertionError(f"the run ended before the kill: {proc.stderr.read().decode()[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, POP + 1])
def test_sigkill_at_several_points_then_resume(straight, tmp_path, kill_after):
    cfg, _, reference = straight
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(cfg.to_json())
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ngl", "search", "--spec", str(cfg_file),
                             "--run-dir", str(run_dir), "--chunk-size", "1", "--quiet"],
                            env={**os.environ, "TQDM_DISABLE": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    n = _kill_when(proc, run_dir / "history.jsonl", lambda rows: len(rows) >= kill_after)
    assert n < POP * GENS
    resume(run_dir, progress=False)
    assert_same_history(run_dir, reference)


SIDE_REFS = ("ce", {"name": "focal", "gamma": 2})
SIDE_COLS = ["run", "loss", "loss_spec", "seed", "val_accuracy", "val_ce", "status", "steps_done",
             "final_train_loss", "split"]
RESCORE_COLS = ["run", "kind", "key", "expression", "loss", "seed_index", "seed", "val_accuracy",
                "val_ce", "status", "steps_done", "final_train_loss"]


def side_spec() -> SearchSpec:
    """Two references and rescoring of the top 2 with 2 seeds: 2 + (2 + 2) * 2 = 10 side rows."""
    return tiny(references=SIDE_REFS, rescore=2, rescore_seeds=2,
                budget=TrainBudget(steps=8, batch_size=32))


@pytest.fixture(scope="module")
def straight_side(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("faults") / "straight_side"
    result = run_search(side_spec(), run_dir, progress=False)
    assert result.complete and len(result.references) == 2
    assert len(read_rows(run_dir / "rescore.jsonl")) == 8
    return run_dir


def _side_frames(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    result = load_result(run_dir)
    assert result.complete
    refs = pd.DataFrame(read_rows(run_dir / "references.jsonl"))[SIDE_COLS]
    rescores = pd.DataFrame(read_rows(run_dir / "rescore.jsonl"))[RESCORE_COLS]
    hof = result.hall_of_fame()[["key", "val_accuracy", "delta_ce", "fitness_mean",
                                 "fitness_std", "n_seeds", "delta_ce_mean"]]
    return refs, rescores, hof


@pytest.mark.slow
@pytest.mark.parametrize(("watched", "kill_after"), [("references.jsonl", 1),
                                                     ("rescore.jsonl", 3)])
def test_sigkill_during_references_or_rescoring_then_resume(straight_side, tmp_path, watched,
                                                            kill_after):
    """Killed between two references, or between two rescoring rows: the resumed run trains
    only what is missing and its references, rescoring and hall of fame are the uninterrupted
    run's (one loss per chunk, so each row is trained alone in both runs)."""
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(side_spec().to_json())
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ngl", "search", "--spec", str(cfg_file),
                             "--run-dir", str(run_dir), "--chunk-size", "1", "--quiet"],
                            env={**os.environ, "TQDM_DISABLE": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    n = _kill_when(proc, run_dir / watched, lambda rows: len(rows) >= kill_after)
    total = 2 if watched == "references.jsonl" else 8
    assert n < total, "the kill did not land between two rows"
    kept = read_rows(run_dir / watched)
    assert not load_result(run_dir).complete
    if watched == "references.jsonl":
        assert not read_rows(run_dir / "history.jsonl"), "generation 0 ran before the references"
    else:
        assert (run_dir / "rescore_plan.json").exists()
    resume(run_dir, progress=False)
    assert read_rows(run_dir / watched)[:len(kept)] == kept, "a finished row was rewritten"
    for got, want in zip(_side_frames(run_dir), _side_frames(straight_side), strict=True):
        pd.testing.assert_frame_equal(got, want)
    assert_same_history(run_dir, load_result(straight_side).history[COLS])
    # the plan was frozen once: the same entries and seeds
    assert json.loads((run_dir / "rescore_plan.json").read_text()) == \
        json.loads((straight_side / "rescore_plan.json").read_text())


# -- search: what runs is what was asked -----------------------------------------------------------
def test_gp_seed_does_not_change_the_data(monkeypatch):
    import ngl.gp.worker as search

    seen = []
    real = search.load_search_data.__wrapped__

    def spy(dataset, root, n_train, n_val, seed, device):
        seen.append(seed)
        return real(dataset, root, n_train, n_val, seed, device)

    monkeypatch.setattr(search, "load_search_data", spy)
    for gp_seed in (0, 5):
        search.evaluate_chunk(tiny(seed=gp_seed, data_seed=11).to_dict(), RunOptions().to_dict(),
                              ["y_pred"])
    assert seen == [11, 11]
    a = real("digits", None, 120, 60, 11, "cpu")
    b = real("digits", None, 120, 60, 12, "cpu")
    assert not (a.y_train.equal(b.y_train) and a.x_val.equal(b.x_val))


def test_replaced_child_records_only_its_parent():
    cfg = tiny(max_depth=3, max_size=6, init_depth=(1, 3), p_crossover=1.0, p_subtree_mutation=0.0,
               p_hoist_mutation=0.0, p_point_mutation=0.0, elitism=0, population_size=20)
    import numpy as np

    search = GPSearch(cfg, "/nonexistent")
    rng = np.random.RandomState(0)
    texts = [t for t, _, _ in search._initial_population(rng)]
    new = search._next_population(texts, np.linspace(0, 1, len(texts)), rng)
    replaced = [(o, p) for _, o, p in new if o == "reproduction"]
    crossed = [(o, p) for _, o, p in new if o == "crossover"]
    assert replaced, "no child broke the limits: make the limits tighter"
    assert all(len(p) == 1 for _, p in replaced)
    assert all(len(p) == 2 for _, p in crossed)


# -- bad config files: one line, exit 2, nothing written ----------------------------------------
BAD_CONFIGS = [
    ("{bad", "not valid JSON"),
    ("", "empty"),
    ("null", "got null"),
    ("[]", r"got \[\]"),
    ('{"popsize": 3}', "popsize = 3: unknown field"),
    ('{"budget": {"stepz": 3}}', "budget.stepz = 3: unknown field"),
    ('{"seed": true}', "seed = true"),
    ('{"elitism": 1.5}', "elitism = 1.5"),
    ('{"init_depth": [1.5, 2]}', r"init_depth\[0\] = 1.5"),
    ('{"cuda_graph": true}', "cuda_graph = true: unknown field"),
    ('{"n_train": -5}', "n_train = -5"),
    ('{"budget": {"optimizer": "rmsprop"}}', "budget.optimizer"),
    ('{"parsimony_coefficient": 1e999}', "parsimony_coefficient"),
    ('{"primitive_set": {"operators": ["add"], "leaves": ["y_pred"], "colour": 1}}', "colour"),
]


@pytest.mark.parametrize(("text", "pattern"), BAD_CONFIGS)
def test_bad_config_file_is_one_line_exit_2_nothing_written(tmp_path, capsys, text, pattern):
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(text)
    run_dir = tmp_path / "run"
    assert main(["search", "--config", str(cfg_file), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(cfg_file) in err
    assert pd.Series([err]).str.contains(pattern).all(), err
    assert not run_dir.exists()


def test_cuda_without_a_gpu_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text("{}")
    assert main(["search", "--spec", str(cfg_file), "--run-dir", str(tmp_path / "run"),
                 "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err and "--device" in err  # the flag, not the spec file, is at fault
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        _run_search(tiny(), tmp_path / "run2", RunOptions(device="cuda"), progress=False)
    assert not (tmp_path / "run2").exists()


def test_bad_config_cli_prints_no_traceback(tmp_path):
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text('{"budget": {"steps": -1}}')
    out = subprocess.run([sys.executable, "-m", "ngl", "search", "--config", str(cfg_file)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "budget.steps = -1" in out.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("cls", "kw", "pattern"), [
    (SearchSpec, {"seed": True}, "seed"),
    (RunOptions, {"chunk_size": 0}, "chunk_size"),
    (RunOptions, {"device": "tpu"}, "device"),
    (RunOptions, {"cuda_graph": "yes"}, "cuda_graph"),
    (TrainBudget, {"steps": 2.5}, "steps"),
    (TrainConfig, {"epochs": "3"}, "epochs"),
    (TrainConfig, {"lr": float("nan")}, "lr"),
    (GridConfig, {"seeds": (True,)}, "seeds"),
    (GridConfig, {"device": "gpu"}, "device"),
])
def test_python_api_refuses_what_the_file_refuses(cls, kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        cls(**kw)


def test_configs_are_frozen_hashable_and_round_trip():
    grid = GridConfig(losses=("ce", {"name": "focal", "gamma": 2}), seeds=(3, 7),
                      model_kwargs={"width": 8}, train=TrainConfig(epochs=2, nesterov=True,
                                                                   optimizer="sgd"))
    for cfg in (tiny(), TrainBudget(steps=7), TrainConfig(schedule="plateau"), grid):
        assert type(cfg).from_json(cfg.to_json()) == cfg
        assert hash(type(cfg).from_dict(cfg.to_dict())) == hash(cfg)
        with pytest.raises(AttributeError):
            cfg.seed = 1  # type: ignore[misc]


# -- grid: locked results file, kill -9, torn tail -------------------------------------------------
def grid_config() -> GridConfig:
    return GridConfig(datasets=("digits",), models=("small_cnn",), losses=("ce", "ngl"),
                      seeds=(0, 1), n_train=200, n_val=60, n_test=60, device="cpu",
                      model_kwargs={"width": 8},
                      train=TrainConfig(epochs=2, batch_size=50, max_steps_per_epoch=3))


RESULT_COLS = ["cell_key", "status", "test_accuracy", "val_accuracy"]


@pytest.fixture(scope="module")
def grid_reference(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("grid") / "results.jsonl"
    return run_grid(grid_config(), path, progress=False)[RESULT_COLS].sort_values("cell_key")


def test_grid_results_file_is_locked(tmp_path):
    path = tmp_path / "results.jsonl"
    with exclusive_lock(f"{path}.lock", str(path)), \
            pytest.raises(InUseError, match="in use"):
        run_grid(grid_config(), path, progress=False)
    assert not path.exists()


def test_grid_torn_tail_then_rerun(grid_reference, tmp_path):
    path = tmp_path / "results.jsonl"
    run_grid(grid_config(), path, progress=False)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:40])  # killed while writing the third row
    out = run_grid(grid_config(), path, progress=False)
    pd.testing.assert_frame_equal(out[RESULT_COLS].sort_values("cell_key"), grid_reference)
    keys = [r["cell_key"] for r in read_rows(path)]
    assert len(keys) == len(set(keys)) == 4


@pytest.mark.slow
def test_grid_sigkill_then_rerun_matches_uninterrupted(grid_reference, tmp_path):
    path = tmp_path / "results.jsonl"
    script = ("import sys; from ngl.evaluate.grid import GridConfig, run_grid; "
              f"run_grid(GridConfig.from_json({grid_config().to_json()!r}), sys.argv[1], "
              "progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _kill_when(proc, path, lambda rows: len(rows) >= 1)
    out = run_grid(grid_config(), path, progress=False)
    pd.testing.assert_frame_equal(out[RESULT_COLS].sort_values("cell_key"), grid_reference)
    ok = [r["cell_key"] for r in read_rows(path) if r["status"] == "ok"]
    assert len(ok) == len(set(ok)) == 4
    assert load_results(path, grid_config())["status"].eq("ok").all()


def test_a_grid_moved_to_another_device_resumes_in_its_folder(grid_reference, tmp_path,
                                                              monkeypatch):
    """Device and data folder say how a grid runs, not what it computes: they stay out of its
    key, so the default folder is the same and the finished cells are not trained again."""
    import dataclasses

    monkeypatch.setenv("NGL_RUNS_DIR", str(tmp_path / "runs"))
    on_cpu = grid_config()
    moved = dataclasses.replace(on_cpu, device="auto")
    assert moved.key == on_cpu.key and moved != on_cpu
    assert dataclasses.replace(on_cpu, data_root="/elsewhere").key == on_cpu.key
    path = tmp_path / "runs" / "grid" / on_cpu.key / "results.jsonl"
    ngl.grid(on_cpu, progress=False)
    rows = read_rows(path)
    path.unlink()
    append_rows(path, rows[:2])  # interrupted after two of four cells
    out = ngl.grid(moved, progress=False)
    assert len(read_rows(path)) == 4  # the two missing cells, nothing twice
    pd.testing.assert_frame_equal(out[RESULT_COLS].sort_values("cell_key"), grid_reference)
    # a folder of ngl 0.1, named by the key with the run options in it, is found by the same
    # config (with those options) and goes on there
    old = tmp_path / "runs" / "grid" / on_cpu.key_with_run_options
    assert old != path.parent
    path.parent.rename(old)
    before = (old / "results.jsonl").read_bytes()
    ngl.grid(on_cpu, progress=False)
    assert (old / "results.jsonl").read_bytes() == before and not path.parent.exists()


def test_a_validation_moved_to_another_device_resumes_in_its_folder(straight, tmp_path,
                                                                    monkeypatch):
    import dataclasses

    from ngl.evaluate import ValidateConfig, validate, validation_dir

    _cfg, src, _reference = straight
    monkeypatch.setenv("NGL_RUNS_DIR", str(tmp_path / "runs"))
    on_cpu = ValidateConfig(top_k=1, references=("ce",), seeds=(0, 1), model="small_cnn",
                            train=TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=2),
                            transfer=(), fidelity_top=0, fidelity_sample=0, device="cpu",
                            bootstrap_resamples=200)
    moved = dataclasses.replace(on_cpu, device="auto")
    result = ngl.load(src)
    assert validation_dir(result, moved) == validation_dir(result, on_cpu)
    first = validate(src, on_cpu, progress=False)
    rows = read_rows(first.out_dir / "results.jsonl")
    assert len(rows) == 4  # the found loss and CE, two seeds
    (first.out_dir / "results.jsonl").unlink()
    append_rows(first.out_dir / "results.jsonl", rows[:3])  # interrupted before the last cell
    again = validate(src, moved, progress=False)  # not refused as "another configuration"
    assert again.out_dir == first.out_dir and again.complete
    after = read_rows(first.out_dir / "results.jsonl")
    assert len(after) == 4 and after[:3] == rows[:3]
    pd.testing.assert_frame_equal(again.table, first.table)
    # what decides the result still refuses: another seed list is another validation
    with pytest.raises(ConfigError, match="another configuration"):
        validate(src, dataclasses.replace(on_cpu, seeds=(0, 2)), first.out_dir, progress=False)


@pytest.mark.parametrize(("flags", "pattern"), [
    (["--device", "tpu"], "device='tpu'"),
    (["--chunk-size", "0"], "chunk_size = 0"),
])
def test_bad_run_option_flags_are_one_line(tmp_path, capsys, flags, pattern):
    cfg_file = tmp_path / "spec.json"
    cfg_file.write_text("{}")
    assert main(["search", "--spec", str(cfg_file), "--run-dir", str(tmp_path / "run"),
                 *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and pattern in err, err
    assert not (tmp_path / "run").exists()


# -- run options never change which search it is ------------------------------------------------
def test_other_run_options_resume_the_same_search(straight, tmp_path, monkeypatch):
    cfg, src, reference = straight
    run_dir = copy_run(src, tmp_path / "run")
    cut_history(run_dir, POP + 1)
    (run_dir / "checkpoint.json").unlink()
    result = ngl.search(cfg, run_dir, chunk_size=3, hall_of_fame_size=2, progress=False)
    assert_same_history(run_dir, reference)
    assert result.options.chunk_size == 3 and len(result.hall_of_fame()) == 2
    # the default run directory is named by the spec alone
    monkeypatch.setenv("NGL_RUNS_DIR", str(tmp_path / "runs"))
    assert ngl.gp.GPSearch(cfg, options=RunOptions(chunk_size=7, device="cpu")).run_dir == \
        ngl.gp.GPSearch(cfg).run_dir == tmp_path / "runs" / "search" / cfg.key


def test_run_directory_of_ngl_before_0_1_is_refused_in_one_line(straight, tmp_path, capsys):
    """Before the spec/options split a run directory held config.json (spec + options); 0.1
    dropped reading it. Loading, resuming, showing and searching into it are refused in one
    line naming the folder and the file, and nothing is written there."""
    cfg, src, _reference = straight
    run_dir = copy_run(src, tmp_path / "old")
    (run_dir / "spec.json").unlink()
    (run_dir / "options.json").unlink()
    write_json_atomic(run_dir / "config.json", {**cfg.to_dict(), "device": "auto"})
    before = sorted(p.name for p in run_dir.iterdir())
    for call in (lambda: ngl.load(run_dir), lambda: ngl.resume(run_dir, progress=False),
                 lambda: ngl.search(cfg, run_dir, progress=False)):
        with pytest.raises(RunDirError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg and str(run_dir) in msg and "config.json" in msg
        assert "before 0.1" in msg
    assert main(["show", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "before 0.1" in err
    # the lock file aside (the search takes the lock before it checks, so that the check and
    # any write happen under it), the folder is as it was
    assert sorted(p.name for p in run_dir.iterdir() if p.name != "search.lock") == before


# -- found by a new user: refused before anything is written, one line, right remedy ------------
@pytest.mark.parametrize(("text", "pattern"), [
    ('{"seed": 4294967296}', "seed = 4294967296"),
    ('{"n_train": 10000000, "dataset": "digits"}', "n_train=10000000"),
    ('{"seed_expressions": ["exp(y_pred +"]}', r"seed_expressions\[0\]"),
])
def test_config_that_cannot_run_writes_nothing(tmp_path, capsys, text, pattern):
    cfg_file = tmp_path / "spec.json"
    cfg_file.write_text(text)
    assert main(["search", "--spec", str(cfg_file), "--run-dir", str(tmp_path / "run")]) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert re.search(pattern, err), err
    assert not (tmp_path / "run").exists()


def test_non_utf8_config_file_is_one_line(tmp_path, capsys):
    cfg_file = tmp_path / "spec.json"
    cfg_file.write_bytes(b'{"seed": 1, "x": "\xff"}')
    assert main(["search", "--spec", str(cfg_file)]) == 2
    assert "not a UTF-8 text file" in capsys.readouterr().err


def test_cuda_graph_without_a_gpu_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="cuda_graph=True needs a CUDA device"):
        ngl.search(tiny(), tmp_path / "run", cuda_graph=True, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["rng", "population", "generation_bool", "key_only"])
def test_damaged_checkpoint_fields_get_the_move_aside_remedy(straight, tmp_path, damage):
    cfg, src, _ = straight
    run_dir = copy_run(src, tmp_path / "run")
    ckpt = json.loads((run_dir / "checkpoint.json").read_text())
    if damage == "rng":
        ckpt["rng_state"] = ["MT19937", [1, 2], 0, 0, 0.0]
    elif damage == "population":
        ckpt["population"] = [["exp(", "init", []]]
    elif damage == "generation_bool":
        ckpt["generation"] = True
    else:
        ckpt["spec_key"] = "0" * 12
    write_json_atomic(run_dir / "checkpoint.json", ckpt)
    with pytest.raises(RunDirError, match=r"checkpoint\.json.*move checkpoint\.json aside"):
        resume(run_dir, progress=False)


def test_damaged_history_line_is_one_line_not_a_traceback(straight, tmp_path, capsys):
    cfg, src, _ = straight
    run_dir = copy_run(src, tmp_path / "run")
    lines = (run_dir / "history.jsonl").read_text().splitlines(keepends=True)
    lines[2] = "garbage\n"
    (run_dir / "history.jsonl").write_text("".join(lines))
    for cmd in (["show", str(run_dir)], ["resume", str(run_dir)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "line 3 is not valid JSON" in err, err


def test_lost_history_with_a_checkpoint_is_refused(straight, tmp_path):
    cfg, src, _ = straight
    run_dir = copy_run(src, tmp_path / "run")
    cut_history(run_dir, 2 * POP)
    ckpt = json.loads((run_dir / "checkpoint.json").read_text())
    (run_dir / "history.jsonl").unlink()
    write_json_atomic(run_dir / "checkpoint.json", {**ckpt, "generation": 2})
    with pytest.raises(RunDirError, match=r"generation\(s\) \[0, 1\] are done but history"):
        resume(run_dir, progress=False)


def test_cli_resume_after_an_edited_spec_lists_what_differs(straight, tmp_path, capsys):
    cfg, src, _ = straight
    run_dir = copy_run(src, tmp_path / "run")
    edited = json.loads((run_dir / "spec.json").read_text())
    edited["budget"]["steps"] = 5
    write_json_atomic(run_dir / "spec.json", edited)
    assert main(["resume", str(run_dir)]) == 2
    assert "budget.steps: 3 -> 5" in capsys.readouterr().err


def test_data_root_for_embedded_digits_is_refused(tmp_path, capsys):
    cfg_file = tmp_path / "spec.json"
    cfg_file.write_text('{"dataset": "digits"}')
    assert main(["search", "--spec", str(cfg_file), "--run-dir", str(tmp_path / "run"),
                 "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "digits is embedded" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
