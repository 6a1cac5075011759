"""Summary groups (docs/methods.md, Summary groups): registered groups of metrics, each one score where higher
is better."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from .registry import summary_group_members


def _value(scores: Mapping[str, float | Tensor], name: str) -> float | None:
    if name not in scores:
        return None
    value = scores[name]
    if isinstance(value, Tensor):
        value = float(value.double().nanmean()) if value.numel() > 1 else float(value)
    return float(value)


def summary_groups(scores: Mapping[str, float | Tensor]) -> dict[str, float]:
    """Each registered summary group: the mean of its metrics, ``1 −`` the mean for lower-is-better ones, so
    higher is better in every group. Built in: G1 = mean(SI, CI), G2 = 1 − mean(SD, CD),
    G3 = 1 − mean(SAD, CAD).

    ``scores`` maps metric names to means (or per-pair tensors, averaged here); a group is left out when one
    of its metrics is missing.

    Example:
        >>> summary_groups({"SI": 0.6, "CI": 0.8, "SD": 0.2, "CD": 0.4, "SAD": 0.5, "CAD": 0.3})
        {'G1': 0.7, 'G2': 0.7, 'G3': 0.6}
    """
    groups = {}
    for group, (members, higher_is_better) in summary_group_members().items():
        values = [_value(scores, name) for name in members]
        if any(value is None for value in values):
            continue
        mean = sum(values) / len(values)
        groups[group] = round(mean if higher_is_better else 1 - mean, 12)
    return groups
