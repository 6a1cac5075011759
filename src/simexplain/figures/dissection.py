"""The dissection figure (the paper's Fig. 6): image 2 walking to its transformed view, above the maps of
Averaged Transforms, Input×Gradient and Smooth-Grad.

It draws what the study hands it (:class:`~simexplain.studies.dissection.DissectionView` has the two
attributes of :class:`StepsView`); figures never import studies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..explanation import PairExplanation
from ..preprocessing import Preprocessing
from .pairs import _axis, _display_heat, to_display


class StepsView(Protocol):
    """A path ``B×(K+1)×C×H×W`` (image 2, then each step towards its transformed view) and the explanations
    of the batch to draw under it, Averaged Transforms first."""

    path: Tensor
    explanations: Sequence[PairExplanation]


_PANEL = 2.0  # inches per map panel
_MAX_STEPS = 11  # path thumbnails shown at most (evenly spaced, the first and last always)
_SHORT = {
    "averaged-transforms": "Avg. Transforms",
    "input-x-gradient": "Input×Gradient",
    "smooth-grad": "Smooth-Grad",
}


def steps_figure(
    x1: Tensor,
    view: StepsView,
    preprocessing: Preprocessing,
    *,
    index: int = 0,
    title: str | None = None,
) -> Figure:
    """Top row: the path of pair ``index`` (image 2, the steps, the transformed view); below, for each method
    of ``view``, image 1 and image 2 with their maps (Averaged Transforms' second map over the transformed
    view, where it belongs). Maps are scaled per image for display.

    Example:
        >>> fig = steps_figure(x1, dissection_view(model, x1, x2, e), model.preprocessing)  # doctest: +SKIP
    """
    path = view.path[index].detach().cpu()
    steps = path.shape[0] - 1
    gaps = min(steps, _MAX_STEPS - 1) or 1
    shown = sorted({round(i * steps / gaps) for i in range(gaps + 1)})
    methods = len(view.explanations)
    width = 2 * methods * _PANEL
    thumb = width / len(shown)
    fig = Figure(figsize=(width, thumb + _PANEL + 1.0 + (0.3 if title else 0.0)))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=[thumb, _PANEL], hspace=0.12, top=0.87 if title else 0.92)
    top = grid[0].subgridspec(1, len(shown), wspace=0.05)
    for j, k in enumerate(shown):
        label = "image 2" if k == 0 else ("T(image 2)" if k == steps else f"step {k}/{steps}")
        _axis(fig.add_subplot(top[0, j]), to_display(path[k], preprocessing), label)
    bottom = grid[1].subgridspec(1, 2 * methods, wspace=0.05)
    image1 = to_display(x1[index], preprocessing)
    artist = None
    for m, explanation in enumerate(view.explanations):
        e = explanation[index].cpu()
        heat1, heat2 = _display_heat(e)
        viewed = e.image2 is not None
        own2 = to_display(e.image2[0] if viewed else path[0], preprocessing)
        guided = " (G)" if e.config.get("guided") else ""
        _axis(fig.add_subplot(bottom[0, 2 * m]), image1, f"{_SHORT.get(e.method, e.method)}{guided}", heat1)
        label = f"{'T(image 2)' if viewed else 'image 2'}, s={float(e.score[0]):.3f}"
        artist = _axis(fig.add_subplot(bottom[0, 2 * m + 1]), own2, label, heat2)
    axes = fig.axes[len(shown) :]
    bar = fig.colorbar(artist, ax=axes, fraction=0.015, pad=0.01)
    bar.set_label("relative importance", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


__all__ = ["StepsView", "steps_figure"]
