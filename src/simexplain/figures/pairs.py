"""Pair figures: both images, their heat-map overlays with a colour bar, the score, one row per method."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: the command line and servers have no screen

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from ..explanation import PairExplanation, normalize_maps
from ..preprocessing import Preprocessing

COLORMAP = "inferno"  # perceptually uniform, readable in grayscale print


def to_display(x: Tensor, preprocessing: Preprocessing) -> np.ndarray:
    """A model-input image ``3×H×W`` as an ``H×W×3`` array in [0, 1] for plotting."""
    pixels = preprocessing.to_pixels(x.detach().float().cpu()).clamp(0, 1)
    return pixels.permute(1, 2, 0).numpy()


def _overlay(ax: plt.Axes, image: np.ndarray, heat: np.ndarray, title: str):
    ax.imshow(image)
    artist = ax.imshow(heat, cmap=COLORMAP, alpha=0.55, vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
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
    """One row per explanation: image 1 with its map, image 2 with its map, and a shared colour bar.

    Maps are min–max scaled per image for display (the raw values stay on the explanation); the row title
    gives the method and the similarity score. Images the maps belong to (e.g. Averaged Transforms' transformed
    view) are shown instead of the inputs when the explanation carries them.

    Example:
        >>> fig = pair_figure(x1, x2, [explanation], model.preprocessing)  # doctest: +SKIP
        >>> fig.savefig("pair.png")  # doctest: +SKIP
    """
    rows = max(1, len(explanations))
    fig, axes = plt.subplots(rows, 4, figsize=(10.5, 2.7 * rows + 0.5), squeeze=False)
    image1, image2 = to_display(x1[index], preprocessing), to_display(x2[index], preprocessing)
    artist = None
    for row, explanation in enumerate(explanations):
        e = explanation[index].cpu()
        own1 = to_display(e.image1[0], preprocessing) if e.image1 is not None else image1
        own2 = to_display(e.image2[0], preprocessing) if e.image2 is not None else image2
        heat1 = normalize_maps(e.map1.float())[0].numpy()
        heat2 = normalize_maps(e.map2.float())[0].numpy()
        score = f"s = {e.score[0].item():.3f}" if e.score is not None else ""
        label2 = "image 2 (transformed view)" if e.image2 is not None else "image 2"
        for col, (image, label) in enumerate(((own1, "image 1"), (own2, label2))):
            axes[row, col].imshow(image)
            # Column titles on the first row, and on any row that shows its own transformed view.
            axes[row, col].set_title(label if row == 0 or e.image2 is not None else "", fontsize=9)
            axes[row, col].axis("off")
        _overlay(axes[row, 2], own1, heat1, f"{e.method}: map 1")
        artist = _overlay(axes[row, 3], own2, heat2, f"map 2   {score}")
        axes[row, 0].text(-0.08, 0.5, e.method, transform=axes[row, 0].transAxes, rotation=90,
                          va="center", ha="right", fontsize=9)
    if artist is not None:
        bar = fig.colorbar(artist, ax=axes[:, 2:].ravel().tolist(), shrink=0.8, pad=0.02)
        bar.set_label("relative importance (per-map min–max)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
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
