"""``import ngl`` is light: a GPU server running a search never loads the notebook stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("ipywidgets", "seaborn", "matplotlib.pyplot", "IPython")


def _loaded_after(code: str) -> list[str]:
    # a fresh interpreter: this test process has imported everything already
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, env={**os.environ, "MPLBACKEND": "Agg"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_ngl_loads_no_widgets_seaborn_or_pyplot():
    assert _loaded_after("import ngl") == []


def test_the_command_line_module_is_light_too():
    assert _loaded_after("import ngl.__main__") == []


def test_setup_with_a_style_does_load_the_figure_stack():
    # the control: the probe sees the modules once something really imports them
    loaded = _loaded_after("import ngl\nngl.setup(seed=0, style='paper')")
    assert "matplotlib.pyplot" in loaded and "seaborn" in loaded
