"""Fuzzing the run folders (issue 22): a finished tiny search, validation and grid, one file
damaged at random (truncated, bytes flipped, lines deleted, doubled or swapped, a number or a
type changed, the file replaced by a directory), then the same command run again.

Each outcome must be one of two: the same result as the untouched folder, or exit 2 with one
line naming the damaged file. Never a traceback, never a different result reported as success.
Seeded (``derandomize``) and bounded so it runs in ``make test`` in about a minute.
"""

from __future__ import annotations

import random
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ngl.__main__ import main
from ngl.evaluate import GridConfig, ValidateConfig, load_validation, validate
from ngl.evaluate.grid import load_results, run_grid
from ngl.fitness import TrainBudget
from ngl.gp import RunOptions, SearchSpec, load_result, run_search
from ngl.losses import NGL_EXPRESSION
from ngl.train.loop import TrainConfig

TRAIN = TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=2)
SPEC = SearchSpec(population_size=4, generations=2, n_train=120, n_val=60,
                  budget=TrainBudget(steps=3, batch_size=32), seed_expressions=(NGL_EXPRESSION,),
                  seed=3, rescore=1, rescore_seeds=1)
VALIDATE = ValidateConfig(top_k=1, references=("ce",), seeds=(0, 1), model="small_cnn",
                          train=TRAIN, transfer=(), fidelity_top=0, fidelity_sample=0,
                          device="cpu", bootstrap_resamples=200, n_train=120, n_val=60,
                          n_test=60)
GRID = GridConfig(datasets=("digits",), models=("small_cnn",), losses=("ce", "focal"),
                  seeds=(0,), train=TRAIN, n_train=120, n_val=60, n_test=60, device="cpu")
HISTORY_COLS = ["generation", "index", "expression", "status", "val_accuracy", "fitness"]
GRID_COLS = ["cell_key", "status", "val_accuracy", "test_accuracy"]
EXAMPLES = 80  # per folder kind


def _search_outcome(run: Path) -> tuple:
    res = load_result(run)
    hist = res.history[HISTORY_COLS].sort_values(["generation", "index"]).reset_index(drop=True)
    hof = res.hall_of_fame(5)[["expression", "val_accuracy"]].reset_index(drop=True)
    return hist, hof, res.complete


def _validation_outcome(out: Path) -> tuple:
    rep = load_validation(out)
    return rep.table.reset_index(drop=True), rep.complete


def _grid_outcome(path: Path) -> pd.DataFrame:
    return load_results(path)[GRID_COLS].sort_values("cell_key").reset_index(drop=True)


def _same(a, b) -> None:
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    else:
        assert a == b


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fuzz")
    search = root / "search"
    run_search(SPEC, search, RunOptions(chunk_size=2), progress=False)
    cfg = root / "validate.json"
    cfg.write_text(VALIDATE.to_json())
    val = root / "validation"
    validate(search, VALIDATE, val, progress=False)
    grid = root / "grid"
    run_grid(GRID, grid / "results.jsonl", progress=False)
    return {"root": root, "search": search, "cfg": cfg, "validation": val, "grid": grid,
            "outcome": {"search": _search_outcome(search),
                        "validation": _validation_outcome(val),
                        "grid": _grid_outcome(grid / "results.jsonl")}}


# -- damage --------------------------------------------------------------------------------------
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
STRING = re.compile(rb'"[^"\\\n]*"')
REPLACEMENTS = [b"0", b"1", b"-1", b"0.5", b"2", b"99", b"1e308", b"NaN", b"-Infinity",
                b'"x"', b"true", b"null", b"[]", b"{}", b"1" * 5000]


def damage(path: Path, op: str, rng: random.Random) -> None:
    """Damage ``path`` the way a crash, a careless edit or a failing copy would."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    if op == "directory":
        path.unlink()
        path.mkdir()
        return
    if op == "truncate":
        data = data[:rng.randrange(len(data) + 1)]
    elif op == "flip" and data:
        i = rng.randrange(len(data))
        data = data[:i] + bytes([data[i] ^ rng.randrange(1, 256)]) + data[i + 1:]
    elif op in ("delete_line", "duplicate_line", "swap_lines") and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        if op == "delete_line":
            del lines[i]
        elif op == "duplicate_line":
            lines.insert(j, lines[i])
        else:
            lines[i], lines[j] = lines[j], lines[i]
        data = b"\n".join(lines)
    elif op in ("number", "type"):
        found = list((NUMBER if op == "number" else STRING).finditer(data))
        if found:
            m = rng.choice(found)
            new = rng.choice(REPLACEMENTS) if op == "number" else rng.choice(
                [b"1", b"true", b"null", b'"' + m.group()[1:-1][::-1] + b'"'])
            data = data[:m.start()] + new + data[m.end():]
    path.write_bytes(data)


OPS = ["truncate", "flip", "delete_line", "duplicate_line", "swap_lines", "number", "type",
       "directory"]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not p.name.endswith(".lock"))


def _damaged_copy(src: Path, name: str, op: str, seed: int) -> tuple[Path, Path]:
    tmp = Path(tempfile.mkdtemp(prefix="ngl-fuzz-"))
    dst = tmp / src.name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock"))
    damage(dst / name, op, random.Random(seed))
    return tmp, dst / name


def _check(capsys, code: int, damaged: Path, same) -> None:
    err = capsys.readouterr().err.strip()
    if code == 0:
        same()  # success must mean the untouched folder's result
        return
    assert code == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert damaged.name in err, f"the damaged file is not named: {err}"


def _draw(data, src: Path) -> tuple[Path, Path]:
    """A copy of ``src`` with one file damaged as hypothesis draws it: (temp dir, that file)."""
    name = data.draw(st.sampled_from(_files(src)), label="file")
    op = data.draw(st.sampled_from(OPS), label="op")
    return _damaged_copy(src, name, op, data.draw(st.integers(0, 2**32 - 1)))


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(data=st.data())
def test_a_damaged_search_folder(folders, capsys, data):
    src = folders["search"]
    tmp, damaged = _draw(data, src)
    try:
        run = damaged.parent if damaged.parent.name == src.name else tmp / src.name
        code = main(["show", str(run)])
        _check(capsys, code, damaged, lambda: None)  # show: a summary or one line
        code = main(["resume", str(run), "--quiet"])
        _check(capsys, code, damaged,
               lambda: _same(_search_outcome(run), folders["outcome"]["search"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@FUZZ
@given(data=st.data())
def test_a_damaged_validation_folder(folders, capsys, data):
    src = folders["validation"]
    tmp, damaged = _draw(data, src)
    try:
        out = tmp / src.name
        code = main(["validate", str(folders["search"]), "--config", str(folders["cfg"]),
                     "--out", str(out), "--quiet"])
        _check(capsys, code, damaged,
               lambda: _same(_validation_outcome(out), folders["outcome"]["validation"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@FUZZ
@given(data=st.data())
def test_a_damaged_grid_folder(folders, capsys, data):
    """The grid has no command of its own: through the Python API a user error is ngl's own
    one-line error (a ValueError or OSError), exactly what the CLI prints."""
    src = folders["grid"]
    tmp, damaged = _draw(data, src)
    try:
        path = tmp / src.name / "results.jsonl"
        try:
            run_grid(GRID, path, progress=False)
        except (ValueError, OSError) as exc:
            msg = str(exc)
            assert "\n" not in msg and damaged.name in msg, msg
        else:
            _same(_grid_outcome(path), folders["outcome"]["grid"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
