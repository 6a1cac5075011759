"""Reading images into model-input tensors: paths, encoded bytes, PIL images or arrays → ``1×3×H×W``.

Resizing follows the paper: shorter side to 256, centre crop 224 (or the model's own sizes). EXIF orientation
is applied, grayscale / RGBA / palette / 16-bit images are converted. Every source is checked against this
module's own decompression-bomb limit :data:`MAX_PIXELS` before its pixels are decoded or converted (a
suspiciously large image is an error, not a warning); Pillow's process-wide settings are left untouched, so
reading is safe from several threads. Every error is one short line naming the file or the image's label.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import SimexplainError
from .pair import PairModel
from .preprocessing import Preprocessing

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray | Tensor

MAX_PIXELS = 89_478_485  # Pillow's own bomb limit, stated here so it cannot be switched off by other code

# What a broken or hostile file can make a decoder raise; each becomes one error line.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError)


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


def _short(text: str, limit: int = 120) -> str:
    """``text`` as one printable line of at most ``limit`` characters (a name or a library's message)."""
    line = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _check_size(width: int, height: int, name: str) -> None:
    """Refuse an image over :data:`MAX_PIXELS` (read at call time, so it can be lowered for a service)."""
    if width * height > MAX_PIXELS:
        raise SimexplainError(f"{name}: image too large ({width}×{height} pixels; limit {MAX_PIXELS})")


def _decode(opened: Image.Image, name: str) -> Image.Image:
    """Check the header's size, then decode, orient and convert an image ``Image.open`` has just read."""
    _check_size(opened.width, opened.height, name)
    opened.load()
    return _to_rgb(ImageOps.exif_transpose(opened) or opened)


@contextmanager
def _one_line(name: str) -> Iterator[None]:
    """Turn what Pillow raises on a broken, hostile or oversized file into one ``SimexplainError`` line."""
    try:
        yield
    except SimexplainError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's own guard tripped (in ``Image.open`` or while decoding): the same line as ours.
        pixels = re.search(r"\d+", str(error))
        size = f"{pixels.group()} pixels" if pixels else "decompression-bomb guard"
        raise SimexplainError(f"{name}: image too large ({size}; limit {MAX_PIXELS})") from None
    except UnidentifiedImageError:
        raise SimexplainError(f"{name}: not an image file Pillow can read") from None
    except MemoryError:
        raise SimexplainError(f"{name}: not enough memory to decode the image") from None
    except _DECODE_ERRORS as error:
        text = str(error).strip()
        reason = _short(text.splitlines()[0] if text else type(error).__name__)
        raise SimexplainError(f"{name}: cannot read image ({reason})") from None


def _open(file: str | io.BytesIO, name: str) -> Image.Image:
    """Open a path or a buffer lazily (the header only), check its size, then decode."""
    with _one_line(name), Image.open(file) as image:
        return _decode(image, name)


def check_image_file(source: str | os.PathLike) -> str:
    """The path of an image file to read, checked without reading it: one line naming it when it is
    missing, not a regular file, or empty (the command line checks its inputs so, before any model work).

    Example:
        >>> check_image_file("no-such-photo.jpg")
        Traceback (most recent call last):
        ...
        simexplain.errors.SimexplainError: no-such-photo.jpg: no such file
    """
    path = os.fsdecode(os.fspath(source))
    name = _short(path, 200)
    if not os.path.isfile(path):
        raise SimexplainError(f"{name}: {'not a regular file' if os.path.exists(path) else 'no such file'}")
    if os.path.getsize(path) == 0:
        raise SimexplainError(f"{name}: empty file")
    return path


def _read_path(source: str | os.PathLike) -> Image.Image:
    path = check_image_file(source)
    return _open(path, _short(path, 200))


def _read_pil(image: Image.Image, name: str) -> Image.Image:
    """An image the caller opened: Pillow's guard may have been off then, so check before ``load()``."""
    with _one_line(name):
        return _decode(image, name)


def read_image(source: ImageSource, label: str = "image") -> Image.Image:
    """Open any supported source as an RGB PIL image; one clear error line naming the file otherwise.

    ``source`` is a path (``str`` / ``os.PathLike``), the encoded file as ``bytes`` / ``bytearray`` /
    ``memoryview`` (an upload, say), a PIL image, or an ``H×W[×C]`` array / ``[C×]H×W`` tensor. Errors name a
    path by itself and any other source by ``label``; they never echo the data.

    Example:
        >>> read_image(b"not a picture", "image 1")
        Traceback (most recent call last):
        ...
        simexplain.errors.SimexplainError: image 1: not an image file Pillow can read
    """
    name = _short(label, 80)
    if isinstance(source, Image.Image):
        return _read_pil(source, name)
    if isinstance(source, (np.ndarray, Tensor)):
        return _array_to_image(source, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)  # a memoryview of any format: its raw bytes
        if not data:
            raise SimexplainError(f"{name}: empty image data")
        return _open(io.BytesIO(data), name)
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source)
    raise SimexplainError(
        f"{name}: unsupported image source {_short(type(source).__name__, 60)} "
        "(use a path, the file's bytes, a PIL image, an array or a tensor)"
    )


def _array_size(shape: tuple[int, ...], channels_first: bool) -> tuple[int, int]:
    """``(width, height)`` of an image array of ``shape`` (``C×H×W`` when ``channels_first``)."""
    if len(shape) == 2:
        return shape[1], shape[0]
    if channels_first:
        return shape[2], shape[1]
    return shape[1], shape[0]


def _array_to_image(array: np.ndarray | Tensor, label: str) -> Image.Image:
    shape = tuple(int(n) for n in array.shape)
    channels_first = isinstance(array, Tensor) and len(shape) == 3 and shape[0] in (1, 3, 4)
    if len(shape) in (2, 3):
        # Before any copy, permute or conversion: a huge array is refused from its shape alone.
        _check_size(*_array_size(shape, channels_first), label)
    if isinstance(array, Tensor):
        array = array.detach()
        if array.dtype == torch.bfloat16:  # numpy has no bfloat16
            array = array.float()
        if channels_first:
            array = array.permute(1, 2, 0)
        array = array.cpu().numpy()
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise SimexplainError(f"{label}: array of shape {shape} is not an H×W, H×W×3 or H×W×4 image")
    if array.size == 0:
        raise SimexplainError(f"{label}: array of shape {shape} holds no pixels")
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.uint16:
        array = (array / 257.0).round().astype(np.uint8)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise SimexplainError(f"{label}: array holds NaN or infinite values")
        array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    else:
        raise SimexplainError(
            f"{label}: unsupported array dtype {array.dtype} (use uint8, uint16 or float in [0, 1])"
        )
    return _to_rgb(Image.fromarray(np.ascontiguousarray(array)))


def to_pixels(image: Image.Image, preprocessing: Preprocessing) -> Tensor:
    """Resize (shorter side), centre crop and convert to a ``3×H×W`` tensor in [0, 1]
    (:meth:`Preprocessing.image_to_pixels`: the model's own resampling)."""
    return preprocessing.image_to_pixels(image)


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


def view_pair(
    source: ImageSource, model: PairModel, seed: int, label: str = "image"
) -> tuple[Tensor, Tensor]:
    """An image and one SimCLR view of it drawn with a generator seeded by ``seed``: both ``1×3×H×W``
    model-input tensors on the model's device and dtype. The image is read and resized once."""
    from .transforms import simclr_view

    preprocessing = model.preprocessing
    pixels = to_pixels(read_image(source, label), preprocessing).unsqueeze(0)
    view = simclr_view(pixels, generator=torch.Generator().manual_seed(seed), size=preprocessing.input_size)
    x1, x2 = (preprocessing.to_model(p).to(device=model.device, dtype=model.dtype) for p in (pixels, view))
    return x1, x2
