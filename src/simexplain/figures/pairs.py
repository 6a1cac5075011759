"""Pair figures: both images, their heat-map overlays with a colour bar, the score, one row per method.

Drawn with matplotlib's object API (:class:`~matplotlib.figure.Figure` on an Agg canvas), never ``pyplot``:
nothing process-wide is switched, so figures can be made from servers and threads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..explanation import PairExplanation, normalize_maps
from ..preprocessing import Preprocessing
from .output import render_figure, save_figure

COLORMAP = "inferno"  # perceptually uniform, readable in grayscale print


def to_display(x: Tensor, preprocessing: Preprocessing) -> np.ndarray:
    """A model-input image ``3×H×W`` as an ``H×W×3`` array in [0, 1] for plotting."""
    pixels = preprocessing.to_pixels(x.detach().float().cpu()).clamp(0, 1)
    return pixels.permute(1, 2, 0).numpy()


def _display_heat(e: PairExplanation) -> tuple[np.ndarray, np.ndarray]:
    """Both maps scaled to [0, 1] for display: pixel-level maps are clipped at their 99.5th percentile so a
    few extreme gradients do not hide the rest; grid-based maps (CAM, occlusion) are min–max scaled."""
    heats = []
    for maps, grid in ((e.map1, e.grid1), (e.map2, e.grid2)):
        m = maps.detach().float().cpu()
        if grid is None:  # numpy's quantile has no input-size limit (torch.quantile stops at 2**24 values)
            top = np.quantile(m.flatten(1).numpy(), 0.995, axis=1).reshape(-1, 1, 1)
            m = m.minimum(torch.from_numpy(top).to(m.dtype))
        heats.append(normalize_maps(m)[0].numpy())
    return heats[0], heats[1]


# Layout, in inches: the figure is sized from the images so every row is exactly as tall as its tallest image.
_COLUMN = 2.4  # width of an image column
_MAX_ROW = 4.8  # tall images narrow the columns so that no row is taller than this
_GAP = 0.1  # between the columns
_BAR = 0.12  # colour-bar width
_LEFT, _RIGHT = 0.1, 0.75  # the right margin holds the colour bar's ticks and label
_TITLE = 0.35  # above each row, for the axes' titles
_SUPTITLE = 0.3
_BOTTOM = 0.1


def _aspect(image: np.ndarray) -> float:
    """Height over width of an ``H×W[×C]`` image."""
    return image.shape[0] / max(image.shape[1], 1)


def _axis(ax: Axes, image: np.ndarray, title: str, heat: np.ndarray | None = None):
    ax.imshow(image)
    artist = None
    if heat is not None:
        # The map covers its image exactly, whatever its own resolution.
        extent = (-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5)
        artist = ax.imshow(heat, cmap=COLORMAP, alpha=0.6, vmin=0.0, vmax=1.0, extent=extent)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return artist


def pair_figure(
    x1: Tensor,
    x2: Tensor,
    explanations: Sequence[PairExplanation],
    preprocessing: Preprocessing,
    *,
    index: int = 0,
    title: str | None = None,
) -> Figure:
    """The pair on top, then one row per explanation: each image with its map, and one colour bar.

    Maps are scaled per image for display (the raw values stay on the explanation). A map that belongs to
    another image than the input (Averaged Transforms' transformed view) is drawn over that image. The
    figure's height follows the images' aspect ratios: each row is as tall as its tallest image at the column
    width, so non-square images leave no blank bands. Render it with :func:`render_figure` or
    :func:`save_figure`.

    Example:
        >>> fig = pair_figure(x1, x2, [explanation], model.preprocessing)  # doctest: +SKIP
        >>> save_figure(fig, "pair.png")  # doctest: +SKIP
    """
    image1, image2 = to_display(x1[index], preprocessing), to_display(x2[index], preprocessing)
    rows = [(image1, "image 1", None, image2, "image 2", None)]
    for explanation in explanations:
        e = explanation[index].cpu()
        own1 = to_display(e.image1[0], preprocessing) if e.image1 is not None else image1
        own2 = to_display(e.image2[0], preprocessing) if e.image2 is not None else image2
        heat1, heat2 = _display_heat(e)
        score = f"   s = {e.score[0].item():.3f}" if e.score is not None else ""
        view = " (on its transformed view)" if e.image2 is not None else ""
        rows.append((own1, f"{e.method}{score}", heat1, own2, f"map 2{view}", heat2))

    aspects = [max(_aspect(row[0]), _aspect(row[3])) for row in rows]
    column = min(_COLUMN, _MAX_ROW / max(aspects))
    heights = [column * a for a in aspects]
    widths = [column, column, _BAR]
    top = _TITLE + (_SUPTITLE if title else 0.0)
    fig_width = _LEFT + sum(widths) + 2 * _GAP + _RIGHT
    fig_height = top + sum(heights) + _TITLE * (len(rows) - 1) + _BOTTOM
    fig = Figure(figsize=(fig_width, fig_height))
    FigureCanvasAgg(fig)
    # Gaps are fractions of the mean cell size in gridspec: these give the inch sizes above exactly.
    grid = fig.add_gridspec(
        len(rows),
        3,
        width_ratios=widths,
        height_ratios=heights,
        wspace=_GAP / (sum(widths) / len(widths)),
        hspace=_TITLE / (sum(heights) / len(heights)),
        left=_LEFT / fig_width,
        right=1 - _RIGHT / fig_width,
        top=1 - top / fig_height,
        bottom=_BOTTOM / fig_height,
    )
    artist = None
    for r, (own1, title1, heat1, own2, title2, heat2) in enumerate(rows):
        _axis(fig.add_subplot(grid[r, 0]), own1, title1, heat1)
        artist = _axis(fig.add_subplot(grid[r, 1]), own2, title2, heat2)
    if len(rows) > 1:
        bar = fig.colorbar(artist, cax=fig.add_subplot(grid[1:, 2]))  # the map rows only
        bar.set_label("relative importance (per map, for display)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.08 / fig_height)
    return fig


__all__ = ["COLORMAP", "pair_figure", "render_figure", "save_figure", "to_display"]
