"""What the captum and pytorch-grad-cam adapters share: how a pair is split into calls of a library that
attributes one image (and one model output) at a time. Imports neither library."""

from __future__ import annotations

import torch
from torch import Tensor

from ..pair import PairModel


def layer_runs(model: PairModel, x1: Tensor, x2: Tensor) -> list[tuple[str, Tensor, Tensor, Tensor]]:
    """``(side, images, partner embeddings, first flags)`` per library call: one batch ``[x1; x2]`` for a
    shared encoder on images of one size, else one call per side. Clean embeddings are computed once.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = PairModel(nn.Flatten())
        >>> x1, x2 = torch.rand(2, 1, 3, 2, 2)
        >>> [(side, len(x), first.tolist()) for side, x, _, first in layer_runs(model, x1, x2)]
        [('a', 2, [True, False])]
    """
    with torch.no_grad():
        z1, z2 = model.embed_pair(x1, x2)
    ones = torch.ones(len(x1), dtype=torch.bool, device=x1.device)
    if model.shared and x1.shape[1:] == x2.shape[1:]:
        return [("a", torch.cat([x1, x2]), torch.cat([z2, z1]), torch.cat([ones, ~ones]))]
    return [("a", x1, z2, ones), ("b", x2, z1, ~ones)]
