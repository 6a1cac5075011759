"""Maximum sensitivity (SPEC 4.3): how much a method's maps move under small input noise."""

from __future__ import annotations

import torch
from torch import Tensor

from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..explanation import upsample_maps
from ..methods import explain
from ..methods.common import check_pair
from ..pair import PairModel


def _relative_change(reference: Tensor, other: Tensor) -> Tensor:
    """``||e − e'||_F / ||e||_F`` per map; an all-zero reference gives 0 if unchanged, else inf."""
    diff = (other - reference).flatten(1).double().norm(dim=1)
    norm = reference.flatten(1).double().norm(dim=1)
    ratio = diff / norm.where(norm > 0, torch.ones_like(norm))
    return ratio.where(
        norm > 0, torch.where(diff > 0, torch.full_like(diff, float("inf")), torch.zeros_like(diff))
    )


def max_sensitivity(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    method: str,
    samples: int = 10,
    radius: float = 0.2,
    seed: int | None = None,
    *,
    batch_size: int | None = None,
    **params,
) -> Tensor:
    """Per-pair maximum sensitivity of ``method``: mean over the two images of the max over noise samples.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)))
        >>> x1, x2 = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
        >>> max_sensitivity(model, x1, x2, "input-x-gradient", samples=3, seed=0).shape
        torch.Size([2])

    Each sample draws uniform noise in the L∞ ball of ``radius`` (model-input space) and adds the SAME noise to
    both images (images of different sizes get independent draws), then re-runs the method on the noisy pair;
    ``ρ_k = ||e_k − e_k'||_F / ||e_k||_F`` on the raw maps at input size. All noisy pairs of a call are stacked on
    the batch dimension and explained ``batch_size`` pairs at a time. ``seed`` makes the noise reproducible
    (``None`` uses torch's global generator). Lower is better.
    """
    if samples < 1:
        raise SimexplainError(f"samples must be at least 1, got {samples}")
    x1, x2 = check_pair(model, x1, x2)
    batch_size = resolve_batch_size(batch_size, x1.device)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def noise(shape: torch.Size) -> Tensor:
        u = torch.rand((samples, *shape), generator=generator, dtype=x1.dtype)
        return ((2 * u - 1) * radius).to(x1.device)

    noise1 = noise(x1.shape)
    noise2 = noise1 if x2.shape == x1.shape else noise(x2.shape)
    reference = explain(model, x1, x2, method, **params)
    ref1 = upsample_maps(reference.map1.detach(), tuple(x1.shape[-2:]))
    ref2 = upsample_maps(reference.map2.detach(), tuple(x2.shape[-2:]))
    # sample-major virtual batch: item s·B + b is pair b under noise s
    noisy1 = (x1.unsqueeze(0) + noise1).flatten(0, 1)
    noisy2 = (x2.unsqueeze(0) + noise2).flatten(0, 1)
    maps1, maps2 = [], []
    for part in chunk_slices(len(noisy1), batch_size):
        e = explain(model, noisy1[part], noisy2[part], method, **params)
        maps1.append(upsample_maps(e.map1.detach(), tuple(x1.shape[-2:])))
        maps2.append(upsample_maps(e.map2.detach(), tuple(x2.shape[-2:])))
    batch = len(x1)
    rho1 = _relative_change(ref1.repeat(samples, 1, 1), torch.cat(maps1)).view(samples, batch)
    rho2 = _relative_change(ref2.repeat(samples, 1, 1), torch.cat(maps2)).view(samples, batch)
    return ((rho1.amax(0) + rho2.amax(0)) / 2).cpu()
