"""Widgets are driven like a user would, without a kernel."""

from __future__ import annotations

from ngl.gp.primitives import PrimitiveSet, preset
from ngl.ui import primitive_set_picker


def test_picker_starts_from_preset_and_follows_ticks():
    picker = primitive_set_picker("paper")
    assert picker.value == preset("paper")
    seen = []
    picker.on_change(seen.append)
    picker.op_boxes["tanh"].value = True
    assert "tanh" in picker.value.operators
    assert picker.preset.value == "custom"
    picker.op_boxes["sin"].value = False
    assert "sin" not in picker.value.operators and len(seen) == 2
    picker.use_constants.value = False
    assert picker.value.const_range is None and picker.const_range.disabled


def test_picker_preset_dropdown_sets_boxes():
    picker = primitive_set_picker("paper")
    picker.preset.value = "gplearn"
    assert picker.value.operators == preset("gplearn").operators
    assert not picker.op_boxes["exp"].value


def test_invalid_selection_is_reported_not_raised():
    picker = primitive_set_picker(PrimitiveSet(operators=("add",)))
    picker.op_boxes["add"].value = False
    assert picker.value is None
    assert "at least one operator" in picker.status.value
    picker.sample_button.click()  # error is shown in the Output widget, not lost
    assert any("not a valid primitive set" in o.get("text", "") for o in picker.out.outputs)


def test_sample_button_shows_formulas_and_changes_with_selection():
    picker = primitive_set_picker("paper", n_samples=3, seed=1)
    picker.sample_button.click()
    first = [str(e) for e in picker.samples]
    assert len(first) == 3
    assert sum(o["output_type"] == "display_data" for o in picker.out.outputs) == 3
    for name, box in picker.op_boxes.items():
        box.value = name in ("mul", "tanh")
    picker.sample_button.click()
    assert all(set(e.operators) <= {"mul", "tanh"} for e in picker.samples)
    assert [str(e) for e in picker.samples] != first


def test_same_seed_shows_the_same_complete_trees_on_every_click():
    """The output is replaced in one assignment: five clicks, five identical full outputs
    (with clear_output() they arrived empty or cut short in JupyterLab), and an old error
    does not stay above new samples."""
    picker = primitive_set_picker("paper", n_samples=4, seed=3)
    picker.out.append_stderr("ValueError: an old error\n")
    shown = []
    for _ in range(5):
        picker.sample_button.click()
        shown.append(picker.out.outputs)
    assert all(s == shown[0] for s in shown)
    kinds = [o["output_type"] for o in shown[0]]
    assert kinds == ["display_data", "stream"] * 4
    assert not any("old error" in o.get("text", "") for o in shown[0])
    texts = [o["text"] for o in shown[0] if o["output_type"] == "stream"]
    assert texts == [f"{e.display()}    (size {e.size}, depth {e.depth})\n"
                     for e in picker.samples]


def test_ticking_saves_the_set_and_a_rerun_starts_from_it(tmp_path):
    """Every valid choice is saved at once; building the picker again (Run All) with
    initial=None starts from the saved custom set, not from the paper preset."""
    path = tmp_path / "primitive_set.json"
    picker = primitive_set_picker(None, save_to=path)
    assert picker.value == preset("paper") and PrimitiveSet.load(path) == preset("paper")
    picker.op_boxes["sin"].value = False
    assert "saved to" in picker.status.value
    saved = PrimitiveSet.load(path)
    assert "sin" not in saved.operators and saved == picker.value
    picker.op_boxes["add"].value = False
    for name in picker.op_boxes:
        picker.op_boxes[name].value = False  # invalid: nothing is saved over the last valid set
    assert picker.value is None and PrimitiveSet.load(path).operators
    again = primitive_set_picker(None, save_to=path)
    assert again.value == PrimitiveSet.load(path) and again.value.name == "custom"
