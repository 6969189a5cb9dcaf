"""The command line a researcher reaches for (issue 23): a validation template, references as a
flag, the hall of fame as LaTeX and the fitness figure from ``show``."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from ngl.__main__ import main
from ngl.evaluate import ValidateConfig
from ngl.fitness import TrainBudget
from ngl.gp import RunOptions, SearchSpec, run_search
from ngl.losses import NGL_EXPRESSION


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "s"
    spec = SearchSpec(population_size=4, generations=2, n_train=120, n_val=60,
                      budget=TrainBudget(steps=3, batch_size=32), seed=3, rescore=0,
                      seed_expressions=(NGL_EXPRESSION,))
    run_search(spec, run, RunOptions(chunk_size=4), progress=False)
    return run


def test_example_validate_config_is_a_valid_config(capsys):
    assert main(["example-validate-config"]) == 0
    assert ValidateConfig.from_json(capsys.readouterr().out) == ValidateConfig()


def test_a_search_spec_given_as_a_validation_config_is_one_line(run, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(SearchSpec().to_json())
    assert main(["validate", str(run), "--config", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a search spec" in err and "example-validate-config" in err


def test_references_as_a_flag(run, tmp_path, capsys):
    cfg = ValidateConfig(top_k=1, seeds=(0, 1), model="small_cnn", transfer=(), fidelity_top=0,
                         fidelity_sample=0, n_train=120, n_val=60, n_test=60,
                         train=ValidateConfig().train.__class__(epochs=1, batch_size=32,
                                                                max_steps_per_epoch=1))
    path = tmp_path / "v.json"
    path.write_text(cfg.to_json())
    out = tmp_path / "out"
    assert main(["validate", str(run), "--config", str(path), "--references", "ce,focal",
                 "--out", str(out), "--quiet"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["config"]["references"] == ["ce", "focal"]
    assert main(["validate", str(run), "--references", "ce,nosuch", "--out",
                 str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "references[1]" in err and "nosuch" in err and not (tmp_path / "o2").exists()


def test_show_latex_prints_the_hall_of_fame_table(run, capsys):
    assert main(["show", str(run), "--latex"]) == 0
    out = capsys.readouterr().out
    assert r"\begin{tabular}{rlrr}" in out and r"\end{table}" in out


def test_show_plot_writes_the_figure_and_the_table(run, tmp_path, capsys):
    fig = tmp_path / "fitness.pdf"
    assert main(["show", str(run), "--plot", str(fig)]) == 0
    assert fig.read_bytes()[:5] == b"%PDF-" and (tmp_path / "fitness.tex").exists()
    if subprocess.run(["which", "pdfinfo"], capture_output=True).returncode == 0:
        info = subprocess.run(["pdfinfo", str(fig)], capture_output=True, text=True).stdout
        assert re.search(r"Pages:\s+1\n", info), info
    assert main(["show", str(run), "--plot", str(tmp_path / "x.txt")]) == 2
    assert "expected a file ending in" in capsys.readouterr().err
