"""Paper-style tables from a summary: losses x datasets strings, best in bold, LaTeX and markdown.

The input is a summary from :func:`ngl.evaluate.summary.summarise` (one row per (dataset, loss)
or (dataset, model, loss), with its ``attrs``: metric, scale, baseline, grouping).

- :func:`format_table` pivots a summary to losses x datasets as strings
  (``"90.12 ± 0.31 (+0.52)"``: mean ± std and the paired change against the baseline, ``*`` where
  the paired t-test has p < 0.05); :func:`best_mask` says which cell of each column is best.
- :func:`to_latex` (booktabs, ``\\textbf`` for the best, escaped with :func:`latex_escape`) and
  :func:`to_markdown` export it, with a caption saying what the numbers are.
- :data:`DATASET_NAMES` and :data:`LOSS_NAMES` are the printed names of the rows and columns.
"""

from __future__ import annotations

import pandas as pd

from ngl.evaluate.summary import UNDEFINED, format_number
from ngl.losses.registry import DISPLAY_NAMES, canonical_loss_name, display_name

__all__ = ["format_table", "best_mask", "to_latex", "to_markdown", "latex_escape", "found_names",
           "DATASET_NAMES", "LOSS_NAMES"]

DATASET_NAMES = {
    "digits": "Digits", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100", "malaria": "Malaria", "pcam": "PCam",
    "colorectal_histology": "Colorectal Histology", "caltech101": "Caltech 101", "mean": "mean",
}
LOSS_NAMES = DISPLAY_NAMES  # one table of printed loss names, the registry's


# -- wide tables -----------------------------------------------------------------------------
def _columns(summary: pd.DataFrame) -> list[str]:
    return [c for c in summary.attrs.get("by", ["dataset", "loss"]) if c != "loss"]


def _pivot(summary: pd.DataFrame, value: str) -> pd.DataFrame:
    cols = _columns(summary)
    wide = summary.pivot_table(index="loss", columns=cols, values=value, aggfunc="first",
                               sort=False, dropna=False)
    order = list(dict.fromkeys(summary["loss"]))
    return wide.reindex(order)


def best_mask(summary: pd.DataFrame, higher_is_better: bool = True, decimals: int | None = 2,
              ) -> pd.DataFrame:
    """Boolean losses x columns frame: True where a cell has the best mean of its column.

    Means are compared after rounding to ``decimals`` (what the reader sees), so printed ties
    are all bold.
    """
    means = _pivot(summary, "mean")
    shown = means.round(decimals) if decimals is not None else means
    best = shown.max() if higher_is_better else shown.min()
    return shown.eq(best, axis=1) & shown.notna()


def format_table(summary: pd.DataFrame, decimals: int = 2, show_delta: bool = True,
                 show_n: bool | None = None, alpha: float | None = 0.05,
                 higher_is_better: bool = True, bold: tuple[str, str] = ("", ""),
                 pm: str = " ± ", minus: str = "\u2212", show_ci: bool = False) -> pd.DataFrame:
    """Losses x datasets (x models) table of strings ``mean ± std (delta)``.

    ``delta`` is the *paired* mean change against the baseline (over seeds both finished), the
    quantity the ``*`` of the paired t-test is about; ``show_ci`` adds its 95% interval
    (``(+0.79 [-0.20, +1.78])``). ``bold`` wraps the best cell of each column (e.g.
    ``("**", "**")``); ``alpha`` appends ``*`` where the paired t-test against the baseline has
    p < alpha; ``show_n`` appends ``[n=k]`` per cell (default: only when cells have different
    numbers of runs). A std or interval that one seed leaves undefined prints as an en dash
    (``"90.12 ± –"``, ``"(+0.52 [–, –])"``), never ``nan``: readers see that it is missing on
    purpose, and every cell keeps the same shape.
    """
    means, stds, deltas = (_pivot(summary, v) for v in ("mean", "std", "delta"))
    ns, ps = _pivot(summary, "n"), _pivot(summary, "p_ttest")
    lows, highs = _pivot(summary, "delta_ci_low"), _pivot(summary, "delta_ci_high")

    def signed(x: float) -> str:  # NaN (one seed) reads UNDEFINED
        return format_number(x, decimals, sign=True).replace(chr(0x2212), minus)

    mask = best_mask(summary, higher_is_better, decimals)
    if show_n is None:
        show_n = summary["n"].nunique() > 1
    baseline = summary.attrs.get("baseline")
    out = pd.DataFrame(index=means.index, columns=means.columns, dtype=object)
    for loss in means.index:
        for col in means.columns:
            m = means.loc[loss, col]
            if pd.isna(m):
                out.loc[loss, col] = "--"
                continue
            s = stds.loc[loss, col]
            text = f"{m:.{decimals}f}{pm}" + (UNDEFINED if pd.isna(s) else f"{s:.{decimals}f}")
            if mask.loc[loss, col]:
                text = f"{bold[0]}{text}{bold[1]}"
            d = deltas.loc[loss, col]
            if show_delta and loss != baseline and not pd.isna(d):
                lo, hi = lows.loc[loss, col], highs.loc[loss, col]
                ci = f" [{signed(lo)}, {signed(hi)}]" if show_ci else ""
                text += f" ({signed(d)}{ci})"
            p = ps.loc[loss, col]
            if alpha is not None and not pd.isna(p) and p < alpha:
                text += "*"
            if show_n:
                text += f" [n={int(ns.loc[loss, col])}]"
            out.loc[loss, col] = text
    out.attrs.update(summary.attrs)
    out.attrs["n_runs"] = sorted(set(int(v) for v in summary["n"]))
    return out


_LATEX_TEXT = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
               "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
               "^": r"\textasciicircum{}",
               # in text mode with the default OT1 font encoding "<" prints as "¡", ">" as "¿"
               "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
# characters pdflatex's utf8 inputenc stops at ("Unicode character ... not set up") or that are
# maths: typeset in math mode. Greek letters name losses and parameters ("focal γ=2", "Δ vs CE").
_GREEK = dict(zip("αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΥΦΨΩ",
                  ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota",
                   "kappa", "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon",
                   "phi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi",
                   "Sigma", "Upsilon", "Phi", "Psi", "Omega"), strict=True))
_LATEX_MATH = {"±": r"\pm", "\u2212": "-", "×": r"\times", "·": r"\cdot", "≤": r"\leq",
               "≥": r"\geq", "≈": r"\approx", "→": r"\rightarrow", "∞": r"\infty",
               **{ch: "\\" + name for ch, name in _GREEK.items()}}


def latex_escape(text: object) -> str:
    r"""Plain text -> LaTeX text that compiles and prints as written, in the T1 or the default
    OT1 font encoding (``<`` as ``\textless{}``: a bare one prints ``¡`` in OT1), with pdflatex
    and ``\usepackage[utf8]{inputenc}`` (the default since 2018): specials escaped, ``±``,
    ``−`` and Greek letters in math mode."""
    def one(ch: str) -> str:
        if ch in _LATEX_TEXT:
            return _LATEX_TEXT[ch]
        return f"${_LATEX_MATH[ch]}$" if ch in _LATEX_MATH else ch

    return "".join(one(ch) for ch in str(text))


def _formula_latex(text: str) -> str:
    """A found loss for a table note: simplified (sympy) when that is shorter and computes the
    trained function, 4 significant digits; the stored text keeps full precision."""
    from ngl.gp.expression import LossExpression

    return LossExpression.parse(text).tidy_latex(4)  # simplified only where faithful


def _formula_text(text: str) -> str:
    from ngl.gp.expression import LossExpression

    return LossExpression.parse(text).display(4)


def _header(col: object) -> str:
    parts = col if isinstance(col, tuple) else (col,)
    return " / ".join(DATASET_NAMES.get(str(p), str(p)) for p in parts)


def _caption_note(summary: pd.DataFrame) -> str:
    ns = sorted(set(int(v) for v in summary["n"]))
    metric = summary.attrs.get("metric", "test_accuracy").replace("_", " ")
    unit = " (%)" if summary.attrs.get("scale") == 100 else ""
    runs = f"n = {ns[0]} runs per cell" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]} runs per cell"
    base = summary.attrs.get("baseline")
    tail = (f"; in brackets the paired mean change against {LOSS_NAMES.get(base, base)} over "
            f"the seeds both finished, * paired t-test p < 0.05" if base else "")
    return f"{metric}{unit}, mean ± std over {runs}; best of each column in bold{tail}."


def found_names(labels) -> dict[str, str]:
    """``{label: "found #k"}`` for the labels that are loss-expression text (a found loss, not
    a registered name nor a label a user chose), numbered in the order given."""
    from ngl.gp.expression import LossExpression  # evaluate sits above gp

    out: dict[str, str] = {}
    for lab in labels:
        text = str(lab)
        if text in out or canonical_loss_name(text) is not None or text in LOSS_NAMES:
            continue
        try:
            LossExpression.parse(text)
        except (ValueError, KeyError, TypeError):
            continue  # "focal γ=2", "ce(gamma=1)": labels, not formulas
        out[text] = f"found #{len(out) + 1}"
    return out


def _row_name(loss: object, found: dict[str, str], pretty: bool) -> str:
    if not pretty:
        return str(loss)
    return found.get(str(loss)) or display_name(str(loss))


def to_latex(summary: pd.DataFrame, caption: str | None = None, label: str | None = None,
             decimals: int = 2, show_delta: bool = True, pretty: bool = True,
             higher_is_better: bool = True, alpha: float | None = 0.05, show_ci: bool = False,
             width: str | None = None, caption_is_latex: bool = False) -> str:
    r"""A booktabs ``tabular`` (wrapped in ``table`` when ``caption``/``label`` is given); the
    change in brackets is the paired one (see :func:`format_table`).

    Rows are named by display name (``"Label smoothing"``, ``"Focal (gamma=2.0)"``); a found
    loss (expression text) is ``found #k`` and its formula (tidied, 4 significant digits) a
    note row under the table. ``width`` (e.g. ``r"\linewidth"``) scales the tabular to that
    width with ``\resizebox`` (needs ``\usepackage{graphicx}``), so a wide table fits a column
    or a page. Names and a plain ``caption`` are escaped with :func:`latex_escape`; a caption
    already written in LaTeX is passed with ``caption_is_latex=True`` and kept as it is. Needs
    ``\usepackage{booktabs}``; compiles with pdflatex in the T1 or the default OT1 font
    encoding (``tests/test_latex_exports.py`` compiles it)."""
    tab = format_table(summary, decimals=decimals, show_delta=show_delta, alpha=alpha,
                       higher_is_better=higher_is_better, bold=("\x00B", "\x00E"),
                       pm=" \x00PM ", minus="\x00MINUS", show_ci=show_ci)

    def cell(text: str) -> str:
        t = latex_escape(text)
        t = t.replace("\x00PM", r"$\pm$").replace("\x00MINUS", r"$-$").replace("*", r"$^{*}$")
        return t.replace("\x00B", r"\textbf{").replace("\x00E", "}")

    cols = list(tab.columns)
    found = found_names(tab.index) if pretty else {}
    lines = [r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule",
             "Loss & " + " & ".join(latex_escape(_header(c)) for c in cols) + r" \\", r"\midrule"]
    for loss, row in tab.iterrows():
        name = _row_name(loss, found, pretty)
        lines.append(latex_escape(name) + " & " + " & ".join(cell(v) for v in row) + r" \\")
    lines.append(r"\bottomrule")
    for text, name in found.items():  # what each found loss is, short enough to read
        formula = _formula_latex(text)
        lines.append(rf"\multicolumn{{{len(cols) + 1}}}{{@{{}}l}}{{\footnotesize "
                     rf"{latex_escape(name)}: ${formula}$}} \\")
    lines.append(r"\end{tabular}")
    body = "\n".join(lines)
    if width is not None:
        body = rf"\resizebox{{{width}}}{{!}}{{%" + "\n" + body + "}"
    if caption is None and label is None:
        return body + "\n"
    head = [r"\begin{table}[t]", r"\centering"]
    cap = caption if caption is not None else _caption_note(summary)
    head.append(r"\caption{" + (cap if caption_is_latex and caption is not None
                                else latex_escape(cap)) + "}")
    if label:
        head.append(r"\label{" + label + "}")
    return "\n".join([*head, body, r"\end{table}"]) + "\n"


def to_markdown(summary: pd.DataFrame, decimals: int = 2, show_delta: bool = True,
                pretty: bool = True, higher_is_better: bool = True, note: bool = True,
                alpha: float | None = 0.05, show_ci: bool = False) -> str:
    """A GitHub-markdown table, best of each column in ``**bold**``, with a one-line note; the
    change in brackets is the paired one (see :func:`format_table`)."""
    tab = format_table(summary, decimals=decimals, show_delta=show_delta, alpha=alpha,
                       higher_is_better=higher_is_better, bold=("**", "**"), show_ci=show_ci)
    cols = list(tab.columns)

    def esc(t: str) -> str:
        return str(t).replace("|", r"\|")

    lines = ["| loss | " + " | ".join(esc(_header(c)) for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    found = found_names(tab.index) if pretty else {}
    for loss, row in tab.iterrows():
        name = _row_name(loss, found, pretty)
        lines.append(f"| {esc(name)} | " + " | ".join(esc(v).replace("*", r"\*")
                                                       .replace(r"\*\*", "**") for v in row) + " |")
    text = "\n".join(lines) + "\n"
    if found:
        text += "\n" + "\n".join(f"- {name}: `{_formula_text(t)}`" for t, name in found.items())
        text += "\n"
    if note:
        text += "\n" + _caption_note(summary) + "\n"
    return text

