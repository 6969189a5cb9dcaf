"""Notebook 01 in a real JupyterLab, driven by headless Chromium: the widgets render and respond.

Needs Debian's ``chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it) and the PyPI
``playwright`` package; skipped with the reason when either is missing. The notebook is copied to a
temporary server root (JupyterLab autosaves outputs: the committed notebook stays output-free), the
kernel runs with ``NGL_QUICK=1`` and temporary run/figure directories, and a screenshot goes to
``figures/browser/notebook01.png`` and to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_primitive_set.ipynb"
CHROMIUM = os.environ.get("NGL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(config_dir: Path) -> None:
    """Lab user settings: render every cell (no windowing), no news or update pop-ups."""
    base = config_dir / "lab" / "user-settings" / "@jupyterlab"
    settings = {
        "notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                 "checkForUpdates": False},
    }
    for rel, value in settings.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free port, serving a copy of notebook 01; yields its base URL."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="PyPI playwright is not installed")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    pytest.importorskip("jupyterlab_widgets", reason="jupyterlab_widgets is not installed")
    server_root = tmp_path / "lab"
    server_root.mkdir()
    shutil.copy(NOTEBOOK, server_root / NOTEBOOK.name)
    dirs = {name: tmp_path / name for name in ("config", "data", "runtime", "runs", "figures")}
    for d in dirs.values():
        d.mkdir()
    _write_settings(dirs["config"])
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel uses the inline backend, so figures show
    env.update({
        # temporary user dirs; the venv's share/jupyter stays on the data path (labextensions)
        "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTER_PLATFORM_DIRS": "0",
        "NGL_QUICK": "1", "NGL_RUNS_DIR": str(dirs["runs"]), "NGL_FIGURES_DIR": str(dirs["figures"]),
        "NGL_NOTEBOOK": NOTEBOOK.stem, "TQDM_DISABLE": "1",
    })
    port = _free_port()
    log = (tmp_path / "jupyter.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.port_retries=0", "--ServerApp.token=", "--ServerApp.password=",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={server_root}",
         "--LabApp.news_url=None"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=server_root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_notebook01_widgets_render_and_respond_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = [tmp_path / "notebook01.png", ROOT / "figures" / "browser" / "notebook01.png"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(f"{lab}/lab/tree/{NOTEBOOK.name}")
            n_code = sum(c["cell_type"] == "code" for c in json.loads(NOTEBOOK.read_text())["cells"])
            # the notebook is loaded when all its code cells are there, and the kernel is idle
            page.wait_for_function("n => document.querySelectorAll('.jp-Notebook .jp-CodeCell').length === n",
                                   arg=n_code, timeout=45_000)
            expect(page.locator(".jp-StatusBar-Widget", has_text="| Idle").first).to_be_visible(timeout=45_000)

            # Run > Run All Cells
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            # finished when every code cell shows an execution count and the kernel is idle
            page.wait_for_function(
                """n => {
                    const p = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
                        .map(e => e.textContent.trim());
                    return p.length === n && p.every(t => /^\\[\\d+\\]:$/.test(t));
                }""", arg=n_code, timeout=60_000)
            expect(page.locator(".jp-StatusBar-Widget", has_text="| Idle").first).to_be_visible()
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] "
                                  ":text('Traceback'), .jp-RenderedText:has-text('Error')")
            assert errors.count() == 0, errors.first.inner_text()
            assert page.get_by_text("Error displaying widget").count() == 0

            # the picker: one checkbox per operator and leaf, visible and in the paper preset
            tanh = page.locator(".widget-checkbox", has_text="tanh").locator("input[type=checkbox]")
            expect(tanh).to_be_visible()
            assert page.locator(".widget-checkbox input[type=checkbox]").count() >= 10
            sin = page.locator(".widget-checkbox", has_text="sin").locator("input[type=checkbox]").first
            expect(sin).to_be_checked()
            preset = page.locator(".widget-dropdown select").first
            expect(preset).to_have_value("paper")
            sin.click()  # untick an operator: the preset switches to "custom" in the kernel
            expect(sin).not_to_be_checked()
            expect(preset).to_have_value("custom")
            expect(page.locator(".widget-html code").first).not_to_contain_text("sin,")

            # sample trees: the picker's Output fills with formulas
            picker_out = page.locator(".widget-vbox .widget-output").first
            before = picker_out.inner_text()
            page.get_by_role("button", name="sample trees").click()
            expect(picker_out).to_contain_text("size", timeout=20_000)
            after = picker_out.inner_text()
            assert after != before and "depth" in after
            assert "sin(" not in after  # sin was unticked: no sampled tree may use it
            picker_out.scroll_into_view_if_needed()
            for shot in shots:
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot))
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            browser.close()
    assert shots[1].stat().st_size > 10_000
