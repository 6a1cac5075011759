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


def _pair_labels(result: SanityResult) -> list[str]:
    """The pairs' ids when the result carries them (a study's), else ``pair 1``, ``pair 2``, ..."""
    ids = list(getattr(result, "pairs", None) or [])
    count = result.maps1.shape[1]
    return ids if len(ids) == count else [f"pair {i + 1}" for i in range(count)]


def _randomised(result: SanityResult) -> list[int]:
    """Layers random at each kept step: a study's record, else the step's position in the cascade."""
    counts = list(getattr(result, "randomised", None) or [])
    return counts if len(counts) == len(result.layers) else list(range(len(result.layers)))


def sanity_grid_figure(
    result: SanityResult,
    path: str | Path | None = None,
    *,
    side: int = 1,
    title: str | None = None,
    cmap: str = "jet",
    dpi: int = 120,
) -> Figure:
    """One method's cascade over its pairs: one row per pair; columns = image ``side`` (1 or 2), its original
    map, then its map after each kept randomised step (output end first), titled with the last layer
    randomised and the map's Spearman correlation with the original. Saved to ``path`` if given.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> from simexplain.metrics import sanity_check
        >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                              nn.Flatten(), nn.Linear(4 * 8 * 8, 5)))
        >>> r = sanity_check(model, torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), "input-x-gradient")
        >>> len(sanity_grid_figure(r).axes)  # 2 pairs × (image + 3 maps)
        8
    """
    if side not in (1, 2):
        raise ValueError(f"side must be 1 or 2, got {side!r}")
    images = result.image1 if side == 1 else result.image2
    maps = result.maps1 if side == 1 else result.maps2
    rho = result.spearman1 if side == 1 else result.spearman2
    steps, pairs = maps.shape[:2]
    figure = Figure(figsize=(1.5 * (steps + 1), 1.6 * pairs + 0.4), dpi=dpi, layout="constrained")
    axes = figure.subplots(pairs, steps + 1, squeeze=False)
    counts = _randomised(result)
    for p, (row, label) in enumerate(zip(axes, _pair_labels(result))):
        row[0].imshow(_display(images[p], result).numpy())
        row[0].set_ylabel(label, fontsize=6)
        for s in range(steps):
            shown = normalize_maps(maps[s, p].unsqueeze(0).double())[0]
            row[s + 1].imshow(shown.numpy(), cmap=cmap, vmin=0, vmax=1)
            if p == 0:
                # The layer's last two name parts, on their own line: full names overlap the next column.
                short = ".".join(result.layers[s].split(".")[-2:])
                head = "original" if s == 0 else f"{counts[s]} layers\n{short}"
                row[s + 1].set_title(f"{head}\nρ={float(rho[s, p]):.2f}", fontsize=6)
            else:
                row[s + 1].set_title(f"ρ={float(rho[s, p]):.2f}", fontsize=6)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    name = title or result.method
    figure.suptitle(f"{name}: image {side}'s map as layers are randomised from the output end", fontsize=8)
    _save(figure, path)
    return figure


def _band(values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``S×B`` per-pair values → mean, minimum and maximum over the pairs, each ``[S]``."""
    values = values.double()
    return values.mean(1), values.min(1).values, values.max(1).values


def spearman_band_figure(
    results: Mapping[str, SanityResult], path: str | Path | None = None, dpi: int = 120
) -> Figure:
    """Spearman rank correlation with the original map (and SSIM, when every result has it) against the
    number of randomised layers: one line per method (the mean over pairs, each pair's value the mean of its
    two maps) with the min–max band over pairs. Saved to ``path`` if given.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> from simexplain.metrics import sanity_check
        >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                              nn.Flatten(), nn.Linear(4 * 8 * 8, 5)))
        >>> r = sanity_check(model, torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), "input-x-gradient")
        >>> len(spearman_band_figure({"input-x-gradient": r}).axes) in (1, 2)
        True
    """
    if not results:
        raise ValueError("no sanity-check results to draw")
    with_ssim = all(r.ssim1 is not None and r.ssim2 is not None for r in results.values())
    panels = [("Spearman rank correlation", "spearman")] + ([("SSIM", "ssim")] if with_ssim else [])
    figure = Figure(figsize=(5 * len(panels), 3.2), dpi=dpi, layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (label, key) in zip(axes, panels):
        for name, result in results.items():
            per_pair = (getattr(result, f"{key}1") + getattr(result, f"{key}2")) / 2
            mean, low, high = _band(per_pair)
            x = _randomised(result)
            line = axis.plot(x, mean.numpy(), marker="o", markersize=3, label=name)[0]
            axis.fill_between(x, low.numpy(), high.numpy(), color=line.get_color(), alpha=0.2, linewidth=0)
        axis.axhline(0, color="grey", linewidth=0.5)
        axis.set_xlabel("layers randomised (from the output end)")
        axis.set_ylabel(f"{label} with the original map")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.legend(fontsize=6)
    figure.suptitle("Sanity check: mean over pairs, band from the lowest to the highest pair", fontsize=8)
    _save(figure, path)
    return figure
