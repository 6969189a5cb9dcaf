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
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from ngl.io.config import ConfigError, describe_error
from ngl.io.records import (
    SEAL,
    JSONError,
    append_rows,
    exclusive_lock,
    read_json,
    read_numbered_rows,
    seal,
    unseal,
    write_json_atomic,
)
from ngl.io.schemas import SittingRow

__all__ = ["RunFolderError", "RunFolder", "Rows", "config_diff", "versions", "SITTINGS",
           "remove_stale_temps"]

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

    Each row is checked with ``schema`` (a :class:`ngl.io.schemas.RowModel`; ``context`` gives
    it the spec's sizes) before anything uses it: the first bad row is one line naming the file,
    the line and the field. ``owner``: the spec key every row carries in ``owner_field``; a row
    of another key means the spec (``spec_name``) was edited after the start and is refused;
    ``owner_hint()`` may say what changed.

    An identity written twice: ``final(row)`` says which rows are results (default: all). Two
    results that agree on ``compare`` (default: every field but timings) count once; two that
    disagree are refused (which one is true cannot be known). A result wins over a row that is
    not one (an error row and its retry); among those, ``keep`` says which counts.
    """

    path: Path
    ident: Callable[[dict], Hashable]
    what: str = "row"
    owner: str | None = None
    owner_field: str = "run"
    keep: Literal["first", "last"] = "first"
    spec_name: str = "the spec"
    owner_hint: Callable[[], str] | None = None
    schema: type | None = None
    context: Mapping | None = None
    final: Callable[[dict], bool] | None = None
    compare: tuple[str, ...] | None = None

    def _fix(self, line: int | None = None) -> str:
        where = f"{self.path}: line {line}" if line else str(self.path)
        return (f"{where}; repair or remove that line (each line is one {self.what}; a "
                "removed row is run again)")

    def _checked(self) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
        """``(line, row)`` of every complete row as written (a torn last line skipped; each
        an object that passes ``schema``, the first that does not refused naming its line),
        its seal dropped; and the lines whose seal does not match (edited after ngl wrote
        them), for the caller to refuse after its more specific checks."""
        if self.path.is_dir():
            raise RunFolderError(f"{self.path}: is a directory, expected a JSON-lines file (one "
                                 f"{self.what} per line); move it aside")
        try:
            raw = read_numbered_rows(self.path)
        except JSONError as exc:
            raise RunFolderError(f"{exc}; repair or remove that line (each line is one "
                                 f"{self.what}; a removed row is run again)") from None
        except OSError as exc:
            raise RunFolderError(f"{self.path}: cannot be read ({exc.strerror or exc})") from None
        out, tampered = [], []
        sealed = False  # once ngl sealed a row of the file, every later row must be sealed too
        for n, r in raw:
            raw_row = r
            if not isinstance(r, dict):
                raise RunFolderError(f"{self.path}: line {n} is {json.dumps(r)[:60]}, not a JSON "
                                     f"object; repair or remove that line (each line is one "
                                     f"{self.what}; a removed row is run again)")
            foreign = self.owner is not None and r.get(self.owner_field) != self.owner
            if self.schema is not None:
                # a well-formed row of another spec is checked without this spec's sizes: the
                # "spec edited since the start" message says more than a range would
                context = {} if foreign else dict(self.context or {})
                try:
                    self.schema.model_validate({k: v for k, v in r.items() if k != SEAL},
                                               context=context)
                except ValidationError as exc:
                    raise RunFolderError(f"{self.path}: line {n}: {describe_error(exc)}; repair "
                                         f"or remove that line (each line is one {self.what}; "
                                         "a removed row is run again)") from None
            try:  # after a sealed row, a row without one had its seal removed (rows of
                r = unseal(r, required=sealed)  # ngl 0.1 come first, before any seal)
                sealed = sealed or SEAL in raw_row
            except JSONError as exc:
                tampered.append((n, str(exc)))
                r = {k: v for k, v in r.items() if k != SEAL}
            out.append((n, r))
        return out, tampered

    def _refuse_tampered(self, tampered: list[tuple[int, str]]) -> None:
        if tampered:
            n, why = tampered[0]
            more = f" (and {len(tampered) - 1} more line(s))" if len(tampered) > 1 else ""
            raise RunFolderError(f"{self.path}: line {n} was {why}{more}; restore that line or "
                                 f"remove it (each line is one {self.what}; a removed row is "
                                 "run again)")

    def numbered(self) -> list[tuple[int, dict]]:
        """``(line, row)`` of every complete row, checked (schema and seal), seal dropped."""
        rows, tampered = self._checked()
        self._refuse_tampered(tampered)
        return rows

    def raw(self) -> list[dict]:
        """Every complete row as written, checked (see :meth:`numbered`)."""
        return [r for _, r in self.numbered()]

    def _differs(self, a: dict, b: dict) -> str:
        fields = self.compare if self.compare is not None else sorted(
            (set(a) | set(b)) - TIMINGS)
        for f in fields:
            ja, jb = (json.dumps(r.get(f), sort_keys=True, default=repr) for r in (a, b))
            if ja != jb:
                return f"{f}: {ja[:40]} vs {jb[:40]}"
        return ""

    def read(self) -> list[dict]:
        """The rows, each identity once, in the order first written."""
        out: dict[Hashable, tuple[int, dict]] = {}
        final = self.final or (lambda r: True)
        rows, tampered = self._checked()
        if self.owner is not None:  # rows of another spec first: the more telling message
            self._refuse_foreign({r.get(self.owner_field) for _, r in rows} - {self.owner})
        self._refuse_tampered(tampered)
        for n, r in rows:
            try:
                key = self.ident(r)
                hash(key)
            except (KeyError, TypeError) as exc:  # a field the identity needs is gone or odd
                raise RunFolderError(f"{self.path}: line {n} has no valid identity ({exc!r}); "
                                     f"repair or remove that line (each line is one "
                                     f"{self.what}; a removed row is run again)") from None
            if key not in out:
                out[key] = (n, r)
                continue
            m, prev = out[key]
            if final(prev) and final(r):
                diff = self._differs(prev, r)
                if diff:
                    raise RunFolderError(
                        f"{self.path}: lines {m} and {n} are two different rows for "
                        f"{_show(key)} ({diff}); which one is true cannot be known: remove the "
                        "wrong line (a removed row is run again)")
            elif final(r) or (not final(prev) and self.keep == "last"):
                out[key] = (n, r)
        return [r for _, r in out.values()]

    def _refuse_foreign(self, foreign: set) -> None:
        if foreign:
            hint = self.owner_hint() if self.owner_hint is not None else ""
            raise RunFolderError(
                f"{self.path} holds rows of another spec (run key(s) "
                f"{sorted(map(str, foreign))}, {self.spec_name} has {self.owner}); "
                f"{self.spec_name} was changed after the run started{hint}: restore it or use "
                "a new folder")

    def done(self, where: Callable[[dict], bool] | None = None) -> set:
        """The identities with a row (and ``where(row)`` true)."""
        return {self.ident(r) for r in self.read() if where is None or where(r)}

    def append(self, rows: Iterable[Mapping]) -> None:
        """Append sealed rows (:func:`ngl.io.records.seal`: a row edited later is refused) and
        fsync (a torn tail is repaired first, see :func:`append_rows`)."""
        append_rows(self.path, [seal(r) for r in rows])


TIMINGS = frozenset({"wall_s", "train_time_s", "started", "host", "pid", "traceback"})
"""Fields two runs of the same unit may differ in without either being wrong."""


def _show(key: Hashable) -> str:
    return json.dumps(list(key) if isinstance(key, tuple) else key, default=repr)


@dataclass(frozen=True)
class RunFolder:
    """A long job's folder: ``spec_name`` frozen in it, ``lock_name`` held while in use.

    ``job`` names it in messages (``"search directory"``, ``"validation folder"``...).
    """

    path: Path
    job: str
    spec_name: str | None = None
    lock_name: str = "run.lock"
    #: the folder is the job's own (not a shared results folder): stale temp files of ngl's
    #: atomic writer in it are removed when the job starts
    dedicated: bool = True
    #: the spec file carries its digest (a plan ngl chose, not a spec a user wrote): an edit
    #: is refused
    sealed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def spec_path(self) -> Path:
        if self.spec_name is None:
            raise TypeError(f"{self.job} {self.path} has no spec file")
        return self.path / self.spec_name

    def file(self, name: str) -> Path:
        return self.path / name

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The folder's exclusive lock (created with the folder). Once held, stale temp files
        of a killed atomic write are removed (a dedicated folder only: nobody else writes
        there while the lock is held)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"{self.path}: cannot create the {self.job.split()[0]} folder "
                                 f"({exc.strerror or exc})") from None
        with exclusive_lock(self.path / self.lock_name, f"{self.job} {self.path}"):
            if self.dedicated:
                remove_stale_temps(self.path)
            yield

    # -- the spec ----------------------------------------------------------------------------
    def read_spec(self, parse: Callable[[Any], T], kind: str, remedy: str = "move it aside to "
                  "start over", *, check_seal: bool = True) -> T | None:
        """The frozen spec as ``parse(json)`` makes it (None when there is none yet); a file
        that is not JSON or that ``parse`` refuses is one line: ``<file>: not a <kind> (...)``.

        A sealed spec (``sealed``) has its digest checked after ``parse`` (whose messages say
        more); ``check_seal=False`` leaves that to :meth:`unseal`, after the caller's checks."""
        path = self.spec_path
        if not path.exists():
            return None
        try:
            data = read_json(path)
            parsed = parse({k: v for k, v in data.items() if k != SEAL}
                           if isinstance(data, dict) and self.sealed else data)
            if check_seal:
                self.unseal(data, kind, remedy)
            return parsed
        except RunFolderError:
            raise
        except (ValueError, KeyError, TypeError, OSError) as exc:
            why = str(exc).removeprefix(f"{path}: ")
            raise RunFolderError(f"{path}: not a {kind} ({why}); {remedy}") from None

    def unseal(self, data: Any, kind: str = "spec", remedy: str = "move it aside to start "
               "over") -> Any:
        """``data`` read from the spec file without its seal, the seal checked (sealed
        folders only): an edit after ngl wrote it is refused."""
        if not self.sealed:
            return data
        try:  # a folder with sittings was written by this version: its seal must be there
            return unseal(data, required=(self.path / SITTINGS).exists())
        except JSONError as exc:
            raise RunFolderError(f"{self.spec_path}: this {kind} was {exc}; {remedy}") from None

    def check_same(self, saved: Mapping, asked: Mapping, what: str, remedy: str) -> None:
        """Refuse a folder frozen with another identity: ``<file>: this folder <what> (diff);
        <remedy>``."""
        if dict(saved) != dict(asked):
            diff = config_diff(saved, asked)
            raise RunFolderError(f"{self.spec_path}: this folder {what}"
                                 f"{f' ({diff})' if diff else ''}; {remedy}")

    def read_plan(self, kind: str, identity: Callable[[dict], Mapping], asked: Mapping,
                  what: str, remedy: str, *, check_seal: bool = True) -> dict | None:
        """The frozen plan (a JSON object; None when there is none yet) if it was made for
        ``asked``: ``identity(plan)`` (which may raise on a damaged plan: ``not a <kind>``) must
        equal ``asked``, else ``this folder <what> (diff); <remedy>``. The seal is checked last
        (``check_seal=False``: by the caller, with :meth:`unseal`, after its own checks)."""
        def parse(data: Any) -> tuple[dict, Mapping]:
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            return data, identity(data)

        found = self.read_spec(parse, kind, check_seal=False)
        if found is None:
            return None
        plan, saved = found
        self.check_same(saved, asked, what, remedy)
        if check_seal:
            self.unseal(read_json(self.spec_path), kind)
        return plan

    def freeze(self, spec: Mapping) -> bool:
        """Write the spec on the first sitting; True when it was written now."""
        if self.spec_path.exists():
            return False
        write_json_atomic(self.spec_path, dict(spec), sealed=self.sealed)
        return True

    # -- sittings and rows -------------------------------------------------------------------
    def rows(self, name: str, ident: Callable[[dict], Hashable], **kw: Any) -> Rows:
        return Rows(self.path / name, ident, **kw)

    def sittings(self) -> list[dict]:
        """The recorded sittings, oldest first."""
        return self.rows(SITTINGS, lambda r: r["sitting"], what="sitting's row",
                         schema=SittingRow, keep="last", final=lambda r: False).read()

    def record_sitting(self, options: Mapping, **extra: Any) -> dict:
        """Append this sitting (its options, start time, versions): how each part of the run
        was made stays on record although options never change the result."""
        row = {"sitting": len(self.sittings()), "options": dict(options),
               "started": datetime.datetime.now(datetime.UTC).isoformat(
                   timespec="seconds"),
               "pid": os.getpid(), **versions(), **extra}
        self.rows(SITTINGS, lambda r: r.get("sitting")).append([row])
        return row


_TEMP = re.compile(r"^(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def remove_stale_temps(folder: Path, owned: Callable[[str], bool] | None = None) -> list[Path]:
    """Remove the temp files ngl's atomic writer leaves when killed mid-write
    (``<name>.<8 random characters>.tmp``, :func:`ngl.io.records.atomic_write`) whose target
    ``name`` is ``owned`` (default: any); nothing else is touched. Call it under the lock."""
    gone = []
    for p in folder.glob("*.tmp"):
        m = _TEMP.match(p.name)
        if m and p.is_file() and (owned is None or owned(m["name"])):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def versions() -> dict:
    """The versions a row or sitting records (torch, ngl, Python) and the host."""
    import importlib.metadata

    import torch

    return {"torch_version": torch.__version__, "ngl_version": importlib.metadata.version("ngl"),
            "python_version": platform.python_version(), "host": platform.node()}
