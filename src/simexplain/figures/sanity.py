"""The sanity-check cascade figure (the paper's Fig. 13): maps as the model's layers are randomised."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from matplotlib.figure import Figure  # a bare Figure renders with Agg and touches no pyplot state
from torch import Tensor

from ..explanation import normalize_maps
from ..metrics.sanity import SanityResult
from .output import render_figure


def _display(image: Tensor, result: SanityResult) -> Tensor:
    """A model-input image as H×W×3 in [0, 1] for imshow."""
    if result.preprocessing is not None:
        pixels = result.preprocessing.to_pixels(image.double())
    else:
        pixels = normalize_maps(image.double().unsqueeze(0)).squeeze(0)
    return pixels.clamp(0, 1).permute(1, 2, 0)


def _save(figure: Figure, path: str | Path | None) -> None:
    """Write ``figure`` to ``path`` if given (format from the suffix, PNG without one; folders made)."""
    if path is not None:
        path = Path(path)
        data = render_figure(figure, path.suffix.lstrip(".").lower() or "png", dpi=None, tight=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def sanity_figure(
    results: SanityResult | Mapping[str, SanityResult],
    path: str | Path | None = None,
    *,
    pair: int = 0,
    every: int = 1,
    cmap: str = "jet",
    dpi: int = 120,
) -> Figure:
    """Grid of the cascade: for each method, one row per image; columns = the image, the original map, then
    the maps after each randomised layer (every ``every``-th kept step, the last one always), each titled with
    the layer and its Spearman correlation with the original map. Saved to ``path`` (``.png`` or ``.svg``) if
    given.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> from simexplain.metrics import sanity_check
        >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                              nn.Flatten(), nn.Linear(4 * 8 * 8, 5)))
        >>> r = sanity_check(model, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), "input-x-gradient")
        >>> len(sanity_figure(r).axes)
        8
    """
    rows = {results.method: results} if isinstance(results, SanityResult) else dict(results)
    if not rows:
        raise ValueError("no sanity-check results to draw")
    picks = {}
    for name, result in rows.items():
        last = len(result.layers) - 1
        picks[name] = sorted({*range(0, last + 1, max(1, every)), last})
    columns = 1 + max(len(p) for p in picks.values())
    figure = Figure(figsize=(1.6 * columns, 1.7 * 2 * len(rows)), dpi=dpi, layout="constrained")
    axes = figure.subplots(2 * len(rows), columns, squeeze=False)
    for r, (name, result) in enumerate(rows.items()):
        for side in (0, 1):
            row = axes[2 * r + side]
            image = (result.image1, result.image2)[side][pair]
            maps = (result.maps1, result.maps2)[side][:, pair]
            rho = (result.spearman1, result.spearman2)[side][:, pair]
            row[0].imshow(_display(image, result).numpy())
            row[0].set_ylabel(f"{name}\nimage {side + 1}", fontsize=7)
            for c, step in enumerate(picks[name], start=1):
                shown = normalize_maps(maps[step].unsqueeze(0).double())[0]
                row[c].imshow(shown.numpy(), cmap=cmap, vmin=0, vmax=1)
                label = result.layers[step]
                row[c].set_title(f"{label}\nρ={float(rho[step]):.2f}", fontsize=6)
            for axis in row:
                axis.set_xticks([])
                axis.set_yticks([])
            for axis in row[1 + len(picks[name]) :]:
                axis.set_axis_off()
    figure.suptitle("Sanity check: cascading randomisation from the output end", fontsize=8)
    _save(figure, path)
    return figure


def spearman_curve_figure(result: SanityResult, path: str | Path | None = None, dpi: int = 120) -> Figure:
    """Mean Spearman (and SSIM if computed) of the maps against the original along the cascade."""
    figure = Figure(figsize=(6, 3), dpi=dpi, layout="constrained")
    axis = figure.subplots()
    steps = torch.arange(len(result.layers))
    axis.plot(steps.numpy(), result.mean_spearman().numpy(), marker="o", label="Spearman")
    if result.ssim1 is not None and result.ssim2 is not None:
        axis.plot(
            steps.numpy(), ((result.ssim1 + result.ssim2).mean(1) / 2).numpy(), marker="s", label="SSIM"
        )
    axis.set_xticks(steps.numpy(), result.layers, rotation=90, fontsize=6)
    axis.set_ylabel("similarity to original map")
    axis.set_title(f"{result.method}: sanity check", fontsize=8)
    axis.legend(fontsize=7)
    _save(figure, path)
    return figure
