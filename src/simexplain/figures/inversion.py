"""The feature-inversion figure (the paper's appendix Fig. 19): the image, then one inversion per layer.

It draws what the study hands it (:class:`~simexplain.studies.inversion.Inversion` has the two attributes of
:class:`LayerImages`); figures never import studies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from matplotlib.figure import Figure  # a bare Figure renders with Agg and touches no pyplot state
from torch import Tensor

from ..errors import SimexplainError


class LayerImages(Protocol):
    """One model's row: ``images`` (``L×3×H×W`` pixels in [0, 1]) and the ``layers`` they invert."""

    images: Tensor | Sequence[Tensor]
    layers: Sequence[str]


def _display(pixels: Tensor):
    """A ``3×H×W`` (or ``1×3×H×W``) pixel tensor as an ``H×W×3`` array in [0, 1] for imshow."""
    if pixels.dim() == 4:
        pixels = pixels[0]
    return pixels.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def inversion_figure(
    image_pixels: Tensor, inversions: Mapping[str, LayerImages], *, size: float = 2.0
) -> Figure:
    """One row per model: ``image_pixels`` (``3×H×W`` in [0, 1]), then its inversion at each layer, titled
    with the layer name; the model's name labels the row. Save it with
    :func:`simexplain.figures.output.save_figure`.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> from simexplain.studies.inversion import invert_features
        >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten()))
        >>> x = torch.rand(1, 3, 8, 8)
        >>> result = invert_features(model, x, ["0", "1"], iterations=2, lr=10.0)
        >>> len(inversion_figure(x[0], {"toy": result}).axes)
        3
    """
    if not inversions:
        raise SimexplainError("inversion_figure needs at least one model's inversions")
    columns = 1 + max(len(result.layers) for result in inversions.values())
    figure = Figure(figsize=(size * columns, size * len(inversions) + 0.3))
    for row, (name, result) in enumerate(inversions.items()):
        axis = figure.add_subplot(len(inversions), columns, row * columns + 1)
        axis.imshow(_display(image_pixels))
        axis.set_title("image", fontsize=9)
        axis.set_ylabel(name, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
        for column, (layer, inverted) in enumerate(zip(result.layers, result.images), start=2):
            axis = figure.add_subplot(len(inversions), columns, row * columns + column)
            axis.imshow(_display(inverted))
            axis.set_title(layer, fontsize=9)
            axis.axis("off")
    figure.tight_layout()
    return figure


__all__ = ["LayerImages", "inversion_figure"]
