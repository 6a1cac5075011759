"""Model registry: names → builders returning a :class:`~simexplain.pair.PairModel`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from ..engines.registry import check_engine, check_precision, check_setting
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
    # For a ``prefix:`` route: the families of models it knows (embedding, preprocessing, layer, tokens).
    families: tuple[str, ...] = ()


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, description: str, **facts) -> Callable:
    """Decorator: register ``builder(weights=None, **options) -> PairModel`` under ``name``.

    A name is registered once: a second registration is refused rather than silently replacing the first.
    """

    def decorate(builder: Callable[..., PairModel]) -> Callable[..., PairModel]:
        if name in _MODELS:
            raise SimexplainError(f"model {name!r} is already registered; pick another name")
        _MODELS[name] = ModelEntry(name, builder, description, **facts)
        return builder

    return decorate


def available() -> dict[str, ModelEntry]:
    """Every registered model name with its facts."""
    return dict(_MODELS)


def builder_options(builder: Callable[..., PairModel], *, route: bool = False) -> tuple[str, ...] | None:
    """The keyword options ``builder`` takes besides ``weights`` (and, for a ``prefix:`` route, the name).

    Options already fixed by a :func:`functools.partial` are not offered again. ``None`` means the builder
    takes any keyword (``**options``) and checks them itself.
    """
    fixed = set(builder.keywords) if isinstance(builder, functools.partial) else set()
    parameters = list(inspect.signature(builder).parameters.values())
    if route and parameters:
        parameters = parameters[1:]  # the architecture name after the prefix
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return tuple(
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.name != "weights"
        and p.name not in fixed
    )


def _check_options(name: str, builder: Callable[..., PairModel], options: dict, *, route: bool) -> None:
    accepted = builder_options(builder, route=route)
    if accepted is None:
        return
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise SimexplainError(
            f"model {name!r} does not take option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted) or 'no options'}"
        )


def load_model(
    name: str, weights: str | None = None, *, engine: str = "auto", precision: str = "fp32", **options
) -> PairModel:
    """Build a registered model (``simexplain models`` lists them).

    ``engine`` and ``precision`` choose what runs its gradient-free forwards (docs/engine.md); they are
    checked before the model is built and set on every model, whatever its builder.

    Example:
        >>> model = load_model("efficientnet-lite0")  # the offline default (a supervised model)
        >>> model.name, model.engine
        ('efficientnet-lite0', 'auto')
    """
    check_setting(check_engine(engine), check_precision(precision))
    model = _build(name, weights, options)
    model.engine = "auto"  # takes any precision: the way to the asked-for pair
    model.precision = precision
    model.engine = engine
    return model


def _build(name: str, weights: str | None, options: dict) -> PairModel:
    if name not in _MODELS:
        prefix = name.split(":", 1)[0] + ":" if ":" in name else None
        if prefix and prefix in _MODELS:
            builder = _MODELS[prefix].builder
            _check_options(name, builder, options, route=True)
            return builder(name.split(":", 1)[1], weights=weights, **options)
        raise SimexplainError(f"unknown model {name!r}; known: {', '.join(sorted(_MODELS))}")
    entry = _MODELS[name]
    _check_options(name, entry.builder, options, route=False)
    if entry.needs_weights and weights is None:
        raise SimexplainError(f"model {name!r} needs its checkpoint file: pass weights=PATH (--weights PATH)")
    return entry.builder(weights=weights, **options)
