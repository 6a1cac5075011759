"""A checked request: the methods with their parameters, the metrics and their options, the batch size.

:func:`prepare` checks everything that needs no model (method names, settings, metric names, seed, batch
size), so a typo costs no model load; :func:`simexplain.service.run` then runs the :class:`Request`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .. import checks
from ..errors import SimexplainError
from .settings import SettingsGiven, route_settings

DEFAULT_METHODS = ("input-x-gradient", "interaction-cam")


class MethodCall(NamedTuple):
    """One method of a request and the parameters it is called with (checked)."""

    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Request:
    """A checked request, plain data: all :func:`simexplain.service.run` needs besides a model and images.

    Attributes:
        methods: the methods in the order asked for, each with its parameters.
        metrics: resolved metric names (empty: no metrics).
        metric_options: the metrics' own settings (``metrics.KEY``), never mixed with a method's.
        batch_size: images per forward for methods and metrics (``None``: the device's default).
        text: an image and a text (docs/image_text.md): the methods have image–text forms, the metrics are
            the image–text ones.
    """

    methods: tuple[MethodCall, ...]
    metrics: tuple[str, ...] = ()
    metric_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    text: bool = False


def prepare(
    methods: str | Sequence[str] = DEFAULT_METHODS,
    settings: SettingsGiven | None = None,
    metrics: str | Sequence[str] | None = None,
    *,
    seed: int | None = None,
    batch_size: int | None = None,
    text: bool = False,
) -> Request:
    """Check a request without touching a model.

    Args:
        methods: method names, a list or one comma-separated string.
        settings: ``KEY=VALUE`` strings or key → value pairs, in the grammar of
            :mod:`simexplain.service.settings` (``METHOD.KEY``, ``KEY``, ``metrics.KEY``); text is typed.
        metrics: metric names or ``"all"``; ``None``/empty for none.
        seed: given to every chosen method that takes a seed (unless the settings set it).
        batch_size: images per forward, for the methods that take it and the metrics.
        text: a request on an image and a text: every method needs an image–text form, and the metrics are
            ``CI CD CAD WI WD`` (``all``: those the method gives maps or word scores for).

    Example:
        >>> prepare("smooth-grad", {"samples": "20", "guided": "false"}, seed=3).methods
        (MethodCall(name='smooth-grad', params={'samples': 20, 'guided': False, 'seed': 3}),)
    """
    from ..methods import get

    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else [str(m) for m in methods]
    names = [name for name in names if name]
    if not names:
        raise SimexplainError("no method chosen")
    if len(set(names)) != len(names):
        raise SimexplainError(f"a method is chosen twice: {', '.join(names)}")
    entries = {name: get(name) for name in names}
    if text:
        from ..methods.image_text import check_text_form

        for name in names:
            check_text_form(name)
    wanted = _resolve_metrics(metrics, text)
    routed = route_settings(settings, names, metrics=bool(wanted))
    if batch_size is not None:
        batch_size = checks.positive_int("batch size", batch_size)
    calls = []
    for name, entry in entries.items():
        params = dict(routed.methods[name])
        known = entry.parameters()
        for key, value in (("seed", seed), ("batch_size", batch_size)):
            if value is not None and key in known:
                params.setdefault(key, value)
        calls.append(MethodCall(name, entry.check(params)))
    return Request(tuple(calls), wanted, routed.metrics, batch_size, text)


def _resolve_metrics(metrics: str | Sequence[str] | None, text: bool) -> tuple[str, ...]:
    """The metric names: the registry's for two images; for an image and a text, ``all`` or names among
    ``CI CD CAD WI WD`` (``all`` resolved per method when it runs)."""
    from ..metrics import IMAGE_TEXT_METRICS, resolve_metrics

    if not metrics:
        return ()
    if not text:
        return tuple(resolve_metrics(metrics))
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    if names == ["all"]:
        return ("all",)
    unknown = [name for name in names if name not in IMAGE_TEXT_METRICS]
    if unknown:
        raise SimexplainError(
            f"unknown metric {unknown[0]!r} for an image and a text; known: {', '.join(IMAGE_TEXT_METRICS)}"
        )
    return tuple(names)


__all__ = ["DEFAULT_METHODS", "MethodCall", "Request", "prepare"]
