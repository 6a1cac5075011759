"""Summary groups (docs/methods.md, Summary groups): registered groups of metrics, each one score where higher
is better.

A group is data (:class:`SummaryGroup`: its metrics and how they are combined), read from the metric
registry; its :attr:`~SummaryGroup.formula` and :attr:`~SummaryGroup.definition` are the one source of the
words that the metrics table, the report's tables and the summary figure print.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .registry import METRIC_INFO, summary_group_members


@dataclass(frozen=True)
class SummaryGroup:
    """One summary group: its name, its metrics and their direction (one for all of them).

    Example:
        >>> g2 = SummaryGroup("G2", ("SD", "CD"), higher_is_better=False)
        >>> g2.formula, g2.combine([0.2, 0.4])
        ('G2 = 1 − mean(SD, CD)', 0.7)
    """

    name: str
    members: tuple[str, ...]
    higher_is_better: bool

    @property
    def formula(self) -> str:
        """How the group is combined: ``G1 = mean(SI, CI)``, ``1 − mean(...)`` for lower-is-better metrics."""
        return f"{self.name} = {'' if self.higher_is_better else '1 − '}mean({', '.join(self.members)})"

    @property
    def definition(self) -> str:
        """One line for a reader: the formula and what each of its metrics is (the registry's description).

        Example:
            >>> print(SummaryGroup("G2", ("SD",), higher_is_better=False).definition)
            G2 = 1 − mean(SD): SD = simultaneous deletion AUC
        """
        meanings = "; ".join(f"{m} = {METRIC_INFO[m][1]}" if m in METRIC_INFO else m for m in self.members)
        return f"{self.formula}: {meanings}"

    def combine(self, means: Sequence[Any]) -> Any:
        """The group's score from its members' means, in :attr:`members` order: floats, or arrays of them
        (one value per bootstrap resample, say)."""
        mean = sum(means) / len(means)
        return mean if self.higher_is_better else 1 - mean


def group_definitions(names: Sequence[str] | None = None) -> list[SummaryGroup]:
    """The registered summary groups in order of first registration (only those in ``names`` when given).

    Example:
        >>> [g.formula for g in group_definitions()]
        ['G1 = mean(SI, CI)', 'G2 = 1 − mean(SD, CD)', 'G3 = 1 − mean(SAD, CAD)']
    """
    groups = [
        SummaryGroup(name, tuple(members), higher_is_better)
        for name, (members, higher_is_better) in summary_group_members().items()
    ]
    return groups if names is None else [g for g in groups if g.name in names]


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
    for group in group_definitions():
        values = [_value(scores, name) for name in group.members]
        if any(value is None for value in values):
            continue
        groups[group.name] = round(group.combine(values), 12)
    return groups
