"""The metrics table the command line prints: means per method, summary groups and notes."""

from __future__ import annotations

import math
from collections.abc import Mapping

from .groups import group_definitions
from .registry import METRIC_INFO
from .results import MetricResults


def format_table(results: MetricResults | Mapping[str, MetricResults], digits: int = 4) -> str:
    """A Markdown table of the metric means (rows: methods), with the summary groups and notes.

    ``results`` is one :class:`MetricResults` or a mapping row name → results.

    Example:
        >>> import torch
        >>> print(format_table(MetricResults({"SD": torch.tensor([0.25])}, method="demo")))
        | method | pairs | SD ↓ |
        | --- | --- | --- |
        | demo | 1 | 0.2500 |
    """
    rows = {results.method: results} if isinstance(results, MetricResults) else dict(results)
    present = [name for name in METRIC_INFO if any(name in r for r in rows.values())]
    shown = [g for g in group_definitions() if any(g.name in r.groups() for r in rows.values())]
    group_names = [g.name for g in shown]
    header = ["method", "pairs"] + [f"{n} {'↑' if METRIC_INFO[n][0] else '↓'}" for n in present]
    header += [f"{g} ↑" for g in group_names]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    notes = []

    def cell(value: float | None) -> str:
        return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"

    for name, result in rows.items():
        means, groups = result.means(), result.groups()
        pairs = len(next(iter(result.values()))) if result else 0
        cells = (
            [name, str(pairs)]
            + [cell(means.get(n)) for n in present]
            + [cell(groups.get(g)) for g in group_names]
        )
        lines.append("| " + " | ".join(cells) + " |")
        rates = result.increase_rates()
        if rates:
            notes.append(f"{name}: increase rate " + ", ".join(f"{k} {v:.2f}" for k, v in rates.items()))
        undefined = {k: v for k, v in result.counts.items() if k.endswith("_undefined") and v}
        if undefined:
            notes.append(
                f"{name}: base similarity ≤ 0 for "
                + ", ".join(f"{v} pair(s) in {k[: -len('_undefined')]}" for k, v in undefined.items())
                + " (drop undefined, left out of the mean)"
            )
        if result.counts.get("constant_maps"):
            notes.append(
                f"{name}: {result.counts['constant_maps']} constant map(s) (pixel order = raster order)"
            )
    if group_names:
        notes.append(", ".join(group.formula for group in shown))
    return "\n".join(lines + ([""] + notes if notes else []))
