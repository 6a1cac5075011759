"""Average drop (docs/methods.md, Average drop): how much of the similarity survives when each image is
weighted by its own map. The SAD and CAD metrics (:mod:`.builtin`) compare the masked images' embeddings."""

from __future__ import annotations

import torch
from torch import Tensor

from ..explanation import normalize_maps


def masked_images(x: Tensor, maps: Tensor) -> Tensor:
    """``ê ⊙ x`` with ``ê`` the min–max scaled map (a constant map gives ê = 0, hence a zero image:
    defined)."""
    return normalize_maps(maps).unsqueeze(1).to(x.dtype) * x


def drops(base: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pair ``max(0, base − score) / base`` and the increase indicator ``1[score > base]``.

    A non-positive base makes the relative drop meaningless: it is NaN there (count it with
    :func:`undefined_count`), never a silently negative or inflated number.

    Example:
        >>> d, up = drops(torch.tensor([0.5, -0.2]), torch.tensor([0.25, -0.5]))
        >>> d.tolist()[0], bool(d[1].isnan()), up.tolist()
        (0.5, True, [0.0, 0.0])
    """
    base, score = base.double(), score.double()
    drop = (base - score).clamp_min(0) / base.where(base > 0, torch.ones_like(base))
    return drop.where(base > 0, torch.full_like(drop, float("nan"))), (score > base).double()


def undefined_count(values: Tensor) -> int:
    """How many per-pair values are undefined (NaN)."""
    return int(values.isnan().sum())
