"""Figures without pyplot: one home for the matplotlib setup of every plot monohead draws.

A :class:`matplotlib.figure.Figure` is attached to the Agg canvas directly, so no pyplot state,
no GUI backend and no global figure list are involved (safe in threads, servers and tests), and
matplotlib is imported only when a figure is drawn. Used by the λ-sweep and depth figures
(:mod:`monohead.evaluate.depth_error`), the training curves (:mod:`monohead.model.train`), the
photo preview (:func:`monohead.photo.preview_png`) and the experiments' figures
(:mod:`monohead.experiments`).
"""

from __future__ import annotations

import io
from typing import Any

from . import _io

__all__ = ["new_figure", "png_bytes", "save_png"]


def new_figure(width: float, height: float, dpi: int = 100) -> Any:
    """A matplotlib ``Figure`` of ``width x height`` inches at ``dpi`` on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_png(fig: Any, path: Any) -> None:
    """Write the figure as a PNG file, atomically (:func:`monohead._io.atomic_write_bytes`)."""
    _io.atomic_write_bytes(path, png_bytes(fig))
