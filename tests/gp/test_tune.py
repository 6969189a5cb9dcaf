"""Constant tuning with CMA-ES: convergence on a known optimum, exact resume, real training."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ngl
from ngl.gp.expression import LossExpression
from ngl.gp.tune import TuneSpec, load_tuning, tune_constants, with_constants
from ngl.io.config import ConfigError

START = "0.5*y_pred + -0.5*y_real"
TARGET = np.array([1.5, -2.0])


def quadratic(texts):
    """A fitness with a known optimum at TARGET, computed from the constants in the text."""
    out = []
    for t in texts:
        c = np.array(LossExpression.parse(t).constants)
        out.append({"val_accuracy": float(1.0 - np.sum((c - TARGET) ** 2)), "status": "ok"})
    return out


def test_with_constants_replaces_exactly_the_indexed_constants():
    e = LossExpression.parse("exp(2.4092 - y_pred*(1.0 + y_real)) - cos(cos(sin(y_pred)))")
    out = with_constants(e, [0], [1.0])
    assert out.constants == (1.0, 1.0)
    assert str(out) == "exp(1.0 - y_pred*(1.0 + y_real)) - cos(cos(sin(y_pred)))"


def test_cma_es_converges_to_a_known_optimum(tmp_path):
    res = tune_constants(START, ngl.SearchSpec(), tmp_path / "t", generations=40, sigma=1.0,
                         progress=False, fitness=quadratic)
    assert res.complete
    best = np.array(res.best["constants"])
    assert np.allclose(best, TARGET, atol=0.05)
    assert res.start["val_accuracy"] == pytest.approx(1 - (1.0 ** 2 + 1.5 ** 2))
    assert res.best["val_accuracy"] > 0.99
    per_gen = res.per_generation()
    assert list(per_gen["generation"]) == list(range(-1, 40))
    assert per_gen["best"].iloc[-5:].min() > per_gen["best"].iloc[1]


def test_bounds_are_respected(tmp_path):
    res = tune_constants(START, ngl.SearchSpec(), tmp_path / "t", generations=10,
                         bounds=(-1.0, 1.0), progress=False, fitness=quadratic)
    consts = np.array(res.history["constants"].tolist())
    assert consts.min() >= -1.0 and consts.max() <= 1.0
    assert np.allclose(res.best["constants"], [1.0, -1.0], atol=0.1)  # the optimum on the box


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    straight = tune_constants(START, ngl.SearchSpec(), tmp_path / "a", generations=8,
                              progress=False, fitness=quadratic)
    calls = []

    def dies_at_generation_4(texts):
        calls.append(texts)
        if len(calls) == 1 + 5:  # the start, then generations 0..3, then dies in generation 4
            raise KeyboardInterrupt
        return quadratic(texts)

    with pytest.raises(KeyboardInterrupt):
        tune_constants(START, ngl.SearchSpec(), tmp_path / "b", generations=8, progress=False,
                       fitness=dies_at_generation_4)
    assert not load_tuning(tmp_path / "b").complete
    resumed = tune_constants(START, ngl.SearchSpec(), tmp_path / "b", generations=8,
                             progress=False, fitness=quadratic)
    cols = ["generation", "index", "constants", "expression", "val_accuracy"]
    assert resumed.history[cols].equals(straight.history[cols])


def test_rows_written_but_not_checkpointed_are_reused_not_retrained(tmp_path):
    run = tmp_path / "t"
    seen = []

    def snapshot(texts):  # called for the start, then generations 0, 1, 2
        seen.append((run / "checkpoint.json").read_bytes() if len(seen) == 3 else None)
        return quadratic(texts)

    tune_constants(START, ngl.SearchSpec(), run, generations=3, progress=False, fitness=snapshot)
    # a kill between the rows of generation 2 and its checkpoint: the checkpoint of generation 1
    (run / "checkpoint.json").write_bytes(seen[3])
    assert json.loads(seen[3])["generation"] == 1
    trained = []

    def counting(texts):
        trained.append(texts)
        return quadratic(texts)

    res = tune_constants(START, ngl.SearchSpec(), run, generations=3, progress=False,
                         fitness=counting)
    assert trained == []  # generation 2 came from its rows
    assert len(res.history) == 1 + 3 * res.history[res.history["generation"] == 0].shape[0]


COLS = ["generation", "index", "constants", "expression", "val_accuracy"]


def test_the_checkpoint_is_json_and_resumes_bit_identically(tmp_path):
    """Stopped after every generation in turn and resumed from its JSON checkpoint, the run
    asks for exactly the vectors of an uninterrupted one (floats stored as hex)."""
    straight = tune_constants(START, ngl.SearchSpec(), tmp_path / "a", generations=5,
                              progress=False, fitness=quadratic)
    ckpt = json.loads((tmp_path / "a" / "checkpoint.json").read_text())
    assert ckpt["generation"] == 4 and "_C" in ckpt["cma"]["attributes"]
    assert not list((tmp_path / "a").glob("*.pkl"))
    for stop in range(1, 5):
        run = tmp_path / f"s{stop}"
        calls = []

        def dies(texts, stop=stop, calls=calls):
            calls.append(1)
            if len(calls) == stop + 2:
                raise KeyboardInterrupt
            return quadratic(texts)

        with pytest.raises(KeyboardInterrupt):
            tune_constants(START, ngl.SearchSpec(), run, generations=5, progress=False,
                           fitness=dies)
        resumed = tune_constants(START, ngl.SearchSpec(), run, generations=5, progress=False,
                                 fitness=quadratic)
        assert resumed.history[COLS].equals(straight.history[COLS])


def test_a_planted_pickle_is_never_loaded(tmp_path):
    """A tuning folder of ngl 0.1 (or a crafted one) holds checkpoint.pkl: it is never opened,
    and the run resumes exactly by re-asking CMA-ES over its rows."""
    import pickle

    straight = tune_constants(START, ngl.SearchSpec(), tmp_path / "a", generations=4,
                              progress=False, fitness=quadratic)
    run = tmp_path / "b"
    tune_constants(START, ngl.SearchSpec(), run, generations=4, progress=False,
                   fitness=quadratic)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (run / "checkpoint.json").unlink()
    (run / "checkpoint.pkl").write_bytes(pickle.dumps(Evil()))
    trained = []
    res = tune_constants(START, ngl.SearchSpec(), run, generations=4, progress=False,
                         fitness=lambda t: trained.append(t) or quadratic(t))
    assert not marker.exists() and trained == []
    assert res.history[COLS].equals(straight.history[COLS])
    assert load_tuning(run).complete and not marker.exists()


@pytest.mark.parametrize("edit, says", [
    (lambda c: "{torn", "not valid JSON"),
    (lambda c: json.dumps({**c, "generation": 99}), "generation = 99"),
    (lambda c: json.dumps({**c, "spec_key": "x"}), "spec_key"),
    (lambda c: json.dumps({**c, "cma": {**c["cma"], "attributes": {
        **c["cma"]["attributes"], "_mean": {"ndarray": {"dtype": "<f8", "shape": [3],
                                                        "data": ["0x0p+0"] * 3}}}}}),
     "_mean: shape (3,)"),
    (lambda c: json.dumps({**c, "cma": {**c["cma"], "attributes": {
        **c["cma"]["attributes"], "__class__": None}}}), "unexpected ['__class__']"),
])
def test_a_damaged_checkpoint_is_one_line(tmp_path, edit, says):
    run = tmp_path / "t"
    tune_constants(START, ngl.SearchSpec(), run, generations=2, progress=False, fitness=quadratic)
    path = run / "checkpoint.json"
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises(ConfigError) as err:
        tune_constants(START, ngl.SearchSpec(), run, generations=2, progress=False,
                       fitness=quadratic)
    msg = str(err.value)
    assert says in msg and "move checkpoint.json aside" in msg and "\n" not in msg


@pytest.mark.parametrize("kw, match", [
    ({"expression": "y_pred*y_real"}, "no constants"),
    ({"constants": (5,)}, "distinct indices"),
    ({"bounds": (2.0, 3.0)}, "outside bounds"),
    ({"bounds": (1.0, 1.0)}, "low < high"),
])
def test_bad_tune_specs_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        TuneSpec(**{"expression": START, "search": ngl.SearchSpec(), **kw})


def test_another_spec_in_the_same_folder_is_refused(tmp_path):
    tune_constants(START, ngl.SearchSpec(), tmp_path / "t", generations=1, progress=False,
                   fitness=quadratic)
    with pytest.raises(ConfigError, match="another spec"):
        tune_constants(START, ngl.SearchSpec(), tmp_path / "t", generations=2, progress=False,
                       fitness=quadratic)


@pytest.mark.slow
def test_real_training_moves_a_wrong_way_constant_to_the_good_side(tmp_path, one_thread):
    # c * y_real * log(p): c > 0 lowers the true-class probability (trains the wrong way: a flat,
    # chance-level plateau), c < 0 is cross entropy scaled by |c| (Adam is scale-free)
    spec = ngl.SearchSpec(dataset="digits", budget=ngl.TrainBudget(steps=30, batch_size=64),
                          seed=0)
    res = tune_constants("0.5*y_real*log(y_pred)", spec, tmp_path / "t", generations=4,
                         population_size=6, sigma=2.0, options=ngl.RunOptions(device="cpu"),
                         progress=False)
    assert res.start["val_accuracy"] < 0.3
    assert res.best["constants"][0] < 0
    assert res.best["val_accuracy"] > res.start["val_accuracy"] + 0.3


def test_tuning_figure_shows_every_generation(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from ngl.ui import plot_tuning

    res = tune_constants(START, ngl.SearchSpec(), tmp_path / "t", generations=4, progress=False,
                         fitness=quadratic)
    fig = plot_tuning(res)
    const_ax, fit_ax = fig.axes
    assert len(const_ax.lines) == 2  # one mean trajectory per tuned constant
    assert list(fit_ax.lines[0].get_xdata()) == [-1, 0, 1, 2, 3]


def test_tuning_figure_names_constants_and_draws_references(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from ngl.ui import plot_tuning

    res = tune_constants(START, ngl.SearchSpec(), tmp_path / "t", generations=2, progress=False,
                         fitness=quadratic)
    fig = plot_tuning(res, names=["a", "b"], reference=[1.5, None])
    const_ax = fig.axes[0]
    labels = [t.get_text() for t in const_ax.get_legend().get_texts()]
    assert labels == ["a", "a = 1.5", "b"]
    assert all(float(t).is_integer() for t in const_ax.get_xticks())
    with pytest.raises(ValueError, match="one per tuned constant"):
        plot_tuning(res, names=["only one"])


def test_a_spec_with_halving_is_refused_for_tuning(tmp_path):
    """Tuning compares every evaluation as a full-budget score: early-stopped scores would be
    compared with full ones, so a halving spec is refused before anything is written."""
    spec = ngl.SearchSpec(budget=ngl.TrainBudget(steps=9), halving=ngl.SuccessiveHalving())
    with pytest.raises((ValueError, ngl.io.config.ConfigError), match="search.halving"):
        tune_constants(START, spec, tmp_path / "t", generations=1, progress=False)
    assert not (tmp_path / "t").exists()
