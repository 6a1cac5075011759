"""How a model wants its images: size, crop, resampling and value scaling.

Methods move between [0, 1] pixel space (where colour transforms and blurs are defined) and model-input space
(where gradients, fills and noise are defined) with :meth:`Preprocessing.to_model` and
:meth:`Preprocessing.to_pixels`; :meth:`Preprocessing.image_to_pixels` resizes and crops a decoded image the
way the model's own library does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms.v2 import functional as TF2

from .errors import SimexplainError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
BACKENDS = ("pil", "tensor", "float")


@dataclass(frozen=True)
class Preprocessing:
    """Input facts of a model: ``model_input = (pixels - mean) / std`` with pixels in [0, 1].

    Example:
        >>> p = Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD)
        >>> p.to_model(torch.ones(1, 3, 2, 2)).shape
        torch.Size([1, 3, 2, 2])

    Attributes:
        input_size: ``(H, W)`` the model is fed (the centre crop).
        resize: shorter side before the centre crop (the paper: 256 then crop 224); ``(H, W)``: that exact
            size (the aspect ratio is not kept) before the centre crop; ``None`` resizes straight to
            ``input_size``.
        mean, std: per-channel affine scaling applied to [0, 1] pixels.
        description: a human line for listings (``simexplain models``).
        interpolation: the resampling filter: ``"bicubic"`` (default), ``"bilinear"``, ``"nearest"`` or
            ``"lanczos"``.
        backend: who resizes, so that pixels match the model's own library: ``"pil"`` (default) resizes the
            decoded image with Pillow and rounds the centre crop's offset (torchvision's transforms, as timm
            and open_clip use them); ``"tensor"`` resizes the ``uint8`` tensor with torchvision (antialiased)
            and floors the offset (Hugging Face image processors); ``"float"`` does the same on the image
            scaled to [0, 1] first, without rounding back to ``uint8`` (DINOv3's processor).
    """

    input_size: tuple[int, int] = (224, 224)
    resize: int | tuple[int, int] | None = 256
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    description: str = "[0, 1] pixels, no normalisation"
    interpolation: str = "bicubic"
    backend: str = "pil"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise SimexplainError(
                f"unknown interpolation {self.interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}"
            )
        if self.backend not in BACKENDS:
            raise SimexplainError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")

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

    def image_to_pixels(self, image: Image.Image) -> Tensor:
        """An RGB image resized, centre-cropped to ``input_size`` and scaled to [0, 1]: ``3×H×W``.

        Example:
            >>> small = Preprocessing(input_size=(4, 4), resize=6)
            >>> small.image_to_pixels(Image.new("RGB", (12, 6), "white")).shape
            torch.Size([3, 4, 4])
        """
        if self.backend in ("tensor", "float"):
            return _tensor_resized(self, image)
        return _pil_resized(self, image)


def _pil_resized(p: Preprocessing, image: Image.Image) -> Tensor:
    """Pillow resizes, torchvision crops (offsets rounded), as torchvision's transforms on PIL images."""
    height, width = p.input_size
    mode = InterpolationMode(p.interpolation)
    if p.resize is None:
        image = image.resize((width, height), TF.pil_modes_mapping[mode])
    else:
        size = p.resize if isinstance(p.resize, int) else list(p.resize)
        image = TF.resize(image, size, interpolation=mode, antialias=True)
        image = TF.center_crop(image, [height, width])
    return TF.to_tensor(image)


def _tensor_resized(p: Preprocessing, image: Image.Image) -> Tensor:
    """torchvision resizes the ``uint8`` tensor (or, ``"float"``, the [0, 1] image), antialiased; the crop
    offset is floored: Hugging Face's image processors."""
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
    if p.backend == "float":
        pixels = pixels.float() / 255.0
    height, width = p.input_size
    if p.resize is None:
        size = [height, width]
    elif isinstance(p.resize, int):
        short, long = sorted(pixels.shape[1:])
        new_long = int(p.resize * long / short)  # the processors' own rounding of the longer side
        size = [p.resize, new_long] if pixels.shape[1] <= pixels.shape[2] else [new_long, p.resize]
    else:
        size = list(p.resize)
    mode = InterpolationMode(p.interpolation)
    pixels = TF2.resize(pixels, size, interpolation=mode, antialias=True)
    pixels = TF2.pad(pixels, _crop_padding(pixels.shape[1:], (height, width)), fill=0)
    top, left = int((pixels.shape[1] - height) / 2.0), int((pixels.shape[2] - width) / 2.0)
    pixels = pixels[:, top : top + height, left : left + width]
    return pixels if p.backend == "float" else pixels.float() / 255.0


def _crop_padding(hw: tuple[int, int], crop: tuple[int, int]) -> list[int]:
    """Left, top, right, bottom zero padding that lets a smaller image be centre-cropped."""
    (h, w), (ch, cw) = hw, crop
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    return [pad_w // 2, pad_h // 2, (pad_w + 1) // 2, (pad_h + 1) // 2]


IDENTITY = Preprocessing()
IMAGENET = Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD, description="ImageNet mean/std")
