"""Look at what a search found: find the latest run, browse its hall of fame, explore loss shapes.

:func:`latest_search` finds the run directory a notebook reads by default;
:class:`HallOfFameBrowser` shows a hall-of-fame loss as tree, formula and shape next to NGL and
CE; :class:`LossExplorer` moves the constants of NGL, focal loss and label smoothing and redraws
their shapes.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import ipywidgets as W
from IPython.display import Math

from ngl.gp.expression import LossExpression
from ngl.io.paths import runs_dir
from ngl.losses.registry import get_loss
from ngl.losses.zoo import NGL_ALPHA, NGL_EXPRESSION
from ngl.ui.plots_losses import draw_tree, loss_shape_data, plot_loss_shapes, tree_layout
from ngl.ui.style import TEXT_WIDTH
from ngl.ui.widget_kit import figure_png, new_figure, short_label, show_errors

__all__ = [
    "HallOfFameBrowser", "LossExplorer", "SearchPicker", "hall_of_fame_browser", "latest_search",
    "loss_explorer", "search_or_tiny", "search_picker", "search_runs"]


def search_runs(root: str | os.PathLike | None = None) -> list[Path]:
    """The search runs under ``root`` (default ``runs/search/``), the latest changed first.

    A run is a directory with ``spec.json`` and ``history.jsonl`` (partial runs count); ties in time go by name, so the order is stable.
    """
    root = Path(root) if root is not None else runs_dir() / "search"
    runs = [p.parent for p in root.glob("*/history.jsonl")
            if (p.parent / "spec.json").is_file()]
    return sorted(runs, key=lambda p: ((p / "history.jsonl").stat().st_mtime_ns, p.name),
                  reverse=True)


def latest_search(root: str | os.PathLike | None = None) -> Path | None:
    """The search run under ``root`` (default ``runs/search/``) whose history changed last;
    ``None`` when ``root`` holds none (or does not exist)."""
    runs = search_runs(root)
    return runs[0] if runs else None


def _describe_search(run_dir: str | os.PathLike, why: str) -> str:
    """One line saying which search a notebook shows: its key and what it searched."""
    from ngl.gp.result import load_result

    try:
        sp = load_result(run_dir).spec
    except (OSError, ValueError) as exc:
        return f"search {run_dir} ({why}): cannot be read ({exc})"
    halving = f", halving eta={sp.halving.eta}" if sp.halving is not None else ""
    return (f"showing search {sp.key} ({why}): {sp.dataset}, {sp.model}, population "
            f"{sp.population_size} x {sp.generations} generations, {sp.budget.steps} steps"
            f"{halving}, seed {sp.seed} - {run_dir}")


def search_or_tiny(search_dir: str | os.PathLike | None = None, quick: bool = True,
                   seed: int = 0) -> Path:
    """``search_dir``, else the latest search, else a tiny digits search run now (with NGL seeded).

    Notebooks that show a search (03, 06) work on their own this way: with no search yet they say
    so in one line and run a small one (about a minute on a CPU in quick mode).
    """
    if search_dir:
        given = Path(search_dir)
        if not (given / "spec.json").is_file():
            raise FileNotFoundError(
                f"SEARCH_DIR={str(search_dir)!r}: no search there (no spec.json); expected a run "
                f"directory such as {runs_dir() / 'search' / '<key>'}, or None for the latest")
        print(_describe_search(search_dir, "given"))
        return given
    found = latest_search(runs_dir() / "search")
    if found is not None:
        print(_describe_search(found, "the latest under " + str(runs_dir() / "search")
                              + "; set SEARCH_DIR to pick another"))
        return found
    from ngl.fitness import TrainBudget
    from ngl.gp.search import run_search
    from ngl.gp.spec import RunOptions, SearchSpec

    print("no search found under", runs_dir() / "search",
          "- running a tiny one (about a minute on a CPU)")
    tiny = SearchSpec(population_size=6 if quick else 12, generations=2 if quick else 4,
                      budget=TrainBudget(steps=20 if quick else 60, batch_size=64),
                      dataset="digits", n_train=400 if quick else None,
                      n_val=200 if quick else None, seed=seed,
                      seed_expressions=(NGL_EXPRESSION,))
    run_dir = runs_dir() / "search" / tiny.key
    run_search(tiny, run_dir, RunOptions(chunk_size=12), progress=False)
    return run_dir


def _run_label(run_dir: Path) -> str:
    """One dropdown line: key, what it searched, how far it got."""
    from ngl.gp.result import load_result

    try:
        res = load_result(run_dir)
    except (OSError, ValueError) as exc:
        return f"{run_dir.name}: cannot be read ({short_label(str(exc), 60)})"
    sp = res.spec
    state = "complete" if res.complete else "partial"
    return (f"{sp.key}  {sp.dataset}/{sp.model}, {sp.population_size} x {sp.generations} gen., "
            f"{sp.budget.steps} steps, seed {sp.seed}: {len(res.history)} candidates, {state}")


class SearchPicker:
    """Which search a notebook shows: every run under ``runs/search/`` in a list, latest first.

    Starts at ``search_dir`` (else the latest run, else a tiny search run now: see
    :func:`search_or_tiny`); ``.info`` says which run is chosen (key, what it searched, path) and
    ``.value`` is its directory. Choosing another run only changes ``.value``: the cells that
    read it show it once they are re-run, which ``.info`` says.
    """

    def __init__(self, search_dir: str | os.PathLike | None = None,
                 root: str | os.PathLike | None = None, quick: bool = True, seed: int = 0):
        self.root = Path(root) if root is not None else runs_dir() / "search"
        start = Path(search_or_tiny(search_dir, quick=quick, seed=seed))
        runs = search_runs(self.root)
        if start.resolve() not in {r.resolve() for r in runs}:
            runs.insert(0, start)  # a run given from elsewhere is listed too, never replaced
        self.options = [(_run_label(r), str(r)) for r in runs]
        self.dropdown = W.Dropdown(options=self.options, value=str(start), description="search",
                                   layout=W.Layout(width="95%"))
        self.info = W.HTML()
        self._shown = str(start)
        self.dropdown.observe(lambda _c: self._describe(), names="value")
        self.widget = W.VBox([self.dropdown, self.info])
        self._describe()

    @property
    def value(self) -> Path:
        """The chosen run directory."""
        return Path(self.dropdown.value)

    def _describe(self) -> None:
        text = html.escape(_describe_search(self.value, "chosen"))
        if self.dropdown.value != self._shown:
            text += ("<br><b>re-run the cells below</b> (Run &gt; Run Selected Cell and All Below)"
                     " to show this run")
        self.info.value = text

    def shown(self) -> Path:
        """The chosen run, marked as the one the cells below now show (call it in that cell)."""
        self._shown = self.dropdown.value
        self._describe()
        return self.value


def search_picker(search_dir: str | os.PathLike | None = None, quick: bool = True,
                  seed: int = 0) -> SearchPicker:
    """Build the search picker; display ``picker.widget``; read ``picker.shown()`` below it."""
    return SearchPicker(search_dir, quick=quick, seed=seed)


class HallOfFameBrowser:
    """Pick a hall-of-fame loss and see its tree, its formula and its shape next to NGL and CE.

    ``.dropdown`` chooses the rank; ``.selected`` is the chosen :class:`LossExpression`;
    ``.shape_data`` the tidy data of the loss-shape figure (:func:`loss_shape_data`);
    ``.tree_image`` / ``.shape_image`` the figures as PNG; the formula and errors go to ``.out``.
    """

    def __init__(self, result, n: int | None = None, num_classes: int = 10,
                 references: tuple[str, ...] = ("ngl", "ce")):
        self.result = result
        self.hof = result.hall_of_fame(n)
        self.num_classes = num_classes
        self.references = references
        self.selected = None
        self.shape_data = None
        # the short display form (4 significant digits); the chosen one is shown whole below
        options = [(f"#{i + 1}  acc {row.val_accuracy:.4f}"
                    f"{'  (BELOW CHANCE)' if self._at_chance(row.val_accuracy) else ''}  size {row.size}:  "
                    f"{short_label(LossExpression.parse(row.expression).display(), 70)}", i)
                   for i, row in enumerate(self.hof.itertuples())]
        self.dropdown = W.Dropdown(options=options or [("(no trained candidate yet)", -1)],
                                   description="candidate", layout=W.Layout(width="95%"))
        self.info = W.HTML()
        self.tree_image = W.Image(format="png", layout=W.Layout(max_width="480px"))
        self.shape_image = W.Image(format="png", layout=W.Layout(max_width="900px"))
        self.out = W.Output()
        self.dropdown.observe(show_errors(self.out)(lambda _c: self.show()), names="value")
        self.widget = W.VBox([self.dropdown, self.info, self.out, self.tree_image, self.shape_image])
        show_errors(self.out)(self.show)()

    def _at_chance(self, accuracy: float) -> bool:
        """At or below 1/C; accuracies are stored as float32 (0.1 reads 0.10000000149)."""
        return accuracy <= 1 / self.num_classes + 1e-6

    def show(self) -> None:
        self.out.outputs = ()
        i = self.dropdown.value
        if i is None or i < 0:
            self.info.value = "no candidate of this search trained successfully yet"
            return
        row = self.hof.iloc[i]
        expr = LossExpression.parse(row["expression"])
        self.selected = expr
        below = (f" <b>(at or below chance, {1 / self.num_classes:.2f}: this loss did not "
                 "learn)</b>" if self._at_chance(row["val_accuracy"]) else "")
        self.info.value = (f"rank {i + 1}: validation accuracy <b>{row['val_accuracy']:.4f}</b>"
                           f"{below}, "
                           f"size {expr.size}, depth {expr.depth}, generation {int(row['generation'])}, "
                           f"born by {row['origin']}")
        self.out.append_display_data(Math(expr.latex()))
        self.out.append_stdout(f"{expr.display()}\nexact (stored) form: {expr}\n")
        nodes, _ = tree_layout(expr)
        width = max(x for x, _, _ in nodes) + 1
        height = -min(y for _, y, _ in nodes) + 1
        fig = new_figure((min(TEXT_WIDTH, 0.6 + 0.55 * width), 0.5 + 0.55 * height))
        draw_tree(expr, ax=fig.subplots(), formula=False)
        self.tree_image.value = figure_png(fig)
        losses = {"candidate": expr.to_module(validate=False)}
        losses.update({name.upper(): get_loss(name) for name in self.references})
        self.shape_data = loss_shape_data(losses, num_classes=self.num_classes)
        fig = new_figure((TEXT_WIDTH, 2.4))
        plot_loss_shapes(losses, num_classes=self.num_classes, axes=fig.subplots(1, 2))
        self.shape_image.value = figure_png(fig)


def hall_of_fame_browser(result, n: int | None = None, num_classes: int = 10) -> HallOfFameBrowser:
    """Build the hall-of-fame browser for a :class:`SearchResult`; display ``browser.widget``."""
    return HallOfFameBrowser(result, n=n, num_classes=num_classes)


class LossExplorer:
    """Sliders for the constants of NGL (alpha), focal loss (gamma), label smoothing (epsilon) and
    the number of classes; every change redraws the loss shapes.

    ``.data`` is the tidy data of the last drawn figure (:func:`loss_shape_data`), ``.losses``
    the loss modules drawn, ``.image`` the figure (PNG); an optional expression box adds a loss
    of your own (e.g. a hall-of-fame formula).
    """

    def __init__(self, num_classes: int = 10, alpha: float | None = None, gamma: float = 2.0,
                 epsilon: float = 0.1, expression: str = ""):
        style = {"description_width": "110px"}
        self.alpha = W.FloatSlider(value=NGL_ALPHA if alpha is None else alpha, min=0.0, max=5.0, step=0.01,
                                   description="NGL alpha", continuous_update=False, style=style,
                                   readout_format=".4f")
        self.gamma = W.FloatSlider(value=gamma, min=0.0, max=5.0, step=0.1, description="focal gamma",
                                   continuous_update=False, style=style)
        self.epsilon = W.FloatSlider(value=epsilon, min=0.0, max=0.5, step=0.01, description="smoothing eps",
                                     continuous_update=False, style=style)
        self.num_classes = W.IntSlider(value=num_classes, min=2, max=100, description="classes C",
                                       continuous_update=False, style=style)
        self.show = {name: W.Checkbox(value=True, description=name, indent=False,
                                      layout=W.Layout(width="150px"))
                     for name in ("CE", "NGL", "focal", "label smoothing")}
        self.expression = W.Text(value=expression, placeholder="own loss, e.g. exp(2 - y_pred*(1 + y_real))",
                                 description="expression", style=style, continuous_update=False,
                                 layout=W.Layout(width="95%"))
        self.info = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(max_width="900px"))
        self.out = W.Output()
        self.data = None
        self.losses: dict = {}
        for w in (self.alpha, self.gamma, self.epsilon, self.num_classes, self.expression,
                  *self.show.values()):
            w.observe(show_errors(self.out)(lambda _c: self.redraw()), names="value")
        self.widget = W.VBox([
            W.HBox([W.VBox([self.alpha, self.gamma]), W.VBox([self.epsilon, self.num_classes])]),
            W.HBox(list(self.show.values())), self.expression, self.info, self.image, self.out,
        ])
        show_errors(self.out)(self.redraw)()

    def current_losses(self) -> dict:
        """The loss modules for the current slider values (the ticked ones)."""
        made = {
            "CE": lambda: get_loss("ce"),
            "NGL": lambda: get_loss("ngl", alpha=self.alpha.value),
            "focal": lambda: get_loss("focal", gamma=self.gamma.value),
            "label smoothing": lambda: get_loss("label_smoothing", epsilon=self.epsilon.value),
        }
        losses = {f"{name} ({self._param(name)})" if self._param(name) else name: make()
                  for name, make in made.items() if self.show[name].value}
        text = self.expression.value.strip()
        if text:
            expr = LossExpression.parse(text)
            if "y_pred" not in expr.leaves:  # torch would only say "does not require grad"
                raise ValueError(f"expression {text!r} does not use y_pred: such a loss does not "
                                 "depend on the prediction and has no shape to draw")
            losses[short_label(expr.display(), 30)] = expr.to_module(validate=False)
        if not losses:
            raise ValueError("tick at least one loss (or type an expression) to draw")
        return losses

    def _param(self, name: str) -> str:
        return {"NGL": f"α={self.alpha.value:.4g}", "focal": f"γ={self.gamma.value:.3g}",
                "label smoothing": f"ε={self.epsilon.value:.3g}"}.get(name, "")

    def redraw(self) -> None:
        self.out.outputs = ()
        try:
            losses = self.current_losses()
            c = self.num_classes.value
            self.data = loss_shape_data(losses, num_classes=c)
            self.losses = losses
            fig = new_figure((TEXT_WIDTH, 2.4))
            plot_loss_shapes(losses, num_classes=c, axes=fig.subplots(1, 2))
            self.image.value = figure_png(fig)
        except Exception:
            # a typo must not leave the previous figure on show as if it were the new one
            self.image.value = b""
            self.data, self.losses = None, {}
            self.info.value = "<b>nothing drawn</b>: see the message below"
            raise
        opt = self.data.loc[self.data.groupby("loss_name", sort=False)["loss"].idxmin()]
        self.info.value = "optimum p<sub>t</sub>: " + ", ".join(
            f"{r.loss_name} {r.p_true:.2f}" for r in opt.itertuples())


def loss_explorer(num_classes: int = 10, alpha: float | None = None, gamma: float = 2.0,
                  epsilon: float = 0.1, expression: str = "") -> LossExplorer:
    """Build the loss-shape explorer; display ``explorer.widget``, read ``explorer.data``."""
    return LossExplorer(num_classes, alpha=alpha, gamma=gamma, epsilon=epsilon, expression=expression)
