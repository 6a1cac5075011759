"""Pairs with a known answer: one object planted into two different backgrounds.

Whatever makes the two images similar, it can only be the planted object: the backgrounds differ. A faithful
map of either image should therefore put its mass, and its maximum, on the object. The pairs are drawn from a
seeded generator, so a seed names a data set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import SimexplainError


@dataclass(frozen=True)
class PlantedPairs:
    """``count`` planted pairs in [0, 1] pixel space (feed them through ``model.preprocessing.to_model``).

    Attributes:
        x1, x2: ``B×3×H×W`` images.
        mask1, mask2: ``B×H×W`` booleans, True on the planted object's pixels.
        boxes1, boxes2: ``B×4`` integer boxes ``(top, left, height, width)`` of the object.
        config: the settings that reproduce the pairs (seed included).
    """

    x1: Tensor
    x2: Tensor
    mask1: Tensor
    mask2: Tensor
    boxes1: Tensor
    boxes2: Tensor
    config: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x1)


def _as_pixels(image: Any, label: str) -> Tensor:
    """A ``3×H×W`` float tensor in [0, 1] from a tensor or anything ``read_image`` reads."""
    if isinstance(image, Tensor) and image.dim() == 3 and image.shape[0] == 3 and image.is_floating_point():
        return image.float()
    from torchvision.transforms.functional import to_tensor

    from ..images import read_image

    return to_tensor(read_image(image, label))


def _resize(image: Tensor, height: int, width: int) -> Tensor:
    return F.interpolate(
        image[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False
    )[0].clamp(0, 1)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _background(image: Tensor, size: tuple[int, int], generator: torch.Generator, crop: float) -> Tensor:
    """A random square-ish crop covering ``crop``–100 % of the shorter side, resized to ``size``."""
    _, h, w = image.shape
    side = max(1, round(min(h, w) * _uniform(generator, crop, 1.0)))
    top = int(torch.randint(0, h - side + 1, (), generator=generator))
    left = int(torch.randint(0, w - side + 1, (), generator=generator))
    return _resize(image[:, top : top + side, left : left + side], *size)


def _plant(
    background: Tensor, obj: Tensor, generator: torch.Generator, scale: tuple[float, float]
) -> tuple[Tensor, Tensor, tuple[int, int, int, int]]:
    """Paste ``obj`` resized so that its longer side is ``scale`` of the image's shorter side, at a uniform
    place where it fits whole. Returns the image, the object's mask and box."""
    _, height, width = background.shape
    longest = max(8, round(min(height, width) * _uniform(generator, *scale)))
    ratio = obj.shape[1] / obj.shape[2]
    h, w = (
        (longest, max(1, round(longest / ratio))) if ratio >= 1 else (max(1, round(longest * ratio)), longest)
    )
    top = int(torch.randint(0, height - h + 1, (), generator=generator))
    left = int(torch.randint(0, width - w + 1, (), generator=generator))
    image, mask = background.clone(), torch.zeros(height, width, dtype=torch.bool)
    image[:, top : top + h, left : left + w] = _resize(obj, h, w)
    mask[top : top + h, left : left + w] = True
    return image, mask, (top, left, h, w)


def planted_pairs(
    obj: Any,
    backgrounds: Sequence[Any],
    count: int,
    *,
    size: int | tuple[int, int] = 224,
    scale: tuple[float, float] = (0.3, 0.6),
    crop: float = 0.5,
    seed: int = 0,
) -> PlantedPairs:
    """``count`` pairs of one object ``obj`` planted into two different backgrounds, random places and sizes.

    ``obj`` and each background are a ``3×H×W`` tensor in [0, 1] or anything
    :func:`simexplain.images.read_image` takes (a path, bytes, a PIL image, an array). Each image of a pair
    gets its own background: two distinct entries of ``backgrounds`` (at least two are needed), each a random
    crop (``crop``–100 % of its shorter side) resized to ``size``. The object keeps its aspect ratio; its
    longer side is a uniform draw from ``scale`` (fractions of the image's shorter side). The whole object
    rectangle is the mask.

    Example:
        >>> import torch
        >>> face, walls = torch.full((3, 20, 10), 0.5), [torch.zeros(3, 64, 64), torch.ones(3, 64, 64)]
        >>> pairs = planted_pairs(face, walls, 2, size=32, seed=1)
        >>> pairs.x1.shape, pairs.mask1.shape
        (torch.Size([2, 3, 32, 32]), torch.Size([2, 32, 32]))
        >>> inside = pairs.x1.permute(1, 0, 2, 3)[:, pairs.mask1]  # the object's pixels: all 0.5
        >>> bool(torch.allclose(inside, torch.tensor(0.5)))
        True
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if not (isinstance(count, int) and count >= 1):
        raise SimexplainError(f"planted_pairs: count must be a positive int, got {count!r}")
    if len(size) != 2 or min(size) < 8:
        raise SimexplainError(f"planted_pairs: size must be at least 8×8, got {size}")
    if not (0 < scale[0] <= scale[1] <= 1):
        raise SimexplainError(f"planted_pairs: scale must satisfy 0 < low ≤ high ≤ 1, got {scale}")
    if not 0 < crop <= 1:
        raise SimexplainError(f"planted_pairs: crop must be in (0, 1], got {crop}")
    if len(backgrounds) < 2:
        raise SimexplainError(
            "planted_pairs: give at least two backgrounds (each image gets a different one)"
        )
    thing = _as_pixels(obj, "object")
    scenes = [_as_pixels(b, f"background {i}") for i, b in enumerate(backgrounds)]
    generator = torch.Generator().manual_seed(seed)
    sides: list[list] = [[], []]
    for _ in range(count):
        chosen = torch.randperm(len(scenes), generator=generator)[:2].tolist()
        for side, index in zip(sides, chosen):
            side.append(_plant(_background(scenes[index], size, generator, crop), thing, generator, scale))
    (x1, m1, b1), (x2, m2, b2) = (
        (torch.stack([p[0] for p in s]), torch.stack([p[1] for p in s]), torch.tensor([p[2] for p in s]))
        for s in sides
    )
    config = {"count": count, "size": list(size), "scale": list(scale), "crop": crop, "seed": seed}
    return PlantedPairs(x1, x2, m1, m2, b1, b2, config)
