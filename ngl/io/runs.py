"""The run kernel: the one folder, lock, spec, sittings and rows that every long job uses.

A long job of ngl (a search, constant tuning, a grid, a validation, a calibration) is a *spec*
(what decides its result: hashed, it names the folder, frozen in the folder on the first
sitting) run with *options* (how it runs: device, data folder, chunk size; never hashed,
recorded per sitting). Its folder holds

    <spec file>       the spec (or plan) frozen on the first sitting, checked on every later one
    sittings.jsonl    one row per sitting: when, which options, which versions
    <job>.lock        held while a process works in the folder (a second one fails at once)
    *.jsonl           rows keyed by identity (unit, index...), appended and fsync'ed as units
                      finish; a torn tail is repaired, a unit written twice counts once, and
                      rows written under another spec are refused ("edited since the start")

Each job keeps only what is its own: which units exist, how one is trained, and its exact
resume state. Every refusal is one :class:`RunFolderError` line naming the file and what to do,
raised before anything is written.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Callable, Hashable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from ngl.io.config import ConfigError
from ngl.io.records import append_rows, exclusive_lock, read_rows, write_json_atomic

__all__ = ["RunFolderError", "RunFolder", "Rows", "config_diff", "versions", "SITTINGS"]

SITTINGS = "sittings.jsonl"
T = TypeVar("T")


class RunFolderError(ConfigError):
    """A run folder that cannot be used as it is; the message names the file and what to do."""


def config_diff(old: Mapping, new: Mapping, prefix: str = "") -> str:
    """``field: old -> new`` for every differing field (nested dicts as ``budget.steps``)."""
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "(absent)"), new.get(k, "(absent)")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            inner = config_diff(a, b, f"{prefix}{k}.")
            if inner:
                parts.append(inner)
        elif a != b:
            parts.append(f"{prefix}{k}: {json.dumps(a, default=repr)} -> "
                         f"{json.dumps(b, default=repr)}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Rows:
    """One JSON-lines file of a run folder, each row identified by ``ident(row)``.

    ``owner``: the spec key every row carries in ``owner_field``; a row of another key means
    the spec (``spec_name``) was edited after the start and is refused; ``owner_hint()`` may
    say what changed. ``keep``: which row of an identity
    written twice counts (``"first"``: a unit re-run after a kill between its row and the
    checkpoint gives the same row again; ``"last"``: a retried error is replaced by its retry).
    """

    path: Path
    ident: Callable[[dict], Hashable]
    what: str = "row"
    owner: str | None = None
    owner_field: str = "run"
    keep: Literal["first", "last"] = "first"
    spec_name: str = "the spec"
    owner_hint: Callable[[], str] | None = None

    def raw(self) -> list[dict]:
        """Every complete row as written (a torn last line skipped); a damaged inner line is
        refused naming the line."""
        try:
            return read_rows(self.path)
        except ValueError as exc:
            raise RunFolderError(f"{exc}; repair or remove that line (each line is one "
                                 f"{self.what}; a removed row is run again)") from None

    def read(self) -> list[dict]:
        """The rows, each identity once, in the order first written."""
        out: dict[Hashable, dict] = {}
        foreign = set()
        for r in self.raw():
            if self.owner is not None and r.get(self.owner_field) != self.owner:
                foreign.add(r.get(self.owner_field))
                continue
            key = self.ident(r)
            if key not in out or self.keep == "last":
                out[key] = r
        if foreign:
            hint = self.owner_hint() if self.owner_hint is not None else ""
            raise RunFolderError(
                f"{self.path} holds rows of another spec (run key(s) "
                f"{sorted(map(str, foreign))}, {self.spec_name} has {self.owner}); "
                f"{self.spec_name} was changed after the run started{hint}: restore it or use "
                "a new folder")
        return list(out.values())

    def done(self, where: Callable[[dict], bool] | None = None) -> set:
        """The identities with a row (and ``where(row)`` true)."""
        return {self.ident(r) for r in self.read() if where is None or where(r)}

    def append(self, rows: Iterable[Mapping]) -> None:
        """Append and fsync (a torn tail is repaired first, see :func:`append_rows`)."""
        append_rows(self.path, rows)


@dataclass(frozen=True)
class RunFolder:
    """A long job's folder: ``spec_name`` frozen in it, ``lock_name`` held while in use.

    ``job`` names it in messages (``"search directory"``, ``"validation folder"``...).
    """

    path: Path
    job: str
    spec_name: str | None = None
    lock_name: str = "run.lock"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def spec_path(self) -> Path:
        if self.spec_name is None:
            raise TypeError(f"{self.job} {self.path} has no spec file")
        return self.path / self.spec_name

    def file(self, name: str) -> Path:
        return self.path / name

    def lock(self) -> AbstractContextManager[None]:
        """The folder's exclusive lock (created with the folder)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return exclusive_lock(self.path / self.lock_name, f"{self.job} {self.path}")

    # -- the spec ----------------------------------------------------------------------------
    def read_spec(self, parse: Callable[[Any], T], kind: str, remedy: str = "move it aside to "
                  "start over") -> T | None:
        """The frozen spec as ``parse(json)`` makes it (None when there is none yet); a file
        that is not JSON or that ``parse`` refuses is one line: ``<file>: not a <kind> (...)``."""
        path = self.spec_path
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return parse(data)
        except RunFolderError:
            raise
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise RunFolderError(f"{path}: not a {kind} ({exc}); {remedy}") from None

    def check_same(self, saved: Mapping, asked: Mapping, what: str, remedy: str) -> None:
        """Refuse a folder frozen with another identity: ``<file>: this folder <what> (diff);
        <remedy>``."""
        if dict(saved) != dict(asked):
            diff = config_diff(saved, asked)
            raise RunFolderError(f"{self.spec_path}: this folder {what}"
                                 f"{f' ({diff})' if diff else ''}; {remedy}")

    def read_plan(self, kind: str, identity: Callable[[dict], Mapping], asked: Mapping,
                  what: str, remedy: str) -> dict | None:
        """The frozen plan (a JSON object; None when there is none yet) if it was made for
        ``asked``: ``identity(plan)`` (which may raise on a damaged plan: ``not a <kind>``) must
        equal ``asked``, else ``this folder <what> (diff); <remedy>``."""
        def parse(data: Any) -> tuple[dict, Mapping]:
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            return data, identity(data)

        found = self.read_spec(parse, kind)
        if found is None:
            return None
        plan, saved = found
        self.check_same(saved, asked, what, remedy)
        return plan

    def freeze(self, spec: Mapping) -> bool:
        """Write the spec on the first sitting; True when it was written now."""
        if self.spec_path.exists():
            return False
        write_json_atomic(self.spec_path, dict(spec))
        return True

    # -- sittings and rows -------------------------------------------------------------------
    def rows(self, name: str, ident: Callable[[dict], Hashable], **kw: Any) -> Rows:
        return Rows(self.path / name, ident, **kw)

    def sittings(self) -> list[dict]:
        """The recorded sittings, oldest first."""
        return self.rows(SITTINGS, lambda r: r.get("sitting"), what="sitting's row").read()

    def record_sitting(self, options: Mapping, **extra: Any) -> dict:
        """Append this sitting (its options, start time, versions): how each part of the run
        was made stays on record although options never change the result."""
        row = {"sitting": len(self.sittings()), "options": dict(options),
               "started": datetime.datetime.now(datetime.UTC).isoformat(
                   timespec="seconds"),
               "pid": os.getpid(), **versions(), **extra}
        self.rows(SITTINGS, lambda r: r.get("sitting")).append([row])
        return row


def versions() -> dict:
    """The versions a row or sitting records (torch, ngl, Python) and the host."""
    import importlib.metadata

    import torch

    return {"torch_version": torch.__version__, "ngl_version": importlib.metadata.version("ngl"),
            "python_version": platform.python_version(), "host": platform.node()}
