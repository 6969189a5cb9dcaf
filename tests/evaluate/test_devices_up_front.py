"""A CUDA device on a machine without one is refused in one line before anything is written,
by every long job, as the search does (issue 23)."""

from __future__ import annotations

import pytest
import torch

import ngl
from ngl.evaluate import CalibrationConfig, GridConfig, ValidateConfig, calibrate, validate
from ngl.io.config import ConfigError

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
NO_GPU = r"device='cuda' but this machine has no CUDA GPU"


def test_grid(tmp_path):
    with pytest.raises(ConfigError, match=NO_GPU):
        ngl.grid(GridConfig(device="cuda"), tmp_path / "g" / "results.jsonl", progress=False)
    assert not (tmp_path / "g").exists()


def test_validate(tmp_path):
    with pytest.raises(ConfigError, match=NO_GPU):
        validate(tmp_path / "no_search", ValidateConfig(device="cuda"), tmp_path / "v",
                 progress=False)
    assert not (tmp_path / "v").exists()


def test_calibrate(tmp_path):
    with pytest.raises(ConfigError, match=NO_GPU):
        calibrate(CalibrationConfig(), tmp_path / "c", device="cuda", progress=False)
    assert not (tmp_path / "c").exists()


def test_tune_constants(tmp_path):
    with pytest.raises(ConfigError, match=NO_GPU):
        ngl.tune_constants("0.5*y_pred + y_real", ngl.SearchSpec(), tmp_path / "t",
                           options=ngl.RunOptions(device="cuda"), progress=False)
    assert not (tmp_path / "t").exists()


def test_the_cli_grid_free_commands_say_it_in_one_line(tmp_path, capsys):
    from ngl.__main__ import main

    assert main(["calibrate", "--out", str(tmp_path / "c"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no CUDA GPU" in err
