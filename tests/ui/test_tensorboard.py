"""The TensorBoard callback (issue 23): its event files read back with TensorBoard's own reader
hold the search's per-generation scalars (compared with the history), the fitness histogram,
the hall of fame as text and the progress figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from ngl.fitness import TrainBudget  # noqa: E402
from ngl.gp import RunOptions, SearchSpec, run_search  # noqa: E402
from ngl.losses import NGL_EXPRESSION  # noqa: E402
from ngl.ui import TensorBoardLogger  # noqa: E402


def test_the_event_files_read_back(tmp_path):
    spec = SearchSpec(population_size=4, generations=3, n_train=120, n_val=60,
                      budget=TrainBudget(steps=3, batch_size=32),
                      seed_expressions=(NGL_EXPRESSION,), seed=3, rescore=0, references=())
    logger = TensorBoardLogger(tmp_path / "tb")
    result = run_search(spec, tmp_path / "s", RunOptions(chunk_size=4), progress=False,
                        callback=logger)
    logger.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    best = [(e.step, e.value) for e in acc.Scalars("search/best")]
    h = result.history
    want = [(g, float(h[(h["generation"] == g) & (h["status"] == "ok")]["val_accuracy"].max()))
            for g in range(spec.generations)]
    assert [s for s, _ in best] == [g for g, _ in want]
    assert [v for _, v in best] == pytest.approx([v for _, v in want], abs=1e-6)
    assert "candidates/fitness" in tags["histograms"]
    assert "progress" in tags["images"]
    texts = acc.Tensors("hall_of_fame/text_summary")
    assert len(texts) == spec.generations
    assert b"search-val. acc." in texts[-1].tensor_proto.string_val[0]


def test_the_cli_flag_writes_events(tmp_path, capsys):
    import json

    from ngl.__main__ import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"population_size": 4, "generations": 2, "n_train": 120,
                                "n_val": 60, "budget": {"steps": 3, "batch_size": 32},
                                "rescore": 0, "references": [],
                                "seed_expressions": [NGL_EXPRESSION]}))
    assert main(["search", "--spec", str(spec), "--run-dir", str(tmp_path / "s"), "--quiet",
                 "--tensorboard", str(tmp_path / "tb")]) == 0
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("search/best")] == [0, 1]
