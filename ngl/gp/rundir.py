"""A search's run directory: its files, its lock, and the checks that keep its rows consistent.

    spec.json        the SearchSpec (its hash is the directory's default name)
    options.json     the RunOptions last used (informational: they never change results)
    history.jsonl    one row per candidate, appended and fsync'ed as each chunk finishes
    checkpoint.json  population + RNG after each generation (rebuilt from the history if lost)
    search.lock      held while a process runs the search

Directories written before the spec/options split hold ``config.json`` instead of
``spec.json``: they load (``legacy=True``) but are not resumed (see :func:`read_run_files`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ngl.gp.expression import LossExpression
from ngl.gp.spec import OPTION_FIELDS, RunOptions, SearchSpec
from ngl.io.config import ConfigError, load_config_file
from ngl.io.records import exclusive_lock, read_rows

__all__ = ["RunDirError", "RunFiles", "run_dir_lock", "config_diff", "read_run_files",
           "read_checkpoint", "history_rows", "rng_to_json", "rng_from_json", "SPEC", "OPTIONS",
           "HISTORY", "CHECKPOINT", "LEGACY_CONFIG"]

SPEC, OPTIONS, HISTORY, CHECKPOINT = "spec.json", "options.json", "history.jsonl", "checkpoint.json"
LEGACY_CONFIG = "config.json"


class RunDirError(ValueError):
    """A run directory that cannot be used as it is; the message says which file and what to do."""


@dataclass(frozen=True)
class RunFiles:
    """What a run directory says about itself."""

    spec: SearchSpec
    options: RunOptions
    legacy: bool  # written by ngl before the spec/options split (config.json)


def run_dir_lock(run_dir: Path):
    """An exclusive lock on a search's run directory (``search.lock`` inside it)."""
    return exclusive_lock(run_dir / "search.lock", f"search directory {run_dir}")


def config_diff(old: dict, new: dict, prefix: str = "") -> str:
    """``field: old -> new`` for every differing field (nested dicts as ``budget.steps``)."""
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "(absent)"), new.get(k, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            inner = config_diff(a, b, f"{prefix}{k}.")
            if inner:
                parts.append(inner)
        elif a != b:
            parts.append(f"{prefix}{k}: {json.dumps(a)} -> {json.dumps(b)}")
    return ", ".join(parts)


def _load(cls: type, path: Path) -> Any:
    try:
        return load_config_file(cls, path)
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None


def read_run_files(run_dir: Path) -> RunFiles:
    """The spec and options of ``run_dir`` (new layout or a legacy ``config.json``)."""
    run_dir = Path(run_dir)
    if (run_dir / SPEC).exists():
        spec = _load(SearchSpec, run_dir / SPEC)
        options = (_load(RunOptions, run_dir / OPTIONS) if (run_dir / OPTIONS).exists()
                   else RunOptions())
        return RunFiles(spec, options, legacy=False)
    legacy = run_dir / LEGACY_CONFIG
    if not legacy.exists():
        raise FileNotFoundError(f"no search in {run_dir}: neither {SPEC} nor {LEGACY_CONFIG} "
                                "is there")
    try:
        old = json.loads(legacy.read_text())
    except json.JSONDecodeError:
        old = None
    if not isinstance(old, dict):
        raise RunDirError(f"{legacy} is not a JSON object of search settings")
    # before the split one config held both; the data split was drawn with the GP seed
    options = {k: old.pop(k) for k in OPTION_FIELDS if k in old}
    old.setdefault("data_seed", old.get("seed", 0))
    try:
        spec = SearchSpec.from_dict(old)
        opts = RunOptions.from_dict(options)
    except ConfigError as exc:
        raise RunDirError(f"{legacy} (written by an older ngl) cannot be read: {exc}") from None
    return RunFiles(spec, opts, legacy=True)


def rng_to_json(rng: np.random.RandomState) -> list:
    name, keys, pos, has_gauss, cached = rng.get_state()
    return [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]


def rng_from_json(state: list) -> np.random.RandomState:
    rng = np.random.RandomState()
    name, keys, pos, has_gauss, cached = state
    rng.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return rng


def read_checkpoint(path: Path, spec: SearchSpec) -> dict:
    """The checkpoint, checked: readable, complete, and written by this very spec."""
    what_to_do = (f"move {path.name} aside (e.g. `mv {path} {path}.bad`) and run again: the "
                  "search is then rebuilt exactly from the history")
    try:
        ckpt = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path} is corrupt ({exc}); {what_to_do}") from None
    missing = [k for k in ("generation", "population", "rng_state", "spec_key")
               if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise RunDirError(f"{path} lacks {missing}; {what_to_do}")
    if ckpt["spec_key"] != spec.key:
        diff = (config_diff(ckpt["spec"], spec.to_dict()) if isinstance(ckpt.get("spec"), dict)
                else "")
        if not diff:  # the spec is the same: the checkpoint itself is damaged
            raise RunDirError(f"{path}: its spec_key does not match {SPEC}; {what_to_do}")
        raise RunDirError(
            f"{path.parent / SPEC} was changed after the search started ({diff}); "
            "restore it, or start the changed spec in a new run directory")
    gen, pop = ckpt["generation"], ckpt["population"]
    if not (type(gen) is int and 0 <= gen <= spec.generations and isinstance(pop, list)):
        raise RunDirError(f"{path}: generation={gen!r} / population are not valid; {what_to_do}")
    try:
        rng_from_json(ckpt["rng_state"])
        for entry in pop:  # [text, origin, parents]; the text must be a loss the search can train
            text, origin, parents = entry
            if not (isinstance(origin, str) and isinstance(parents, list)):
                raise ValueError(f"population entry {entry!r}")
            LossExpression.parse(text)
    except Exception as exc:  # noqa: BLE001 - any damage means the same remedy
        raise RunDirError(f"{path}: rng_state / population are not valid ({exc}); "
                          f"{what_to_do}") from None
    return ckpt


def history_rows(run_dir: Path, spec: SearchSpec, legacy: bool = False) -> list[dict]:
    """The history with each (generation, index) once (the first row written for it).

    Rows of another spec are refused: they mean ``spec.json`` was edited after the start. A
    legacy directory's rows carry keys of the old scheme and are taken as they are.
    """
    path = run_dir / HISTORY
    rows, seen, foreign = [], set(), set()
    try:
        raw = read_rows(path)
    except ValueError as exc:  # a damaged line inside the file (not a torn tail)
        raise RunDirError(f"{exc}; repair or remove that line (each line is one candidate's "
                          "row; a removed row is retrained)") from None
    for r in raw:
        if not legacy and r.get("run") != spec.key:
            foreign.add(r.get("run"))
            continue
        ident = (r["generation"], r["index"])
        if ident in seen:
            continue
        seen.add(ident)
        rows.append(r)
    if foreign:
        diff = ""
        try:  # the checkpoint remembers the spec the rows were written with
            saved = json.loads((run_dir / CHECKPOINT).read_text()).get("spec")
            diff = f" ({config_diff(saved, spec.to_dict())})" if isinstance(saved, dict) else ""
        except (OSError, ValueError, AttributeError):
            pass
        raise RunDirError(
            f"{path} holds rows of another spec (run key(s) {sorted(map(str, foreign))}, "
            f"{SPEC} has {spec.key}); {SPEC} was changed after the search started{diff}: "
            "restore it or use a new run directory")
    return rows
