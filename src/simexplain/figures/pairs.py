"""Pair figures: both images, their heat-map overlays with a colour bar, the score, one row per method."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: the command line and servers have no screen

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from ..explanation import PairExplanation, normalize_maps
from ..preprocessing import Preprocessing

COLORMAP = "inferno"  # perceptually uniform, readable in grayscale print


def to_display(x: Tensor, preprocessing: Preprocessing) -> np.ndarray:
    """A model-input image ``3×H×W`` as an ``H×W×3`` array in [0, 1] for plotting."""
    pixels = preprocessing.to_pixels(x.detach().float().cpu()).clamp(0, 1)
    return pixels.permute(1, 2, 0).numpy()


def _display_heat(e: PairExplanation) -> tuple[np.ndarray, np.ndarray]:
    """Both maps scaled to [0, 1] for display: pixel-level maps are clipped at their 99.5th percentile so a few
    extreme gradients do not hide the rest; grid-based maps (CAM, occlusion) are min–max scaled."""
    heats = []
    for maps, grid in ((e.map1, e.grid1), (e.map2, e.grid2)):
        m = maps.float()
        if grid is None:
            top = torch.quantile(m.flatten(1), 0.995, dim=1).view(-1, 1, 1)
            m = torch.minimum(m, top)
        heats.append(normalize_maps(m)[0].numpy())
    return heats[0], heats[1]


def _axis(ax: plt.Axes, image: np.ndarray, title: str, heat: np.ndarray | None = None):
    ax.imshow(image)
    artist = None
    if heat is not None:
        artist = ax.imshow(heat, cmap=COLORMAP, alpha=0.6, vmin=0.0, vmax=1.0)
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
) -> plt.Figure:
    """The pair on top, then one row per explanation: each image with its map, and one colour bar.

    Maps are scaled per image for display (the raw values stay on the explanation). A map that belongs to
    another image than the input (Averaged Transforms' transformed view) is drawn over that image.

    Example:
        >>> fig = pair_figure(x1, x2, [explanation], model.preprocessing)  # doctest: +SKIP
        >>> save_figure(fig, "pair.png")  # doctest: +SKIP
    """
    rows = 1 + len(explanations)
    height = 3.0 * rows + 0.4
    fig = plt.figure(figsize=(6.4, height))
    # A fixed margin in inches above the grid, so the title sits close to the images at any number of rows.
    grid = fig.add_gridspec(
        rows,
        3,
        width_ratios=[1, 1, 0.05],
        wspace=0.05,
        hspace=0.25,
        top=1 - 0.6 / height,
        bottom=0.1 / height,
    )
    image1, image2 = to_display(x1[index], preprocessing), to_display(x2[index], preprocessing)
    _axis(fig.add_subplot(grid[0, 0]), image1, "image 1")
    _axis(fig.add_subplot(grid[0, 1]), image2, "image 2")
    artist = None
    for row, explanation in enumerate(explanations, start=1):
        e = explanation[index].cpu()
        own1 = to_display(e.image1[0], preprocessing) if e.image1 is not None else image1
        own2 = to_display(e.image2[0], preprocessing) if e.image2 is not None else image2
        heat1, heat2 = _display_heat(e)
        score = f"   s = {e.score[0].item():.3f}" if e.score is not None else ""
        view = " (on its transformed view)" if e.image2 is not None else ""
        ax1 = fig.add_subplot(grid[row, 0])
        _axis(ax1, own1, f"{e.method}{score}", heat1)
        artist = _axis(fig.add_subplot(grid[row, 1]), own2, f"map 2{view}", heat2)
    if artist is not None:
        bar = fig.colorbar(artist, cax=fig.add_subplot(grid[1:, 2]))
        bar.set_label("relative importance (per map, for display)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.15 / height)
    return fig


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> list[str]:
    """Save as the path's format (PNG or SVG); a PNG also gets an SVG twin. Returns the written paths."""
    path = os.fspath(path)
    root, ext = os.path.splitext(path)
    ext = ext.lower() or ".png"
    written = [root + ext]
    fig.savefig(written[0], dpi=130, bbox_inches="tight")
    if ext == ".png":
        written.append(root + ".svg")
        fig.savefig(written[1], bbox_inches="tight")
    plt.close(fig)
    return written


__all__ = ["COLORMAP", "pair_figure", "save_figure", "to_display"]
