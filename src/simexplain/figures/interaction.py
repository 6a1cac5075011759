"""Second-order figures: the strongest patch pairs linked across the two images, and one point's match.

Drawn with matplotlib's object API, like every figure here (:mod:`simexplain.figures.pairs`).
"""

from __future__ import annotations

from typing import NamedTuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import ConnectionPatch
from torch import Tensor

from ..errors import SimexplainError
from ..explanation import PairExplanation, normalize_maps
from ..preprocessing import Preprocessing
from .pairs import COLORMAP, to_display

LINK_COLOR = "#31c6f7"


class Link(NamedTuple):
    """One patch pair: the cell of image 1, the cell of image 2 (grid rows and columns) and ``I`` there."""

    cell1: tuple[int, int]
    cell2: tuple[int, int]
    value: float


def strongest_links(interaction: Tensor, top: int) -> list[Link]:
    """The ``top`` largest entries of one pair's ``h1×w1×h2×w2`` interaction, strongest first.

    Example:
        >>> import torch
        >>> grid = torch.zeros(2, 2, 2, 2)
        >>> grid[1, 0, 0, 1] = 3.0
        >>> strongest_links(grid, 1)
        [Link(cell1=(1, 0), cell2=(0, 1), value=3.0)]
    """
    h1, w1, h2, w2 = interaction.shape
    values, flat = interaction.flatten().topk(min(top, interaction.numel()))
    links = []
    for value, index in zip(values.tolist(), flat.tolist()):
        first, second = divmod(index, h2 * w2)
        links.append(Link(divmod(first, w1), divmod(second, w2), value))
    return links


def cell_centre(
    cell: tuple[int, int], grid: tuple[int, int], image_hw: tuple[int, int]
) -> tuple[float, float]:
    """The pixel ``(x, y)`` at the centre of a grid cell, in imshow's data coordinates."""
    return (
        (cell[1] + 0.5) * image_hw[1] / grid[1] - 0.5,
        (cell[0] + 0.5) * image_hw[0] / grid[0] - 0.5,
    )


def _bare(ax, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def interaction_figure(
    x1: Tensor,
    x2: Tensor,
    explanation: PairExplanation,
    preprocessing: Preprocessing,
    *,
    index: int = 0,
    top: int = 10,
    point: tuple[int, tuple[int, int]] | None = None,
    title: str | None = None,
) -> Figure:
    """Top row: both images with lines linking the ``top`` strongest patch pairs (width by strength). Bottom
    row: a point of one image (``point = (image, (y, x))``; default the centre of image 1's strongest cell)
    and its :meth:`~simexplain.PairExplanation.match` map over the other image.

    Example:
        >>> fig = interaction_figure(x1, x2, e, model.preprocessing, point=(1, (40, 100)))  # doctest: +SKIP
    """
    e = explanation[index].cpu()
    if e.interaction is None:
        raise SimexplainError(f"method {e.method!r} keeps no interaction; use pair-interaction")
    interaction = e.interaction[0].float()
    images = [to_display(x1[index], preprocessing), to_display(x2[index], preprocessing)]
    sizes = [image.shape[:2] for image in images]
    grids = [tuple(interaction.shape[:2]), tuple(interaction.shape[2:])]
    if point is None:
        row = int(e.grid1[0].flatten().argmax())
        cell = divmod(row, grids[0][1])
        x, y = cell_centre(cell, grids[0], sizes[0])
        point = (1, (int(round(y)), int(round(x))))
    which, (py, px) = point
    heat = normalize_maps(e.match((py, px), image=which))[0].numpy()

    fig = Figure(figsize=(6.0, 6.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, gridspec_kw={"wspace": 0.08, "hspace": 0.2})
    score = f"s = {e.score[0].item():.3f}" if e.score is not None else ""
    for column in range(2):
        axes[0, column].imshow(images[column])
        _bare(axes[0, column], f"image {column + 1}" + (f"   {score}" if column == 0 and score else ""))
    links = [link for link in strongest_links(interaction, top) if link.value > 0]
    # Widths spread over the shown links' range: the top values are often close to each other.
    low = min((link.value for link in links), default=0.0)
    span = max((link.value for link in links), default=1.0) - low
    for link in links:
        line = ConnectionPatch(
            xyA=cell_centre(link.cell1, grids[0], sizes[0]),
            coordsA=axes[0, 0].transData,
            xyB=cell_centre(link.cell2, grids[1], sizes[1]),
            coordsB=axes[0, 1].transData,
            color=LINK_COLOR,
            linewidth=0.6 + 2.8 * ((link.value - low) / span if span > 0 else 1.0),
            alpha=0.85,
        )
        fig.add_artist(line)
    own, other = (0, 1) if which == 1 else (1, 0)
    axes[1, own].imshow(images[own])
    axes[1, own].plot([px], [py], marker="+", markersize=14, mew=2.5, color=LINK_COLOR)
    _bare(axes[1, own], f"point (y={py}, x={px}) of image {which}")
    axes[1, other].imshow(images[other])
    extent = (-0.5, sizes[other][1] - 0.5, sizes[other][0] - 0.5, -0.5)
    axes[1, other].imshow(heat, cmap=COLORMAP, alpha=0.6, vmin=0.0, vmax=1.0, extent=extent)
    _bare(axes[1, other], f"its match on image {other + 1}")
    fig.suptitle(title or f"{e.method}: top {len(links)} patch pairs", fontsize=11)
    return fig


__all__ = ["Link", "cell_centre", "interaction_figure", "strongest_links"]
