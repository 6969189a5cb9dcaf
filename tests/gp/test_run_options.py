"""Run options are defined once (`RunOptions`): the front door, resume, the runner widget and
the command line take every field, and nothing else."""

from __future__ import annotations

import inspect

import pytest

import ngl
from ngl.__main__ import main
from ngl.gp import OPTION_FIELDS, RunOptions
from ngl.gp.spec import OPTION_HELP
from ngl.io.config import ConfigError
from ngl.ui.runner import search_runner

NOT_OPTIONS = {"spec", "run_dir", "executor", "progress", "callback"}


@pytest.mark.parametrize("fn", [ngl.search, ngl.resume])
def test_the_front_door_takes_exactly_the_run_options(fn):
    params = set(inspect.signature(fn).parameters) - NOT_OPTIONS
    assert params == set(OPTION_FIELDS)


def test_every_option_has_its_help_and_a_flag(capsys):
    assert set(OPTION_HELP) == set(OPTION_FIELDS)
    for cmd in ("search", "resume"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = capsys.readouterr().out
        for name in OPTION_FIELDS:
            assert "--" + name.replace("_", "-") in out, (cmd, name)


def test_replaced_keeps_what_is_not_given_and_refuses_unknown_names():
    base = RunOptions(chunk_size=3, hall_of_fame_size=4)
    assert base.replaced(device=None, chunk_size=None) is base
    assert base.replaced(hall_of_fame_size=2) == RunOptions(chunk_size=3, hall_of_fame_size=2)
    with pytest.raises(ConfigError, match=r"\['chunk'\]: expected one of"):
        base.replaced(chunk=2)
    with pytest.raises(ConfigError, match="chunk_size"):
        base.replaced(chunk_size=0)


def test_the_runner_widget_takes_the_same_keywords(tmp_path):
    spec = ngl.SearchSpec(population_size=4, generations=1, dataset="digits")
    runner = search_runner(spec, tmp_path / "run", chunk_size=2, hall_of_fame_size=3,
                           device="cpu")
    assert runner.options == RunOptions(chunk_size=2, hall_of_fame_size=3, device="cpu")
    given = RunOptions(chunk_size=5)
    assert search_runner(spec, tmp_path / "run", given).options is given
    assert search_runner(spec, tmp_path / "run", given, compile=True).options == \
        RunOptions(chunk_size=5, compile=True)


def test_a_flag_of_every_kind_reaches_the_options_file(tmp_path, capsys):
    spec = ngl.SearchSpec(population_size=2, generations=1, dataset="digits", n_train=100,
                          n_val=50, budget=ngl.TrainBudget(steps=2, batch_size=32),
                          references=(), rescore=0)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    run_dir = tmp_path / "run"
    assert main(["search", "--spec", str(spec_file), "--run-dir", str(run_dir), "--quiet",
                 "--device", "cpu", "--chunk-size", "1", "--no-compile",
                 "--hall-of-fame-size", "1"]) == 0
    saved = ngl.load(run_dir).options
    assert saved == RunOptions(device="cpu", chunk_size=1, compile=False, hall_of_fame_size=1)
    assert main(["resume", str(run_dir), "--quiet", "--hall-of-fame-size", "0"]) == 2
    assert "hall_of_fame_size" in capsys.readouterr().err
