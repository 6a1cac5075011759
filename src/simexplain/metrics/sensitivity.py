"""Maximum sensitivity (docs/methods.md, Maximum sensitivity): how much a method's maps move under small input
noise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .. import checks
from ..batching import chunk_slices, resolve_batch_size
from ..explanation import upsample_maps
from ..methods import explain
from ..methods.common import check_pair
from ..pair import PairModel
from .rerun import checked_method, first_run_seed, with_batch_size


def _relative_change(reference: Tensor, other: Tensor) -> Tensor:
    """``||e − e'||_F / ||e||_F`` per map; an all-zero reference gives 0 if unchanged, else inf."""
    diff = (other - reference).flatten(1).double().norm(dim=1)
    norm = reference.flatten(1).double().norm(dim=1)
    ratio = diff / norm.where(norm > 0, torch.ones_like(norm))
    return ratio.where(
        norm > 0, torch.where(diff > 0, torch.full_like(diff, float("inf")), torch.zeros_like(diff))
    )


def sensitivity_noise(
    shape1: Sequence[int], shape2: Sequence[int], pair_seeds: Sequence[int], samples: int, radius: float
) -> tuple[Tensor, Tensor]:
    """``S×B×C×H×W`` uniform noise in the L∞ ball of ``radius`` for images 1 and 2 (float32, CPU).

    Pair ``b`` draws from its own generator seeded ``pair_seeds[b]``: first the ``S`` samples of image 1,
    then, only when image 2 has another size, those of image 2; otherwise both images get the same noise. So a
    pair's noise never depends on the batch, its position in it, or the device.

    Example:
        >>> n1, n2 = sensitivity_noise((3, 2, 2), (3, 2, 2), [0, 0], samples=4, radius=0.2)
        >>> n1.shape, bool(n1.abs().max() <= 0.2), torch.equal(n1, n2), torch.equal(n1[:, 0], n1[:, 1])
        (torch.Size([4, 2, 3, 2, 2]), True, True, True)
    """

    def uniform(shape: Sequence[int], generator: torch.Generator) -> Tensor:
        return (2 * torch.rand((samples, *shape), generator=generator) - 1) * radius

    distinct = list(dict.fromkeys(pair_seeds))  # pairs sharing a seed share its noise: drawn once per seed
    noise1, noise2 = {}, {}
    for seed, generator in zip(distinct, checks.generators(distinct)):
        noise1[seed] = uniform(shape1, generator)
        noise2[seed] = noise1[seed] if tuple(shape1) == tuple(shape2) else uniform(shape2, generator)
    return torch.stack([noise1[s] for s in pair_seeds], 1), torch.stack([noise2[s] for s in pair_seeds], 1)


def max_sensitivity(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    method: str,
    *,
    method_params: Mapping[str, Any] | None = None,
    samples: int = 10,
    radius: float = 0.2,
    seed: checks.Seed = 0,
    batch_size: int | None = None,
) -> Tensor:
    """Per-pair maximum sensitivity of ``method``: mean over the two images of the max over noise samples.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)))
        >>> x1, x2 = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
        >>> smooth = {"samples": 4, "seed": 1}  # Smooth-Grad's own samples and seed
        >>> ms = max_sensitivity(model, x1, x2, "smooth-grad", method_params=smooth, samples=3, seed=0)
        >>> ms.shape
        torch.Size([2])

    Args:
        method, method_params: the method and its own settings, kept apart from the ones below (a method's
            ``samples`` or ``seed`` never binds to maximum sensitivity's).
        samples: noise samples per pair.
        radius: the L∞ radius of the uniform noise, in model-input space.
        seed: the noise's seed: an int for every pair, or one int per pair (``None`` draws one from torch's
            global generator).
        batch_size: pairs per run of the method on the noisy pairs, also handed to the method when it takes a
            ``batch_size`` and ``method_params`` holds none.

    Each sample adds the SAME noise to both images (images of different sizes get their own draws) and
    re-runs the method on the noisy pair; ``ρ_k = ||e_k − e_k'||_F / ||e_k||_F`` on the raw maps at input
    size. Pair ``b``'s noise comes from its own generator, so a pair's value does not depend on the batch. The
    noisy pairs of a call are one sample-major virtual batch (item ``s·B + b`` is pair ``b`` under noise
    ``s``); a seeded method runs every noisy copy of pair ``b`` with pair ``b``'s seed, the one the clean run
    used. Every setting is checked before any forward, and the call holds the model's lock. Lower is better.
    """
    with model.locked():
        entry, params = checked_method(method, method_params)
        samples = checks.positive_int("samples", samples)
        radius = checks.non_negative_number("radius", radius)
        chunk = resolve_batch_size(batch_size, model.device)
        x1, x2 = check_pair(model, x1, x2)
        _, pair_seeds = checks.seeds(seed, len(x1))
        params = with_batch_size(entry, params, batch_size)

        reference = explain(model, x1, x2, method, **params)
        params = first_run_seed(entry, params, reference)
        if isinstance(params.get("seed"), list):
            params["seed"] = params["seed"] * samples  # sample-major: noisy copy s·B + b gets pair b's seed
        noise1, noise2 = sensitivity_noise(x1.shape[1:], x2.shape[1:], pair_seeds, samples, radius)
        noisy1 = (x1.unsqueeze(0) + noise1.to(device=x1.device, dtype=x1.dtype)).flatten(0, 1)
        noisy2 = (x2.unsqueeze(0) + noise2.to(device=x2.device, dtype=x2.dtype)).flatten(0, 1)
        maps1, maps2 = [], []
        for part in chunk_slices(len(noisy1), chunk):
            e = explain(model, noisy1[part], noisy2[part], method, **_part(params, part))
            maps1.append(upsample_maps(e.map1.detach(), tuple(x1.shape[-2:])))
            maps2.append(upsample_maps(e.map2.detach(), tuple(x2.shape[-2:])))
    ref1 = upsample_maps(reference.map1.detach(), tuple(x1.shape[-2:]))
    ref2 = upsample_maps(reference.map2.detach(), tuple(x2.shape[-2:]))
    batch = len(x1)
    rho1 = _relative_change(ref1.repeat(samples, 1, 1), torch.cat(maps1)).view(samples, batch)
    rho2 = _relative_change(ref2.repeat(samples, 1, 1), torch.cat(maps2)).view(samples, batch)
    return ((rho1.amax(0) + rho2.amax(0)) / 2).cpu()


def _part(params: dict[str, Any], part: slice) -> dict[str, Any]:
    """The settings of a chunk of the virtual batch: a per-pair seed list is sliced, an int stays an int."""
    if not isinstance(params.get("seed"), list):
        return params
    return {**params, "seed": checks.pick_seeds(params["seed"], part)}
