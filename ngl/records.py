"""Tidy, crash-safe records: JSON-lines tables appended row by row, JSON files replaced atomically.

A long run appends one row per finished candidate/run and flushes it to disk at once, so a
killed process loses at most the row being written; a torn last line is ignored on read and
cut off before the next append.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["json_safe", "append_rows", "read_rows", "read_table", "write_json_atomic", "read_json"]


def json_safe(value: Any) -> Any:
    """JSON has no NaN/inf: store them as None so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _repair_tail(path: Path) -> None:
    """Cut a torn (newline-less) last line left by a crash, so appends start on a clean line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)


def append_rows(path: str | os.PathLike, rows: Iterable[Mapping]) -> None:
    """Append rows as JSON lines and fsync: each call's rows reach the disk before it returns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(path)
    text = "".join(json.dumps(json_safe(dict(r)), sort_keys=True) + "\n" for r in rows)
    if not text:
        return
    with open(path, "a") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_rows(path: str | os.PathLike) -> list[dict]:
    """All complete rows; a torn last line (from a kill mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # torn tail: the row was never finished
                break
            raise ValueError(f"{path}: line {i + 1} is not valid JSON: {line[:80]!r}") from None
    return rows


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    return pd.DataFrame(read_rows(path))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON via a temp file + rename: readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(json_safe(obj), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())
