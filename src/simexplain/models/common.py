"""Small pieces shared by the zoo's builders: preprocessing at a chosen input size, random-weight notes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import SimexplainError
from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from .checkpoints import load_matching, state_dict_at

T = TypeVar("T", bound=nn.Module)

RANDOM_WEIGHTS = "RANDOM WEIGHTS (no checkpoint given: architecture only)"


def random_note(weights: str | os.PathLike | None) -> str:
    """The description suffix of a model built without a checkpoint ("" when ``weights`` is given)."""
    return "" if weights is not None else f"; {RANDOM_WEIGHTS}"


def sized(
    size: int | tuple[int, int], *, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), description: str
) -> Preprocessing:
    """Preprocessing facts at ``size`` (the paper: resize 256, centre crop 224; other sizes keep that ratio).

    Example:
        >>> sized(64, description="[0, 1] pixels").resize
        73
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 16 or w < 16:
        raise SimexplainError(f"input_size {h}×{w} is too small (at least 16×16)")
    return Preprocessing(
        input_size=(h, w),
        resize=round(min(h, w) * 256 / 224),
        mean=tuple(mean),
        std=tuple(std),
        description=description,
    )


def imagenet(size: int | tuple[int, int] = 224, note: str = "") -> Preprocessing:
    """ImageNet mean/std preprocessing at ``size``."""
    return sized(size, mean=IMAGENET_MEAN, std=IMAGENET_STD, description="ImageNet mean/std" + note)


def file_name(weights: str | os.PathLike | None) -> str:
    return os.path.basename(os.fspath(weights)) if weights is not None else ""


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SimexplainError(f"{what}: unknown option {value!r}; choose one of {', '.join(choices)}")
    return value


def instantiate(factory: Callable[[], T], *, random: bool, seed: int = 0) -> T:
    """Build ``factory()`` on the ``meta`` device: no memory and no initialisation cost.

    A checkpoint is then loaded with ``assign=True`` (see :func:`finish`); ``random=True`` materialises the
    module on the CPU with a quick seeded fan-in initialisation instead (architecture only, for tests and dry
    runs: timm's own ViT initialisation takes seconds per encoder).
    """
    with torch.device("meta"):
        module = factory()
    if random:
        module.to_empty(device="cpu")
        random_init(module, seed)
    return module


@torch.no_grad()
def random_init(module: nn.Module, seed: int = 0) -> None:
    """Weights ``N(0, 1/fan_in)``, norm scales 1, biases 0, BN running statistics (0, 1): finite, cheap."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in module.named_parameters():
        if param.dim() >= 2:
            param.normal_(0.0, param[0].numel() ** -0.5, generator=generator)
        else:
            param.fill_(1.0 if name.endswith("weight") else 0.0)
    for name, buffer in module.named_buffers():
        buffer.fill_(1 if name.endswith("running_var") else 0)


def load_entry(
    module: nn.Module,
    obj: Any,
    path: Sequence[str],
    *,
    what: str,
    file: str | os.PathLike,
    label: str | None = None,
) -> None:
    """Load the state dict at ``path`` of the loaded checkpoint ``obj`` into ``module`` (built by
    :func:`instantiate`): strict match, tensors assigned; ``label`` names the part in errors
    (default ``what``)."""
    state = state_dict_at(obj, path, what=what, file=file)
    load_matching(module, state, what=label or what, source=obj, assign=True)


def finish(module: nn.Module, what: str) -> nn.Module:
    """Check that nothing was left on the ``meta`` device (every tensor came from the file), eval mode."""
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise SimexplainError(f"{what}: the checkpoint left {len(left)} tensors unset (e.g. {left[0]})")
    return module.eval()
