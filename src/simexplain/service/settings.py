"""The settings grammar of a request: the one place that reads ``KEY=VALUE`` settings, for every door.

``simexplain explain``, ``evaluate``, ``dissect``, ``sanity`` and ``retrieve`` (``--set``), the web page and
API (``params``) and :func:`simexplain.service.prepare` all route their settings through
:func:`route_settings`, so they accept and refuse the same settings with the same one-line messages:

- ``METHOD.KEY=VALUE`` sets parameter ``KEY`` of ``METHOD``, which must be among the chosen methods;
- ``KEY=VALUE`` sets ``KEY`` on every chosen method that has such a parameter (with one method: on it); a
  setting no chosen method takes is refused;
- ``metrics.KEY=VALUE`` sets an option of the metrics (``step``, ``blur_kernel``, ``blur_sigma``); metrics
  must be asked for, since otherwise the setting could change nothing;
- ``METHOD.KEY`` wins over ``KEY``, whatever their order; the same key twice is refused;
- values are typed (:func:`simexplain.checks.parse_setting`: ``false`` → ``False``, ``20`` → ``20``,
  ``(0.1,0.3)`` → a tuple, other words stay text) and checked by the method's declared checks, before any
  model work.

Evaluation variants add one rule (:mod:`simexplain.studies.variants`): a variant's own bracket settings win
over ``--set``.

Example:
    >>> routed = route_settings(["samples=8", "smooth-grad.seed=3", "metrics.step=32"],
    ...                         ["smooth-grad", "input-x-gradient"], metrics=True)
    >>> routed.methods, routed.metrics
    ({'smooth-grad': {'samples': 8, 'seed': 3}, 'input-x-gradient': {}}, {'step': 32})
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..checks import parse_setting
from ..errors import SimexplainError

METRICS = "metrics"  # the prefix of the metrics' own settings
GRAMMAR = "KEY=VALUE, METHOD.KEY=VALUE or metrics.KEY=VALUE"

# Settings as given: "KEY=VALUE" strings (a command line), or key → value pairs (a mapping, a JSON object).
SettingsGiven = Sequence[str] | Mapping[str, Any] | Iterable[tuple[str, Any]]


@dataclass(frozen=True)
class Settings:
    """A request's settings, routed and checked.

    Attributes:
        methods: each chosen method → the parameters the settings give it (checked, in canonical types).
        metrics: the metrics' own options (checked), e.g. ``{"step": 32}``.
    """

    methods: dict[str, dict[str, Any]]
    metrics: dict[str, Any]

    def method_items(self) -> list[tuple[str, Any]]:
        """The methods' settings as ``("METHOD.KEY", value)`` pairs, for a caller that passes them on."""
        return [
            (f"{name}.{key}", value) for name, params in self.methods.items() for key, value in params.items()
        ]


def parse_settings(texts: Sequence[str]) -> list[tuple[str, Any]]:
    """``KEY=VALUE`` strings as ``(key, typed value)`` pairs; a string without ``=`` or key is refused.

    Example:
        >>> parse_settings(["guided=false", "smooth-grad.scale=(0.1, 0.2)"])
        [('guided', False), ('smooth-grad.scale', (0.1, 0.2))]
    """
    pairs = []
    for text in texts:
        key, equals, value = str(text).partition("=")
        if not equals or not key.strip():
            raise SimexplainError(f"a setting is {GRAMMAR}, got {text!r}")
        pairs.append((key.strip(), parse_setting(value)))
    return pairs


def route_settings(settings: SettingsGiven | None, methods: Sequence[str], *, metrics: bool) -> Settings:
    """Route ``settings`` to the chosen ``methods`` and the metrics, by the rules of this module's docstring.

    Args:
        settings: ``KEY=VALUE`` strings, or key → value pairs (text values are typed, others kept).
        methods: the chosen method names (registered).
        metrics: whether metrics are asked for (``metrics.KEY`` is refused otherwise).
    """
    pairs = _pairs(settings)
    routed: dict[str, dict[str, Any]] = {name: {} for name in methods}
    metric_options: dict[str, Any] = {}
    # Bare keys first, so that METHOD.KEY wins over KEY whatever the order they were given in.
    for key, value in sorted(pairs, key=lambda pair: "." in pair[0]):
        target, _, parameter = key.rpartition(".")
        if target == METRICS:
            metric_options[parameter] = _metric_option(key, parameter, value, metrics)
        else:
            for name in _targets(key, target, parameter, methods):
                routed[name][parameter] = _method_value(key, name, parameter, value)
    return Settings(routed, metric_options)


def _pairs(settings: SettingsGiven | None) -> list[tuple[str, Any]]:
    """The settings as ``(key, value)`` pairs with typed values; malformed keys and repeats refused."""
    if settings is None:
        return []
    if isinstance(settings, Mapping):
        items = list(settings.items())
    else:
        items = [item if isinstance(item, tuple) else parse_settings([item])[0] for item in settings]
    pairs, seen = [], set()
    for key, value in items:
        key = str(key).strip()
        target, dot, parameter = key.rpartition(".")
        if not parameter or (dot and not target):
            raise SimexplainError(f"setting {key!r}: write {GRAMMAR}")
        if key in seen:
            raise SimexplainError(f"setting {key!r} is given twice")
        seen.add(key)
        pairs.append((key, parse_setting(value) if isinstance(value, str) else value))
    return pairs


def _targets(key: str, target: str, parameter: str, methods: Sequence[str]) -> list[str]:
    """The chosen methods a setting goes to: its ``METHOD.``, or every chosen method with ``parameter``."""
    from ..methods import get

    chosen = ", ".join(methods) or "none"
    if target:
        if target not in methods:
            raise SimexplainError(f"setting {key!r}: {target!r} is not among the chosen methods ({chosen})")
        return [target]
    found = [name for name in methods if parameter in get(name).parameters()]
    if not found:
        raise SimexplainError(f"setting {key!r}: no chosen method has a parameter {parameter!r} ({chosen})")
    return found


def _method_value(key: str, method: str, parameter: str, value: Any) -> Any:
    from ..methods import get

    try:
        return get(method).check({parameter: value})[parameter]
    except SimexplainError as error:
        raise SimexplainError(f"setting {key!r}: {error}") from None


def _metric_option(key: str, option: str, value: Any, asked: bool) -> Any:
    from ..metrics.evaluate import check_options

    known = inspect.signature(check_options).parameters
    if option not in known:
        raise SimexplainError(
            f"setting {key!r}: the metrics have no setting {option!r}; theirs: {', '.join(known)}"
        )
    if not asked:
        raise SimexplainError(f"setting {key!r}: no metrics are asked for, so it would change nothing")
    try:
        return check_options(**{option: value})[option]
    except (SimexplainError, TypeError, ValueError) as error:
        raise SimexplainError(f"setting {key!r}: {error}") from None


__all__ = ["GRAMMAR", "METRICS", "Settings", "SettingsGiven", "parse_settings", "route_settings"]
