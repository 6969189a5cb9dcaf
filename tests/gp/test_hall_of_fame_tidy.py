"""A tidier hall of fame (issue 23): simplified formulas for reading (the stored text keeps full
precision), near-duplicates as one entry with a count, chance-level entries marked and left out
of the paper table. The history is written by hand, so every expected value is known here."""

from __future__ import annotations

import pytest

from ngl.fitness import TrainBudget
from ngl.gp import LossExpression, RunOptions, SearchSpec, load_result, run_search
from ngl.gp.rundir import HISTORY, search_folder, search_rows

ROWS = [  # (expression, val_accuracy, val_ce)
    ("y_pred/y_pred*(1.0 - y_pred*y_real)", 0.80, 0.50),
    ("1.0 - y_real*y_pred", 0.80, 0.50),  # the same training outcome: a near-duplicate
    ("sin(y_real - -0.85329173645817236)*(y_pred/y_pred) - y_pred", 0.70, 0.60),
    ("exp(y_pred) + 0.12345678912345678", 0.05, 2.30),  # chance level with 10 classes
]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    run = tmp_path_factory.mktemp("hof") / "s"
    spec = SearchSpec(population_size=4, generations=1, n_train=60, n_val=30,
                      budget=TrainBudget(steps=1, batch_size=16), seed=1, rescore=0,
                      references=())
    run_search(spec, run, RunOptions(chunk_size=4), progress=False)
    template = search_rows(run, HISTORY, spec).read()[0]
    (run / HISTORY).unlink()
    rows = []
    for i, (text, acc, ce) in enumerate(ROWS):
        e = LossExpression.parse(text)
        rows.append({**template, "index": i, "expression": text, "key": e.key,
                     "fingerprint": f"fp{i}", "status": "ok", "val_accuracy": acc, "val_ce": ce,
                     "size": e.size, "fitness": acc - spec.parsimony_coefficient * e.size,
                     "cache_hit": False})
    search_rows(run, HISTORY, spec).append(rows)
    return load_result(run)


def test_the_number_of_classes_is_recorded_with_the_sitting(result):
    assert search_folder(result.run_dir).sittings()[0]["num_classes"] == 10
    assert result.num_classes == 10 and result.chance_level == pytest.approx(0.15)


def test_near_duplicates_are_one_entry_with_a_count(result):
    hof = result.hall_of_fame(10)
    assert list(hof["val_accuracy"]) == [0.80, 0.70, 0.05]
    assert list(hof["n_same"]) == [2, 1, 1]


def test_formulas_are_tidied_for_reading_and_kept_exact_in_storage(result):
    hof = result.hall_of_fame(10)
    assert hof["expression"].iloc[0] == ROWS[1][0]  # of two near-duplicates, the smaller tree
    assert hof["formula"].iloc[0] == "1 - y_real*y_pred"  # as written: already the shortest
    assert hof["formula"].iloc[1] == "-y_pred + sin(y_real + 0.8533)"  # y_pred/y_pred gone
    assert hof["expression"].iloc[1] == ROWS[2][0]  # full precision where it is stored


def test_chance_level_losses_are_marked_and_left_out_of_the_paper_table(result):
    hof = result.hall_of_fame(10)
    assert list(hof["chance"]) == [False, False, True]
    tex = result.to_latex(10)
    assert "5.00" not in tex and "80.00" in tex and "70.00" in tex
    assert "5.00" in result.to_latex(10, include_chance=True)


def test_progress_bars_show_a_short_form():
    from ngl.evaluate.grid import short_loss_label

    long = "sin(y_real - -0.85329173645817236)*exp(y_pred/y_pred + 0.12345678912345678*y_real)"
    assert short_loss_label("focal(gamma=2.0)") == "focal(gamma=2.0)"
    short = short_loss_label(long)
    assert len(short) <= 32 and short.startswith("sin(y_real + 0.8533)") and "…" in short


def test_a_simplification_that_changes_the_trained_function_is_never_shown():
    """sympy reads y_pred*y_real/y_real as y_pred; the protected division gives 1 where
    y_real = 0 (every wrong class of a one-hot target): not the same loss."""
    import torch

    e = LossExpression.parse("y_pred*y_real/y_real")
    z = torch.zeros(1, 2, dtype=torch.float64)
    values = e.compile()(z, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    assert values.tolist() == [[0.5, 1.0]]  # not y_pred = [0.5, 0.5]
    assert e.tidy() == "y_pred*y_real/y_real" and "frac" in e.tidy_latex()
    assert LossExpression.parse("y_pred/y_pred + y_real").tidy() == "y_real + 1"


def test_show_marks_chance_level_entries(result, capsys):
    from ngl.show import show_search

    show_search(result)
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if "exp(y_pred)" in x]
    assert line and "chance" in line[0]
