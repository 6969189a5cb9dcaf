"""Show a paper-size figure large in a notebook, without changing the file that is exported.

Paper figures are 3.4 or 7 inches wide (:data:`ngl.ui.COLUMN_WIDTH`, :data:`ngl.ui.TEXT_WIDTH`);
at the inline backend's 100 dpi a column figure is 340 px in a JupyterLab column of 1,300 px,
with legends too small to read. :func:`show_inline` renders the same figure (same size in inches,
same layout, so what you see is what :func:`ngl.ui.save_figure` wrote) at a higher dpi and
displays that image.
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
from IPython.display import Image, display
from matplotlib.figure import Figure

__all__ = ["show_inline"]

INLINE_DPI = 220  # a 3.4-inch column figure -> 748 px, about half a JupyterLab column
MAX_INLINE_PX = 1200  # a 7-inch text-width figure is capped here, inside a 1,300 px column


def inline_width_px(fig: Figure, width_px: int | None = None, dpi: float = INLINE_DPI,
                    max_px: int = MAX_INLINE_PX) -> int:
    """The width in pixels :func:`show_inline` draws ``fig`` at: ``width_px``, else ``dpi`` per
    inch of the figure capped at ``max_px`` (text-width figures must still fit the column)."""
    if width_px is not None:
        if width_px < 1:
            raise ValueError(f"width_px={width_px!r} must be a positive number of pixels")
        return int(width_px)
    return int(min(max_px, round(fig.get_figwidth() * dpi)))


def show_inline(fig: Figure, width_px: int | None = None, close: bool = True) -> None:
    """Display ``fig`` in the notebook ``width_px`` pixels wide (default: see :func:`inline_width_px`).

    The figure is rendered at the dpi that gives that width, so fonts and lines scale with it and
    the image is sharp, not stretched; its size in inches is untouched, so call
    :func:`ngl.ui.save_figure` before or after and the files stay at paper size. ``close`` closes
    the figure in pyplot so that the inline backend does not show it a second time, small, at the
    end of the cell. Returns nothing, so a last-line call does not display twice.
    """
    px = inline_width_px(fig, width_px)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=px / fig.get_figwidth())
    display(Image(data=buf.getvalue(), format="png", width=px))
    if close:
        plt.close(fig)
