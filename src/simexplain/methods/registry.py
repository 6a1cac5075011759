"""Method registry: a name → a function ``fn(model, x1, x2, **params) -> PairExplanation``.

A method may also register hooks for retrieval: how it explains ``K`` pairs that share one image 1 (a query
and its ``K`` matches) doing the shared image's work once (:func:`register_one_to_many`), and how it explains
the margin of two scores (:func:`register_margin`), and its form on image–text pairs (:func:`register_text`).
Callers ask the method for them (:attr:`Method.one_to_many`, :attr:`Method.margin`, :attr:`Method.text`)
instead of keeping lists of method names.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..checks import Validator, Work, declared_work
from ..errors import SimexplainError
from ..explanation import PairExplanation

MethodFn = Callable[..., PairExplanation]
# fn(model, x1 [1×3×H×W], x2 [K×3×H×W], *, embeddings, **settings) -> PairExplanation of the K pairs, or None
OneToManyFn = Callable[..., "PairExplanation | None"]
# fn(model, query, better, worse, **settings) -> ((map_query, map_better, map_worse), 2B scores: better first)
MarginFn = Callable[..., tuple]
# fn(model, images, tokens, *, partner, **settings) -> the word part of an image–text explanation
WordsFn = Callable[..., Any]


@dataclass(frozen=True)
class TextForm:
    """How a method runs on image–text pairs (docs/image_text.md): ``image_side`` — its own definition runs on
    the image with the text's embedding as the partner; ``words`` — what it computes on the text side (or the
    whole explanation, for a method of its own such as ``pair-interaction``'s patches × tokens)."""

    image_side: bool
    words: WordsFn | None = None


@dataclass(frozen=True)
class Method:
    """A registered method: its name, family, one-line description and function.

    Every keyword-only parameter of the function declares its check in its annotation,
    ``Annotated[type, validator]`` with a validator from :mod:`simexplain.checks`, so a request can be checked
    completely before any model work (:meth:`check`).
    """

    name: str
    family: str
    description: str
    fn: MethodFn
    needs: tuple[str, ...] = ("gradients",)

    @property
    def library(self) -> str | None:
        """The library an external method comes from (``captum``, ``grad-cam``: its name's prefix before
        ``:``), or ``None`` for simexplain's own methods."""
        prefix, colon, _ = self.name.partition(":")
        return prefix if colon else None

    @property
    def one_to_many(self) -> OneToManyFn | None:
        """The method's hook for ``K`` pairs that share one image 1, or ``None`` (see
        :func:`register_one_to_many`)."""
        return _HOOKS.get(("one_to_many", self.name))

    @property
    def margin(self) -> MarginFn | None:
        """The method's hook for the margin ``s(q, better) − s(q, worse)``, or ``None`` (see
        :func:`register_margin`)."""
        return _HOOKS.get(("margin", self.name))

    @property
    def text(self) -> TextForm | None:
        """The method's form on image–text pairs, or ``None`` (see :func:`register_text`)."""
        return _HOOKS.get(("text", self.name))

    def check_model(self, model: Any) -> None:
        """Refuse, in one line and before any model work, a model that lacks what the method needs
        (:data:`NEEDS`; a model says what it provides in ``model.capabilities``)."""
        provides = getattr(model, "capabilities", frozenset(NEEDS))
        missing = [need for need in self.needs if need not in provides]
        if missing:
            usable = [m.name for m in _METHODS.values() if set(m.needs) <= provides]
            name = getattr(model, "name", "?")
            raise SimexplainError(
                f"method {self.name!r} needs {NEEDS[missing[0]]}, and model {name!r} {LACKS[missing[0]]}; "
                f"methods that run on it: {', '.join(usable) or 'none'}"
            )

    def parameters(self) -> dict[str, object]:
        """The method's parameters with their defaults."""
        signature = inspect.signature(self.fn)
        return {
            p.name: p.default
            for p in list(signature.parameters.values())[3:]
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def validators(self) -> dict[str, Validator]:
        """Each parameter's validator, read from its ``Annotated`` annotation."""
        return _validators(self.fn)

    def work(self) -> dict[str, Work]:
        """The parameters that multiply the method's work, each with its :class:`~simexplain.checks.Work`
        declaration (read from its annotation), so that a server can cap them without naming methods.

        Example:
            >>> from simexplain.methods import get
            >>> get("smooth-grad").work(), get("interaction-cam").work()
            ({'samples': Work(unit='samples', count=None)}, {})
        """
        return declared_work(self.fn)

    def check(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The settings with known names only, each checked and in its canonical type (``"false"`` →
        ``False``, ``2.0`` → ``2``); one-line :class:`SimexplainError` otherwise. Needs no model."""
        known = self.parameters()
        unknown = [key for key in params if key not in known]
        if unknown:
            raise SimexplainError(
                f"method {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters: {', '.join(known) or 'none'}"
            )
        validators = self.validators()
        return {
            key: validators[key](key, value) if key in validators else value for key, value in params.items()
        }


@functools.cache
def _validators(fn: MethodFn) -> dict[str, Validator]:
    hints = typing.get_type_hints(fn, include_extras=True)
    found = {}
    for name, hint in hints.items():
        if typing.get_origin(hint) is typing.Annotated:
            found.update({name: meta for meta in hint.__metadata__ if callable(meta)})
    return found


_METHODS: dict[str, Method] = {}
_HOOKS: dict[tuple[str, str], Callable] = {}  # (kind, method name) → hook
# Name prefixes of optional methods whose package is missing → the line that says what to install.
_MISSING: dict[str, str] = {}

# What a method may need from a model, in the words of the refusal.
NEEDS = {
    "gradients": "a differentiable model (gradients or activations)",
    "embeddings": "a model with embeddings (a score function has none)",
    "text": "an image–text model (a text tower on side 2)",
}
# ... and what a model without it is.
LACKS = {"gradients": "is a black box", "embeddings": "is a black box", "text": "has no text tower"}
# Families whose methods only run forwards; the others differentiate or tap the model.
FORWARD_ONLY_FAMILIES = ("perturbation",)


def register(
    name: str, family: str, description: str, *, needs: tuple[str, ...] | None = None
) -> Callable[[MethodFn], MethodFn]:
    """Decorator: register a method (its parameters must be keyword-only, after ``model, x1, x2``, each
    annotated ``Annotated[type, validator]``).

    ``needs`` lists what the method needs from a model (:data:`NEEDS`): by default ``("gradients",)`` for
    every family but ``perturbation``, nothing for that one; a model without it is refused before any work.

    The method returns a :class:`PairExplanation` whose ``config`` holds every setting it used, resolved and
    JSON-serialisable (see ``docs/architecture.md``). A name can be registered once. The function returned
    checks its settings before calling the method, so direct calls are checked like :func:`explain`'s.
    """

    def decorate(fn: MethodFn) -> MethodFn:
        if name in _METHODS:
            raise SimexplainError(f"a method named {name!r} is already registered; choose another name")
        if needs is not None and not set(needs) <= set(NEEDS):
            raise SimexplainError(f"method {name!r}: needs must be among {', '.join(NEEDS)}, got {needs!r}")
        default = () if family in FORWARD_ONLY_FAMILIES else ("gradients",)
        entry = Method(name, family, description, fn, tuple(default if needs is None else needs))
        unchecked = [p for p in entry.parameters() if p not in entry.validators()]
        if unchecked:
            raise SimexplainError(
                f"method {name!r}: parameter {', '.join(unchecked)} declares no check; annotate it "
                "Annotated[type, validator] with a validator from simexplain.checks"
            )
        _METHODS[name] = entry

        @functools.wraps(fn)
        def checked(model, x1, x2, **params):  # noqa: ANN001, ANN202  (the signature is fn's, via wraps)
            params = entry.check(params)
            entry.check_model(model)
            return fn(model, x1, x2, **params)

        return checked

    return decorate


FAMILY_ORDER = ("saliency", "perturbation", "activation")  # the paper's order


def register_one_to_many(name: str) -> Callable[[OneToManyFn], OneToManyFn]:
    """Decorator: register ``fn`` as method ``name``'s way to explain ``K`` pairs that share ONE image 1 (a
    retrieval query and its ``K`` matches), doing that image's work once.

    ``fn(model, x1, x2, *, embeddings, **settings)`` gets ``x1`` (``1×3×H×W``) and ``x2`` (``K×3×H×W``)
    checked and on the model's device, inside :meth:`PairModel.explaining`; ``settings`` are every parameter
    of the method, checked, defaults filled in; ``embeddings`` are the clean ``(f_a(x1) 1×E, f_b(x2) K×E)``
    when the caller has them, else ``None``. It returns what the method returns for ``x1`` repeated ``K``
    times (maps, score and config equal to float precision), or ``None`` when these settings leave nothing to
    share (the caller then explains the ``K`` pairs with the method). One hook per method, registered after
    it.

    Example:
        >>> from simexplain.methods import get
        >>> get("conditional-occlusion").one_to_many is not None, get("pair-interaction").one_to_many
        (True, None)
    """
    return _hook("one_to_many", name)


def register_margin(name: str) -> Callable[[MarginFn], MarginFn]:
    """Decorator: register ``fn`` as method ``name``'s way to explain the margin ``s(q, b) − s(q, w)`` of
    ``B`` triplets (docs/second_order.md), for :func:`simexplain.explain_margin`.

    ``fn(model, query, better, worse, **settings)`` gets the three ``B×3×H×W`` batches checked, inside
    :meth:`PairModel.explaining`, and every setting of the method (checked, defaults filled in); it returns
    ``((map_query, map_better, map_worse), scores)`` with ``scores`` the ``2B`` scores, better pairs first.
    """
    return _hook("margin", name)


def register_text(name: str, *, image_side: bool, words: WordsFn | None = None) -> None:
    """Register method ``name``'s form on image–text pairs (docs/image_text.md): with ``image_side``, the
    method's own definition runs on the image against the text's embedding; ``words(model, images, tokens, *,
    partner, **settings)`` computes its text side (``partner``: the images' clean embeddings). A method
    without a text form is refused on an image–text model in one line.

    Example:
        >>> from simexplain.methods import get
        >>> get("smooth-grad").text.image_side, get("pairwise-occlusion").text
        (True, None)
    """
    _hook("text", name)(TextForm(image_side, words))


def _hook(kind: str, name: str) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        if name not in _METHODS:
            raise SimexplainError(f"register the method {name!r} before its {kind.replace('_', '-')} hook")
        if (kind, name) in _HOOKS:
            raise SimexplainError(f"method {name!r} already has a {kind.replace('_', '-')} hook")
        _HOOKS[kind, name] = fn
        return fn

    return decorate


def available() -> dict[str, str]:
    """Every method name with its one-line description: simexplain's own methods first, family by family in
    the paper's order, then the external libraries' (``captum:``, ``grad-cam:``), library by library.

    Example:
        >>> list(available())[:3]
        ['input-x-gradient', 'smooth-grad', 'averaged-transforms']
    """

    def rank(method: Method) -> tuple[bool, str, int]:
        family = FAMILY_ORDER.index(method.family) if method.family in FAMILY_ORDER else len(FAMILY_ORDER)
        return method.library is not None, method.library or "", family

    return {m.name: m.description for m in sorted(_METHODS.values(), key=rank)}


def image_pair_methods() -> list[str]:
    """The methods that run on two images: every method of :func:`available` but those of image–text pairs
    only (their word scores need a text tower: ``integrated-gradients``, ``word-occlusion``).

    Example:
        >>> "input-x-gradient" in image_pair_methods(), "word-occlusion" in image_pair_methods()
        (True, False)
    """
    return [name for name in available() if "text" not in _METHODS[name].needs]


def register_missing(prefix: str, message: str) -> None:
    """Record that the optional methods named ``prefix…`` are absent, and the one line that says why (which
    extra to install); :func:`get` answers a request for such a name with it."""
    _MISSING[prefix] = message


def get(name: str) -> Method:
    if name not in _METHODS:
        for prefix, message in _MISSING.items():
            if isinstance(name, str) and name.startswith(prefix):
                raise SimexplainError(f"method {name!r} is not available: {message}")
        raise SimexplainError(f"unknown method {name!r}; known: {', '.join(_METHODS)}")
    return _METHODS[name]
