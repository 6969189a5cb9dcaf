"""Files of a run: tidy JSON-lines rows, atomic JSON, locks, and strict configs (the bottom layer)."""

from ngl.io.config import (
    STRICT,
    AsTuple,
    ConfigError,
    ConfigMixin,
    OneOrMany,
    check_device,
    describe_error,
    load_config_file,
)
from ngl.io.paths import (
    figures_dir,
    project_dir,
    repo_root,
    runs_dir,
    search_run_dir,
)
from ngl.io.records import (
    InUseError,
    append_rows,
    atomic_write,
    exclusive_lock,
    json_safe,
    read_json,
    read_rows,
    write_json_atomic,
    write_text_atomic,
)
from ngl.io.runs import Rows, RunFolder, RunFolderError, config_diff

__all__ = [
    "AsTuple",
    "ConfigError",
    "ConfigMixin",
    "InUseError",
    "OneOrMany",
    "Rows",
    "RunFolder",
    "RunFolderError",
    "STRICT",
    "append_rows",
    "atomic_write",
    "check_device",
    "config_diff",
    "describe_error",
    "exclusive_lock",
    "figures_dir",
    "json_safe",
    "load_config_file",
    "project_dir",
    "read_json",
    "read_rows",
    "repo_root",
    "runs_dir",
    "search_run_dir",
    "write_json_atomic",
    "write_text_atomic",
]
