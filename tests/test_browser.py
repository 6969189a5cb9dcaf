"""The notebook sequence in a real JupyterLab, driven by headless Chromium, as a researcher uses it.

One JupyterLab server serves copies of all notebooks with one temporary runs and figures folder,
so what notebook 01 saves reaches 02 and 02's search is what 03 shows. The tests run in order:

- every notebook: Run All gives no error output and no unresolved widget; a screenshot per
  notebook goes to ``figures/browser/`` (copies of them are the README's gallery);
- 01: "sample trees" shows the same, complete trees on repeated clicks; an unticked operator
  is saved and reaches 02;
- 02: start / stop / resume through the search runner, the live figure growing, and the kernel
  answering a trivial cell while the search runs;
- 03: which search it shows, the hall-of-fame browser, the loss explorer with a typo;
- 04: the table builder runs in the background, shows a missing dataset's failed runs with the
  reason, the table grows, the LaTeX table is written;
- 05/06: their figures are there, each notebook in its own ``figures/<notebook>/`` (from
  JupyterLab's ``JPY_SESSION_NAME``: ``NGL_NOTEBOOK`` is not set here).

Needs Debian's ``chromium`` (``.ci/run`` installs it) and the PyPI ``playwright`` package;
skipped with the reason when either is missing. The kernel runs with ``NGL_QUICK=1``.
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
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
SHOTS = ROOT / "figures" / "browser"
CHROMIUM = os.environ.get("NGL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on show

pytestmark = [pytest.mark.browser]


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


class Lab:
    """The server (``url``), its folders and the open browser page."""

    def __init__(self, url: str, tmp: Path, page):
        self.url, self.tmp, self.page = url, tmp, page
        self.runs, self.figures = tmp / "runs", tmp / "figures"
        self.timings: dict[str, float] = {}

    # -- the notebook on show -----------------------------------------------------------------
    def open(self, prefix: str) -> Path:
        """Open the notebook ``prefix``_*.ipynb alone (fresh workspace), wait for its kernel."""
        notebook = next(nb for nb in NOTEBOOKS if nb.name.startswith(prefix))
        page = self.page
        page.goto(f"{self.url}/lab/workspaces/{notebook.stem[:2]}/tree/{notebook.name}?reset")
        n_code = sum(c["cell_type"] == "code" for c in json.loads(notebook.read_text())["cells"])
        page.wait_for_function(
            "([sel, n]) => document.querySelectorAll(sel + ' .jp-CodeCell').length === n",
            arg=[PANEL, n_code], timeout=60_000)
        self.wait_idle(60_000)
        return notebook

    def wait_idle(self, timeout: float = 60_000) -> None:
        """The kernel of the notebook on show is idle (the status bar says so)."""
        from playwright.sync_api import expect

        expect(self.page.locator(".jp-StatusBar-Widget", has_text="| Idle").first).to_be_visible(
            timeout=timeout)

    def command(self, name: str, args: dict | None = None) -> None:
        """Run a JupyterLab command, as its menu entry or shortcut does."""
        self.page.evaluate("([c, a]) => window.jupyterapp.commands.execute(c, a)",
                           [name, args or {}])

    def select_cell(self, text: str) -> int:
        """Make the code cell whose source holds ``text`` the active one; its index."""
        index = self.page.evaluate("""t => {
            const nb = window.jupyterapp.shell.currentWidget.content;
            const i = nb.widgets.findIndex(c => c.model.sharedModel.getSource().includes(t));
            if (i >= 0) { nb.activeCellIndex = i; nb.mode = 'command'; }
            return i;
        }""", text)
        assert index >= 0, f"no cell holds {text!r}"
        return index

    def run_through(self, text: str, timeout: float = 90_000) -> None:
        """Run every cell above the one holding ``text`` (Run All Above Selected Cell), then it."""
        self.select_cell(text)
        self.command("notebook:run-all-above")
        self.wait_idle(timeout)
        self.select_cell(text)
        self.command("notebook:run-cell")

    def run_all(self, timeout: float) -> None:
        """Run > Run All Cells, then wait until every code cell has run and the kernel is idle."""
        page = self.page
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        self.wait_all_ran(timeout)

    def wait_all_ran(self, timeout: float) -> None:
        self.page.wait_for_function(
            """sel => {
                const p = [...document.querySelectorAll(sel + ' .jp-CodeCell .jp-InputPrompt')]
                    .map(e => e.textContent.trim());
                return p.length > 0 && p.every(t => /^\\[\\d+\\]:$/.test(t));
            }""", arg=PANEL, timeout=timeout)
        self.wait_idle()

    def run_trivial_cell(self, code: str, timeout: float = 10_000) -> str:
        """Insert a cell under the active one, run it, return its output text."""
        page = self.page
        self.command("notebook:insert-cell-below")
        page.evaluate("""c => {
            const cell = window.jupyterapp.shell.currentWidget.content.activeCell;
            cell.model.sharedModel.setSource(c);
        }""", code)
        self.command("notebook:run-cell")
        out = page.locator(f"{PANEL} .jp-CodeCell.jp-mod-active .jp-OutputArea-output")
        out.first.wait_for(timeout=timeout)
        return out.first.inner_text()

    def assert_clean(self) -> None:
        """No error output, no traceback, no unresolved or unrendered widget."""
        page = self.page
        errors = page.locator(f"{PANEL} .jp-OutputArea-output[data-mime-type="
                              "'application/vnd.jupyter.stderr']")
        texts = [errors.nth(i).inner_text() for i in range(errors.count())]
        bad = [t for t in texts if re.search(r"Traceback|Error\b|Exception", t)]
        assert not bad, bad[0][-2000:]
        assert page.locator(f"{PANEL} .jp-OutputArea-output",
                            has_text="Error displaying widget").count() == 0
        # a widget JupyterLab could not render shows its Python repr instead
        plain = page.locator(f"{PANEL} .jp-OutputArea-output", has_text=re.compile(
            r"^(VBox|HBox|Dropdown|Button|Output)\(")).count()
        assert plain == 0

    def screenshot(self, notebook: Path, near: str | None = None) -> Path:
        if near is not None:
            self.page.locator(near).first.scroll_into_view_if_needed()
        shot = SHOTS / f"jupyterlab_{notebook.stem[:2]}.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(shot))
        shutil.copy(shot, self.tmp / shot.name)
        return shot

    def shutdown_kernels(self) -> None:
        """Each notebook's kernel holds torch: shut it down before the next one starts."""
        with urllib.request.urlopen(f"{self.url}/api/sessions", timeout=10) as r:
            sessions = json.load(r)
        for s in sessions:
            req = urllib.request.Request(f"{self.url}/api/sessions/{s['id']}", method="DELETE")
            urllib.request.urlopen(req, timeout=30).close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port serving copies of the notebooks, and a Chromium page."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="PyPI playwright is not installed")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    pytest.importorskip("jupyterlab_widgets", reason="jupyterlab_widgets is not installed")
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("browser")
    server_root = tmp / "lab"
    server_root.mkdir()
    for nb in NOTEBOOKS:
        shutil.copy(nb, server_root / nb.name)
    dirs = {name: tmp / name for name in ("config", "data", "runtime", "runs", "figures")}
    for d in dirs.values():
        d.mkdir()
    _write_settings(dirs["config"])
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel uses the inline backend, so figures show
    env.pop("NGL_NOTEBOOK", None)  # figure folders come from JupyterLab's session name
    env.update({
        # temporary user dirs; the venv's share/jupyter stays on the data path (labextensions)
        "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTER_PLATFORM_DIRS": "0",
        "NGL_QUICK": "1", "NGL_RUNS_DIR": str(dirs["runs"]), "NGL_FIGURES_DIR": str(dirs["figures"]),
        "TQDM_DISABLE": "1",
    })
    port = _free_port()
    log_path = tmp / "jupyter.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.port_retries=0", "--ServerApp.token=", "--ServerApp.password=",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={server_root}",
         "--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.disable_check_xsrf=True"],  # the test shuts kernels down over REST
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
                pytest.fail("JupyterLab did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                         headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(30_000)
                page.on("dialog", lambda d: d.accept())  # "leave the page?": yes
                lab = Lab(url, tmp, page)
                yield lab
                print("browser test timings (s):", json.dumps(lab.timings))
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture
def step(lab, request):
    """Times a test, keeps a last screenshot (the failure's, when it fails), saves the notebook
    (no leave-page prompt) and shuts its kernel down after it."""
    t0 = time.monotonic()
    yield lab
    lab.timings[request.node.name] = round(time.monotonic() - t0, 1)
    lab.page.screenshot(path=str(lab.tmp / f"last_{request.node.name}.png"))
    try:
        lab.command("docmanager:save")
        lab.page.wait_for_timeout(500)
    finally:
        lab.shutdown_kernels()


def _stdout_texts(scope) -> list[str]:
    outs = scope.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']")
    return [outs.nth(i).inner_text() for i in range(outs.count())]


@pytest.mark.timeout(180)
def test_01_sample_trees_repeat_and_the_saved_set(step):
    from playwright.sync_api import expect

    lab, page = step, step.page
    nb = lab.open("01")
    lab.run_all(90_000)
    lab.assert_clean()

    sin = page.locator(".widget-checkbox", has_text="sin").locator("input[type=checkbox]").first
    expect(sin).to_be_checked()
    preset = page.locator(".widget-dropdown select").first
    expect(preset).to_have_value("paper")
    sin.click()  # untick an operator: the preset switches to "custom" and the set is saved
    expect(sin).not_to_be_checked()
    expect(preset).to_have_value("custom")
    expect(page.locator(".widget-html", has_text="saved").first).to_be_visible()

    # "sample trees" with the same seed, again and again (the seed changed in between, so every
    # click really redraws): the same, complete trees every time
    picker_out = page.locator(".widget-vbox .widget-output").first
    picker_out.evaluate("""el => { window.__ngl_mut = 0;
        new MutationObserver(() => window.__ngl_mut++).observe(el, {childList: true, subtree: true}); }""")
    n_samples = int(page.locator(".widget-slider", has_text="samples").locator(
        ".widget-readout").first.inner_text())
    seed_box = page.locator(".widget-inline-hbox", has_text="seed").locator("input").first

    def sample(seed: int) -> str:
        seed_box.fill(str(seed))
        seed_box.press("Enter")
        before = page.evaluate("window.__ngl_mut")
        page.get_by_role("button", name="sample trees").click()
        page.wait_for_function("b => window.__ngl_mut > b", arg=before, timeout=20_000)
        lab.wait_idle()
        page.wait_for_timeout(300)  # a late message (the old bug: a clear after the trees) shows
        text = "\n".join(_stdout_texts(picker_out))
        assert text.count("(size ") == n_samples, text  # complete: one line per tree
        return text

    shown = [sample(seed) for seed in (0, 1, 0, 1, 0)]
    assert shown[0] == shown[2] == shown[4] and shown[1] == shown[3] and shown[0] != shown[1]
    for _ in range(2):  # the same seed clicked twice in a row: nothing changes, nothing is lost
        page.get_by_role("button", name="sample trees").click()
        page.wait_for_timeout(300)
        lab.wait_idle()
        assert "\n".join(_stdout_texts(picker_out)) == shown[0]
    assert "sin(" not in shown[0]  # sin was unticked: no sampled tree uses it
    saved = json.loads((lab.runs / "primitive_set.json").read_text())
    assert "sin" not in saved["operators"] and "cos" in saved["operators"]
    lab.screenshot(nb, near=".widget-vbox .widget-output")


@pytest.mark.timeout(300)
def test_02_search_runner_start_stop_resume_with_a_free_kernel(step):
    from playwright.sync_api import expect

    lab, page = step, step.page
    nb = lab.open("02")
    # everything up to the runner's panel, then the panel's cell: the search starts (AUTOSTART)
    lab.run_through("ui.search_runner(")
    texts = "\n".join(_stdout_texts(page.locator(PANEL)))
    assert "(from notebook 01)" in texts  # the set 01 saved, without its unticked sin
    assert "sin," not in texts.split("(from notebook 01)")[0].splitlines()[-1]
    # the runner's status line: the HTML right under its start / stop / resume buttons
    status = page.locator(".widget-vbox:has(> .widget-hbox button:has-text('resume')) > .widget-html")
    expect(status).to_contain_text("running", timeout=30_000)

    # the kernel answers while the search trains in its thread
    t0 = time.monotonic()
    answer = lab.run_trivial_cell('print("kernel answers;", runner.state)', timeout=15_000)
    assert "kernel answers; running" in answer and time.monotonic() - t0 < 15

    image = page.locator(f"{PANEL} .widget-image").first
    expect(status).to_contain_text("1 of 3 generations done", timeout=120_000)
    first_plot = image.get_attribute("src")
    assert first_plot
    page.get_by_role("button", name="stop").click()
    expect(status).to_contain_text("stopped", timeout=60_000)
    expect(status).to_contain_text("resume continues")
    page.get_by_role("button", name="resume").click()
    expect(status).to_contain_text("finished", timeout=180_000)
    assert image.get_attribute("src") != first_plot  # the live figure grew
    lab.screenshot(nb, near=f"{PANEL} .widget-image")

    # Run All: the finished search is read back, the cells below it show it
    lab.run_all(120_000)
    lab.assert_clean()
    texts = "\n".join(_stdout_texts(page.locator(PANEL)))
    assert "complete: True" in texts
    assert list((lab.figures / nb.stem).glob("fitness_curve.pdf"))


@pytest.mark.timeout(180)
def test_03_which_search_hall_of_fame_and_a_typo(step):
    from playwright.sync_api import expect

    lab, page = step, step.page
    nb = lab.open("03")
    lab.run_all(120_000)
    lab.assert_clean()
    key = next((lab.runs / "search").iterdir()).name
    expect(page.locator(".widget-html", has_text="showing search").first).to_contain_text(key)

    hof = page.get_by_label("candidate", exact=True)
    info = page.locator(".widget-html", has_text="rank").first
    expect(info).to_contain_text("rank 1")
    if hof.locator("option").count() > 1:
        hof.select_option(index=1)
        expect(info).to_contain_text("rank 2")

    box = page.locator(".widget-text", has_text="expression").locator("input")
    explorer_info = page.locator(".widget-html", has_text="optimum").last
    box.fill("exp(y_pred +")
    box.press("Enter")
    drawn = page.locator(".widget-html", has_text="nothing drawn")
    expect(drawn.first).to_be_visible(timeout=20_000)  # the old figure is not kept on show
    box.fill("exp(2 - y_pred)")
    box.press("Enter")
    expect(explorer_info).to_contain_text("optimum", timeout=20_000)
    expect(drawn).to_have_count(0)
    lab.screenshot(nb, near=".widget-text")


@pytest.mark.timeout(300)
def test_04_table_builder_in_the_background_and_latex(step):
    from playwright.sync_api import expect

    lab, page = step, step.page
    nb = lab.open("04")
    lab.run_through("ui.table_builder(")
    lab.wait_idle(60_000)

    datasets = page.locator(".widget-select-multiple", has_text="datasets").locator("select")
    missing = datasets.locator("option", has_text="cifar10 (files not found)")
    expect(missing).to_have_count(1)  # marked before anyone picks it
    datasets.select_option(value=None, label=["digits", "cifar10 (files not found)"])
    status = page.locator(f"{PANEL} .widget-hbox .widget-html").filter(has_text="runs").first
    expect(status).to_contain_text("files not found for cifar10")

    table = page.locator(f"{PANEL} .widget-output table").first
    page.get_by_role("button", name="Run grid").click()
    expect(status).to_contain_text("running", timeout=20_000)
    lab.wait_idle(10_000)  # Run grid returned at once: the kernel is free while it trains
    seen: set[str] = set()
    deadline = time.monotonic() + 200
    while "results in" not in status.inner_text():  # the finished grid's line
        assert time.monotonic() < deadline, status.inner_text()
        if table.count():
            seen.add(table.inner_text())
        page.wait_for_timeout(250)
    seen.add(table.inner_text())
    assert len(seen) >= 2, seen  # the table grew as runs finished
    failures = page.locator(".widget-html", has_text="runs failed").first
    expect(failures).to_contain_text("cifar10")
    expect(failures).to_contain_text("not found")  # the reason, not just a count
    lab.screenshot(nb, near=f"{PANEL} .widget-output table")

    lab.run_all(200_000)
    lab.assert_clean()
    tex = lab.figures / nb.stem / "downstream_table.tex"
    assert tex.is_file() and r"\begin{tabular}" in tex.read_text()
    assert page.locator(PANEL, has_text="downstream_table.tex").count() == 1


@pytest.mark.timeout(300)
@pytest.mark.parametrize("prefix", ["05", "06"])
def test_05_06_run_all_with_their_figures(step, prefix):
    lab, page = step, step.page
    nb = lab.open(prefix)
    lab.run_all(280_000)
    lab.assert_clean()
    images = page.locator(f"{PANEL} .jp-RenderedImage img")
    assert images.count() >= 2
    pdfs = list((lab.figures / nb.stem).glob("*.pdf"))
    assert len(pdfs) >= 2, pdfs
    lab.screenshot(nb, near=f"{PANEL} .jp-RenderedImage img")
