"""How much work one request may ask for.

A method parameter (or a metric option) that multiplies the work declares it in its annotation
(:class:`simexplain.checks.Work`: Smooth-Grad's ``samples``, Conditional Occlusion's ``stride`` through the
windows it makes, the metrics' ``step`` through the curve points, ...). The server caps each unit of work per
request (``simexplain serve --max-samples``, ``--max-windows``, ...; defaults in
:data:`simexplain.checks.WORK_UNITS`) and refuses a request over a cap with 422, naming the setting and the
cap, before anything runs. Nothing here names a method: the registry says which parameters count.

Example:
    >>> from simexplain import service
    >>> request = service.prepare("smooth-grad,conditional-occlusion", {"samples": 20, "stride": 4})
    >>> [(a.setting, a.count, a.unit) for a in asked_work(request, (224, 224))]
    [('smooth-grad.samples', 20, 'samples'), ('conditional-occlusion.stride', 1681, 'windows')]
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, NamedTuple

from .. import checks, service
from ..errors import SimexplainError
from ..service.settings import METRICS
from .requests import RequestError

DEFAULT_LIMITS: dict[str, int] = {unit: default for unit, (_, default) in checks.WORK_UNITS.items()}


class Asked(NamedTuple):
    """One setting of a request that multiplies the work: its name as a request writes it, its value, the
    unit and how many units it asks for."""

    setting: str
    value: Any
    unit: str
    count: int


def work_limits(given: Mapping[str, int] | None = None) -> dict[str, int]:
    """Every unit's cap: :data:`DEFAULT_LIMITS` with ``given`` over them (an unknown unit or a cap below 1 is
    refused in one line).

    Example:
        >>> work_limits({"samples": 200})["samples"], work_limits()["steps"]
        (200, 1000)
    """
    limits = dict(DEFAULT_LIMITS)
    for unit, limit in (given or {}).items():
        if unit not in limits:
            raise SimexplainError(f"no work unit {unit!r} to limit; units: {', '.join(limits)}")
        limits[unit] = checks.positive_int(f"--max-{unit}", limit)
    return limits


def asked_work(request: service.Request, input_size: tuple[int, int]) -> list[Asked]:
    """Each setting of ``request`` (defaults included) that multiplies the work, on inputs of ``input_size``
    (the served model's ``H×W``)."""
    from ..methods import get
    from ..metrics.evaluate import check_options

    asked = []
    for name, params in request.methods:
        method = get(name)
        settings = {**method.parameters(), **params}
        asked += _asked(name, method.work(), settings, input_size)
    if request.metrics:
        defaults = {key: p.default for key, p in inspect.signature(check_options).parameters.items()}
        settings = {**defaults, **request.metric_options}
        asked += _asked(METRICS, checks.declared_work(check_options), settings, input_size)
    return asked


def _asked(
    owner: str, work: Mapping[str, checks.Work], settings: Mapping[str, Any], size: tuple[int, int]
) -> list[Asked]:
    return [
        Asked(f"{owner}.{key}", settings[key], declared.unit, declared.units(key, settings, size))
        for key, declared in work.items()
    ]


def check_work(request: service.Request, input_size: tuple[int, int], limits: Mapping[str, int]) -> None:
    """Refuse (422, one line) a request that asks for more of a unit than ``limits`` allow."""
    for asked in asked_work(request, input_size):
        limit = limits[asked.unit]
        if asked.count > limit:
            makes = "" if asked.count == asked.value else f" makes {asked.count} {asked.unit},"
            raise RequestError(
                422,
                f"{asked.setting}={asked.value!r}{makes} over this server's limit of {limit} {asked.unit} "
                f"per request (simexplain serve --max-{asked.unit})",
            )


def describe(limits: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """The caps as data (for ``/api/limits``): unit → its maximum and what one unit is."""
    return {unit: {"max": limit, "counts": checks.WORK_UNITS[unit][0]} for unit, limit in limits.items()}


__all__ = ["DEFAULT_LIMITS", "Asked", "asked_work", "check_work", "describe", "work_limits"]
