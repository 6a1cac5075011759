"""Insertion and deletion curves (docs/methods.md, Insertion and deletion), simultaneous and conditional, from
one set of embeddings.

Every curve point of every pair is a masked copy of an input: the pixels whose rank (descending map value,
stable ties) is below ``k·step`` are replaced (deletion: by 0; insertion: the blurred image gets them back).
The masks come from one argsort per map, and the images are built chunk by chunk inside
:func:`simexplain.batching.embed_lazily` (through :mod:`.plan`), so no more than ``batch_size`` of them exist
at once.

One observation keeps the cost down: the simultaneous curve of image 1 uses exactly the perturbed images of
the conditional curve of image 1, only the partner differs. So each perturbed sequence is embedded once, and
SD, CD (both directions) all come from the deletion embeddings, SI, CI from the insertion ones; the fixed
image of a conditional curve is the clean embedding, computed once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import SimexplainError
from ..pair import PairModel

DEFAULT_STEP = 224  # pixels per curve step (docs/methods.md, Insertion and deletion)
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0  # the insertion baseline's Gaussian blur (same section)
# the curves of each sequence: simultaneous (both images changed) and conditional (one image changed)
CURVE_NAMES = {"insertion": ("SI", "CI"), "deletion": ("SD", "CD")}


def pixel_ranks(maps: Tensor) -> Tensor:
    """Rank of every pixel, 0 = most important: descending map value, ties in raster order.

    Example:
        >>> pixel_ranks(torch.tensor([[[0.1, 0.9], [0.5, 0.5]]]))
        tensor([[3, 0, 1, 2]])
    """
    flat = maps.flatten(1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def curve_points(height: int, width: int, step: int = DEFAULT_STEP) -> int:
    """Number of curve points, ``⌈HW/step⌉ + 1`` (the untouched image and one point per step)."""
    if step < 1:
        raise SimexplainError(f"step must be a positive number of pixels, got {step}")
    return math.ceil(height * width / step) + 1


def curve_fractions(height: int, width: int, step: int = DEFAULT_STEP) -> Tensor:
    """The x axis of a curve: fraction of pixels changed at each point (the last step may be partial)."""
    pixels = height * width
    counts = torch.arange(curve_points(height, width, step), dtype=torch.float64) * step
    return counts.clamp(max=pixels) / pixels


def auc(curves: Tensor, fractions: Tensor) -> Tensor:
    """Trapezoid area under ``curves`` (``B×n``) over ``fractions`` in [0, 1]."""
    return torch.trapezoid(curves.double(), fractions.to(curves.device), dim=-1)


def blurred(x: Tensor, kernel_size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> Tensor:
    """The insertion baseline: the image blurred in model-input space."""
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(x, [kernel_size, kernel_size], [sigma, sigma])


def sequence_maker(
    x: Tensor, ranks: Tensor, start: Tensor, points: int, step: int
) -> Callable[[slice], Tensor]:
    """Builder of the virtual batch ``B·points``: item ``b·points + k`` is ``x[b]`` whose first ``k·step``
    ranked pixels are taken from ``start[b]`` (deletion: ``x`` = image, ``start`` = zeros; insertion:
    ``x`` = blurred image, ``start`` = image)."""
    height, width = x.shape[-2:]

    def make(part: slice) -> Tensor:
        index = torch.arange(part.start, part.stop, device=x.device)
        pair, k = index // points, index % points
        # rank < k·step: the pixels already replaced at point k, all channels of a pixel together
        changed = (ranks[pair] < (k * step).unsqueeze(1)).view(-1, 1, height, width)
        return torch.where(changed, start[pair], x[pair])

    return make


def sequence_source(
    x: Tensor,
    ranks: Tensor,
    kind: str,
    *,
    step: int = DEFAULT_STEP,
    blur_kernel: int = BLUR_KERNEL,
    blur_sigma: float = BLUR_SIGMA,
) -> tuple[Callable[[slice], Tensor], int]:
    """The deletion or insertion sequence of every image of ``x``: a builder and the virtual batch size."""
    points = curve_points(*x.shape[-2:], step)
    if kind == "deletion":
        # the changed pixels come from a zero image, the others from x
        make = sequence_maker(x, ranks, torch.zeros_like(x[:1]).expand_as(x), points, step)
    elif kind == "insertion":
        # the changed (inserted) pixels come from x, the others from the blurred image
        make = sequence_maker(blurred(x, blur_kernel, blur_sigma), ranks, x, points, step)
    else:
        raise SimexplainError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    return make, len(x) * points


def pair_similarity(model: PairModel, z1: Tensor, z2: Tensor) -> Tensor:
    """``model.similarity`` of ``B×n×D`` (or broadcastable ``B×1×D``) embeddings → ``B×n`` scores."""
    batch, points = max(z1.shape[0], z2.shape[0]), max(z1.shape[1], z2.shape[1])
    z1 = z1.expand(batch, points, *z1.shape[2:]).reshape(batch * points, *z1.shape[2:])
    z2 = z2.expand(batch, points, *z2.shape[2:]).reshape(batch * points, *z2.shape[2:])
    return model.similarity(z1, z2).view(batch, points)


def curves_from_sequences(
    model: PairModel, seq1: Tensor, seq2: Tensor, clean1: Tensor, clean2: Tensor
) -> dict[str, Tensor]:
    """Simultaneous and per-direction conditional curves (``B×n``) from the sequence embeddings (``B×n×D``).

    ``"simultaneous"``: both images perturbed (only when both have the same number of points);
    ``"conditional_1"``: image 1 perturbed, image 2 clean; ``"conditional_2"``: image 2 perturbed, image 1
    clean.
    """
    curves = {
        "conditional_1": pair_similarity(model, seq1, clean2.unsqueeze(1)),
        "conditional_2": pair_similarity(model, clean1.unsqueeze(1), seq2),
    }
    if seq1.shape[1] == seq2.shape[1]:
        curves["simultaneous"] = pair_similarity(model, seq1, seq2)
    return curves


def named_curves(
    model: PairModel,
    kind: str,
    seq1: Tensor,
    seq2: Tensor,
    clean1: Tensor,
    clean2: Tensor,
    fractions: tuple[Tensor, Tensor],
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The curves of one sequence ``kind`` under their metric names, float64 on the CPU, and their x axes.

    Deletion gives ``SD`` (only when both images have as many points), ``CD_1`` and ``CD_2``; insertion
    ``SI``, ``CI_1`` and ``CI_2``. ``seq1``/``seq2`` are the ``B×n×D`` sequence embeddings, ``fractions`` the
    x axes of images 1 and 2.
    """
    simultaneous, conditional = CURVE_NAMES[kind]
    found = curves_from_sequences(model, seq1, seq2, clean1, clean2)
    named = {
        simultaneous: ("simultaneous", fractions[0]),
        f"{conditional}_1": ("conditional_1", fractions[0]),
        f"{conditional}_2": ("conditional_2", fractions[1]),
    }
    curves = {name: found[key].double().cpu() for name, (key, _) in named.items() if key in found}
    return curves, {name: named[name][1] for name in curves}
