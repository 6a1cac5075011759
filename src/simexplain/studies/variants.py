"""Method variants of an evaluation: the paper's 17 table rows, or a user's list such as
``interaction-cam[reduction=max;gradient_interaction=true],smooth-grad``.

A :class:`Variant` is a method with settings, named by a canonical ``label`` (its key in the store and the
reports) and a ``title`` (its row name in the tables). The label holds the method and the settings written
in its brackets, in the order given: ``true``/``false`` for booleans, Python's ``repr`` for numbers,
``(a,b)`` for tuples; a variant equal to one of the paper's rows takes that row's label, however its settings
were written. The command's ``--set`` settings (the one grammar of :mod:`simexplain.service.settings`:
``METHOD.KEY=VALUE``, or ``KEY=VALUE`` for every chosen method that has ``KEY``) are applied to every
variant of their method, a bracket setting winning, but stay out of the label: they are the run's settings,
recorded with the run.

Example:
    >>> [v.label for v in parse_variants("smooth-grad[samples=8],interaction-cam[reduction=max]")]
    ['smooth-grad[samples=8]', 'interaction-cam[reduction=max;gradient_interaction=false]']
    >>> len(PAPER_VARIANTS), PAPER_VARIANTS[7].title
    (17, 'Int-CAM max GI')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .. import checks
from ..errors import SimexplainError
from ..methods import get
from ..service.settings import Settings, SettingsGiven, route_settings


@dataclass(frozen=True)
class Variant:
    """One method variant of an evaluation.

    Attributes:
        label: canonical name in the store and the reports, e.g. ``input-x-gradient[guided=true]``, or the
            bare method name when the variant has no settings of its own.
        method: the registered method's name.
        params: the settings the method is called with, checked by the method registry (the label's settings,
            then the run's ``--set`` settings for this method).
        title: the row name in the tables: the paper's (``Input×Gradient (G)``) or else the label.
    """

    label: str
    method: str
    params: dict
    title: str


# The rows of the paper's Tables I–IV, in the paper's order: (label, title).
_PAPER_ROWS = (
    ("conditional-occlusion", "Conditional Occlusion"),
    ("pairwise-occlusion", "Pairwise Occlusion"),
    ("deep-similarity", "Deep Similarity"),
    ("pair-grad-cam", "Pair Grad-CAM"),  # "Baseline Grad-CAM" in the paper
    *(
        (
            f"interaction-cam[reduction={reduction};gradient_interaction={'true' if gi else 'false'}]",
            f"Int-CAM {reduction}{' GI' if gi else ''}",
        )
        for reduction in ("mean", "max", "attn")
        for gi in (False, True)
    ),
    ("input-x-gradient", "Input×Gradient"),
    ("input-x-gradient[guided=true]", "Input×Gradient (G)"),
    ("smooth-grad", "Smooth-Grad"),
    ("smooth-grad[guided=true]", "Smooth-Grad (G)"),
    ("averaged-transforms", "Avg. Transforms"),
    ("averaged-transforms[guided=true]", "Avg. Transforms (G)"),
    ("averaged-transforms[noise=true]", "Avg. Transforms (N)"),
)


def parse_variants(text: str, settings: SettingsGiven | None = None) -> list[Variant]:
    """The variants named by ``text``, with the command's ``settings`` applied.

    Args:
        text: ``all`` (the paper's 17 rows, :data:`PAPER_VARIANTS`) or comma-separated items ``NAME`` or
            ``NAME[KEY=VALUE;KEY=VALUE]`` (an item may also be ``all``). Values are read with
            :func:`simexplain.checks.parse_setting`, so ``scale=(0.1,0.2)`` is a tuple and ``guided=yes`` is
            ``True``; commas inside brackets or parentheses do not split items.
        settings: the command's ``--set`` settings (strings or key → value pairs), routed to the chosen
            variants' methods by :func:`simexplain.service.route_settings` and applied to every variant of
            their method unless its brackets set the key. No metrics are chosen here, so ``metrics.KEY`` is
            refused: a command with metrics routes its settings itself and calls :func:`with_settings`.

    Unknown methods, parameters or values, a variant chosen twice (the same method with the same settings,
    defaults included) and a setting no chosen method takes are each refused with a one-line
    :class:`SimexplainError`.

    Example:
        >>> v = parse_variants("pairwise-occlusion[scale=(0.1, 0.2)],smooth-grad", ["smooth-grad.samples=8"])
        >>> [(x.label, x.params) for x in v]
        [('pairwise-occlusion[scale=(0.1,0.2)]', {'scale': (0.1, 0.2)}), ('smooth-grad', {'samples': 8})]
    """
    if not isinstance(text, str):
        raise SimexplainError(f"methods must be text such as all or a comma-separated list, got {text!r}")
    items = [item.strip() for item in _split(text, ",", text)]
    if not any(items):
        raise SimexplainError("no method chosen (give all or a comma-separated list of method names)")
    variants: list[Variant] = []
    for item in filter(None, items):
        if item.lower() == "all":
            variants += [replace(v, params=dict(v.params)) for v in PAPER_VARIANTS]
        else:
            variants.append(_variant(item))
    _refuse_twice(variants)
    if settings is None:
        return variants
    return with_settings(variants, route_settings(settings, methods_of(variants), metrics=False))


def methods_of(variants: list[Variant]) -> list[str]:
    """The variants' methods, each once, in order: the chosen methods their settings are routed to."""
    return list(dict.fromkeys(variant.method for variant in variants))


def with_settings(variants: list[Variant], settings: Settings) -> list[Variant]:
    """Each variant with the routed settings of its method added, its own bracket settings winning.

    Example:
        >>> from simexplain.service import route_settings
        >>> chosen = parse_variants("smooth-grad[samples=2],input-x-gradient")
        >>> routed = route_settings(["samples=5", "guided=true"], methods_of(chosen), metrics=False)
        >>> [v.params for v in with_settings(chosen, routed)]
        [{'samples': 2, 'guided': True}, {'guided': True}]
    """
    return [replace(v, params={**settings.methods.get(v.method, {}), **v.params}) for v in variants]


def _split(text: str, separator: str, context: str) -> list[str]:
    """``text`` split at ``separator`` outside brackets and parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
            if depth < 0:
                raise SimexplainError(f"unbalanced brackets in {context!r}")
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise SimexplainError(f"unbalanced brackets in {context!r}")
    return [*parts, text[start:]]


def _variant(item: str, title: str | None = None) -> Variant:
    """One item ``NAME`` or ``NAME[KEY=VALUE;...]``, checked by the method registry."""
    name, bracket, rest = item.partition("[")
    name = name.strip()
    if bracket and not rest.endswith("]"):
        raise SimexplainError(
            f"method variant {item!r}: settings go in brackets at the end, NAME[KEY=VALUE;...]"
        )
    given: dict[str, Any] = {}
    for setting in filter(str.strip, _split(rest[:-1], ";", item) if bracket else []):
        key, equals, value = (part.strip() for part in setting.partition("="))
        if not equals or not key:
            raise SimexplainError(
                f"method variant {item!r}: write each setting as KEY=VALUE, got {setting!r}"
            )
        if key in given:
            raise SimexplainError(f"method variant {item!r}: {key} is set twice")
        given[key] = checks.parse_setting(value)
    if not name:
        raise SimexplainError(f"method variant {item!r} has no method name")
    try:
        params = get(name).check(given)
    except SimexplainError as error:
        raise SimexplainError(f"method variant {item!r}: {error}") from None
    paper = None if title else _paper_row(name, params)
    if paper is not None:  # one variant, one label in the store, however its settings were written
        return Variant(paper.label, name, params, paper.title)
    label = name + (f"[{';'.join(f'{k}={_text(v)}' for k, v in params.items())}]" if params else "")
    return Variant(label, name, params, title or label)


def _text(value: Any) -> str:
    """A setting as the label writes it: true/false, numbers by ``repr``, ``(a,b)`` / ``[a,b]`` without
    spaces, ``none``, text as it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "(" + ",".join(map(_text, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ",".join(map(_text, value)) + "]"
    return repr(value) if isinstance(value, int | float) else str(value)


def _resolved(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The method's settings with its defaults filled in (equal for equal variants, however written)."""
    return {**get(method).parameters(), **params}


def _paper_row(method: str, params: Mapping[str, Any]) -> Variant | None:
    """The paper's row equal to this variant (defaults filled in), if any."""
    resolved = _resolved(method, params)
    for variant in PAPER_VARIANTS:
        if variant.method == method and _resolved(method, variant.params) == resolved:
            return variant
    return None


def _refuse_twice(variants: list[Variant]) -> None:
    seen: dict[str, list[tuple[dict, str]]] = {}
    for variant in variants:
        resolved = _resolved(variant.method, variant.params)
        for other, label in seen.get(variant.method, []):
            if other == resolved:
                same = "" if label == variant.label else f" (as {label})"
                raise SimexplainError(f"method variant {variant.label} is chosen twice{same}")
        seen.setdefault(variant.method, []).append((resolved, variant.label))


PAPER_VARIANTS: tuple[Variant, ...] = tuple(_variant(label, title) for label, title in _PAPER_ROWS)

__all__ = ["PAPER_VARIANTS", "Variant", "methods_of", "parse_variants", "with_settings"]
