"""simexplain.data.planted_pairs: the masks are exactly the pasted pixels, each image of a pair has its own
background, and a seed reproduces the data set."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simexplain import SimexplainError, sample_path
from simexplain.data import planted_pairs

SIZE = 48


def backgrounds() -> list[torch.Tensor]:
    # Constant backgrounds: a pixel's value names the background it came from.
    return [torch.full((3, 64, 80), value) for value in (0.0, 0.25, 0.75)]


def checkerboard(h: int = 12, w: int = 8) -> torch.Tensor:
    """An object with structure (not constant), values in (0.3, 0.6), never a background value."""
    grid = (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2
    return (0.3 + 0.3 * grid.float()).expand(3, h, w).clone()


def test_masks_match_the_pasted_pixels():
    obj = checkerboard()
    pairs = planted_pairs(obj, backgrounds(), 6, size=SIZE, scale=(0.3, 0.8), seed=4)
    assert pairs.x1.shape == pairs.x2.shape == (6, 3, SIZE, SIZE)
    for images, masks, boxes in (
        (pairs.x1, pairs.mask1, pairs.boxes1),
        (pairs.x2, pairs.mask2, pairs.boxes2),
    ):
        for image, mask, (top, left, h, w) in zip(images, masks, boxes.tolist()):
            # The mask is the box, and the box holds the object resized to it, pixel for pixel.
            expected_mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
            expected_mask[top : top + h, left : left + w] = True
            assert torch.equal(mask, expected_mask)
            resized = F.interpolate(obj[None], size=(h, w), mode="bilinear", antialias=True)[0].clamp(0, 1)
            torch.testing.assert_close(image[:, top : top + h, left : left + w], resized)
            # Outside the mask: one constant background, not the object's values.
            outside = image[:, ~mask]
            value = min((0.0, 0.25, 0.75), key=lambda v: abs(v - float(outside[0, 0])))
            torch.testing.assert_close(outside, torch.full_like(outside, value))
            # The object keeps its 3:2 aspect ratio (up to rounding) and fits inside the image.
            assert abs(h / w - 1.5) < 0.2 and top + h <= SIZE and left + w <= SIZE


def test_each_image_of_a_pair_gets_another_background():
    pairs = planted_pairs(checkerboard(), backgrounds(), 10, size=SIZE, seed=0)
    first = [round(float(x[0][~m][0]), 3) for x, m in zip(pairs.x1, pairs.mask1)]
    second = [round(float(x[0][~m][0]), 3) for x, m in zip(pairs.x2, pairs.mask2)]
    assert all(a != b for a, b in zip(first, second))
    assert len(set(first + second)) == 3  # every background gets used over ten pairs


def test_seeds_reproduce_and_differ():
    a = planted_pairs(checkerboard(), backgrounds(), 4, size=SIZE, seed=7)
    b = planted_pairs(checkerboard(), backgrounds(), 4, size=SIZE, seed=7)
    c = planted_pairs(checkerboard(), backgrounds(), 4, size=SIZE, seed=8)
    for name in ("x1", "x2", "mask1", "mask2", "boxes1", "boxes2"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.boxes1, c.boxes1)
    assert a.config == {"count": 4, "size": [SIZE, SIZE], "scale": [0.3, 0.6], "crop": 0.5, "seed": 7}


def test_photos_by_path_and_bad_settings():
    pairs = planted_pairs(
        sample_path("chelsea.jpg"), [sample_path("coffee.jpg"), sample_path("astronaut.jpg")], 2, size=32
    )
    assert pairs.x1.shape == (2, 3, 32, 32) and 0 <= float(pairs.x1.min()) and float(pairs.x1.max()) <= 1
    for kwargs, message in (
        ({"count": 0}, "count"),
        ({"backgrounds": [torch.zeros(3, 8, 8)]}, "two backgrounds"),
        ({"scale": (0.5, 0.2)}, "scale"),
        ({"size": 4}, "size"),
        ({"crop": 0}, "crop"),
    ):
        settings = {"obj": checkerboard(), "backgrounds": backgrounds(), "count": 2, **kwargs}
        with pytest.raises(SimexplainError, match=message):
            planted_pairs(**settings)
