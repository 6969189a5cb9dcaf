"""A search's run directory: its files, its lock, and the checks that keep its rows consistent.

The folder, lock, keyed rows and sittings are the run kernel's (:mod:`ngl.io.runs`); what is
the search's own is which files it holds and how its checkpoint is checked:

    spec.json          the SearchSpec (its hash is the directory's default name)
    options.json       the RunOptions last used (informational: they never change results)
    sittings.jsonl     one row per sitting: its RunOptions, start time, versions, host
    history.jsonl      one row per candidate, appended and fsync'ed as each chunk finishes
    checkpoint.json    population + RNG after each generation (rebuilt from the history if lost)
    references.jsonl   one row per reference loss (``SearchSpec.references``), trained before
                       generation 0 with the search's budget, seed and data; never in the history
    rescore_plan.json  the hall-of-fame entries chosen for rescoring (``SearchSpec.rescore``),
                       frozen once chosen after the last generation, and the extra seeds
    rescore.jsonl      one row per (planned entry or reference, extra seed) retrained
    search.lock        held while a process runs the search

A folder of ngl before 0.1 holds ``config.json`` instead of ``spec.json``; it is refused in one
line (0.1 dropped reading it).
A ``spec.json`` written before ``references`` and ``rescore`` existed reads them as off
(``references=()``, ``rescore=0``), so the search keeps its key and its rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ngl.gp.expression import LossExpression
from ngl.gp.spec import RunOptions, SearchSpec
from ngl.gp.user_operators import user_operators
from ngl.io.config import ConfigError, load_config_file
from ngl.io.records import JSONError, read_json, unseal
from ngl.io.runs import SITTINGS, Rows, RunFolder, RunFolderError, config_diff
from ngl.io.schemas import HistoryRow, SideRow
from ngl.losses.registry import loss_spec_label

__all__ = ["RunDirError", "RunFiles", "search_folder", "search_rows", "run_dir_lock", "config_diff", "read_run_files",
           "read_checkpoint", "check_checkpoint_seal", "check_bracket", "check_user_operators", "history_rows", "reference_rows", "rescore_rows",
           "read_rescore_plan", "planned_rescores", "rescore_seed", "rescore_ident", "rng_to_json", "rng_from_json", "SPEC", "OPTIONS",
           "HISTORY", "CHECKPOINT", "PRE_01_CONFIG", "REFERENCES", "RESCORE", "RESCORE_PLAN",
           "OFF_WHEN_ABSENT"]

SPEC, OPTIONS, HISTORY, CHECKPOINT = "spec.json", "options.json", "history.jsonl", "checkpoint.json"
REFERENCES, RESCORE, RESCORE_PLAN = "references.jsonl", "rescore.jsonl", "rescore_plan.json"
PRE_01_CONFIG = "config.json"  # what ngl before 0.1 wrote instead of spec.json
OFF_WHEN_ABSENT = {"references": (), "rescore": 0}
"""SearchSpec fields added after run directories existed, and the value a spec file without
them means: off, which is what those searches did (and keeps their key)."""


#: A run directory that cannot be used as it is (the kernel's one-line error).
RunDirError = RunFolderError


@dataclass(frozen=True)
class RunFiles:
    """What a run directory says about itself (``written``: spec.json as it is on disk)."""

    spec: SearchSpec
    options: RunOptions
    written: dict = dataclasses.field(default_factory=dict, compare=False)


def search_folder(run_dir: Path) -> RunFolder:
    """A search's run directory as the run kernel sees it."""
    return RunFolder(Path(run_dir), "search directory", SPEC, "search.lock")


def run_dir_lock(run_dir: Path):
    """An exclusive lock on a search's run directory (``search.lock`` inside it)."""
    return search_folder(run_dir).lock()


def _load(cls: type, path: Path) -> Any:
    try:
        return load_config_file(cls, path)
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None


def read_run_files(run_dir: Path) -> RunFiles:
    """The spec and options of ``run_dir``."""
    run_dir = Path(run_dir)
    if not (run_dir / SPEC).exists():
        if (run_dir / PRE_01_CONFIG).exists():
            raise RunDirError(f"{run_dir} holds {PRE_01_CONFIG} but no {SPEC}: a run folder of "
                              "ngl before 0.1, which this version does not read; start a new "
                              "search with its settings")
        raise FileNotFoundError(f"no search in {run_dir}: no {SPEC} there")
    spec = _load(SearchSpec, run_dir / SPEC)
    saved = json.loads((run_dir / SPEC).read_text(encoding="utf-8"))  # read fine just above
    absent = {k: v for k, v in OFF_WHEN_ABSENT.items() if k not in saved}
    if absent:  # written before these fields existed: that search ran without them
        spec = dataclasses.replace(spec, **absent)
    options = (_load(RunOptions, run_dir / OPTIONS) if (run_dir / OPTIONS).exists()
               else RunOptions())
    return RunFiles(spec, options, saved)


def check_bracket(run_dir: Path, spec: SearchSpec, files: RunFiles) -> None:
    """A halving search written before ``halving.bracket`` existed bracketed by its chunk
    size; reading its spec gives bracket 16, which is right only if it ran with chunks of
    16. Otherwise continuing it would mix two selection regimes: refused (loading works)."""
    if spec.halving is None:
        return
    saved, written = files.options, files.written.get("halving")
    if isinstance(written, dict) and "bracket" not in written \
            and saved.chunk_size != spec.halving.bracket:
        raise RunDirError(
            f"{run_dir}: a halving search from before halving.bracket existed, run "
            f"with chunk_size={saved.chunk_size}, so its brackets held {saved.chunk_size} "
            f"candidates, not {spec.halving.bracket}; it loads (ngl.load) but cannot "
            f"be continued; start again with halving.bracket={saved.chunk_size}")


def check_user_operators(run_dir: Path, spec: SearchSpec) -> dict[str, dict]:
    """The user-registered operators of ``spec`` (:func:`ngl.gp.primitives.user_operators`),
    checked against what the folder's sittings recorded: resuming with another function under
    the same name would change the search silently, so it is refused in one line. (An operator
    not registered at all is refused when the spec is read.)"""
    now = user_operators(spec.primitive_set.operators)
    recorded: dict[str, dict] = {}
    for sitting in search_folder(run_dir).sittings():
        recorded.update(sitting.get("user_operators") or {})
    for name, rec in recorded.items():
        if name in now and now[name]["fingerprint"] != rec.get("fingerprint"):
            raise RunDirError(
                f"{run_dir / SITTINGS}: operator {name!r} is registered with another function "
                "than the one this search ran with (its values on the check arguments differ); "
                "register the same function to resume, or start a new run directory")
    return now


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
        ckpt = read_json(path)  # its seal is checked last (check_checkpoint_seal)
    except (ValueError, OSError) as exc:
        raise RunDirError(f"{path} is corrupt ({str(exc).removeprefix(f'{path}: ')}); "
                          f"{what_to_do}") from None
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


def _history_ident(r: dict) -> tuple:
    return r["generation"], r["index"]


def search_rows(run_dir: Path, name: str, spec: SearchSpec) -> Rows:
    """One of the search's row files (``history.jsonl``, ``references.jsonl``,
    ``rescore.jsonl``) as kernel rows: keyed by candidate (generation, index), reference label
    or rescoring, the first row written counting; rows of another spec refused (``spec.json``
    was edited after the start)."""
    ident, what, schema = {HISTORY: (_history_ident, "candidate's row", HistoryRow),
                           REFERENCES: (lambda r: r.get("loss"), "reference's row", SideRow),
                           RESCORE: (rescore_ident, "rescored loss's row", SideRow)}[name]
    hint = None
    if name == HISTORY:
        def hint() -> str:  # the checkpoint remembers the spec the rows were written with
            try:
                saved = read_json(Path(run_dir) / CHECKPOINT).get("spec")
                diff = config_diff(saved, spec.to_dict()) if isinstance(saved, dict) else ""
                return f" ({diff})" if diff else ""
            except (OSError, ValueError, AttributeError):
                return ""
    return search_folder(run_dir).rows(
        name, ident, what=what, owner=spec.key, spec_name=SPEC, owner_hint=hint, schema=schema,
        context={"population_size": spec.population_size, "generations": spec.generations},
        compare=("expression", "status", "val_accuracy", "fitness") if name == HISTORY
        else ("status", "val_accuracy"))


def check_checkpoint_seal(path: Path, ckpt: dict) -> dict:
    """``ckpt`` without its seal, checked after every more specific check: a checkpoint edited
    after ngl wrote it is refused (its state would silently change the search)."""
    try:
        return unseal(ckpt, required=(path.parent / SITTINGS).exists())
    except JSONError as exc:
        raise RunDirError(f"{path} was {exc}; move {path.name} aside and run again: the search "
                          "is then rebuilt exactly from the history") from None


def history_rows(run_dir: Path, spec: SearchSpec) -> list[dict]:
    """The history with each (generation, index) once (the first row written for it).

    Rows of another spec are refused: they mean ``spec.json`` was edited after the start.
    """
    return search_rows(run_dir, HISTORY, spec).read()


def reference_rows(run_dir: Path, spec: SearchSpec) -> list[dict]:
    """``references.jsonl``: one row per reference label of ``spec`` (the first written)."""
    labels = {loss_spec_label(r) for r in spec.references}
    rows = search_rows(run_dir, REFERENCES, spec).read()
    return [r for r in rows if r.get("loss") in labels]


def rescore_rows(run_dir: Path, spec: SearchSpec) -> list[dict]:
    """``rescore.jsonl``: one row per (kind, entry key or reference label, seed)."""
    return search_rows(run_dir, RESCORE, spec).read()


def read_rescore_plan(run_dir: Path, spec: SearchSpec) -> dict | None:
    """``rescore_plan.json`` (None when not chosen yet), checked: readable and of this spec."""
    path = Path(run_dir) / RESCORE_PLAN
    if not path.exists():
        return None
    what_to_do = (f"move {path.name} aside and run again: the plan is chosen again from the "
                  "hall of fame (the same entries, the history being the same)")
    try:
        plan = read_json(path)
    except (ValueError, OSError) as exc:
        raise RunDirError(f"{path} is corrupt ({str(exc).removeprefix(f'{path}: ')}); "
                          f"{what_to_do}") from None
    if not (isinstance(plan, dict) and isinstance(plan.get("candidates"), list)
            and isinstance(plan.get("seeds"), list) and isinstance(plan.get("references"), list)):
        raise RunDirError(f"{path} lacks candidates / seeds / references; {what_to_do}")
    if plan.get("run") != spec.key:
        raise RunDirError(f"{path} was written by another spec (run key {plan.get('run')!r}, "
                          f"{SPEC} has {spec.key}); restore {SPEC} or use a new run directory")
    try:
        return unseal(plan, required=(path.parent / SITTINGS).exists())
    except JSONError as exc:
        raise RunDirError(f"{path} was {exc}; {what_to_do}") from None


def rescore_seed(seed: int, j: int) -> int:
    """The ``j``-th extra seed (j = 1, 2, ...) of a search with ``seed``, for rescoring: the
    first 4 bytes of ``sha256("ngl-rescore:{seed}:{j}")`` as a big-endian integer (below
    2**32). It draws other initial weights and batches; the split (``data_seed``) stays."""
    digest = hashlib.sha256(f"ngl-rescore:{seed}:{j}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def planned_rescores(plan: dict) -> list[dict]:
    """What a rescore plan asks for, in training order: for each extra seed, every planned
    candidate then every reference (``kind``, ``key`` or ``loss``, ``loss_spec``, ``seed``)."""
    tasks = []
    for j, seed in enumerate(plan["seeds"], start=1):
        for c in plan["candidates"]:
            tasks.append({"kind": "candidate", "key": c["key"], "expression": c["expression"],
                          "loss": None, "loss_spec": c["expression"], "seed_index": j,
                          "seed": seed})
        for ref in plan["references"]:
            tasks.append({"kind": "reference", "key": None, "expression": None,
                          "loss": ref["loss"], "loss_spec": ref["loss_spec"], "seed_index": j,
                          "seed": seed})
    return tasks


def rescore_ident(row: dict) -> tuple:
    """Which rescoring a row (or task) of ``rescore.jsonl`` is: (kind, key or label, seed)."""
    name = row.get("key") if row.get("kind") == "candidate" else row.get("loss")
    return row.get("kind"), name, row.get("seed")
