"""The tables of a report as data: :class:`Table` of :class:`Column` and :class:`Row` of :class:`Cell`, built
from a :class:`~simexplain.studies.runs.ModelRun` (Tables I–VI, the summary groups, Table VII), plus the
group scores per family that the downstream correlation compares. Rendering them is :mod:`.render`'s work.

Each score cell is the mean over the pairs that have a value and its 95% percentile bootstrap interval
(:func:`~simexplain.studies.statistics.bootstrap_means`: the indices are drawn once per table and shared by
every cell, so all its variants are compared on the same resampled pairs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..errors import SimexplainError
from ..methods.registry import FAMILY_ORDER, get
from ..metrics.groups import SummaryGroup, group_definitions, summary_groups
from ..metrics.registry import METRIC_INFO
from .dissection import TransformRow, transform_rows
from .runs import ModelRun
from .statistics import bootstrap_means, finite_mean, pearson_r, percentile_interval, resampled_means

SENSITIVITY = ("MS",)  # Table V; every other requested metric is a column of Tables I–IV


@dataclass
class Column:
    """A table column: its name, direction (``True`` higher is better, ``False`` lower, ``None`` none) and
    kind (``"score"`` with an interval, ``"seconds"``, ``"count"``)."""

    name: str
    higher_is_better: bool | None
    kind: str = "score"


@dataclass
class Cell:
    """A table cell: the mean (NaN: no value), its interval, the number of values, and the best mark."""

    value: float
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    best: bool = False


class Row(NamedTuple):
    """A table row: the variant's label (or the transform's name), the title shown, one cell per column."""

    label: str
    title: str
    cells: list[Cell]


@dataclass
class Table:
    """One table of one model: ``number`` (``I-IV``, ``V``, ``groups``, ``VI``, ``VII``: the ``table`` column
    of the CSV), its caption, columns, rows, notes (about the values) and definitions (what the columns are,
    one line each: printed under the table wherever it is read, the compiled LaTeX included)."""

    number: str
    model: str
    caption: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    row_name: str = "method"
    definitions: list[str] = field(default_factory=list)


class Correlation(NamedTuple):
    """One (family, group) of the downstream correlation: the models compared and Pearson's r."""

    models: list[str]
    r: float


def _direction(metric: str) -> bool | None:
    return METRIC_INFO[metric][0] if metric in METRIC_INFO else None


def _mark_best(table: Table) -> Table:
    """Mark the best finite value of each column with a direction (ties all marked)."""
    for j, column in enumerate(table.columns):
        if column.higher_is_better is None:
            continue
        values = [row.cells[j].value for row in table.rows if np.isfinite(row.cells[j].value)]
        if values:
            best = max(values) if column.higher_is_better else min(values)
            for row in table.rows:
                row.cells[j].best = row.cells[j].value == best
    return table


def _interval_rows(values: np.ndarray, width: int, bootstrap: int, seed: int) -> list[list[Cell]]:
    """The cells of ``values`` (pairs × rows·width columns, row-major) with their bootstrap intervals."""
    mean, low, high = bootstrap_means(values, bootstrap, seed)
    counts = np.isfinite(values).sum(0)
    return [
        [Cell(float(mean[k]), float(low[k]), float(high[k]), int(counts[k])) for k in range(i, i + width)]
        for i in range(0, values.shape[1], width)
    ]


def _score_table(
    run: ModelRun, number: str, caption: str, metrics: list[str], rows: list[dict], bootstrap: int, seed: int
) -> Table:
    """Mean and bootstrap interval of ``metrics`` (columns) for the ``rows`` variants."""
    values = np.stack([run.column(v["label"], m) for v in rows for m in metrics], axis=1)
    table = Table(number, run.name, caption, [Column(m, _direction(m)) for m in metrics])
    for variant, cells in zip(rows, _interval_rows(values, len(metrics), bootstrap, seed)):
        table.rows.append(Row(variant["label"], variant["title"], cells))
    table.notes = _value_notes(run, rows, metrics)
    return _mark_best(table)


def _value_notes(run: ModelRun, rows: list[dict], metrics: list[str]) -> list[str]:
    """Undefined values per (variant, metric) among the variant's successful items."""
    notes = []
    for variant in rows:
        label = variant["label"]
        done = [p for p in run.pairs if (p, label) in run.items and run.items[p, label].error is None]
        undefined = {m: sum(1 for p in done if run.values.get((p, label, m)) is None) for m in metrics}
        missing = ", ".join(f"{m} {k}" for m, k in undefined.items() if k)
        if missing:
            notes.append(f"{variant['title']}: values undefined or missing, left out of the mean: {missing}")
    return notes


def _failure_notes(run: ModelRun) -> list[str]:
    notes = []
    for variant in run.variants:
        items = [i for (p, label), i in run.items.items() if label == variant["label"]]
        failed = sorted((i for i in items if i.error is not None), key=lambda i: i.pair)
        if failed:
            notes.append(
                f"{variant['title']}: {len(failed)} of {len(items)} explanations failed "
                f"(first, pair {failed[0].pair}: {failed[0].error})"
            )
    return notes


def group_scores(run: ModelRun) -> dict[str, dict[str, float]]:
    """Variant title → summary group → score (docs/methods.md, Summary groups), from the metric means."""
    stored = {metric for _, _, metric in run.values if metric in METRIC_INFO}
    scores = {}
    for variant in run.variants:
        groups = summary_groups({m: finite_mean(run.column(variant["label"], m)) for m in stored})
        if groups:
            scores[variant["title"]] = groups
    return scores


def _groups_table(
    run: ModelRun, scores: dict[str, dict[str, float]], bootstrap: int, seed: int
) -> Table | None:
    """The summary groups of each variant (``scores``, from the metric means) with the 95% bootstrap interval
    of the same resampled pairs as Tables I–IV, and one line per group that defines it."""
    names = list(dict.fromkeys(g for groups in scores.values() for g in groups))
    if not names:
        return None
    groups = group_definitions(names)
    caption = "Summary groups (Fig. 14; higher is better), from the metric means [95% bootstrap interval]"
    table = Table("groups", run.name, caption, [Column(g.name, True) for g in groups])
    intervals = _group_intervals(run, groups, bootstrap, seed)
    for variant in run.variants:
        values = scores.get(variant["title"], {})  # a missing group has NaN resamples too: no interval
        cells = [
            Cell(values.get(g.name, math.nan), *intervals[variant["label"], g.name], n=len(run.pairs))
            for g in groups
        ]
        table.rows.append(Row(variant["label"], variant["title"], cells))
    table.definitions = [group.definition for group in groups]
    return _mark_best(table)


def _group_intervals(
    run: ModelRun, groups: list[SummaryGroup], bootstrap: int, seed: int
) -> dict[tuple[str, str], tuple[float, float]]:
    """(variant label, group) → the 95% percentile interval of the group combined from each resample's
    metric means (:func:`~simexplain.studies.statistics.resampled_means`, the indices of Tables I–IV)."""
    metrics = list(dict.fromkeys(m for group in groups for m in group.members))
    labels = [variant["label"] for variant in run.variants]
    values = np.stack([run.column(label, m) for label in labels for m in metrics], axis=1)
    means = resampled_means(values, bootstrap, seed)
    column = {key: j for j, key in enumerate((label, m) for label in labels for m in metrics)}
    combined = {
        (label, group.name): group.combine([means[:, column[label, m]] for m in group.members])
        for label in labels
        for group in groups
    }
    low, high = percentile_interval(np.stack(list(combined.values()), axis=1))
    return {key: (float(lo), float(hi)) for key, lo, hi in zip(combined, low, high)}


def _seconds_table(run: ModelRun) -> Table:
    items = list(run.items.values())
    devices = ", ".join(sorted({i.device for i in items if i.device})) or "unknown"
    sizes = ", ".join(str(b) for b in sorted({i.batch_size for i in items if i.batch_size})) or "unknown"
    caption = f"Table VI: mean seconds per explanation (device {devices}; batch size {sizes})"
    columns = [Column("seconds", False, "seconds"), Column("failed", None, "count")]
    table = Table("VI", run.name, caption, columns)
    for variant in run.variants:
        mine = [i for i in items if i.variant == variant["label"]]
        seconds = [i.seconds for i in mine if i.error is None and i.seconds is not None]
        failed = sum(1 for i in mine if i.error is not None)
        cells = [
            Cell(finite_mean(np.array(seconds, dtype=np.float64)), n=len(seconds)),
            Cell(float(failed), n=len(mine)),
        ]
        table.rows.append(Row(variant["label"], variant["title"], cells))
    return _mark_best(table)


def model_tables(run: ModelRun, bootstrap: int = 1000, seed: int = 0) -> list[Table]:
    """Tables I–IV (the requested metrics but MS), V (MS, for the variants that have it), the summary groups
    and VI."""
    tables = []
    scored = [m for m in run.metrics if m not in SENSITIVITY]
    if scored:
        caption = "Tables I–IV: pair metrics, mean [95% bootstrap interval] over pairs"
        table = _score_table(run, "I-IV", caption, scored, run.variants, bootstrap, seed)
        table.notes += _failure_notes(run)
        tables.append(table)
    sensitivity = [m for m in run.metrics if m in SENSITIVITY]
    rows = [v for v in run.variants if any(np.isfinite(run.column(v["label"], m)).any() for m in sensitivity)]
    if rows:
        caption = "Table V: maximum sensitivity, mean [95% bootstrap interval] over pairs"
        tables.append(_score_table(run, "V", caption, sensitivity, rows, bootstrap, seed))
    groups = _groups_table(run, group_scores(run), bootstrap, seed)
    if groups is not None:
        tables.append(groups)
    tables.append(_seconds_table(run))
    return tables


def dissection_table(run: ModelRun, bootstrap: int = 1000, seed: int = 0) -> Table | None:
    """Table VII of a dissection run: one row per transform, a column per metric and setting (``SI``,
    ``SI (G)``, ...), mean [95% bootstrap interval] over pairs, the top transform of each column marked.
    ``None`` when the run holds no single-transform Averaged Transforms."""
    rows = transform_rows(run.variants)
    metrics = [m for m in run.metrics if m not in SENSITIVITY]
    settings = [guided for guided in (False, True) if any(row.variant(guided) for row in rows)]
    if not rows or not metrics:
        return None
    keys = [(m, guided) for m in metrics for guided in settings]
    nan = np.full(len(run.pairs), math.nan)

    def column(row: TransformRow, metric: str, guided: bool) -> np.ndarray:
        variant = row.variant(guided)
        return run.column(variant["label"], metric) if variant else nan

    values = np.stack([column(row, m, guided) for row in rows for m, guided in keys], axis=1)
    columns = [Column(m + (" (G)" if guided else ""), _direction(m)) for m, guided in keys]
    caption = (
        "Table VII: Averaged Transforms with one transform at a time, mean [95% bootstrap interval] over "
        "pairs; (G) guided"
    )
    table = Table("VII", run.name, caption, columns, row_name="transform")
    for row, cells in zip(rows, _interval_rows(values, len(keys), bootstrap, seed)):
        table.rows.append(Row(row.transform, row.transform, cells))
    variants = [v for row in rows for v in (row.plain, row.guided) if v]
    table.notes = _value_notes(run, variants, metrics) + _failure_notes(run)
    return _mark_best(table)


def family_scores(runs: list[ModelRun], scores: Mapping[str, Mapping[str, Mapping[str, float]]]):
    """Family → group → model → the mean group score of the family's variants (finite ones) in that model;
    families in the method registry's order."""

    def family(method: str) -> str:
        try:
            return get(method).family
        except SimexplainError:  # a method this process does not know
            return "other"

    collected: dict[str, dict[str, dict[str, list[float]]]] = {}
    for run in runs:
        for variant in run.variants:
            for group, value in scores[run.name].get(variant["title"], {}).items():
                if np.isfinite(value):
                    by_group = collected.setdefault(family(variant["method"]), {})
                    by_group.setdefault(group, {}).setdefault(run.name, []).append(value)
    ordered = sorted(
        collected, key=lambda f: FAMILY_ORDER.index(f) if f in FAMILY_ORDER else len(FAMILY_ORDER)
    )
    return {
        f: {g: {m: float(np.mean(v)) for m, v in by_model.items()} for g, by_model in collected[f].items()}
        for f in ordered
    }


def correlations(
    families: Mapping[str, Mapping[str, Mapping[str, float]]], accuracy: Mapping[str, float]
) -> dict[str, dict[str, Correlation]]:
    """Family → group → Pearson's r of the models' group scores (:func:`family_scores`) with their downstream
    accuracy, over the models that have one.

    Example:
        >>> scores = {"saliency": {"G1": {"a": 0.3, "b": 0.4, "c": 0.45}}}
        >>> correlations(scores, {"a": 0.6, "b": 0.7, "c": 0.72})
        {'saliency': {'G1': Correlation(models=['a', 'b', 'c'], r=0.9843241382880894)}}
    """
    out: dict[str, dict[str, Correlation]] = {}
    for family, by_group in families.items():
        for group, by_model in by_group.items():
            models = [m for m in by_model if m in accuracy]
            r = pearson_r([by_model[m] for m in models], [accuracy[m] for m in models])
            out.setdefault(family, {})[group] = Correlation(models, r)
    return out


__all__ = [
    "Cell",
    "Column",
    "Correlation",
    "Row",
    "Table",
    "correlations",
    "dissection_table",
    "family_scores",
    "group_scores",
    "model_tables",
]
