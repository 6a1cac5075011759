"""Pair explanation methods, one module per family, reached through a registry by name.

Example:
    >>> import simexplain
    >>> "interaction-cam" in simexplain.methods.available()
    True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..pair import PairModel
from . import cam, interaction, occlusion, saliency  # noqa: F401  (importing a family registers its methods)
from .common import check_pair
from .image_text import explain_image_text, image_text_methods
from .registry import Method, available, get, image_pair_methods, register
from .text_explanation import ImageTextExplanation


def explain(
    model: PairModel, x1: Tensor, x2: Tensor | Sequence[str] | str, method: str = "input-x-gradient", **params
) -> PairExplanation | ImageTextExplanation:
    """Explain the similarity of the pairs ``(x1[i], x2[i])`` with ``method``; with texts as ``x2`` (a model
    with a text tower), the image–text explanation of
    :func:`~simexplain.methods.image_text.explain_image_text`.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)))
        >>> e = simexplain.explain(model, torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
        >>> e.map1.shape
        torch.Size([2, 8, 8])

    The model is put in eval mode with frozen parameters for the call, and every mode, ``requires_grad`` flag
    and hook is as before afterwards, also when the method raises. The call holds the model's lock, so threads
    sharing a model take turns. ``explain(model, x1, x2, e.method, **e.config)`` reproduces ``e``.
    """
    if getattr(model, "text_tower", None) is not None or is_text(x2):
        return explain_image_text(model, x1, x2, method, **params)
    entry = get(method)
    params = entry.check(params)
    entry.check_model(model)
    x1, x2 = check_pair(model, x1, x2)
    with model.explaining():
        explanation = entry.fn(model, x1, x2, **params)
    _check_contract(entry, explanation)
    return explanation


def is_text(value: Any) -> bool:
    """A string or a non-empty list of strings (texts, for an image–text model)."""
    if isinstance(value, str):
        return True
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(v, str) for v in value)


def _check_contract(entry: Method, explanation: PairExplanation) -> None:
    """A method's config must be plain data (it is written to JSON and re-run); its name must be its own."""
    try:
        json.dumps(explanation.config, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise SimexplainError(
            f"method {entry.name!r} returned a config that is not plain JSON data: {error}"
        ) from None
    if explanation.method != entry.name:
        raise SimexplainError(f"method {entry.name!r} labelled its explanation {explanation.method!r}")


__all__ = [
    "ImageTextExplanation",
    "Method",
    "available",
    "explain",
    "explain_image_text",
    "get",
    "image_pair_methods",
    "image_text_methods",
    "is_text",
    "register",
]
