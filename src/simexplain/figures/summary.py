"""Study summary figures: the summary-group heatmap (the paper's Fig. 14) and the group scores against a
downstream accuracy (its Fig. 15), drawn through matplotlib's object API (no pyplot).

Both take plain nested mappings, so they draw numbers from a report, a notebook or a test alike; the numbers
themselves (means, Pearson's r) are computed by the studies (:mod:`simexplain.studies.statistics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # a bare Figure renders with Agg and touches no pyplot state

Scores = Mapping[str, Mapping[str, Mapping[str, float]]]

# How to read the heatmap, the caption's first line (the group definitions follow it).
CAPTION = (
    "Each cell: a method's group score in one model, from its metric means over pairs; higher is better, "
    "bold: the model's best method."
)


def _union(keys: Sequence[Sequence[str]]) -> list[str]:
    """Every key once, in order of first appearance."""
    return list(dict.fromkeys(key for group in keys for key in group))


def summary_heatmap(
    scores: Scores, *, definitions: Sequence[str] = (), cmap: str = "viridis", digits: int = 3
) -> Figure:
    """The summary groups as a heatmap: one panel per group (G1, G2, G3), rows = methods, columns = models,
    each cell annotated with its value, the best method of each model's column in bold, one colour bar per
    panel (the groups have different ranges). Missing cells are grey. With ``definitions`` (one line per
    group, e.g. :attr:`simexplain.metrics.groups.SummaryGroup.definition`), a caption under the panels says
    how to read the cells and defines the groups.

    ``scores`` maps model → method (row name) → group → score; rows, models and groups keep the order in which
    they first appear.

    Example:
        >>> fig = summary_heatmap({
        ...     "simclr": {"Pair Grad-CAM": {"G1": 0.4, "G2": 0.7}, "Int-CAM max": {"G1": 0.5}},
        ...     "dino": {"Pair Grad-CAM": {"G1": 0.3, "G2": 0.6}},
        ... }, definitions=["G1 = mean(SI, CI)", "G2 = 1 − mean(SD, CD)"])
        >>> [ax.get_title() for ax in fig.axes[:2]], fig.get_supxlabel().splitlines()[-1]
        (['G1', 'G2'], 'G2 = 1 − mean(SD, CD)')
    """
    models = list(scores)
    rows = _union([list(methods) for methods in scores.values()])
    groups = _union([list(g) for methods in scores.values() for g in methods.values()])
    values = np.full((len(groups), len(rows), len(models)), np.nan)
    for k, model in enumerate(models):
        for i, row in enumerate(rows):
            for g, group in enumerate(groups):
                value = scores[model].get(row, {}).get(group)
                values[g, i, k] = np.nan if value is None else value
    width = 2.2 + len(groups) * (1.4 + 0.75 * len(models))
    fig = Figure(figsize=(width, 1.4 + 0.3 * len(rows)), layout="constrained")
    axes = fig.subplots(1, max(len(groups), 1), sharey=True, squeeze=False)[0]
    for g, (ax, group) in enumerate(zip(axes, groups)):
        _panel(fig, ax, values[g], models, group, cmap, digits)
    axes[0].set_yticks(range(len(rows)), rows)
    if definitions:
        caption = [CAPTION, *definitions]
        fig.supxlabel("\n".join(caption), x=0.01, ha="left", multialignment="left", fontsize=8)
    return fig


def _panel(fig: Figure, ax, grid: np.ndarray, models: list[str], group: str, cmap: str, digits: int) -> None:
    """One group's rows × models, annotated, with its colour bar."""
    colours = matplotlib.colormaps[cmap].with_extremes(
        bad="#d9d9d9"
    )  # a copy: the registered map stays as is
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=colours, aspect="auto", interpolation="nearest")
    ax.set_title(group)
    ax.set_xticks(range(len(models)), models, rotation=30 if len(models) > 2 else 0, ha="right")
    ax.tick_params(length=0)
    low, high = image.get_clim()
    best = [column[np.isfinite(column)].max(initial=-np.inf) for column in grid.T]
    for (i, k), value in np.ndenumerate(grid):
        if not np.isfinite(value):
            ax.text(k, i, "—", ha="center", va="center", fontsize=7, color="#555555")
            continue
        light = high > low and (value - low) / (high - low) > 0.6  # viridis is light at the top
        ax.text(
            k,
            i,
            f"{value:.{digits}f}",
            ha="center",
            va="center",
            fontsize=7,
            color="black" if light else "white",
            fontweight="bold" if value == best[k] else "normal",
        )
    fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)


def correlation_figure(
    scores: Scores, accuracy: Mapping[str, float], r: Mapping[str, Mapping[str, float]]
) -> Figure:
    """Group scores against a downstream accuracy (the paper's Fig. 15): one panel per (group, family), a
    point per model, a least-squares line, and Pearson's r in the panel's title.

    ``scores`` maps family → group → model → score; ``accuracy`` maps model → accuracy (a fraction, drawn in
    percent); ``r`` maps family → group → Pearson's r of the panel (NaN or missing: undefined, no line).
    Models without an accuracy are left out.

    Example:
        >>> fig = correlation_figure({"saliency": {"G1": {"a": 0.3, "b": 0.4, "c": 0.45}}},
        ...                          {"a": 0.6, "b": 0.7, "c": 0.72}, {"saliency": {"G1": 0.9843}})
        >>> fig.axes[0].get_title()
        'saliency · G1: r = 0.984'
    """
    families = list(scores)
    groups = _union([list(by_group) for by_group in scores.values()])
    fig = Figure(
        figsize=(1 + 3.2 * max(len(families), 1), 0.6 + 2.8 * max(len(groups), 1)), layout="constrained"
    )
    axes = fig.subplots(max(len(groups), 1), max(len(families), 1), squeeze=False)
    for g, group in enumerate(groups):
        for f, family in enumerate(families):
            points = {m: s for m, s in scores[family].get(group, {}).items() if m in accuracy}
            _scatter(axes[g][f], points, accuracy, r.get(family, {}).get(group, np.nan), (family, group))
    return fig


def _scatter(
    ax, points: Mapping[str, float], accuracy: Mapping[str, float], r: float, panel: tuple[str, str]
) -> None:
    """One (group, family) panel: models as labelled points, the least-squares line and r."""
    family, group = panel
    models = [m for m, s in points.items() if s is not None and np.isfinite(s)]
    x = np.array([points[m] for m in models], dtype=np.float64)
    y = np.array([100 * accuracy[m] for m in models], dtype=np.float64)
    ax.scatter(x, y, color="tab:blue", zorder=3)
    for model, xi, yi in zip(models, x, y):
        ax.annotate(model, (xi, yi), xytext=(4, 3), textcoords="offset points", fontsize=7)
    if np.isfinite(r):
        slope, intercept = np.polyfit(x, y, 1)
        line = np.array([x.min(), x.max()])
        ax.plot(line, slope * line + intercept, color="tab:orange", linewidth=1)
    ax.set_title(f"{family} · {group}: r = {r:.3f}" if np.isfinite(r) else f"{family} · {group}: r undefined")
    ax.set_xlabel(f"{group} score (mean over the family's methods)")
    ax.set_ylabel("downstream accuracy (%)")
    ax.grid(alpha=0.3)


__all__ = ["correlation_figure", "summary_heatmap"]
