"""Models, devices and images for a request: each model loaded once and shared, every source read alike."""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from .. import checks
from ..errors import SimexplainError
from ..images import ImageSource, load_image
from ..pair import PairModel

_MODELS: dict[tuple, PairModel] = {}
_MODELS_LOCK = threading.Lock()


def check_model_name(name: str) -> str:
    """A registered model name (or a ``prefix:NAME`` route such as ``timm:resnet50``), else one line."""
    from ..models import available

    names = available()
    if name in names or (":" in name and name.split(":", 1)[0] + ":" in names):
        return name
    raise SimexplainError(f"unknown model {name!r}; known: {', '.join(sorted(names))}")


def get_model(
    name: str | None = None,
    *,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    engine: str = "auto",
    precision: str = "fp32",
    pair: str = "image",
) -> PairModel:
    """A registered model on ``device``, loaded once per (name, weights, device, engine, precision, pair) and
    shared by every caller; ``engine`` and ``precision`` choose what runs its gradient-free forwards
    (docs/engine.md); ``pair="image-text"`` loads it with its text tower (docs/image_text.md; a ``python:``
    model is built as its function builds it, and must have one).

    Sharing is safe: a :class:`PairModel` serialises its callers (one explanation at a time per model).
    """
    from ..models import DEFAULT_MODEL, load_model

    name = check_model_name(name or DEFAULT_MODEL)
    device = torch.device(device)
    key = (name, None if weights is None else str(weights), str(device), engine, precision, pair)
    options = {} if pair == "image" or name.startswith("python:") else {"pair": pair}
    with _MODELS_LOCK:
        if key not in _MODELS:
            model = load_model(name, weights=weights, engine=engine, precision=precision, **options)
            model = model.to(device)
            if pair == "image-text" and model.text_tower is None:
                raise SimexplainError(f"model {name!r} has no text tower (PairModel.image_text)")
            _MODELS[key] = model
        return _MODELS[key]


def check_device(name: str) -> torch.device:
    """A torch device that exists here; one line otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SimexplainError(f"unknown device {name!r} (use cpu or cuda[:N])") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SimexplainError(f"device {name!r} asked for, but no CUDA device is available (use cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SimexplainError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    return device


def load_pair(model: PairModel, image1: ImageSource, image2: ImageSource) -> tuple[Tensor, Tensor]:
    """Both images as model-input batches: tensors ``B×3×H×W`` are taken as they are (model-input space);
    paths, bytes, PIL images and arrays are read, resized and scaled for the model."""
    return _one(model, image1, "image 1"), _one(model, image2, "image 2")


def _one(model: PairModel, source: ImageSource, label: str) -> Tensor:
    if isinstance(source, Tensor) and source.dim() == 4:
        return source.to(model.device)
    return load_image(source, model, label)


def image_label(source: ImageSource, fallback: str) -> str:
    """A path's text, or ``fallback`` for images given as bytes, PIL images, arrays or tensors."""
    if isinstance(source, str):
        return source
    if hasattr(source, "__fspath__"):
        return str(source.__fspath__())
    return fallback


def demo_pair(model: PairModel, seed: int = 0) -> tuple[Tensor, Tensor, tuple[str, str]]:
    """The bundled cat photo and one seeded SimCLR augmentation of it (the paper's demo setting)."""
    from ..images import sample_path, view_pair

    seed = checks.non_negative_int("seed", seed)
    path = sample_path("chelsea.jpg")
    x1, x2 = view_pair(path, model, seed)
    return x1, x2, (str(path), f"SimCLR view of {path.name} (seed {seed})")


__all__ = ["check_device", "check_model_name", "demo_pair", "get_model", "image_label", "load_pair"]
