"""Figures to bytes and files through matplotlib's object API: no ``pyplot``, no process-wide backend.

A :class:`matplotlib.figure.Figure` renders itself with the canvas its format needs (Agg for PNG, the SVG
backend for SVG), so drawing and saving are safe from servers and threads and leave pyplot's state alone.
"""

from __future__ import annotations

import io
import os

from matplotlib.figure import Figure

from ..errors import SimexplainError


def render_figure(fig: Figure, format: str = "png", dpi: float | None = 130, *, tight: bool = True) -> bytes:
    """The figure encoded as ``format`` (``"png"``, ``"svg"``, or another format matplotlib writes).

    ``dpi`` sets a raster format's resolution (``None``: the figure's own); ``tight`` trims the margins to the
    drawn content.

    Example:
        >>> from matplotlib.figure import Figure
        >>> fig = Figure(figsize=(1, 1))
        >>> render_figure(fig, "png")[:8]
        b'\\x89PNG\\r\\n\\x1a\\n'
    """
    fmt = str(format).lower().lstrip(".")
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise SimexplainError(f"cannot write a figure as {fmt!r} (formats: {', '.join(sorted(supported))})")
    buffer = io.BytesIO()
    fig.savefig(
        buffer, format=fmt, dpi=fig.dpi if dpi is None else dpi, bbox_inches="tight" if tight else None
    )
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: float | None = 130) -> list[str]:
    """Save as the path's format (PNG without a suffix); a PNG also gets an SVG twin.

    Returns the written paths.

    Example:
        >>> fig = pair_figure(x1, x2, [explanation], model.preprocessing)  # doctest: +SKIP
        >>> save_figure(fig, "pair.png")  # doctest: +SKIP
        ['pair.png', 'pair.svg']
    """
    root, ext = os.path.splitext(os.fspath(path))
    ext = ext.lower() or ".png"
    formats = [ext[1:], "svg"] if ext == ".png" else [ext[1:]]
    encoded = [render_figure(fig, fmt, dpi) for fmt in formats]  # all rendered before any file is written
    written = []
    for fmt, data in zip(formats, encoded):
        target = f"{root}.{fmt}"
        with open(target, "wb") as file:
            file.write(data)
        written.append(target)
    return written


__all__ = ["render_figure", "save_figure"]
