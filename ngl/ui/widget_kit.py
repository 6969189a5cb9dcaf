"""Pieces every widget shares: errors shown in the widget, fields passed through, figures as PNG.

Callbacks run inside the kernel's event loop, where JupyterLab would swallow an exception:
:func:`show_errors` prints it into the widget's ``Output`` and :func:`show_validation` shows a
config's own error message in red. :func:`kept_fields` lists what a form passes through without
showing it. :func:`new_figure` and :func:`figure_png` draw outside pyplot, so a widget can
redraw from a worker thread and nothing is drawn twice by the inline backend.
"""

from __future__ import annotations

import functools
import html
import io
import threading
import traceback
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import ipywidgets as W
from matplotlib.figure import Figure

from ngl.io.config import describe_error

__all__ = ["error_html", "error_text", "kept_fields", "show_errors", "show_validation"]


def error_text(exc: BaseException) -> str:
    """The config's own message for ``exc``, one readable line per problem for pydantic errors."""
    return describe_error(exc)


def error_html(exc: BaseException | str) -> str:
    """A config's error message as red HTML, escaped (messages hold ``<``, ``'`` and newlines)."""
    text = exc if isinstance(exc, str) else error_text(exc)
    return f"<span style='color:#b00; white-space:pre-wrap'>{html.escape(text)}</span>"


def show_validation(status: W.HTML, build: Callable[[], object],
                    describe: Callable[[object], str]) -> BaseException | None:
    """Put ``describe(build())`` into ``status``, or the error that ``build`` raised, in red.

    The message is the config's own (``ValueError``; ``TypeError`` for a wrong type), so the
    form never needs bounds of its own that could drift from the config's validation. Returns
    the error (``None`` when valid) so a form can keep it.
    """
    try:
        value = build()
    except (ValueError, TypeError) as exc:
        status.value = error_html(exc)
        return exc
    status.value = describe(value)
    return None


# what a user's input or a missing file causes: ngl says what was wrong in its message, so the
# widget shows that one message and no traceback
USER_ERRORS = (ValueError, OSError, RuntimeError)


def report_error(out: W.Output, exc: BaseException) -> None:
    """Write ``exc`` into ``out``: one line for a user error (:data:`USER_ERRORS`), else (a bug
    in ngl) the line and the last frames, which a bug report needs."""
    if isinstance(exc, USER_ERRORS):
        out.append_stderr(f"{type(exc).__name__}: {error_text(exc)}\n")
        return
    out.append_stderr(f"{type(exc).__name__}: {exc}\n")
    out.append_stderr("".join(traceback.format_exception(exc)[-3:]))


class Background:
    """The one background thread of a widget (the search runner, the table builder).

    Whether it runs is its own "done" event, set when the work returns or raises, never
    ``Thread.is_alive()``/``join()``: on Python 3.11 an interrupt that lands in ``join()``
    marks a thread that still runs as stopped. ``.thread`` is the last thread started.
    """

    def __init__(self, name: str):
        self.name = name
        self.thread: threading.Thread | None = None
        self._done = threading.Event()

    @property
    def running(self) -> bool:
        return self.thread is not None and not self._done.is_set()

    def start(self, work: Callable[[], None], busy: str) -> threading.Thread:
        """Run ``work`` in a new thread; ``busy`` is the message when one is still running."""
        if self.running:
            raise RuntimeError(busy)
        self._done = threading.Event()
        done = self._done

        def target() -> None:
            try:
                work()
            finally:
                done.set()

        self.thread = threading.Thread(target=target, name=self.name, daemon=True)
        self.thread.start()
        return self.thread

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the work ended (True) or ``timeout`` passed (False); interruptible."""
        return self.thread is None or self._done.wait(timeout)


class InBackground:
    """``running``, ``thread`` and ``join`` of a widget whose work runs in ``self.background``."""

    background: Background

    @property
    def running(self) -> bool:
        return self.background.running

    @property
    def thread(self) -> threading.Thread | None:
        """The last thread started (None before the first start)."""
        return self.background.thread

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background work (tests, scripts)."""
        self.background.wait(timeout)


def show_errors(out: W.Output) -> Callable:
    """Decorator for callbacks: an exception is shown in ``out`` (:func:`report_error`) instead of
    vanishing."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown to the user, not swallowed
                report_error(out, exc)
                return None

        return wrapper

    return deco


# -- what a form shows and what it passes through ---------------------------------------------
def option_list(options: Iterable[Hashable], value: Hashable, note: str = "kept") -> list:
    """Dropdown options that include ``value``: one the list lacks is added (labelled), never replaced."""
    opts: list = [(str(o), o) for o in dict.fromkeys(options)]
    if value not in dict(opts).values():
        opts.append((f"{value} ({note})", value))
    return opts


def short_repr(value: Any, n: int = 60) -> str:
    """``repr(value)``, cut to ``n`` characters with an ellipsis."""
    text = repr(value)
    return text if len(text) <= n else text[: n - 1] + "…"


def kept_fields(config: Any, shown: Iterable[str], nested: Iterable[str] = ()) -> dict[str, Any]:
    """Fields of ``config`` that the form does not show and that differ from the defaults.

    Read from ``to_dict()`` so new fields are listed without the form knowing them; ``nested``
    fields (e.g. ``budget``) are listed per sub-field (``budget.optimizer``). Shown on the form
    as a read-only line, so what passes through unseen is still visible.
    """
    mine = config.to_dict()
    try:
        default = type(config)().to_dict()
    except (ValueError, TypeError):  # no default instance: list every field
        default = {}
    shown, nested = set(shown), set(nested)
    kept: dict[str, Any] = {}
    for name, value in mine.items():
        if name in nested and isinstance(value, Mapping):
            sub_default = default.get(name) if isinstance(default.get(name), Mapping) else {}
            for sub, v in value.items():
                key = f"{name}.{sub}"
                if key not in shown and (sub not in sub_default or sub_default[sub] != v):
                    kept[key] = v
        elif name not in shown and (name not in default or default[name] != value):
            kept[name] = value
    return kept


def short_label(value: Any, n: int = 40) -> str:
    """``str(value)``, cut to ``n`` characters with an ellipsis (option labels)."""
    text = str(value)
    return text if len(text) <= n else text[: n - 1] + "…"


def kept_html(kept: Mapping[str, Any]) -> str:
    """The read-only line listing :func:`kept_fields` (empty when nothing passes through unseen)."""
    if not kept:
        return ""
    items = ", ".join(f"{k}={short_repr(v)}" for k, v in kept.items())
    return f"<small>kept from the config (not on this form): <code>{html.escape(items)}</code></small>"


# -- figures drawn outside pyplot -----------------------------------------------------------------
def new_figure(figsize) -> Figure:
    """A figure outside pyplot (nothing to close, nothing drawn twice by the inline backend)."""
    return Figure(figsize=figsize, layout="constrained")


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib figure (no pyplot state involved: safe in a worker thread)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
