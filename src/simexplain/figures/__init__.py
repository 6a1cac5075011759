"""Figures: pair overlays with colour bars and scores (``pairs``), study figures (``sanity``), and PNG/SVG
bytes and files (``output``), all through matplotlib's object API (never ``pyplot``)."""

from .output import render_figure, save_figure
from .pairs import pair_figure

__all__ = ["pair_figure", "render_figure", "save_figure"]
