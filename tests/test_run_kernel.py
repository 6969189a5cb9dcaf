"""The run kernel (``ngl.io.runs``): one folder, lock, frozen spec, sittings and keyed rows that
every long job uses, and the jobs using it rather than their own copies."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from ngl.evaluate.grid import results_folder, results_rows
from ngl.evaluate.proxy_calibration import calibration_folder
from ngl.evaluate.proxy_config import proxy_rows
from ngl.evaluate.validate import validation_folder
from ngl.fitness import TrainBudget
from ngl.gp import RunOptions, SearchSpec, run_search
from ngl.gp.rundir import HISTORY, search_folder, search_rows
from ngl.gp.tune import tuning_folder
from ngl.io.records import InUseError
from ngl.io.runs import Rows, RunFolder, RunFolderError, config_diff

ROOT = Path(__file__).resolve().parents[1]


# -- rows ----------------------------------------------------------------------------------------
def _write(path: Path, rows: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_an_exact_duplicate_counts_once_and_a_conflicting_one_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, [{"u": 0, "i": 0, "v": "a", "wall_s": 1.0}, {"u": 0, "i": 1, "v": "b"},
                  {"u": 0, "i": 0, "v": "a", "wall_s": 2.0}])  # a timing may differ
    rows = Rows(path, lambda r: (r["u"], r["i"]))
    assert [(r["v"], r["wall_s"]) for r in rows.read() if r["i"] == 0] == [("a", 1.0)]
    assert rows.done() == {(0, 0), (0, 1)}
    assert rows.done(lambda r: r["v"] == "b") == {(0, 1)}
    assert len(rows.raw()) == 3
    _write(path, [{"u": 0, "i": 0, "v": "a"}, {"u": 0, "i": 1, "v": "b"},
                  {"u": 0, "i": 0, "v": "c"}])
    with pytest.raises(RunFolderError) as err:
        rows.read()
    assert str(err.value) == (f"{path}: lines 1 and 3 are two different rows for [0, 0] "
                              '(v: "a" vs "c"); which one is true cannot be known: remove the '
                              "wrong line (a removed row is run again)")
    # only the compared fields count
    assert len(Rows(path, lambda r: (r["u"], r["i"]), compare=("u",)).read()) == 2


def test_a_result_wins_over_an_error_row_whichever_comes_first(tmp_path):
    path = tmp_path / "r.jsonl"
    done = lambda r: r["status"] == "ok"  # noqa: E731
    for order in ([{"k": 1, "status": "error"}, {"k": 1, "status": "ok"}],
                  [{"k": 1, "status": "ok"}, {"k": 1, "status": "error"}]):
        _write(path, order)
        assert [r["status"] for r in Rows(path, lambda r: r["k"], final=done).read()] == ["ok"]
    _write(path, [{"k": 1, "status": "error", "e": 1}, {"k": 1, "status": "error", "e": 2}])
    last = Rows(path, lambda r: r["k"], final=done, keep="last").read()
    first = Rows(path, lambda r: r["k"], final=done, keep="first").read()
    assert [r["e"] for r in last] == [2] and [r["e"] for r in first] == [1]


@pytest.mark.parametrize(("line", "says"), [
    ('{"generation": "0"}', 'line 2: generation = "0": Input should be a valid integer'),
    ('{"index": 99}', "line 2: index = 99: expected an index below the population size 8"),
    ('{"val_accuracy": 1e308}', "val_accuracy = 1e+308: expected a fraction in [0, 1]"),
    ('{"val_accuracy": "0.5"}', 'val_accuracy = "0.5": expected a number'),
    ('{"fitness": NaN}', "fitness = NaN: expected a finite number"),
    ('{"status": "ok", "val_accuracy": NaN}', "val_accuracy is NaN although status is 'ok'"),
])
def test_a_row_out_of_range_is_refused_naming_file_line_and_field(tmp_path, line, says):
    from ngl.io.schemas import HistoryRow

    good = {"run": "k", "generation": 0, "index": 0, "expression": "y_pred", "status": "ok",
            "fitness": 0.5, "val_accuracy": 0.5, "key": "a", "fingerprint": "f"}
    bad = {**good, "index": 1, **json.loads(line)}
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    rows = Rows(path, lambda r: (r["generation"], r["index"]), what="candidate's row",
                schema=HistoryRow, context={"population_size": 8, "generations": 3})
    with pytest.raises(RunFolderError) as err:
        rows.read()
    msg = str(err.value)
    assert msg.startswith(f"{path}: line 2") and says in msg and "\n" not in msg
    assert msg.endswith("repair or remove that line (each line is one candidate's row; a "
                        "removed row is run again)")


def test_non_finite_metrics_round_trip_explicitly(tmp_path):
    """-inf and NaN are written as JSON's NaN / -Infinity tokens and read back as themselves
    (ngl 0.1 wrote null, which read back as a missing value)."""
    import math

    path = tmp_path / "r.jsonl"
    Rows(path, lambda r: r["k"]).append([{"k": 1, "val_ce": float("nan"),
                                          "loss": float("-inf"), "x": float("inf")}])
    text = path.read_text()
    assert '"loss": -Infinity' in text and '"val_ce": NaN' in text and '"x": Infinity' in text
    assert "null" not in text
    (row,) = Rows(path, lambda r: r["k"]).read()
    assert math.isnan(row["val_ce"]) and row["loss"] == -math.inf and row["x"] == math.inf


@pytest.mark.parametrize(("text", "says"), [
    ('{"k": 1, "k": 2}\n', "key 'k' appears twice"),
    ('[1, 2]\n', "line 1 is [1, 2], not a JSON object"),
    ('{"k": ' + "1" * 5000 + "}\n", "an integer of more than 4300 digits"),
    (b'{"k": "\xff"}\n', "not UTF-8 text"),
])
def test_unreadable_rows_are_one_line(tmp_path, text, says):
    path = tmp_path / "r.jsonl"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    with pytest.raises(RunFolderError) as err:
        Rows(path, lambda r: r["k"]).read()
    assert says in str(err.value) and str(path) in str(err.value)


def test_a_rows_file_that_is_a_directory_is_one_line(tmp_path):
    (tmp_path / "r.jsonl").mkdir()
    with pytest.raises(RunFolderError, match=r"r\.jsonl: is a directory"):
        Rows(tmp_path / "r.jsonl", lambda r: r["k"]).read()


def test_rows_repair_a_torn_tail_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"i": 0}\n{"i": 1')  # killed mid-write (rows of ngl 0.1: no seals)
    rows = Rows(path, lambda r: r["i"])
    assert [r["i"] for r in rows.read()] == [0]
    rows.append([{"i": 1}])
    lines = path.read_text().splitlines()
    assert lines[0] == '{"i": 0}' and json.loads(lines[1])["i"] == 1 and len(lines) == 2
    assert [r["i"] for r in rows.read()] == [0, 1]


def test_rows_of_another_spec_are_refused_with_the_hint(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, [{"run": "aaa", "i": 0}, {"run": "bbb", "i": 1}])
    rows = Rows(path, lambda r: r["i"], owner="aaa", spec_name="spec.json",
                owner_hint=lambda: " (seed: 1 -> 2)")
    with pytest.raises(RunFolderError) as err:
        rows.read()
    msg = str(err.value)
    assert "holds rows of another spec" in msg and "['bbb']" in msg and "spec.json has aaa" in msg
    assert "(seed: 1 -> 2)" in msg and "\n" not in msg


def test_a_damaged_inner_line_is_named(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"i": 0}\nnot json\n{"i": 2}\n')
    with pytest.raises(RunFolderError, match=r"r\.jsonl: line 2 is not valid JSON.*run again"):
        Rows(path, lambda r: r["i"], what="cell's row").read()


# -- the folder ----------------------------------------------------------------------------------
def test_the_lock_refuses_a_second_holder(tmp_path):
    folder = RunFolder(tmp_path / "job", "test folder", "spec.json", "job.lock")
    with folder.lock():
        assert (tmp_path / "job" / "job.lock").exists()
        second = RunFolder(tmp_path / "job", "test folder", "spec.json", "job.lock")
        with pytest.raises(InUseError, match=r"test folder .*job is in use by another run"), \
                second.lock():
            pass
    with folder.lock():  # released
        pass


def test_freeze_writes_once_and_read_plan_checks_identity(tmp_path):
    folder = RunFolder(tmp_path, "test folder", "plan.json", "job.lock")
    assert folder.read_plan("test plan", lambda p: p["config"], {"a": 1}, "runs another", "x") \
        is None
    assert folder.freeze({"config": {"a": 1, "b": 2}, "chosen": [1]})
    assert not folder.freeze({"config": {"a": 9}})  # never rewritten
    plan = folder.read_plan("test plan", lambda p: p["config"], {"a": 1, "b": 2},
                            "runs another", "x")
    assert plan == {"config": {"a": 1, "b": 2}, "chosen": [1]}
    with pytest.raises(RunFolderError) as err:
        folder.read_plan("test plan", lambda p: p["config"], {"a": 1, "b": 3},
                         "runs another configuration", "use another folder")
    assert str(err.value) == (f"{tmp_path / 'plan.json'}: this folder runs another configuration "
                              "(b: 2 -> 3); use another folder")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"other": 1}', ""])
def test_a_damaged_plan_is_one_line(tmp_path, text):
    folder = RunFolder(tmp_path, "test folder", "plan.json")
    (tmp_path / "plan.json").write_text(text)
    with pytest.raises(RunFolderError, match=r"plan\.json: not a test plan \(.*\); move it aside"):
        folder.read_plan("test plan", lambda p: p["config"], {}, "x", "y")


def test_a_row_changed_after_it_was_written_is_refused(tmp_path):
    """Rows carry a digest of their content: a value edited in range (which no range check can
    see) is refused, and so is a row whose seal was removed after a sealed one; rows written
    without one before any seal (ngl 0.1) are read as they are."""
    path = tmp_path / "r.jsonl"
    path.write_text('{"k": 0, "acc": 0.4}\n')  # a row of ngl 0.1
    rows = Rows(path, lambda r: r["k"], what="cell's row")
    rows.append([{"k": 1, "acc": 0.5}, {"k": 2, "acc": 0.6}])
    assert [r["acc"] for r in rows.read()] == [0.4, 0.5, 0.6]  # the digest is not in the row
    assert ["sha" in json.loads(line) for line in path.read_text().splitlines()] == [
        False, True, True]
    good = path.read_text()
    path.write_text(good.replace('"acc": 0.6', '"acc": 0.7'))
    with pytest.raises(RunFolderError) as err:
        rows.read()
    assert str(err.value).startswith(f"{path}: line 3 was changed after ngl wrote it")
    lines = good.splitlines()
    row = json.loads(lines[2])
    del row["sha"]
    path.write_text("\n".join([*lines[:2], json.dumps(row)]) + "\n")
    with pytest.raises(RunFolderError, match=r"line 3 was changed after ngl wrote it \(its sha "
                                             r"field is gone"):
        rows.read()


def test_a_sealed_plan_edited_in_range_is_refused(tmp_path):
    folder = RunFolder(tmp_path, "test folder", "plan.json", sealed=True)
    folder.freeze({"config": {"a": 1}, "found": [0.5]})
    assert folder.read_plan("test plan", lambda p: p["config"], {"a": 1}, "x", "y") == {
        "config": {"a": 1}, "found": [0.5]}
    path = tmp_path / "plan.json"
    path.write_text(path.read_text().replace("0.5", "0.9"))
    with pytest.raises(RunFolderError, match=r"plan\.json: this test plan was changed after ngl "
                                             r"wrote it"):
        folder.read_plan("test plan", lambda p: p["config"], {"a": 1}, "x", "y")


def test_sittings_are_numbered_and_record_their_options(tmp_path):
    folder = RunFolder(tmp_path, "test folder")
    folder.record_sitting({"device": "cpu"})
    folder.record_sitting({"device": "cuda"}, note=1)
    s = folder.sittings()
    assert [r["sitting"] for r in s] == [0, 1]
    assert [r["options"]["device"] for r in s] == ["cpu", "cuda"]
    assert s[1]["note"] == 1 and s[0]["ngl_version"] and s[0]["torch_version"]


def test_config_diff_names_nested_fields():
    assert config_diff({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 4}) == \
        'b.c: 2 -> 3, d: "(absent)" -> 4'


# -- the jobs use it -----------------------------------------------------------------------------
def test_every_long_job_has_a_kernel_folder(tmp_path):
    folders = {
        "search": search_folder(tmp_path), "tuning": tuning_folder(tmp_path),
        "validation": validation_folder(tmp_path), "calibration": calibration_folder(tmp_path),
        "grid": results_folder(tmp_path / "results.jsonl"),
    }
    assert all(isinstance(f, RunFolder) for f in folders.values())
    assert {f.lock_name for f in folders.values()} == {
        "search.lock", "tune.lock", "validate.lock", "calibrate.lock", "results.jsonl.lock"}
    spec = SearchSpec(population_size=4)
    assert isinstance(search_rows(tmp_path, HISTORY, spec), Rows)
    assert isinstance(results_rows(tmp_path / "r.jsonl"), Rows)
    assert isinstance(proxy_rows(tmp_path), Rows)


RAW = {"exclusive_lock", "append_rows", "read_rows"}


def raw_record_imports(source: str) -> list[str]:
    """Imports of the raw record functions in ``source``: ``from ngl.io[.records] import x``
    and ``import ngl.io.records`` (whose attributes would be the same functions)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ngl.io"):
            found += [a.name for a in node.names if a.name in RAW or a.name == "records"]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("ngl.io.records")]
    return found


def test_no_job_writes_rows_or_locks_by_itself():
    """Locks and row files go through the kernel: outside ``ngl/io`` nothing imports the raw
    record functions (a job with its own copy would drift from the others again)."""
    offenders = []
    for path in sorted((ROOT / "ngl").rglob("*.py")):
        if path.parts[-2] == "io":
            continue
        offenders += [f"{path.relative_to(ROOT)}: {n}" for n in raw_record_imports(
            path.read_text())]
    assert offenders == []


@pytest.mark.parametrize("source", [
    "from ngl.io.records import append_rows\n",
    "from ngl.io import read_rows\n",
    "import ngl.io.records as r\n",
    "from ngl.io import records\n",
])
def test_the_check_has_teeth(source):
    """The very scanner above finds each way of reaching the raw functions (a control)."""
    assert raw_record_imports(source)


# -- a search through the kernel -----------------------------------------------------------------
def _tiny() -> SearchSpec:
    return SearchSpec(population_size=2, generations=1, n_train=60, n_val=30,
                      budget=TrainBudget(steps=1, batch_size=16), seed=1)


def test_a_search_records_each_sitting(tmp_path):
    run_dir = tmp_path / "s"
    run_search(_tiny(), run_dir, RunOptions(chunk_size=1), progress=False)
    run_search(_tiny(), run_dir, RunOptions(chunk_size=2), progress=False)
    sittings = search_folder(run_dir).sittings()
    assert [s["options"]["chunk_size"] for s in sittings] == [1, 2]
    assert json.loads((run_dir / "options.json").read_text())["chunk_size"] == 2


def test_a_refused_search_writes_nothing(tmp_path):
    """The checkpoint and history are checked before spec.json / options.json are touched."""
    run_dir = tmp_path / "s"
    run_search(_tiny(), run_dir, RunOptions(chunk_size=1), progress=False)
    (run_dir / "checkpoint.json").write_text("{torn")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(RunFolderError, match="checkpoint.json is corrupt"):
        run_search(_tiny(), run_dir, RunOptions(chunk_size=2), progress=False)
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after == before
    # with spec.json gone, the refusal does not write a new one either
    (run_dir / "spec.json").unlink()
    with pytest.raises(RunFolderError, match="checkpoint.json"):
        run_search(_tiny(), run_dir, RunOptions(chunk_size=2), progress=False)
    assert not (run_dir / "spec.json").exists()
