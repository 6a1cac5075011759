"""PairExplanation: the maps of a pair, their native grids, the score and where they came from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import pick_seeds
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
    """Gaussian blur for display only (docs/methods.md, Notation: never before a metric)."""
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(maps.unsqueeze(1), [kernel_size, kernel_size], [sigma, sigma])[:, 0]


@dataclass
class PairExplanation:
    """Explanation maps of ``B`` pairs, the settings that produced them, and what the method kept.

    Example (maps from another tool, to evaluate them with the metrics):
        >>> import torch
        >>> e = PairExplanation(map1=torch.rand(2, 224, 224), map2=torch.rand(2, 224, 224))
        >>> len(e), e.normalized().map1.max().item() <= 1, len(e[-1]), len(e[0:2])
        (2, True, 1, 2)

    Attributes:
        map1, map2: ``B×H×W`` maps at input resolution (higher = more important).
        score: ``[B]`` similarity scores of the explained pairs (``None`` for user-built ones).
        grid1, grid2: the method's native grids (CAM feature grid, occlusion window grid), or ``None``
            when the pixel map is the native output.
        method: the registered method name.
        config: every setting the method used, resolved (defaults filled in, the seed it drew when none was
            given), JSON-serialisable; ``explain(model, x1, x2, e.method, **e.config)`` reproduces ``e``. A
            per-pair ``seed`` list is sliced with the pairs.
        extras: tensors the method kept, each with a leading batch dimension (occlusion drops, rectangles,
            window starts, the transformed view ``image2`` of Averaged Transforms).
    """

    map1: Tensor
    map2: Tensor
    score: Tensor | None = None
    grid1: Tensor | None = None
    grid2: Tensor | None = None
    method: str = "custom"
    config: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.map1 = _as_batch(self.map1, "map1")
        self.map2 = _as_batch(self.map2, "map2")
        self.grid1 = _as_batch(self.grid1, "grid1")
        self.grid2 = _as_batch(self.grid2, "grid2")
        if self.map1.shape[0] != self.map2.shape[0]:
            raise SimexplainError(f"map1 and map2 hold {self.map1.shape[0]} and {self.map2.shape[0]} maps")
        if self.score is not None:
            self.score = torch.as_tensor(self.score).reshape(-1)
        for name, value in self.extras.items():
            if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != len(self):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise SimexplainError(
                    f"extras[{name!r}] must be a tensor with one entry per pair, got {shape}"
                )

    @classmethod
    def from_grids(
        cls, grid1: Tensor, grid2: Tensor, size1: tuple[int, int], size2: tuple[int, int], **fields: Any
    ) -> PairExplanation:
        """The explanation of native grids (a CAM's feature grid, say): the grids kept as ``grid1``/``grid2``
        and upsampled bilinearly to the image sizes ``size1``/``size2`` as the maps; ``fields`` are the other
        attributes (``score``, ``method``, ``config``, ``extras``).

        Example:
            >>> import torch
            >>> e = PairExplanation.from_grids(torch.ones(2, 7, 7), torch.ones(2, 7, 7), (32, 32), (28, 28))
            >>> e.map1.shape, e.map2.shape, e.grid1.shape
            (torch.Size([2, 32, 32]), torch.Size([2, 28, 28]), torch.Size([2, 7, 7]))
        """
        map1, map2 = upsample_maps(grid1, tuple(size1)), upsample_maps(grid2, tuple(size2))
        return cls(map1=map1, map2=map2, grid1=grid1, grid2=grid2, **fields)

    @property
    def image1(self) -> Tensor | None:
        """The model-input image the first maps belong to, when it is not the input itself."""
        return self.extras.get("image1")

    @property
    def image2(self) -> Tensor | None:
        """The model-input image the second maps belong to (Averaged Transforms' transformed view), or
        ``None``."""
        return self.extras.get("image2")

    @property
    def interaction(self) -> Tensor | None:
        """``B×h1×w1×h2×w2``: how much each grid cell of image 1 and each of image 2 add to the score together
        (second-order methods such as ``pair-interaction``), or ``None``."""
        return self.extras.get("interaction")

    def match(self, point: tuple[int, int], image: int = 1) -> Tensor:
        """The map over the other image for the pixel ``point = (y, x)`` of image ``image`` (1 or 2): the
        interaction row (or column) of the grid cell holding that pixel, upsampled to the other image's input
        size, ``B×H×W``. Needs an explanation with an :attr:`interaction`.

        Example:
            >>> import torch
            >>> grid = torch.zeros(1, 2, 2, 2, 2)
            >>> grid[0, 1, 1, 0, 0] = 1.0  # the lower-right cell of image 1 matches the upper-left of image 2
            >>> e = PairExplanation(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), extras={"interaction": grid})
            >>> e.match((3, 2), image=1)[0, 0].tolist(), e.match((0, 0), image=2)[0, 3, 3].item()
            ([1.0, 0.75, 0.25, 0.0], 1.0)
        """
        interaction = self.interaction
        if interaction is None:
            raise SimexplainError(
                f"method {self.method!r} keeps no interaction; use pair-interaction for match()"
            )
        if image not in (1, 2):
            raise SimexplainError(f"image must be 1 or 2, got {image!r}")
        try:
            y, x = (int(v) for v in point)
        except (TypeError, ValueError):
            raise SimexplainError(f"point must be (y, x) pixel coordinates, got {point!r}") from None
        own, other = (self.map1, self.map2) if image == 1 else (self.map2, self.map1)
        height, width = own.shape[-2:]
        if not (0 <= y < height and 0 <= x < width):
            raise SimexplainError(f"point {(y, x)} lies outside image {image} ({height}×{width} pixels)")
        grid = interaction if image == 1 else interaction.permute(0, 3, 4, 1, 2)
        cell_y, cell_x = y * grid.shape[1] // height, x * grid.shape[2] // width
        return upsample_maps(grid[:, cell_y, cell_x], tuple(other.shape[-2:]))

    def __len__(self) -> int:
        return self.map1.shape[0]

    def __iter__(self) -> Iterator[PairExplanation]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int | slice) -> PairExplanation:
        """The explanation of pair ``index`` (negative indices count from the end; a slice keeps several)."""
        if isinstance(index, bool) or not isinstance(index, int | slice):
            raise TypeError(f"pairs are indexed by an int or a slice, not {type(index).__name__}")
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"pair {index} out of range for {len(self)} pairs")
            index = index % len(self)
            index = slice(index, index + 1)

        def take(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[index]

        config = dict(self.config)
        if isinstance(config.get("seed"), list):
            config["seed"] = pick_seeds(config["seed"], index)
        return replace(
            self,
            map1=take(self.map1),
            map2=take(self.map2),
            score=take(self.score),
            grid1=take(self.grid1),
            grid2=take(self.grid2),
            config=config,
            extras={name: t[index] for name, t in self.extras.items()},
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
        """Copy with every tensor (maps, grids, score, extras) on ``device``."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return replace(
            self,
            map1=move(self.map1),
            map2=move(self.map2),
            score=move(self.score),
            grid1=move(self.grid1),
            grid2=move(self.grid2),
            extras={name: t.to(device) for name, t in self.extras.items()},
        )

    def cpu(self) -> PairExplanation:
        return self.to("cpu")
