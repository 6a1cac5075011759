"""How a model wants its images: size, crop and value scaling.

Methods move between [0, 1] pixel space (where colour transforms and blurs are defined) and model-input space
(where gradients, fills and noise are defined) with :meth:`Preprocessing.to_model` and
:meth:`Preprocessing.to_pixels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Input facts of a model: ``model_input = (pixels - mean) / std`` with pixels in [0, 1].

    Example:
        >>> p = Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD)
        >>> p.to_model(torch.ones(1, 3, 2, 2)).shape
        torch.Size([1, 3, 2, 2])

    Attributes:
        input_size: ``(H, W)`` the model is fed (the centre crop).
        resize: shorter side before the centre crop (the paper: 256 then crop 224); ``None`` resizes straight
            to ``input_size``.
        mean, std: per-channel affine scaling applied to [0, 1] pixels.
        description: a human line for listings (``simexplain models``).
    """

    input_size: tuple[int, int] = (224, 224)
    resize: int | None = 256
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    description: str = "[0, 1] pixels, no normalisation"

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return mean, std

    def to_model(self, pixels: Tensor) -> Tensor:
        """[0, 1] pixels (``...×3×H×W``) to model-input space."""
        mean, std = self._stats(pixels)
        return (pixels - mean) / std

    def to_pixels(self, x: Tensor) -> Tensor:
        """Model-input space back to [0, 1] pixels (not clipped)."""
        mean, std = self._stats(x)
        return x * std + mean

    @property
    def is_identity(self) -> bool:
        return self.mean == (0.0, 0.0, 0.0) and self.std == (1.0, 1.0, 1.0)


IDENTITY = Preprocessing()
IMAGENET = Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD, description="ImageNet mean/std")
