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
    """Decorator: register a method (its parameters must be keyword-only, after ``model, x1, x2``).

    The method returns a :class:`PairExplanation` whose ``config`` holds every setting it used, resolved and
    JSON-serialisable (see ``docs/architecture.md``). A name can be registered once.
    """

    def decorate(fn: MethodFn) -> MethodFn:
        if name in _METHODS:
            raise SimexplainError(f"a method named {name!r} is already registered; choose another name")
        _METHODS[name] = Method(name, family, description, fn)
        return fn

    return decorate


FAMILY_ORDER = ("saliency", "perturbation", "activation")  # the paper's order


def available() -> dict[str, str]:
    """Every method name with its one-line description, family by family in the paper's order."""

    def rank(method: Method) -> int:
        return FAMILY_ORDER.index(method.family) if method.family in FAMILY_ORDER else len(FAMILY_ORDER)

    return {m.name: m.description for m in sorted(_METHODS.values(), key=rank)}


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
