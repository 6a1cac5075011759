"""Method registry: a name → a function ``fn(model, x1, x2, **params) -> PairExplanation``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import SimexplainError
from ..explanation import PairExplanation

MethodFn = Callable[..., PairExplanation]


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    description: str
    fn: MethodFn

    def parameters(self) -> dict[str, object]:
        """The method's parameters with their defaults."""
        signature = inspect.signature(self.fn)
        return {
            p.name: p.default
            for p in list(signature.parameters.values())[3:]
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }


_METHODS: dict[str, Method] = {}


def register(name: str, family: str, description: str) -> Callable[[MethodFn], MethodFn]:
    """Decorator: register a method (its parameters must be keyword-only, after ``model, x1, x2``)."""

    def decorate(fn: MethodFn) -> MethodFn:
        _METHODS[name] = Method(name, family, description, fn)
        return fn

    return decorate


def available() -> dict[str, str]:
    """Every method name with its one-line description."""
    return {name: method.description for name, method in _METHODS.items()}


def get(name: str) -> Method:
    if name not in _METHODS:
        raise SimexplainError(f"unknown method {name!r}; known: {', '.join(_METHODS)}")
    return _METHODS[name]


def check_params(method: Method, params: dict) -> None:
    known = method.parameters()
    unknown = [key for key in params if key not in known]
    if unknown:
        raise SimexplainError(
            f"method {method.name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters: {', '.join(known) or 'none'}"
        )
