"""A hub repository's image processor (``preprocessor_config.json``) as simexplain's :class:`Preprocessing`.

The processor is read through transformers itself (its class defaults included) with the torchvision backend,
the default of transformers 5, so ``Preprocessing(backend="tensor")`` reproduces its pixels
(``backend="float"`` for the processors that rescale before they resize, DINOv3's).
"""

from __future__ import annotations

import dataclasses

from ...errors import SimexplainError
from ...preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

# Processors that scale to [0, 1] before resizing (no uint8 rounding in between).
_RESCALE_FIRST = ("DINOv3ViTImageProcessor",)

# PIL's resampling codes, as processors store them.
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}

FALLBACK = Preprocessing(
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    description="no preprocessor_config.json in the repository: ImageNet mean/std, resize 256, crop 224",
    backend="tensor",
)


def from_processor(processor, what: str) -> Preprocessing:
    """The resize, crop, interpolation, mean and std of a transformers image processor.

    ConvNeXt's processors resize to ``shortest_edge / crop_pct`` and crop ``shortest_edge`` (below 384 pixels)
    or warp to ``shortest_edge`` (from 384 on), as transformers does.
    """
    size, crop = processor.size, getattr(processor, "crop_size", None)
    if getattr(processor, "do_rescale", True) and abs(processor.rescale_factor * 255 - 1) > 1e-6:
        raise SimexplainError(
            f"{what}: the image processor rescales by {processor.rescale_factor}, not 1/255"
        )
    resample = int(getattr(processor, "resample", 3))
    if resample not in _RESAMPLE:
        raise SimexplainError(f"{what}: the image processor's resampling {resample} is not supported")
    normalise = getattr(processor, "do_normalize", True)
    mean = tuple(processor.image_mean) if normalise else (0.0, 0.0, 0.0)
    std = tuple(processor.image_std) if normalise else (1.0, 1.0, 1.0)
    resize, input_size = _geometry(processor, size, crop, what)
    return Preprocessing(
        input_size=input_size,
        resize=resize,
        mean=mean,
        std=std,
        description=f"{type(processor).__name__} of the repository: resize {resize or 'to the input'}, "
        f"crop {input_size[0]}×{input_size[1]}, {_RESAMPLE[resample]}, mean {mean} std {std}",
        interpolation=_RESAMPLE[resample],
        backend="float" if type(processor).__name__ in _RESCALE_FIRST else "tensor",
    )


def _geometry(processor, size, crop, what: str) -> tuple[int | tuple[int, int] | None, tuple[int, int]]:
    """``(resize, input_size)`` of a processor's ``size`` and ``crop_size``."""
    cropped = bool(getattr(processor, "do_center_crop", False)) and crop is not None and crop.height
    crop_hw = (crop.height, crop.width) if cropped else None
    crop_pct = getattr(processor, "crop_pct", None)
    if size.shortest_edge and crop_pct and type(processor).__name__.startswith("ConvNext"):
        edge = size.shortest_edge
        return (int(edge / crop_pct), (edge, edge)) if edge < 384 else (None, (edge, edge))
    if size.height and size.width:
        warp = (size.height, size.width)
        return (None, warp) if crop_hw in (None, warp) else (warp, crop_hw)
    if size.shortest_edge:
        # Without a crop the processor keeps the aspect ratio: the centre square is taken here.
        return size.shortest_edge, crop_hw or (size.shortest_edge, size.shortest_edge)
    raise SimexplainError(f"{what}: the image processor's size {size} is not supported")


def at_size(p: Preprocessing, size: int | tuple[int, int]) -> Preprocessing:
    """``p`` at another input size, the resize scaled in proportion (DINOv2 at 448: resize 512).

    Example:
        >>> at_size(Preprocessing(input_size=(224, 224), resize=256), 448).resize
        512
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 16 or w < 16:
        raise SimexplainError(f"input_size {h}×{w} is too small (at least 16×16)")
    scale = min(h, w) / min(p.input_size)
    if p.resize is None:
        resize = None
    elif isinstance(p.resize, int):
        resize = round(p.resize * scale)
    else:
        resize = (round(p.resize[0] * h / p.input_size[0]), round(p.resize[1] * w / p.input_size[1]))
    return dataclasses.replace(
        p, input_size=(h, w), resize=resize, description=f"{p.description}; at {h}×{w}"
    )
