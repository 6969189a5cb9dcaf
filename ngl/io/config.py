"""Frozen, validated configurations: what a run is asked to do, refused before anything runs.

Every config of ``ngl`` (search, fitness budget, downstream training, grid) is a pydantic
dataclass in *strict* mode with unknown fields forbidden: ``seed=True``, ``elitism=1.5``,
``cuda_graph="yes"`` or a misspelt key are refused with a message naming the field, the value
and what is expected, instead of being coerced or ignored. Only two lossless conveniences are
allowed: a list where a tuple is expected, and an int where a float is expected.

Configs stay frozen, hashable and JSON round-tripping (``from_dict(to_dict(c)) == c``), and
non-finite floats are refused (JSON has no inf/NaN; a config that cannot be written exactly is
not accepted). :func:`load_config_file` reads a JSON file and turns any problem into one
:class:`ConfigError` line that starts with the file's name.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BeforeValidator, ConfigDict, TypeAdapter, ValidationError

from ngl.io.records import JSONError, loads_strict

__all__ = ["STRICT", "AsTuple", "OneOrMany", "ConfigError", "ConfigMixin", "describe_error", "load_config_file",
           "check_device", "resolve_device", "require_available"]

#: pydantic settings shared by every config class.
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=True)

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration (file or object) that cannot be run; its message is one readable line."""


def _as_tuple(value: Any) -> Any:
    """JSON has no tuples: accept a list where a tuple is expected (the items stay strict)."""
    return tuple(value) if isinstance(value, list) else value


#: ``Annotated[tuple[...], AsTuple]``: a tuple field that also takes a list.
AsTuple = BeforeValidator(_as_tuple)


def _one_or_many(value: Any) -> Any:
    """One name or number where a tuple of them is expected is that one alone."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return (value,)
    return _as_tuple(value)


#: ``Annotated[tuple[...], OneOrMany]``: a tuple field that also takes a list or one item.
OneOrMany = BeforeValidator(_one_or_many)


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (("." if out else "") + str(part))
    return out or "(config)"


def describe_error(exc: BaseException, prefix: str = "") -> str:
    """One line per problem: ``prefix field = value: what is expected``."""
    if isinstance(exc, ValidationError):
        lines = []
        for err in exc.errors(include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
                msg = "unknown field"
            where = _loc(tuple(err["loc"]))
            if err["type"] == "value_error" and not err["loc"]:
                lines.append(f"{prefix}{msg}")
            elif err["type"] == "missing":
                lines.append(f"{prefix}{where}: required field is missing")
            else:
                lines.append(f"{prefix}{where} = {json.dumps(err.get('input'), default=repr)}: {msg}")
        return "; ".join(lines)
    return f"{prefix}{exc}"


class ConfigMixin:
    """``to_dict``/``from_dict``/``to_json``/``from_json``/``key`` for a pydantic config dataclass."""

    #: Fields that say how a job runs, not what it computes (a device, a data folder): left out
    #: of ``key`` and ``identity()``, so a job moved to another device resumes in its folder.
    RUN_OPTIONS: tuple[str, ...] = ()

    def identity(self) -> dict:
        """``to_dict()`` without the run options: what decides the result."""
        d = self.to_dict()
        for k in self.RUN_OPTIONS:
            d.pop(k, None)
        return d

    def to_dict(self) -> dict:
        return _adapter(type(self)).dump_python(self, mode="json")

    @classmethod
    def from_dict(cls: type[T], d: Any) -> T:
        """Validate a JSON-like dict (lists for tuples); anything else is refused, not coerced."""
        if not isinstance(d, dict):
            raise ConfigError(f"expected a JSON object of {cls.__name__} fields, got "
                              f"{json.dumps(d, default=repr)[:80]}")
        return cls.from_json(json.dumps(d, allow_nan=True))

    @classmethod
    def from_json(cls: type[T], text: str | bytes) -> T:
        try:
            return _adapter(cls).validate_json(text)
        except ValidationError as exc:
            raise ConfigError(describe_error(exc, f"{cls.__name__}: ")) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    def _keyed(self, d: dict) -> dict:
        """What of ``d`` the key hashes (a config whose newer fields keep old keys drops them)."""
        return d

    @property
    def digest(self) -> str:
        """The full SHA-256 of what decides the result; ``key`` is its first 12 hex digits."""
        text = json.dumps(self._keyed(self.identity()), sort_keys=True, allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def key(self) -> str:
        """Stable hash of the configuration (names run directories and grid cells)."""
        return self.digest[:12]

    @property
    def key_with_run_options(self) -> str:
        """The key as ngl 0.1 computed it, run options included: the name of folders written
        before they left the key (found by :func:`ngl.io.paths.folder_of`)."""
        text = json.dumps(self._keyed(self.to_dict()), sort_keys=True, allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_config_file(cls: type[T], path: str | os.PathLike) -> T:
    """Read ``cls`` from a JSON file; every problem is one :class:`ConfigError` line naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a JSON file of {cls.__name__} fields")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise ConfigError(f"{path}: the file is empty; expected a JSON object of {cls.__name__} fields")
    try:
        data = loads_strict(text)
    except JSONError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of {cls.__name__} fields, got "
                          f"{json.dumps(data)[:80]}")
    try:
        return cls.from_json(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def check_device(device: str, where: str = "device") -> str:
    """``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``; anything else is refused."""
    if device in ("auto", "cpu", "cuda"):
        return device
    if device.startswith("cuda:") and device[5:].isascii() and device[5:].isdigit():
        return device
    raise ValueError(f"{where}={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_device(device: str) -> str:
    """``"auto"`` made concrete, in one place for every job: CUDA when this machine has it,
    else CPU; any other device as it is."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def require_available(device: str) -> None:
    """Refuse a CUDA device on a machine without one, before a run directory is created."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but this machine has no CUDA GPU "
                              "(torch.cuda.is_available() is False); use 'auto' or 'cpu'")
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device={device!r} but only {torch.cuda.device_count()} GPU(s) exist")
