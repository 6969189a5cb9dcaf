r"""Every exported ``.tex`` compiles with a real LaTeX and prints what it should; figure PDFs
embed their fonts as TrueType (Type 42).

Each exporter's output (``ngl.evaluate.to_latex``: notebook 04's ``downstream_table.tex``;
``ValidationReport.to_latex``: notebook 06's ``validation_table.tex`` and ``python -m ngl
validate``'s ``table.tex``; ``SearchResult.to_latex``: the hall of fame;
``ngl.evaluate.calibration.calibration_latex``: notebook 05's ``calibration.tex``) is built from
small hand-made data with awkward text, wrapped in the minimal document the exporters document::

    \documentclass{article}
    \usepackage[T1]{fontenc}     % or none: LaTeX's default OT1, run too
    \usepackage[utf8]{inputenc}
    \usepackage{booktabs}        % the one package the exporters need

and compiled with ``pdflatex -interaction=nonstopmode -halt-on-error``. Both font encodings run
because they fail differently: in OT1 a text-mode ``<`` prints as ``¡`` (T1 has a real ``<``),
and a raw ``_`` is an error in both. The checks are what LaTeX and poppler report, never a value
of the code under test: the exit status, the log (no lost glyphs, no math-only command in text),
and the PDF's text (``pdftotext``) against numbers computed here with numpy. Figures: every font
``pdffonts`` lists is (CID) TrueType and embedded, none Type 3.

Text-extraction facts used below: T1's bitmap fonts (no cm-super) give ligatures and dashes as
their T1 slot bytes, decoded by :data:`T1_SLOTS`; OT1 draws ``\_`` as a rule (no glyph), which
pdftotext shows as a space. Needs Debian's ``texlive-latex-base texlive-latex-recommended
poppler-utils`` (``.ci/run`` installs them); skips without.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import ngl  # noqa: E402
from ngl import ui  # noqa: E402
from ngl.evaluate import ValidateConfig, ValidationReport, summarise, to_latex, verdicts  # noqa: E402
from ngl.evaluate.calibration import calibration_latex  # noqa: E402
from ngl.gp.result import SearchResult  # noqa: E402
from ngl.gp.spec import RunOptions  # noqa: E402

TIMEOUT_S = 180  # the first T1 run may generate bitmap fonts with METAFONT
ENCODINGS = ("T1", "OT1")
# T1 (Cork) slots below 0x20 that pdftotext passes through as bytes (Type 3 bitmap fonts)
T1_SLOTS = {"\x15": "–", "\x16": "—", "\x17": "", "\x1b": "ff", "\x1c": "fi", "\x1d": "fl",
            "\x1e": "ffi", "\x1f": "ffl"}
LOG_ERRORS = ("Missing $", "Undefined control sequence", "Missing character", "not set up for use",
              "invalid in math mode", "Emergency stop")


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install texlive-latex-base "
                    "texlive-latex-recommended poppler-utils)")


def _document(body: str, encoding: str, packages: tuple[str, ...] = ()) -> str:
    fontenc = r"\usepackage[T1]{fontenc}" if encoding == "T1" else ""
    # \tracinglostchars: a glyph the font lacks is logged ("Missing character"), not dropped silently
    return "\n".join([r"\documentclass{article}", fontenc, r"\usepackage[utf8]{inputenc}",
                      r"\usepackage{booktabs}", *(rf"\usepackage{{{p}}}" for p in packages),
                      r"\tracinglostchars=1", r"\begin{document}", body, r"\end{document}", ""])


def _need_booktabs() -> None:
    _need("pdflatex", "pdftotext", "kpsewhich")
    found = subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True,
                           timeout=60, check=False).stdout.strip()
    if not found:
        pytest.skip("booktabs.sty not installed (apt-get install texlive-latex-recommended)")


def compile_text(body: str, directory: Path, encoding: str, packages: tuple[str, ...] = ()) -> str:
    """Compile ``body`` in the minimal document; the PDF's text, whitespace collapsed."""
    _need_booktabs()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "doc.tex").write_text(_document(body, encoding, packages), encoding="utf-8")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                         cwd=directory, capture_output=True, timeout=TIMEOUT_S, check=False)
    log = (directory / "doc.log").read_text(encoding="latin-1")
    assert run.returncode == 0, f"pdflatex failed:\n{body}\n{log[-3000:]}"
    bad = [e for e in LOG_ERRORS if e in log]
    assert not bad, f"{bad} in the log of:\n{body}\n{log[-3000:]}"
    text = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", "doc.pdf", "-"], cwd=directory,
                          capture_output=True, timeout=60, check=True).stdout.decode("utf-8")
    if encoding == "T1":
        text = "".join(T1_SLOTS.get(c, c) for c in text)
    text = unicodedata.normalize("NFC", " ".join(text.split()))  # y + U+0302 -> ŷ
    assert "¡" not in text and "¿" not in text, f"text-mode < or > printed as ¡/¿:\n{text}"
    return text


def shown(s: str, encoding: str) -> str:
    """``s`` as pdftotext reads it back from the encoding's fonts (OT1's ``\\_`` is a rule)."""
    return s.replace("_", " ") if encoding == "OT1" else s


def _pm(values: list[float]) -> str:
    """``mean ± std`` in % of accuracies in [0, 1], rounded to 2 decimals, by numpy."""
    a = 100 * np.asarray(values)
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f}"


# -- the downstream table (notebook 04) -----------------------------------------------------------
ACC = {  # dataset -> loss -> accuracies over seeds; one loss has a single seed (std NaN)
    "fashion_mnist": {"ce": [0.9002, 0.9061, 0.8998], "ngl": [0.9124, 0.9180, 0.9114],
                      "label_smoothing": [0.8950, 0.9010, 0.8955],
                      "my_loss_50% & #2": [0.9031]},
    "digits": {"ce": [0.95, 0.96, 0.94], "ngl": [0.93, 0.95, 0.94],
               "label_smoothing": [0.96, 0.97, 0.96], "my_loss_50% & #2": [0.9500]},
}
NB04_CAPTION = ("Test accuracy (%) with adam (lr 0.001, 3 epochs); mean ± std over 3 seeds, "
                "change against CE in brackets – best in bold, * paired t-test p < 0.05.")


def _summary(acc: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """dataset -> loss -> accuracies over seeds, summarised against CE."""
    rows = [{"dataset": ds, "model": "small_cnn", "loss": loss, "seed": s, "status": "ok",
             "test_accuracy": a}
            for ds, per in acc.items() for loss, accs in per.items() for s, a in enumerate(accs)]
    return summarise(pd.DataFrame(rows), metric="test_accuracy", baseline="ce")


@pytest.fixture(scope="module")
def downstream() -> pd.DataFrame:
    return _summary(ACC)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_downstream_table_compiles_and_prints_numbers_and_p(downstream, tmp_path, encoding):
    tex = to_latex(downstream, label="tab:downstream", caption=NB04_CAPTION)
    text = compile_text(tex, tmp_path, encoding)
    assert "p < 0.05" in text and "Test accuracy (%)" in text and "brackets – best" in text
    assert "Fashion-MNIST" in text and "Digits" in text and "Label smoothing" in text
    assert shown("my_loss_50% & #2", encoding) in text
    fm = ACC["fashion_mnist"]
    assert _pm(fm["ngl"]) in text and _pm(fm["ce"]) in text
    # the paired change, by hand: NGL beats CE on every seed (p < 0.05 -> a star)
    d = 100 * (np.subtract(fm["ngl"], fm["ce"])).mean()
    assert re.search(rf"\(\+{d:.2f}\)\s*∗", text), text
    d_ls = 100 * (np.subtract(fm["label_smoothing"], fm["ce"])).mean()
    assert f"(−{abs(d_ls):.2f})" in text  # a real minus sign, not a hyphen
    # one seed: its mean, and no "nan" for the undefined std
    assert "90.31" in text and "nan" not in text.lower()


LONG_FOUND = ("sin(y_real - -0.85329173645817236)*exp(y_pred/y_pred + 0.12345678912345678*y_real)"
              " + log(1.9876543219876543 + y_pred*y_real) - cos(y_pred*0.33333333333333331)")


@pytest.fixture(scope="module")
def with_found() -> pd.DataFrame:
    per = {"ce": [0.95, 0.96, 0.94], LONG_FOUND: [0.951, 0.962, 0.94],
           "label_smoothing": [0.96, 0.97, 0.96]}
    return _summary({ds: per for ds in ("digits", "fashion_mnist", "cifar10")})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_grid_with_a_found_loss_fits_the_page(with_found, tmp_path, encoding):
    """A found loss is "found #1" with a short formula note; with width the table fits the
    text width (no overfull box in the log); a LaTeX caption is not escaped again."""
    tex = to_latex(with_found, caption=r"Test accuracy of \texttt{dense\_cnn} ($n=3$)",
                   caption_is_latex=True, label="tab:found", width=r"\linewidth")
    assert LONG_FOUND not in tex and "found \\#1" in tex and "0.8533" in tex
    assert "textbackslash" not in tex
    text = compile_text(tex, tmp_path, encoding, packages=("graphicx",))
    log = (tmp_path / "doc.log").read_text(encoding="latin-1")
    assert "Overfull \\hbox" not in log, log[-2000:]
    assert "found #1" in text and "Label smoothing" in text
    assert shown("dense_cnn", encoding) in text  # the caption's own \_ printed once, not escaped
    width = subprocess.run(["pdftotext", "-bbox", "doc.pdf", "-"], cwd=tmp_path,
                           capture_output=True, timeout=60, check=True).stdout.decode()
    xmax = max(float(x) for x in re.findall(r'xMax="([0-9.]+)"', width))
    page = float(re.search(r'<page width="([0-9.]+)"', width).group(1))
    assert xmax < page - 72 * 0.9, (xmax, page)  # inside the right margin (article: ~1.4 in)


def test_the_found_formula_note_has_four_significant_digits(with_found):
    tex = to_latex(with_found)
    note = [line for line in tex.splitlines() if "found \\#1:" in line][0]
    assert "0.8533" in note and "0.85329" not in note and "0.1235" in note
    assert "1.988" in note and "0.3333" in note


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_downstream_table_default_caption_compiles(downstream, tmp_path, encoding):
    tex = to_latex(downstream, label="tab:x", show_ci=True)
    text = compile_text(tex, tmp_path, encoding)
    assert "p < 0.05" in text and "mean ± std" in text


# -- the held-out validation table (notebook 06, python -m ngl validate) ------------------------
FOUND = ["abs(y_pred - y_real) + sqrt(y_pred)*-0.5",
         "exp(2.4092 - y_pred*(1 + y_real)) - cos(cos(sin(y_pred)))"]
HELD_OUT = {FOUND[0]: [0.9120, 0.9170, 0.9110], FOUND[1]: [0.9010, 0.9070, 0.8990],
            "ce": [0.9002, 0.9061, 0.8998], "ngl": [0.9030, 0.9050, 0.9020],
            "focal(gamma=2.0)": [0.8990, 0.9050, 0.9001], "label_smoothing": [0.9005]}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> ValidationReport:
    rows = [{"dataset": "fashion_mnist", "model": "dense_cnn", "loss": loss, "seed": s,
             "status": "ok", "test_accuracy": a}
            for loss, accs in HELD_OUT.items() for s, a in enumerate(accs)]
    results = pd.DataFrame(rows)
    table = summarise(results, by=("dataset", "model", "loss"), baseline="ce")
    table = verdicts(table, FOUND, margin=0.5, alpha=0.05, baseline="ce")
    table["search_fitness"] = table["loss"].map({FOUND[0]: 0.93, FOUND[1]: 0.92}).astype(float)
    plan = {"found": [{"expression": e, "search_fitness": f} for e, f in zip(FOUND, (0.93, 0.92), strict=True)],
            "dataset": "fashion_mnist", "search_complete": True}
    empty = pd.DataFrame(columns=["dataset", "model", "loss", "mean", "delta"])
    return ValidationReport(config=ValidateConfig(), plan=plan,
                            out_dir=tmp_path_factory.mktemp("val"), results=results, table=table,
                            transfer=empty, fidelity=pd.DataFrame(), fidelity_stats={},
                            complete=True)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_validation_table_compiles_and_names_the_losses(report, tmp_path, encoding):
    text = compile_text(report.to_latex(), tmp_path, encoding)
    # display names, never registry keys (issue 23: the README promised them)
    assert "found #1" in text and "found #2" in text and "Focal (gamma=2.0)" in text
    assert "Label smoothing" in text and "label" + shown("_", encoding) not in text
    for loss in ("ce", FOUND[0]):
        assert _pm(HELD_OUT[loss]) in text
    d = 100 * np.subtract(HELD_OUT[FOUND[0]], HELD_OUT["ce"]).mean()
    assert f"+{d:.2f}" in text
    # the single-seed loss: its mean, and no "nan" for the undefined std and p-values
    assert "90.05" in text and "nan" not in text.lower()
    assert "<0.001" in text  # a tiny p-value, rounded
    # the found losses' formulas under the table: |x|, sqrt(|x|) (its radical sign reads back
    # as "p"), a negative constant with a real minus, the exponent
    assert "found #1: |ŷ − y| + |ŷ| (−0.5)" in text
    assert "found #2: e2.4092−ŷ (1+y) − cos (cos (sin (ŷ)))" in text


# -- the hall of fame of a search -----------------------------------------------------------------
HOF = {"abs(y_pred - y_real) + sqrt(y_pred)*-0.5": 0.9341,
       "exp(2.4092 - y_pred*(1 + y_real)) - cos(cos(sin(y_pred)))": 0.9302,
       "log(y_pred)/(y_real + -1.25)": 0.9255, "max(y_pred, -0.75) - sigmoid(logits)": 0.9012}


@pytest.fixture(scope="module")
def search_result(tmp_path_factory) -> SearchResult:
    history = pd.DataFrame([{"generation": 1, "index": i, "status": "ok", "val_accuracy": acc,
                             "size": 5 + i, "fingerprint": f"f{i}", "key": f"k{i}",
                             "expression": e, "cache_hit": False, "train_time_s": 1.0}
                            for i, (e, acc) in enumerate(HOF.items())])
    spec = ngl.SearchSpec(dataset="fashion_mnist", model="small_cnn", population_size=4,
                          generations=2)
    return SearchResult(spec=spec, options=RunOptions(device="cpu"),
                        run_dir=tmp_path_factory.mktemp("search"), history=history,
                        complete=False)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_hall_of_fame_compiles_with_formulas_in_math_mode(search_result, tmp_path, encoding):
    assert search_result.to_latex() != search_result.to_latex(tidy=False)  # tidied by default
    compile_text(search_result.to_latex(), tmp_path / "tidy", encoding)
    text = compile_text(search_result.to_latex(tidy=False), tmp_path, encoding)
    assert shown("fashion_mnist", encoding) in text and shown("small_cnn", encoding) in text
    for acc in HOF.values():
        assert f"{100 * acc:.2f}" in text
    assert "|ŷ − y| + |ŷ| (−0.5)" in text and "e2.4092−ŷ (1+y)" in text
    assert "y−1.25" in text and "log|ŷ|" in text and "max (ŷ, −0.75) − σ (z)" in text


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_hall_of_fame_caption_is_plain_text(search_result, tmp_path, encoding):
    tex = search_result.to_latex(n=2, caption="Top 2 of run_7 (p < 0.05 & 100% #1)")
    text = compile_text(tex, tmp_path, encoding)
    assert shown("Top 2 of run_7 (p < 0.05 & 100% #1)", encoding) in text


# -- the calibration table (notebook 05) ----------------------------------------------------------
@pytest.fixture(scope="module")
def calib_mean() -> pd.DataFrame:
    """Notebook 05's per-loss means (columns as there), with a Greek loss name and one NaN."""
    cols = ["accuracy", "confidence", "ece", "nll", "temperature", "confidence_ts", "ece_ts",
            "nll_ts"]
    values = {"CE": [0.912345, 0.953111, 0.041234, 0.312987, 1.543219, 0.905432, 0.012345,
                     0.262222],
              "NGL": [0.918765, 0.154321, 0.764444, 2.101234, 0.081234, 0.921111, 0.023456,
                      0.281111],
              "focal γ=2": [0.909999, 0.861234, 0.048765, 0.298765, np.nan, 0.899876, 0.015432,
                            0.27]}
    return pd.DataFrame.from_dict(values, orient="index", columns=cols).rename_axis("loss")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_calibration_table_compiles_rounded_with_readable_headers(calib_mean, tmp_path, encoding):
    text = compile_text(calibration_latex(calib_mean), tmp_path, encoding)
    assert "ECE" in text and "NLL" in text and "temperature scaling" in text
    assert "confidence_ts" not in text and "confidence ts" not in text
    assert re.search(r"focal γ ?= ?2", text)  # pdftotext may space the math-mode γ
    for v in calib_mean.to_numpy().ravel():
        if not np.isnan(v):
            assert f"{v:.3f}" in text
    assert "0.912345" not in text and "nan" not in text.lower()


# -- figure fonts ---------------------------------------------------------------------------------
def pdf_fonts(pdf: Path) -> list[dict[str, str]]:
    """``pdffonts`` rows as dicts (columns cut where its dashed header line has gaps)."""
    _need("pdffonts")
    out = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, timeout=60,
                         check=True).stdout.splitlines()
    header, dashes, *rows = out
    spans = [m.span() for m in re.finditer(r"-+", dashes)]
    names = [header[a:b].strip() if i < len(spans) - 1 else header[a:].strip()
             for i, (a, b) in enumerate(spans)]
    return [{n: (line[a:b] if i < len(spans) - 1 else line[a:]).strip()
             for i, (n, (a, b)) in enumerate(zip(names, spans, strict=True))} for line in rows if line.strip()]


def assert_truetype_embedded(pdf: Path) -> None:
    fonts = pdf_fonts(pdf)
    assert fonts, f"no fonts in {pdf}"
    for f in fonts:
        assert f["type"] in ("TrueType", "CID TrueType"), f"{f['name']}: {f['type']} in {pdf}"
        assert f["emb"] == "yes", f"{f['name']} not embedded in {pdf}"


@pytest.fixture
def paper_style():
    before = matplotlib.rcParams.copy()
    ui.set_style("paper")
    yield
    matplotlib.rcParams.update(before)


def test_figure_text_math_and_legend_are_truetype(paper_style, tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label=r"NGL, $\alpha = 2.4$ – ±")
    ax.set_xlabel(r"$\hat{y}$ (softmax output)")
    ax.set_ylabel(r"loss $\ell(\hat{y}, y)$")
    ax.set_title("loss shape")
    ax.legend()
    paths = ui.save_figure(fig, "x", directory=tmp_path)
    plt.close(fig)
    pdf = next(p for p in paths if p.suffix == ".pdf")
    assert len(pdf_fonts(pdf)) >= 2  # text and math fonts
    assert_truetype_embedded(pdf)


def test_loss_shapes_figure_is_truetype(paper_style, tmp_path):
    fig = ui.plot_loss_shapes({"CE": ngl.get_loss("ce"), "NGL": ngl.get_loss("ngl")})
    paths = ui.save_figure(fig, "loss_shapes", directory=tmp_path)
    plt.close(fig)
    assert_truetype_embedded(next(p for p in paths if p.suffix == ".pdf"))
