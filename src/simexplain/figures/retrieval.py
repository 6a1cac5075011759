"""The retrieval figure: the query, then one row per match with its rank, score and both maps."""

from __future__ import annotations

from pathlib import PurePath

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..preprocessing import Preprocessing
from .pairs import COLORMAP, _display_heat, to_display


def _show(ax, image, title: str, heat=None) -> None:
    ax.imshow(image)
    if heat is not None:
        extent = (-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5)
        ax.imshow(heat, cmap=COLORMAP, alpha=0.6, vmin=0.0, vmax=1.0, extent=extent)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def image_name(label: str, width: int = 30) -> str:
    """A gallery image's title: its file name (the full path is in the JSON), shortened in the middle when
    it is longer than ``width`` characters, so that the start and the suffix stay.

    Example:
        >>> image_name("/data/gallery/cat.jpg"), image_name("gallery[3]")
        ('cat.jpg', 'gallery[3]')
        >>> image_name("a_very_long_file_name_from_some_camera_0001.jpg")
        'a_very_long_fi…camera_0001.jpg'
    """
    name = PurePath(label).name or label
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[-(width - 1 - head) :]


def retrieval_figure(result, preprocessing: Preprocessing, *, title: str | None = None) -> Figure:
    """Top row: the query as it is; then per match (rank, score, the gallery image's file name): the
    query with its map for that match, and the match with its own map. Maps are scaled per image for display.

    Example:
        >>> result = explain_top_k(model, query, gallery, 3)  # doctest: +SKIP
        >>> fig = retrieval_figure(result, model.preprocessing)  # doctest: +SKIP
    """
    k = len(result.indices)
    fig = Figure(figsize=(4.6, 2.3 * (k + 1)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(k + 1, 2, squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.3})
    query = to_display(result.query[0], preprocessing)
    _show(axes[0, 0], query, "query")
    axes[0, 1].axis("off")
    for rank in range(k):
        e = result.explanation[rank].cpu()
        heat1, heat2 = _display_heat(e)
        label = image_name(result.labels[int(result.indices[rank])])
        score = float(result.scores[rank])
        _show(axes[rank + 1, 0], query, f"#{rank + 1}  s = {score:.3f}: query map", heat1)
        _show(axes[rank + 1, 1], to_display(result.matches[rank], preprocessing), label, heat2)
    fig.suptitle(title or f"{result.explanation.method}: top {k} of {len(result.labels)}", fontsize=10)
    return fig


def margin_figure(query, better, worse, margin, preprocessing: Preprocessing, *, index: int = 0) -> Figure:
    """The triplet of :func:`simexplain.explain_margin`: query, better and worse match, each with its map of
    the margin ``s(q, better) − s(q, worse)`` (scaled per image for display).

    Example:
        >>> m = simexplain.explain_margin(model, q, b, w, "input-x-gradient")  # doctest: +SKIP
        >>> fig = margin_figure(q, b, w, m, model.preprocessing)  # doctest: +SKIP
    """
    from ..explanation import normalize_maps

    fig = Figure(figsize=(7.0, 2.9))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.05})
    rows = (
        (query, margin.map_query, "query"),
        (better, margin.map_better, f"better  s = {float(margin.score_better[index]):.3f}"),
        (worse, margin.map_worse, f"worse  s = {float(margin.score_worse[index]):.3f}"),
    )
    for ax, (image, maps, title) in zip(axes, rows):
        heat = normalize_maps(maps[index : index + 1].detach().float().cpu())[0].numpy()
        _show(ax, to_display(image[index], preprocessing), title, heat)
    fig.suptitle(f"{margin.method}: margin {float(margin.margin[index]):.3f}", fontsize=10)
    return fig


__all__ = ["image_name", "margin_figure", "retrieval_figure"]
