"""Image–text figures: per method, the image with its map, the caption with each word coloured by its score,
and, for ``pair-interaction``, lines from the strongest regions to their words.

Drawn with matplotlib's object API, like every figure here (:mod:`simexplain.figures.pairs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import ConnectionPatch
from torch import Tensor

from ..explanation import normalize_maps
from ..methods.text_explanation import ImageTextExplanation
from ..preprocessing import Preprocessing
from .interaction import LINK_COLOR, cell_centre
from .pairs import COLORMAP, to_display

WORD_COLORMAP = "RdBu_r"  # diverging: blue lowers the score, red raises it, white is zero
_WORDS_PER_LINE = 6


def word_colors(scores: Tensor) -> list[tuple[float, float, float, float]]:
    """One RGBA colour per word score, on a diverging scale symmetric around zero (the largest |score| at
    either end).

    Example:
        >>> [round(c[0], 2) for c in word_colors(torch.tensor([1.0, 0.0, -1.0]))]
        [0.4, 0.97, 0.02]
    """
    scale = float(scores.abs().max()) or 1.0
    cmap = colormaps[WORD_COLORMAP]
    return [tuple(float(v) for v in cmap(0.5 + 0.5 * float(s) / scale)) for s in scores]


def word_positions(count: int) -> list[tuple[float, float]]:
    """Where each of ``count`` words sits in the caption's axes (``x``, ``y`` in [0, 1]): lines of six."""
    lines = max(1, -(-count // _WORDS_PER_LINE))
    return [
        ((i % _WORDS_PER_LINE + 0.5) / _WORDS_PER_LINE, 1 - (i // _WORDS_PER_LINE + 0.5) / lines)
        for i in range(count)
    ]


def region_word_links(e: ImageTextExplanation, top: int) -> list[tuple[tuple[int, int], int, float]]:
    """The ``top`` strongest (patch, word) entries of the first pair's interaction, merged per word:
    ``(cell, word, value)``, strongest first."""
    interaction = e.interaction[0]
    h, w, tokens = interaction.shape
    words = e.tokens.word_ids[0]
    onehot = torch.zeros(tokens, len(e.words[0]), dtype=interaction.dtype)
    for t, word in enumerate(words):
        if word is not None:
            onehot[t, word] = 1
    per_word = (interaction.reshape(h * w, tokens) @ onehot).flatten()
    values, flat = per_word.topk(min(top, per_word.numel()))
    count = len(e.words[0])
    return [(divmod(i // count, w), i % count, v) for v, i in zip(values.tolist(), flat.tolist())]


def image_text_figure(
    x: Tensor,
    explanations: Sequence[ImageTextExplanation],
    preprocessing: Preprocessing,
    *,
    index: int = 0,
    title: str | None = None,
    top: int = 3,
) -> Figure:
    """One row per explanation of pair ``index``: the image with the method's map (min–max scaled for
    display), the caption with its words coloured by their scores, and, when the method keeps a patches ×
    tokens matrix, lines from its ``top`` strongest regions to their words.

    Example:
        >>> fig = image_text_figure(x, [e], model.preprocessing)  # doctest: +SKIP
    """
    image = to_display(x[index], preprocessing)
    rows = len(explanations)
    fig = Figure(figsize=(7.0, 2.6 * rows + (0.4 if title else 0.0)))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, 2, width_ratios=(1.0, 1.6), wspace=0.05, hspace=0.35)
    for r, explanation in enumerate(explanations):
        e = explanation[index].cpu()
        picture, caption = fig.add_subplot(grid[r, 0]), fig.add_subplot(grid[r, 1])
        own = to_display(e.image1[0], preprocessing) if e.image1 is not None else image
        picture.imshow(own)
        if e.map1 is not None:
            extent = (-0.5, own.shape[1] - 0.5, own.shape[0] - 0.5, -0.5)
            heat = normalize_maps(e.map1.float())[0].numpy()
            picture.imshow(heat, cmap=COLORMAP, alpha=0.6, vmin=0.0, vmax=1.0, extent=extent)
        score = f"   s = {e.score[0].item():.3f}" if e.score is not None else ""
        picture.set_title(f"{e.method}{score}", fontsize=9)
        picture.set_xticks([])
        picture.set_yticks([])
        positions = _caption(caption, e)
        if e.interaction is not None and e.token_scores is not None:
            _links(fig, picture, caption, e, positions, own.shape[:2], top)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _caption(ax, e: ImageTextExplanation) -> list[tuple[float, float]]:
    """The words of the first pair's text, coloured by their scores (grey without word scores)."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    words = e.words[0]
    positions = word_positions(len(words))
    scores = e.word_scores[0] if e.token_scores is not None else None
    colors = word_colors(scores) if scores is not None else [(0.9, 0.9, 0.9, 1.0)] * len(words)
    for word, (px, py), color in zip(words, positions, colors):
        ink = "white" if 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] < 0.5 else "black"
        box = {"facecolor": color, "pad": 2}
        ax.text(px, py, word, ha="center", va="center", fontsize=9, color=ink, bbox=box)
    note = "word scores (red raises the score)" if scores is not None else "no word scores for this method"
    ax.set_title(note, fontsize=8)
    return positions


def _links(fig: Figure, picture, caption, e, positions, image_hw: tuple[int, int], top: int) -> None:
    grid = tuple(e.interaction.shape[1:3])
    for cell, word, value in region_word_links(e, top):
        if value <= 0:
            continue
        link = ConnectionPatch(
            xyA=cell_centre(cell, grid, image_hw),
            coordsA=picture.transData,
            xyB=positions[word],
            coordsB=caption.transData,
            color=LINK_COLOR,
            linewidth=1.2,
        )
        fig.add_artist(link)
        picture.plot(*cell_centre(cell, grid, image_hw), "o", color=LINK_COLOR, markersize=4)


__all__ = ["image_text_figure", "region_word_links", "word_colors", "word_positions"]
