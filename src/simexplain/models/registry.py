"""Model registry: names → builders returning a :class:`~simexplain.pair.PairModel`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import SimexplainError
from ..pair import PairModel


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., PairModel]
    description: str
    embedding: str = ""
    preprocessing: str = ""
    layer: str = ""
    needs_weights: bool = False


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, description: str, **facts) -> Callable:
    """Decorator: register ``builder(weights=None, **options) -> PairModel`` under ``name``."""

    def decorate(builder: Callable[..., PairModel]) -> Callable[..., PairModel]:
        _MODELS[name] = ModelEntry(name, builder, description, **facts)
        return builder

    return decorate


def available() -> dict[str, ModelEntry]:
    """Every registered model name with its facts."""
    return dict(_MODELS)


def load_model(name: str, weights: str | None = None, **options) -> PairModel:
    """Build a registered model (``simexplain models`` lists them).

    Example:
        >>> model = load_model("efficientnet-lite0")   # the offline default (a supervised model)
        >>> model.name
        'efficientnet-lite0'
    """
    if name not in _MODELS:
        prefix = name.split(":", 1)[0] + ":" if ":" in name else None
        if prefix and prefix in _MODELS:
            return _MODELS[prefix].builder(name.split(":", 1)[1], weights=weights, **options)
        raise SimexplainError(f"unknown model {name!r}; known: {', '.join(sorted(_MODELS))}")
    entry = _MODELS[name]
    if entry.needs_weights and weights is None:
        raise SimexplainError(f"model {name!r} needs its checkpoint file: pass weights=PATH (--weights PATH)")
    return entry.builder(weights=weights, **options)
