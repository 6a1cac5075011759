"""What the wrappers that re-run a method share (maximum sensitivity, the sanity check, ``evaluate``'s MS).

A wrapper never shares the method's keyword namespace: the method's settings come as one ``method_params``
mapping, so a method's ``samples``, ``seed`` or ``steps`` can never bind to the wrapper's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..methods.registry import Method, get


def checked_method(method: str, method_params: Mapping[str, Any] | None) -> tuple[Method, dict[str, Any]]:
    """The registered method and a copy of its settings, whose names are checked against its parameters."""
    entry = get(method)
    if method_params is None:
        return entry, {}
    if not isinstance(method_params, Mapping):
        raise SimexplainError(
            f"method_params must be a mapping of {method!r}'s settings, got {type(method_params).__name__}"
        )
    return entry, entry.check(method_params)


def with_batch_size(entry: Method, params: dict[str, Any], batch_size: int | None) -> dict[str, Any]:
    """The settings plus the wrapper's ``batch_size`` when the method takes one and the settings hold none
    (a speed knob: maps never depend on it)."""
    if batch_size is None or "batch_size" not in entry.parameters() or "batch_size" in params:
        return params
    return {**params, "batch_size": batch_size}


def first_run_seed(entry: Method, params: dict[str, Any], first: PairExplanation) -> dict[str, Any]:
    """The settings with the seed the first run resolved (the one it drew when none was given), so every
    later run of a seeded method shares its randomness and only the wrapper's change moves the maps."""
    if "seed" in entry.parameters() and "seed" in first.config:
        return {**params, "seed": first.config["seed"]}
    return params
