"""Reading images into model-input tensors: paths, PIL images or arrays → ``1×3×H×W``.

Resizing follows the paper: shorter side to 256, centre crop 224 (or the model's own sizes). EXIF orientation is
applied, grayscale / RGBA / palette / 16-bit images are converted, and Pillow's decompression-bomb guard is on
(a suspiciously large image is an error, not a warning).
"""

from __future__ import annotations

import os
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms import functional as TF

from .errors import SimexplainError
from .pair import PairModel
from .preprocessing import Preprocessing

ImageSource = str | os.PathLike | Image.Image | np.ndarray | Tensor

MAX_PIXELS = 89_478_485  # Pillow's own bomb limit, stated here so it cannot be switched off by other code


def sample_path(name: str) -> Path:
    """Path of a bundled sample photo (``chelsea.jpg``, ``coffee.jpg``, ``astronaut.jpg``)."""
    return Path(str(resources.files("simexplain") / "data" / name))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        if image.mode == "F":
            top = max(float(array.max()), 1.0)
        array = np.clip(array / top * 255.0, 0, 255).astype(np.uint8)
        image = Image.fromarray(array, mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def read_image(source: ImageSource, label: str = "image") -> Image.Image:
    """Open any supported source as an RGB PIL image; one clear error line naming the file otherwise."""
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source) or source)
    if isinstance(source, (np.ndarray, Tensor)):
        return _array_to_image(source, label)
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise SimexplainError(f"{path}: {'not a regular file' if os.path.exists(path) else 'no such file'}")
    if os.path.getsize(path) == 0:
        raise SimexplainError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PIXELS
            try:
                with Image.open(path) as image:
                    if image.width * image.height > MAX_PIXELS:
                        raise SimexplainError(
                            f"{path}: image too large ({image.width}×{image.height} pixels; limit {MAX_PIXELS})"
                        )
                    image.load()
                    return _to_rgb(ImageOps.exif_transpose(image) or image)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SimexplainError(f"{path}: image too large (decompression-bomb guard)") from None
    except UnidentifiedImageError:
        raise SimexplainError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise SimexplainError(f"{path}: cannot read image ({str(error).splitlines()[0][:120]})") from None


def _array_to_image(array: np.ndarray | Tensor, label: str) -> Image.Image:
    if isinstance(array, Tensor):
        array = array.detach().cpu()
        if array.dim() == 3 and array.shape[0] in (1, 3, 4):
            array = array.permute(1, 2, 0)
        array = array.numpy()
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise SimexplainError(f"{label}: array of shape {array.shape} is not an H×W, H×W×3 or H×W×4 image")
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.uint16:
        array = (array / 257.0).round().astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise SimexplainError(f"{label}: array holds NaN or infinite values")
        array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    else:
        raise SimexplainError(
            f"{label}: unsupported array dtype {array.dtype} (use uint8, uint16 or float in [0, 1])"
        )
    return _to_rgb(Image.fromarray(array))


def to_pixels(image: Image.Image, preprocessing: Preprocessing) -> Tensor:
    """Resize (shorter side), centre crop and convert to a ``3×H×W`` tensor in [0, 1]."""
    height, width = preprocessing.input_size
    if preprocessing.resize is None:
        image = image.resize((width, height), Image.BICUBIC)
    else:
        image = TF.resize(
            image, preprocessing.resize, interpolation=TF.InterpolationMode.BICUBIC, antialias=True
        )
        image = TF.center_crop(image, [height, width])
    return TF.to_tensor(image)


def load_image(source: ImageSource, model: PairModel | Preprocessing, label: str = "image") -> Tensor:
    """One image as a ``1×3×H×W`` model-input tensor on the model's device."""
    preprocessing = model.preprocessing if isinstance(model, PairModel) else model
    pixels = to_pixels(read_image(source, label), preprocessing).unsqueeze(0)
    x = preprocessing.to_model(pixels)
    return x.to(model.device) if isinstance(model, PairModel) else x


def load_images(a: ImageSource, b: ImageSource, model: PairModel | Preprocessing) -> tuple[Tensor, Tensor]:
    """Both images of a pair at the model's input: ``x1, x2`` of shape ``1×3×H×W``.

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model("efficientnet-lite0")
        >>> x1, x2 = simexplain.load_images(sample_path("chelsea.jpg"), sample_path("coffee.jpg"), model)
        >>> x1.shape
        torch.Size([1, 3, 224, 224])
    """
    return load_image(a, model, "image 1"), load_image(b, model, "image 2")
