"""Run folders are untrusted input (issue 22): every case a reliability probe found, each
refused in one line naming the file, before anything is written, or handled exactly.

The finished tiny search, validation and grid are built once per module; each test works on a
copy, damages it the way a hand edit, a received folder or a failing disk would, and runs the
command line in-process (``main``), checking the exit status and that stderr is one line with no
traceback.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

import ngl
from ngl.__main__ import main
from ngl.evaluate import GridConfig, ValidateConfig, load_validation, validate
from ngl.evaluate.grid import grid_cells, load_results, run_grid
from ngl.fitness import TrainBudget
from ngl.gp import RunOptions, SearchSpec, load_result, run_search
from ngl.io.config import ConfigError
from ngl.io.records import RunFileError, write_json_atomic
from ngl.losses import NGL_EXPRESSION, get_loss
from ngl.train.loop import TrainConfig

TINY_TRAIN = TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=2)


def tiny(**kw) -> SearchSpec:
    base = dict(population_size=4, generations=2, n_train=120, n_val=60,
                budget=TrainBudget(steps=3, batch_size=32), seed_expressions=(NGL_EXPRESSION,),
                seed=3)
    return SearchSpec(**{**base, **kw})


VALIDATE = ValidateConfig(top_k=1, references=("ce",), seeds=(0, 1), model="small_cnn",
                          train=TINY_TRAIN, transfer=(), fidelity_top=0, fidelity_sample=0,
                          device="cpu", bootstrap_resamples=200, n_train=120, n_val=60,
                          n_test=60)
GRID = GridConfig(datasets=("digits",), models=("small_cnn",), losses=("ce", "focal"),
                  seeds=(0,), train=TINY_TRAIN, n_train=120, n_val=60, n_test=60,
                  device="cpu")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("untrusted")
    a, b = root / "search_a", root / "search_b"
    run_search(tiny(), a, RunOptions(chunk_size=2), progress=False)
    run_search(tiny(seed=4), b, RunOptions(chunk_size=2), progress=False)
    cfg = root / "validate.json"
    cfg.write_text(VALIDATE.to_json())
    validate(a, VALIDATE, root / "validation_a", progress=False)
    run_grid(GRID, root / "grid" / "results.jsonl", progress=False)
    return {"a": a, "b": b, "val": root / "validation_a", "cfg": cfg, "grid": root / "grid"}


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for lock in dst.rglob("*.lock"):
        lock.unlink()
    return dst


def one_line_error(capsys, argv: list[str], *says: str) -> str:
    """``main(argv)`` exits 2 with one stderr line, no traceback, containing each of ``says``."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for s in says:
        assert s in err, err
    return err


def rewrite_line(path: Path, i: int, edit) -> None:
    lines = path.read_text().splitlines()
    lines[i] = edit(lines[i])
    path.write_text("\n".join(lines) + "\n")


def edit_row(path: Path, i: int, **fields) -> None:
    rewrite_line(path, i, lambda line: json.dumps({**json.loads(line), **fields}))


# -- 3. validation binds to its search -----------------------------------------------------------
def test_another_searchs_validation_folder_is_refused(made, tmp_path, capsys):
    out = copy(made["val"], tmp_path / "val")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    one_line_error(capsys, ["validate", str(made["b"]), "--config", str(made["cfg"]), "--out",
                            str(out), "--quiet"], "plan.json", "this folder validates search",
                   load_result(made["a"]).spec.key, load_result(made["b"]).spec.key)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_the_plan_records_the_searchs_full_spec_digest(made):
    plan = json.loads((made["val"] / "plan.json").read_text())
    spec = load_result(made["a"]).spec
    assert plan["search_key"] == spec.key and plan["search_spec_sha256"] == spec.digest
    assert spec.digest.startswith(spec.key) and len(spec.digest) == 64


def test_a_plan_edited_to_another_search_is_refused(made, tmp_path):
    out = copy(made["val"], tmp_path / "val")
    plan = json.loads((out / "plan.json").read_text())
    write_json_atomic(out / "plan.json", {**plan, "search_spec_sha256": "0" * 64}, sealed=True)
    with pytest.raises(ConfigError, match="search_spec_sha256 does not match"):
        validate(made["a"], VALIDATE, out, progress=False)


# -- 4. everything checked before anything is written ---------------------------------------------
@pytest.mark.parametrize(("loss", "says"), [
    ("no_such_loss", "unknown loss 'no_such_loss'"),
    ({"name": "focal", "gammma": 2}, "unexpected keyword argument 'gammma'"),
    ({"name": "focal", "gamma": "NaN"}, "gamma"),
    ({"name": "sce", "a": "NaN"}, "a=nan must be a finite float"),
    ("exp(y_pred", "unbalanced parentheses"),
])
def test_a_loss_that_cannot_be_built_is_refused_with_the_config(made, tmp_path, capsys, loss,
                                                                says):
    cfg = json.loads(made["cfg"].read_text())
    cfg["references"] = [loss]
    text = json.dumps(cfg).replace('"NaN"', "NaN")  # NaN as JSON's token, as a hand edit writes it
    path = tmp_path / "v.json"
    path.write_text(text)
    out = tmp_path / "out"
    one_line_error(capsys, ["validate", str(made["a"]), "--config", str(path), "--out", str(out)],
                   "v.json", "references[0]", says)
    assert not out.exists()
    grid = GRID.to_dict()
    grid["losses"] = [loss]
    with pytest.raises(ConfigError, match=r"losses\[0\]"):
        GridConfig.from_json(json.dumps(grid).replace('"NaN"', "NaN"))


@pytest.mark.parametrize(("field", "value", "says"), [
    ("parsimony_coefficient", 1e308, "parsimony_coefficient = 1e+308"),
    ("population_size", 10**12, "population_size"),
    ("budget", {"steps": 10**15}, "budget.steps"),
    ("budget", {"lr": 1e300}, "budget.lr"),
    ("seed", "HUGE", "more than 4300 digits"),
])
def test_numbers_that_would_overflow_are_refused(tmp_path, capsys, field, value, says):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({field: value}).replace('"HUGE"', "9" * 5000))
    one_line_error(capsys, ["search", "--spec", str(path), "--run-dir", str(tmp_path / "r")],
                   "spec.json", says)
    assert not (tmp_path / "r").exists()


def test_duplicate_keys_in_a_spec_are_refused(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text('{"seed": 1, "seed": 2}')
    one_line_error(capsys, ["search", "--spec", str(path), "--run-dir", str(tmp_path / "r")],
                   "spec.json", "key 'seed' appears twice")
    assert not (tmp_path / "r").exists()


# -- 2. hand-edited numbers ----------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "says"), [
    ({"val_accuracy": 1e308}, "val_accuracy = 1e+308: expected a fraction in [0, 1]"),
    ({"fitness": math.nan}, "fitness = NaN: expected a finite number"),
    ({"index": 99}, "index = 99: expected an index below the population size 4"),
    ({"generation": "0"}, 'generation = "0"'),
    ({"val_accuracy": "0.9"}, 'val_accuracy = "0.9": expected a number'),
])
@pytest.mark.parametrize("command", ["show", "resume"])
def test_hand_edited_history_numbers_are_refused(made, tmp_path, capsys, fields, says, command):
    run = copy(made["a"], tmp_path / "run")
    edit_row(run / "history.jsonl", 1, **fields)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    one_line_error(capsys, [command, str(run)], "history.jsonl: line 2", says)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(("fields", "says"), [
    ({"test_accuracy": 5.0}, "test_accuracy = 5.0: expected a fraction in [0, 1]"),
    ({"test_accuracy": math.nan}, "test_accuracy is NaN although status is 'ok'"),
    ({"test_accuracy": "0.5"}, 'test_accuracy = "0.5"'),
])
def test_hand_edited_results_are_refused(made, tmp_path, fields, says):
    out = copy(made["val"], tmp_path / "val")
    edit_row(out / "results.jsonl", 0, **fields)
    with pytest.raises(ConfigError) as err:
        load_validation(out)
    assert "results.jsonl: line 1" in str(err.value) and says in str(err.value)


def test_a_conflicting_second_row_for_a_cell_is_refused(made, tmp_path):
    from ngl.evaluate.grid import results_rows

    out = copy(made["grid"], tmp_path / "grid")
    path = out / "results.jsonl"
    first = results_rows(path).raw()[0]
    # a second result for the cell, as another process would write it (sealed)
    results_rows(path).append([{**first, "test_accuracy": 0.01, "wall_s": 9.0}])
    with pytest.raises(ConfigError, match=r"lines 1 and 3 are two different rows for "
                                          r'"[0-9a-f]+" \(test_accuracy: '):
        load_results(path)
    # the same row again (a timing aside) counts once
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n")
    results_rows(path).append([{**first, "wall_s": 9.0}])
    assert len(load_results(path)) == 2


def test_a_result_edited_in_range_is_refused(made, tmp_path, capsys):
    """No range check can see 0.55 -> 0.45: the row's digest does."""
    out = copy(made["val"], tmp_path / "val")
    row = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    edit_row(out / "results.jsonl", 0, test_accuracy=round(1 - row["test_accuracy"], 3))
    one_line_error(capsys, ["validate", str(made["a"]), "--config", str(made["cfg"]), "--out",
                            str(out), "--quiet"], "results.jsonl: line 1 was changed after ngl "
                   "wrote it")


def test_a_plan_edited_in_range_is_refused(made, tmp_path, capsys):
    out = copy(made["val"], tmp_path / "val")
    plan = json.loads((out / "plan.json").read_text())
    plan["found"][0]["search_fitness"] = 0.123
    (out / "plan.json").write_text(json.dumps(plan))
    one_line_error(capsys, ["validate", str(made["a"]), "--config", str(made["cfg"]), "--out",
                            str(out), "--quiet"], "plan.json: this validation plan was changed")


def test_non_finite_metrics_are_stored_explicitly_not_as_null(made, tmp_path):
    """A diverged cell's val_ce is written as NaN and read back as NaN, its -inf as -inf (ngl
    0.1 wrote null for both); a nonfinite status may carry a NaN accuracy, an ok one may not."""
    from ngl.evaluate.grid import results_rows

    out = copy(made["grid"], tmp_path / "grid")
    path = out / "results.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    path.write_text("")
    results_rows(path).append([{**first, "status": "nonfinite", "val_ce": math.nan,
                                "test_ce": -math.inf, "test_accuracy": math.nan}])
    assert '"val_ce": NaN' in path.read_text() and '"test_ce": -Infinity' in path.read_text()
    df = load_results(path)
    assert math.isnan(df["val_ce"].iloc[0]) and df["test_ce"].iloc[0] == -math.inf


# -- 5. one line for every user error ------------------------------------------------------------
def test_a_checkpoint_with_a_huge_integer_is_one_line(made, tmp_path, capsys):
    run = copy(made["a"], tmp_path / "run")
    text = (run / "checkpoint.json").read_text()
    (run / "checkpoint.json").write_text(text.replace('"generation": 2', '"generation": '
                                                      + "1" * 5000))
    one_line_error(capsys, ["resume", str(run)], "checkpoint.json is corrupt",
                   "more than 4300 digits", "move checkpoint.json aside")


@pytest.mark.parametrize(("line", "says"), [
    ("[1, 2, 3]", "line 2 is [1, 2, 3], not a JSON object"),
    ('{"run": "x"}', "line 2"),
    ("{torn", "line 2 is not valid JSON"),
])
@pytest.mark.parametrize("command", ["show", "resume"])
def test_damaged_history_rows_are_one_line(made, tmp_path, capsys, line, says, command):
    run = copy(made["a"], tmp_path / "run")
    rewrite_line(run / "history.jsonl", 1, lambda _old: line)
    one_line_error(capsys, [command, str(run)], "history.jsonl", says)


def test_a_history_row_without_generation_is_one_line(made, tmp_path, capsys):
    run = copy(made["a"], tmp_path / "run")
    rewrite_line(run / "history.jsonl", 1, lambda line: json.dumps(
        {k: v for k, v in json.loads(line).items() if k != "generation"}))
    one_line_error(capsys, ["show", str(run)], "line 2: generation: required field is missing")


def test_a_history_that_is_a_directory_is_one_line(made, tmp_path, capsys):
    run = copy(made["a"], tmp_path / "run")
    (run / "history.jsonl").unlink()
    (run / "history.jsonl").mkdir()
    one_line_error(capsys, ["show", str(run)], "history.jsonl: is a directory")
    one_line_error(capsys, ["resume", str(run)], "history.jsonl: is a directory")


def test_a_lock_that_is_a_directory_is_one_line(made, tmp_path, capsys):
    run = copy(made["a"], tmp_path / "run")
    (run / "search.lock").mkdir()
    one_line_error(capsys, ["resume", str(run)], "search.lock: cannot lock it", "EISDIR")


@pytest.mark.parametrize(("code", "says"), [(errno.EROFS, "EROFS"), (errno.ENOSPC, "ENOSPC"),
                                            (errno.EACCES, "EACCES")])
def test_a_read_only_or_full_disk_is_one_line(made, tmp_path, capsys, monkeypatch, code, says):
    """The disk refuses the first write (os.replace of an atomic write, as a read-only folder or
    a full disk would): one line naming the file and the remedy, exit 2."""
    run = copy(made["a"], tmp_path / "run")
    (run / "checkpoint.json").unlink()  # the resume must write a checkpoint

    def refuse(src, dst):
        raise OSError(code, os.strerror(code), str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    one_line_error(capsys, ["resume", str(run)], "cannot write it", says)


def test_appending_to_a_full_disk_is_one_line_and_keeps_complete_rows(tmp_path, monkeypatch):
    from ngl.io.records import append_rows, read_rows

    path = tmp_path / "r.jsonl"
    append_rows(path, [{"k": 1}])
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RunFileError, match=r"r\.jsonl: cannot append to it .*ENOSPC.*free some "
                                           r"space") as err:
        append_rows(path, [{"k": 2}])
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert read_rows(path)[0] == {"k": 1}


@pytest.mark.parametrize(("damage", "says"), [
    (lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items()
                                        if k != "found"})), "found = None"),
])
def test_a_plan_without_found_is_one_line(made, tmp_path, capsys, damage, says):
    out = copy(made["val"], tmp_path / "val")
    damage(out / "plan.json")
    one_line_error(capsys, ["validate", str(made["a"]), "--config", str(made["cfg"]), "--out",
                            str(out), "--quiet"], "plan.json", says)


@pytest.mark.parametrize(("edit", "says"), [
    (lambda lines: [lines[0][:20], *lines[1:]], "line 1 is not valid JSON"),
    (lambda lines: ["[1]", *lines[1:]], "line 1 is [1], not a JSON object"),
    (lambda lines: [lines[0].replace('"digits"', '"digit\udcff"', 1), *lines[1:]],
     "not UTF-8"),
])
def test_damaged_results_rows_are_one_line(made, tmp_path, capsys, edit, says):
    out = copy(made["val"], tmp_path / "val")
    path = out / "results.jsonl"
    lines = path.read_text().splitlines()
    path.write_bytes(("\n".join(edit(lines)) + "\n").encode("utf-8", "surrogateescape"))
    one_line_error(capsys, ["validate", str(made["a"]), "--config", str(made["cfg"]), "--out",
                            str(out), "--quiet"], "results.jsonl", says)


# -- 6. clean-up on start ------------------------------------------------------------------------
def test_stale_temp_files_of_ngl_are_removed_on_start_and_nothing_else(made, tmp_path):
    run = copy(made["a"], tmp_path / "run")
    stale = run / "checkpoint.json.k3j_x9a2.tmp"  # what atomic_write leaves when killed
    stale.write_text("{half")
    mine = run / "notes.tmp"  # not ngl's pattern: kept
    mine.write_text("keep")
    run_search(tiny(), run, RunOptions(chunk_size=2), progress=False)
    assert not stale.exists() and mine.exists()


def test_a_finished_cells_checkpoint_is_removed_on_start(made, tmp_path):
    out = copy(made["grid"], tmp_path / "grid")
    ckpts = out / "results_checkpoints"
    ckpts.mkdir(exist_ok=True)
    key = grid_cells(GRID)[0]["cell_key"]
    left = ckpts / f"{key}.pt"  # a kill between the cell's row and its clean-up
    left.write_bytes(b"x")
    torn = ckpts / f"{key}.pt.ab12cd34.tmp"
    torn.write_bytes(b"x")
    other = ckpts / "0123456789abcdef.pt"  # not a cell of this grid: kept
    other.write_bytes(b"x")
    run_grid(GRID, out / "results.jsonl", progress=False)
    assert not left.exists() and not torn.exists() and other.exists()


# -- 8. minor items ------------------------------------------------------------------------------
def test_a_foreign_rows_error_has_no_empty_diff(made, tmp_path, capsys):
    run = copy(made["a"], tmp_path / "run")
    edit_row(run / "history.jsonl", 0, run="0123456789ab")
    err = one_line_error(capsys, ["resume", str(run)], "holds rows of another spec")
    assert "()" not in err


def test_sce_with_a_nan_weight_is_refused():
    with pytest.raises(ValueError, match=r"a=nan must be a finite float"):
        get_loss("sce", a=math.nan)
    with pytest.raises(ValueError, match=r"b=inf must be a finite float"):
        get_loss("sce", b=math.inf)


@pytest.mark.parametrize("name", ["ce", "ngl", "focal", "sce"])
def test_an_unchecked_out_of_range_target_is_not_clamped(name):
    """validate=False skips the host-side check (no sync) but never trains on a clamped label:
    the index fails in the scatter that builds the one-hot target."""
    loss = get_loss(name, validate=False)
    z = torch.randn(4, 3)
    ok = loss(z, torch.tensor([0, 1, 2, 1]))
    assert torch.allclose(ok, get_loss(name)(z, torch.tensor([0, 1, 2, 1])))
    with pytest.raises(RuntimeError, match="out of bounds"):
        loss(z, torch.tensor([0, 1, 7, 1]))
    with pytest.raises(RuntimeError, match="out of bounds"):
        loss(z, torch.tensor([0, -3, 2, 1]))


def test_ce_matches_torch_with_ignored_entries_unchecked():
    z, t = torch.randn(5, 4), torch.tensor([0, -100, 3, 2, -100])
    assert torch.allclose(get_loss("ce", validate=False)(z, t),
                          torch.nn.functional.cross_entropy(z, t))


def test_the_search_and_the_kernel_report_the_cli_errors_the_api_raises(made, tmp_path):
    """Through the Python API the same errors are ngl's own one-line types."""
    run = copy(made["a"], tmp_path / "run")
    edit_row(run / "history.jsonl", 1, val_accuracy=1e308)
    with pytest.raises(ConfigError) as err:
        ngl.load(run)
    assert "\n" not in str(err.value)


# -- from a fresh-eyes review ---------------------------------------------------------------------
def test_an_edited_spec_is_named_not_the_rows_it_orphans(made, tmp_path, capsys):
    """generations 2 -> 1 makes generation-1 rows out of range *and* of another spec: the
    message names spec.json (the edit), not "repair or remove that line" (valid rows)."""
    run = copy(made["a"], tmp_path / "run")
    spec = json.loads((run / "spec.json").read_text())
    (run / "spec.json").write_text(json.dumps({**spec, "generations": 1}))
    err = one_line_error(capsys, ["show", str(run)], "spec.json was changed")
    assert "repair or remove" not in err


def test_a_tuning_objective_that_returns_nan_scores_zero(tmp_path):
    from ngl.gp.tune import load_tuning, tune_constants

    def nan_sometimes(texts):
        return [{"val_accuracy": math.nan if i % 2 else 0.5, "status": "ok"}
                for i, _ in enumerate(texts)]

    res = tune_constants("0.5*y_pred + -0.5*y_real", SearchSpec(), tmp_path / "t", generations=2,
                         progress=False, fitness=nan_sometimes)
    again = load_tuning(tmp_path / "t")  # readable: the rows pass their own schema
    assert res.complete and again.complete
    bad = again.history[again.history["status"] == "nonfinite"]
    assert len(bad) and (bad["val_accuracy"] == 0.0).all()


def test_a_newline_less_tail_the_reader_skips_is_cut_not_completed(tmp_path):
    from ngl.io.records import append_rows, read_rows

    path = tmp_path / "r.jsonl"
    path.write_text('{"k": 1}\n{"k": 2, "k": 3}')  # complete JSON to json.loads, refused here
    assert read_rows(path) == [{"k": 1}]
    append_rows(path, [{"k": 4}])
    assert read_rows(path) == [{"k": 1}, {"k": 4}]


def test_a_validation_with_damaged_results_writes_no_sitting(made, tmp_path, capsys):
    out = copy(made["val"], tmp_path / "val")
    before = (out / "sittings.jsonl").read_bytes()
    rewrite_line(out / "results.jsonl", 0, lambda line: line[:30])
    one_line_error(capsys, ["validate", str(made["a"]), "--config", str(made["cfg"]), "--out",
                            str(out), "--quiet"], "results.jsonl: line 1")
    assert (out / "sittings.jsonl").read_bytes() == before


def test_a_sealed_plan_without_its_seal_is_refused(made, tmp_path, capsys):
    out = copy(made["val"], tmp_path / "val")
    plan = json.loads((out / "plan.json").read_text())
    plan.pop("sha")
    plan["found"][0]["search_fitness"] = 0.95
    (out / "plan.json").write_text(json.dumps(plan))
    one_line_error(capsys, ["validate", str(made["a"]), "--config", str(made["cfg"]), "--out",
                            str(out), "--quiet"], "plan.json", "sha field is gone")
