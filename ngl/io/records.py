"""Tidy, crash-safe records: JSON-lines tables appended row by row, JSON files replaced atomically.

A long run appends one row per finished candidate/run and flushes it to disk at once, so a
killed process loses at most the row being written; a torn last line is ignored on read and
cut off before the next append.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

__all__ = ["InUseError", "JSONError", "RunFileError", "SEAL", "seal", "unseal", "loads_strict", "read_numbered_rows", "exclusive_lock", "atomic_write", "write_text_atomic", "json_safe", "append_rows", "read_rows", "write_json_atomic", "read_json"]


def json_safe(value: Any) -> Any:
    """A row as plain JSON values (tuples as lists, numpy scalars as Python numbers).

    A non-finite metric stays what it is: rows are written with the ``NaN``, ``Infinity`` and
    ``-Infinity`` tokens (Python's ``json``, pandas and most JSON-lines readers take them), so
    ``-inf`` reads back as ``-inf`` and NaN as NaN, never as ``null`` (ngl 0.1 wrote ``null``;
    those rows still read). Configs and checkpoints are not written this way:
    :func:`write_json_atomic` refuses non-finite numbers."""
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


SEAL = "sha"
"""The field holding a row's (or a sealed JSON file's) digest: the first 16 hex digits of the
SHA-256 of its canonical JSON without the field. A row changed after ngl wrote it no longer
matches and is refused; a row without the field (written by ngl 0.1 or by hand) is read as it
is."""


def _canonical(obj: Mapping) -> bytes:
    return json.dumps(obj, sort_keys=True, allow_nan=True, separators=(",", ":")).encode()


def seal(obj: Mapping) -> dict:
    """``obj`` as plain JSON values with its digest in :data:`SEAL`."""
    d = json_safe({k: v for k, v in obj.items() if k != SEAL})
    d[SEAL] = hashlib.sha256(_canonical(d)).hexdigest()[:16]
    return d


def unseal(obj: Any, required: bool = False) -> Any:
    """``obj`` without its digest, after checking it (:class:`JSONError` when it was changed
    after ngl wrote it). Without a seal: returned as it is (ngl 0.1), unless ``required`` (a
    folder this version wrote, where deleting the seal would hide an edit)."""
    if not isinstance(obj, dict) or SEAL not in obj:
        if required:
            raise JSONError(f"changed after ngl wrote it (its {SEAL} field is gone; this "
                            "version seals everything it writes)")
        return obj
    d = {k: v for k, v in obj.items() if k != SEAL}
    if obj[SEAL] != hashlib.sha256(_canonical(d)).hexdigest()[:16]:
        raise JSONError(f"changed after ngl wrote it (its {SEAL} {str(obj[SEAL])[:20]!r} does not "
                        "match its content)")
    return d


class RunFileError(OSError):
    """A run file that the operating system would not read or write (read-only folder, full
    disk, a directory where a file belongs): one line naming the file, keeping the errno."""

    def __str__(self) -> str:
        return str(self.strerror)


def _os_error(exc: OSError, path: Path, doing: str) -> RunFileError:
    name = errno.errorcode.get(exc.errno or 0, "")
    where = path  # the file meant (a failed rename names its temp file)
    remedy = {"ENOSPC": "free some space and run the same command again: every complete row "
                        "so far is kept",
              "EROFS": "run it in a writable folder (or copy the folder)",
              "EACCES": "check the folder's permissions",
              "EISDIR": "a directory stands where the file belongs; move it aside"}.get(
                  name, "fix that and run the same command again")
    return RunFileError(exc.errno, f"{where}: cannot {doing} ({exc.strerror or exc}"
                                   f"{', ' + name if name else ''}); {remedy}")


class JSONError(ValueError):
    """Text that is not the JSON a run file holds (invalid, duplicate keys, a huge integer)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise JSONError(f"not valid JSON for ngl (key {k!r} appears twice in one object; "
                            "which one counts would be a guess)")
        out[k] = v
    return out


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses what a hand edit can slip in: duplicate keys in an object
    (json keeps the last silently), integers too long to convert (Python's 4,300-digit limit,
    a ``ValueError`` inside the parser) and invalid UTF-8; every refusal is one
    :class:`JSONError` line."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONError(f"not valid JSON (not UTF-8 text: {exc.reason} at byte "
                            f"{exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except JSONError:
        raise
    except json.JSONDecodeError as exc:
        raise JSONError(f"not valid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:  # e.g. "Exceeds the limit (4300 digits)"
        why = ("an integer of more than 4300 digits" if "digits" in str(exc)
               else str(exc).splitlines()[0][:120] or type(exc).__name__)
        raise JSONError(f"not valid JSON for ngl ({why})") from None


def _repair_tail(path: Path) -> None:
    """Make the file end on a clean line before an append.

    A last line that lacks only its newline is a complete row (``read_rows`` counts it): it
    gets its newline. Only a torn tail that is not valid JSON (a kill mid-write) is cut.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    try:  # read as the reader reads: a tail the reader skips is cut, not completed
        loads_strict(data[cut:])
        complete = True
    except JSONError:
        complete = False
    with open(path, "rb+") as fh:
        if complete:
            fh.seek(0, os.SEEK_END)
            fh.write(b"\n")
        else:
            fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())


def append_rows(path: str | os.PathLike, rows: Iterable[Mapping]) -> None:
    """Append rows as JSON lines and fsync: each call's rows reach the disk before it returns.

    An OS failure (full disk, read-only folder) is a one-line :class:`RunFileError`; a row cut
    by it is a torn tail, cut before the next append."""
    path = Path(path)
    text = "".join(json.dumps(json_safe(dict(r)), sort_keys=True, allow_nan=True) + "\n"
                   for r in rows)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _repair_tail(path)
        if not text:
            return
        with open(path, "a") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except RunFileError:
        raise
    except OSError as exc:
        raise _os_error(exc, path, "append to it") from None


def read_numbered_rows(path: str | os.PathLike) -> list[tuple[int, Any]]:
    """``(line number, value)`` of every complete line; a torn last line (a kill mid-write) is
    skipped, any other unreadable line is a :class:`JSONError` naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return []
    if path.is_dir():
        raise JSONError(f"{path}: is a directory, expected a JSON-lines file")
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append((i + 1, loads_strict(line)))
        except JSONError as exc:
            if i == len(lines) - 1 and not data.endswith(b"\n"):
                break  # torn tail: the row was never finished
            raise JSONError(f"{path}: line {i + 1} is {exc}: "
                            f"{line[:80].decode('utf-8', 'replace')!r}") from None
    return rows


def read_rows(path: str | os.PathLike) -> list[dict]:
    """All complete rows; a torn last line (from a kill mid-write) is skipped."""
    return [r for _, r in read_numbered_rows(path)]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """The one atomic writer: ``write(tmp)`` fills a temp file beside ``path``, which is fsync'ed
    and renamed over ``path``. Readers see the old or the new file, never half of one; a failed
    write leaves the old file and no temp file behind."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    except OSError as exc:
        raise _os_error(exc, path, "write it") from None
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file gets the usual mode
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, RunFileError):
            raise _os_error(exc, path, "write it") from None
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: str | os.PathLike, obj: Any, *, sealed: bool = False) -> Path:
    """Write JSON via a temp file + rename: readers see the old or the new file, never half.

    Non-finite numbers are refused (JSON has none; writing ``null`` instead would make a config
    or checkpoint that reads back as something else). ``sealed``: the object gets its digest
    (:func:`seal`), checked by ``read_json(..., sealed=True)``.
    """
    path = Path(path)
    if sealed:
        obj = seal(obj)
    try:
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except ValueError as exc:
        raise ValueError(f"{path}: {exc} ({_first_non_finite(obj)}); nothing was written") from None
    return write_text_atomic(path, text)


def _first_non_finite(value: Any, where: str = "") -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or 'value'} = {value}"
    items = (value.items() if isinstance(value, Mapping)
             else enumerate(value) if isinstance(value, list | tuple) else ())
    for k, v in items:
        found = _first_non_finite(v, f"{where}.{k}" if where else str(k))
        if found:
            return found
    return ""


def read_json(path: str | os.PathLike, *, sealed: bool = False) -> Any:
    """A JSON file read strictly (:func:`loads_strict`; ``sealed``: its digest checked and
    dropped, :func:`unseal`); problems name the file."""
    path = Path(path)
    if path.is_dir():
        raise JSONError(f"{path}: is a directory, expected a JSON file")
    try:
        data = loads_strict(path.read_bytes())
        return unseal(data) if sealed else data
    except JSONError as exc:
        raise JSONError(f"{path}: {exc}") from None


class InUseError(RuntimeError):
    """Another process (or thread) holds the lock of a run directory or results file."""


@contextmanager
def exclusive_lock(lock_path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock (``filelock``; the OS releases it when the process dies).

    A second holder fails at once with :class:`InUseError` naming ``what`` and the lock file,
    instead of waiting or appending duplicated rows beside the first.
    """
    lock = filelock.FileLock(lock_path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise InUseError(f"{what} is in use by another run (lock {lock_path} is held); wait for "
                         "it to finish or stop it") from None
    except OSError as exc:  # a read-only folder, a directory named like the lock
        raise _os_error(exc, Path(lock_path), "lock it") from None
    try:
        yield
    finally:
        lock.release()
