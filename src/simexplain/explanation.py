"""PairExplanation: the maps of a pair, their native grids, the score and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import SimexplainError


def _as_batch(maps: Tensor | None, name: str) -> Tensor | None:
    if maps is None:
        return None
    maps = torch.as_tensor(maps)
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise SimexplainError(f"{name} must be B×H×W (or H×W), got shape {tuple(maps.shape)}")
    return maps.float() if not maps.is_floating_point() else maps


def normalize_maps(maps: Tensor) -> Tensor:
    """Per-map min–max to [0, 1]; a constant map becomes all zeros (never NaN)."""
    flat = maps.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    span = high - low
    scaled = torch.where(
        span > 0, (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat)
    )
    return scaled.view_as(maps)


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``B×h×w`` maps to ``size`` (a no-op when already there)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def blur_maps(maps: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """Gaussian blur for display only (SPEC §1: never before a metric)."""
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(maps.unsqueeze(1), [kernel_size, kernel_size], [sigma, sigma])[:, 0]


@dataclass
class PairExplanation:
    """Explanation maps of ``B`` pairs.

    Example (maps from another tool, to evaluate them with the metrics):
        >>> import torch
        >>> e = PairExplanation(map1=torch.rand(2, 224, 224), map2=torch.rand(2, 224, 224))
        >>> len(e), e.normalized().map1.max().item() <= 1
        (2, True)

    Attributes:
        map1, map2: ``B×H×W`` maps at input resolution (higher = more important).
        score: ``[B]`` similarity scores of the explained pairs (``None`` for user-built ones).
        grid1, grid2: the method's native grids (CAM feature grid, occlusion window grid), or ``None`` when the
            pixel map is the native output.
        method, params: provenance.
        image1, image2: the model-input images the maps belong to (Averaged Transforms explains a transformed
            second view), or ``None`` when they are the inputs themselves.
    """

    map1: Tensor
    map2: Tensor
    score: Tensor | None = None
    grid1: Tensor | None = None
    grid2: Tensor | None = None
    method: str = "custom"
    params: dict[str, Any] = field(default_factory=dict)
    image1: Tensor | None = None
    image2: Tensor | None = None

    def __post_init__(self) -> None:
        self.map1 = _as_batch(self.map1, "map1")
        self.map2 = _as_batch(self.map2, "map2")
        self.grid1 = _as_batch(self.grid1, "grid1")
        self.grid2 = _as_batch(self.grid2, "grid2")
        if self.map1.shape[0] != self.map2.shape[0]:
            raise SimexplainError(f"map1 and map2 hold {self.map1.shape[0]} and {self.map2.shape[0]} maps")
        if self.score is not None:
            self.score = torch.as_tensor(self.score).reshape(-1)

    def __len__(self) -> int:
        return self.map1.shape[0]

    def __getitem__(self, index: int | slice) -> PairExplanation:
        """The explanation of pair ``index`` (a slice keeps several)."""
        pick = slice(index, index + 1) if isinstance(index, int) else index

        def take(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[pick]

        return replace(
            self,
            map1=take(self.map1),
            map2=take(self.map2),
            score=take(self.score),
            grid1=take(self.grid1),
            grid2=take(self.grid2),
            image1=take(self.image1),
            image2=take(self.image2),
        )

    def normalized(self) -> PairExplanation:
        """Copy with each map min–max scaled to [0, 1] (constant maps → zeros)."""
        return replace(self, map1=normalize_maps(self.map1), map2=normalize_maps(self.map2))

    def upsampled(self, size: tuple[int, int]) -> PairExplanation:
        """Copy with the maps resized bilinearly to ``size`` (used when a user hands in grid-sized maps)."""
        return replace(self, map1=upsample_maps(self.map1, size), map2=upsample_maps(self.map2, size))

    def blurred(self, kernel_size: int = 11, sigma: float = 5.0) -> PairExplanation:
        """Copy with Gaussian-blurred maps, for display only."""
        return replace(
            self, map1=blur_maps(self.map1, kernel_size, sigma), map2=blur_maps(self.map2, kernel_size, sigma)
        )

    def to(self, device: torch.device | str) -> PairExplanation:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return replace(
            self,
            map1=move(self.map1),
            map2=move(self.map2),
            score=move(self.score),
            grid1=move(self.grid1),
            grid2=move(self.grid2),
            image1=move(self.image1),
            image2=move(self.image2),
        )

    def cpu(self) -> PairExplanation:
        return self.to("cpu")
