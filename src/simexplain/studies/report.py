"""Reports of evaluation stores: ``pairs.csv``, the paper's Tables I–VI (Markdown, CSV, LaTeX), the summary
heatmap (Fig. 14) and, given downstream accuracies, the correlation figure (Fig. 15).

Stores are grouped by their run's model: stores of one model (a run's shard files, say) are read as one run
and must hold the same run (model, weights and settings); stores of different models give one table per model
and one heatmap over all of them.

Numbers: each table cell is the mean over the pairs that have a value (an undefined value, e.g. an average
drop whose clean similarity is ≤ 0, is left out and counted in the notes) and its 95% percentile bootstrap
interval. The bootstrap resamples the model's pairs (sorted by id) with replacement, ``bootstrap`` times, with
indices ``numpy.random.default_rng(seed).integers(0, n, (bootstrap, n))`` drawn once per model and shared by
every cell, so all the model's methods are compared on the same resampled pairs.

Example:
    >>> import tempfile, pathlib
    >>> from simexplain.studies.store import Item, Pair, Store
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with Store(folder / "run.sqlite") as store:
    ...     store.check_run({"model": "demo", "fingerprint": "f"}, {"settings": {"metrics": ["SD"]}})
    ...     store.set_variants([("input-x-gradient", "input-x-gradient", {}, "Input×Gradient")])
    ...     store.write([Pair("p1", "a.jpg", None, 1), Pair("p2", "b.jpg", None, 2)],
    ...                 [Item(p, "input-x-gradient", 0.5, {}, "cpu", 8) for p in ("p1", "p2")],
    ...                 [("p1", "input-x-gradient", "SD", 0.25), ("p2", "input-x-gradient", "SD", 0.75)], [])
    >>> [p.name for p in write_report([folder / "run.sqlite"], folder / "report", bootstrap=100)]
    ['pairs.csv', 'tables.md', 'tables.csv', 'tables.tex']
    >>> print((folder / "report" / "pairs.csv").read_text().strip())
    model,pair,method,metric,value
    demo,p1,input-x-gradient,SD,0.25
    demo,p2,input-x-gradient,SD,0.75
"""

from __future__ import annotations

import csv
import io
import math
import os
import sqlite3
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import checks
from ..errors import SimexplainError
from ..figures.output import save_figure
from ..figures.summary import correlation_figure, pearson_r, summary_heatmap
from ..metrics.registry import METRIC_INFO
from ..metrics.groups import summary_groups
from .store import Item, Store

SENSITIVITY = ("MS",)  # Table V; every other requested metric is a column of Tables I–IV
FAMILY_ORDER = ("saliency", "perturbation", "activation")
DIGITS = 3


# ---------------------------------------------------------------------------------------------- the runs
@dataclass
class ModelRun:
    """Everything stored for one model, over all of its stores.

    Attributes:
        name: the run's model name.
        study: ``"evaluation"`` or ``"dissection"`` (the run's ``study`` fact; stores without it are
            evaluations).
        paths: the stores read.
        facts: the run facts of the first store.
        variants: ``label``, ``method``, ``params``, ``title`` of each variant, in the run's order (titles
            made unique).
        metrics: the requested metrics, in the run's order.
        pairs: the ids of the pairs with a finished (pair, variant), sorted.
        values: ``(pair, label, metric)`` → value (``None`` when undefined).
        items: ``(pair, label)`` → the stored :class:`~simexplain.studies.store.Item`.
    """

    name: str
    paths: list[Path]
    facts: dict[str, Any]
    study: str = "evaluation"
    variants: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    pairs: list[str] = field(default_factory=list)
    values: dict[tuple[str, str, str], float | None] = field(default_factory=dict)
    items: dict[tuple[str, str], Item] = field(default_factory=dict)

    def column(self, label: str, metric: str) -> np.ndarray:
        """The metric's values of one variant over :attr:`pairs` (NaN where missing or undefined)."""
        values = (self.values.get((pair, label, metric)) for pair in self.pairs)
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def load_runs(stores: Sequence[str | os.PathLike]) -> list[ModelRun]:
    """The stores read and grouped by model, in order of first appearance; one-line errors for no stores, an
    unreadable or empty store, and two stores of one model that hold different runs.

    Example:
        >>> load_runs([])
        Traceback (most recent call last):
        ...
        simexplain.errors.SimexplainError: report: no stores given
    """
    if isinstance(stores, (str, os.PathLike)):
        stores = [stores]
    if not stores:
        raise SimexplainError("report: no stores given")
    runs: dict[tuple[str, str], ModelRun] = {}
    for path in map(Path, stores):
        facts, variants, rows, items = _read(path)
        if not facts.get("model") or not items:
            raise SimexplainError(f"{path}: empty store (no finished explanations)")
        key = (facts["model"], facts.get("study") or "evaluation")
        run = runs.get(key)
        if run is None:
            run = runs[key] = ModelRun(facts["model"], [], facts, key[1])
            run.metrics = list((facts.get("settings") or {}).get("metrics") or [])
        else:
            _check_same_run(run, facts, path)
        run.paths.append(path)
        _add_variants(run, variants, items)
        run.values.update(((p, v, m), value) for p, v, m, value in rows)
        run.items.update(((i.pair, i.variant), i) for i in items)
    for run in runs.values():
        run.pairs = sorted({pair for pair, _ in run.items})
        if not run.metrics:  # a store without settings: the known metrics it holds
            stored = {metric for _, _, metric in run.values}
            run.metrics = [name for name in METRIC_INFO if name in stored]
        _unique_titles(run.variants)
    return list(runs.values())


def _read(path: Path) -> tuple[dict, list[dict], list[tuple], list[Item]]:
    with Store(path, readonly=True) as store:
        try:
            return store.run_facts(), store.variants(), list(store.metric_rows()), store.items()
        except (sqlite3.DatabaseError, ValueError) as error:
            raise SimexplainError(f"{path}: unreadable store ({str(error).splitlines()[0]})") from None


def _check_same_run(run: ModelRun, facts: dict[str, Any], path: Path) -> None:
    for key in ("weights_sha256", "fingerprint"):
        if run.facts.get(key) != facts.get(key):
            raise SimexplainError(
                f"{path}: another run of model {run.name!r} than {run.paths[0]} (its {key} differs); "
                "report them separately"
            )


def _add_variants(run: ModelRun, variants: list[dict], items: list[Item]) -> None:
    known = {v["label"] for v in run.variants}
    for variant in variants:
        if variant["label"] not in known:
            run.variants.append({k: variant[k] for k in ("label", "method", "params", "title")})
            known.add(variant["label"])
    for item in items:  # a variant without a row in the variants table: named by its label
        if item.variant not in known:
            run.variants.append(
                {
                    "label": item.variant,
                    "method": item.variant.split("[")[0],
                    "params": item.config,
                    "title": item.variant,
                }
            )
            known.add(item.variant)


def _unique_titles(variants: list[dict]) -> None:
    titles = [v["title"] for v in variants]
    for variant in variants:
        if titles.count(variant["title"]) > 1:
            variant["title"] = variant["label"]


# ---------------------------------------------------------------------------------------------- numbers
def bootstrap_means(
    values: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means of ``values`` (pairs × columns, NaN = no value) and their 95% percentile bootstrap
    interval.

    The pairs (rows) are resampled with replacement, with indices
    ``default_rng(seed).integers(0, n, (resamples, n))`` shared by all columns; each resample's mean skips the
    NaNs. ``resamples=0`` gives NaN intervals.

    Example:
        >>> mean, low, high = bootstrap_means(np.array([[1.0], [2.0], [3.0]]), 1000, 0)
        >>> float(mean[0]), bool(1 <= low[0] < 2 < high[0] <= 3)
        (2.0, True)
    """
    values = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(values)
    clean = np.where(defined, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = clean.sum(0) / defined.sum(0)
    nan = np.full(values.shape[1], math.nan)
    n = values.shape[0]
    if resamples == 0 or n == 0:
        return mean, nan, nan.copy()
    index = np.random.default_rng(seed).integers(0, n, (resamples, n))
    offsets = (np.arange(resamples)[:, None] * n + index).ravel()
    counts = np.bincount(offsets, minlength=resamples * n).reshape(resamples, n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column without values: NaN, said in the notes
        means = (counts @ clean) / (counts @ defined)
        low, high = np.nanpercentile(means, [2.5, 97.5], axis=0)
    return mean, low, high


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


@dataclass
class Table:
    """One table of one model: ``number`` (``I-IV``, ``V``, ``groups``, ``VI``: the ``table`` column of
    ``tables.csv``), its caption, columns, and ``rows``, each ``(label, title, cells)``."""

    number: str
    model: str
    caption: str
    columns: list[Column]
    rows: list[tuple[str, str, list[Cell]]]
    notes: list[str] = field(default_factory=list)
    row_name: str = "method"


def _direction(metric: str) -> bool | None:
    return METRIC_INFO[metric][0] if metric in METRIC_INFO else None


def _mark_best(table: Table) -> Table:
    """Mark the best finite value of each column with a direction (ties all marked)."""
    for j, column in enumerate(table.columns):
        if column.higher_is_better is None:
            continue
        values = [cells[j].value for _, _, cells in table.rows if np.isfinite(cells[j].value)]
        if values:
            best = max(values) if column.higher_is_better else min(values)
            for _, _, cells in table.rows:
                cells[j].best = cells[j].value == best
    return table


def _score_table(
    run: ModelRun, number: str, caption: str, metrics: list[str], rows: list[dict], bootstrap: int, seed: int
) -> Table:
    """Mean and bootstrap interval of ``metrics`` (columns) for the ``rows`` variants."""
    values = np.stack([run.column(v["label"], m) for v in rows for m in metrics], axis=1)
    mean, low, high = bootstrap_means(values, bootstrap, seed)
    counts = np.isfinite(values).sum(0)
    width = len(metrics)
    table = Table(number, run.name, caption, [Column(m, _direction(m)) for m in metrics], [])
    for i, variant in enumerate(rows):
        cells = [
            Cell(float(mean[k]), float(low[k]), float(high[k]), int(counts[k]))
            for k in range(i * width, (i + 1) * width)
        ]
        table.rows.append((variant["label"], variant["title"], cells))
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
        groups = summary_groups({m: _mean(run.column(variant["label"], m)) for m in stored})
        if groups:
            scores[variant["title"]] = groups
    return scores


def _mean(values: np.ndarray) -> float:
    """The mean of the finite values (NaN when there are none)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def _groups_table(run: ModelRun, scores: dict[str, dict[str, float]]) -> Table | None:
    names = list(dict.fromkeys(g for groups in scores.values() for g in groups))
    if not names:
        return None
    table = Table("groups", run.name, "Summary groups (Fig. 14; higher is better)", [], [])
    table.columns = [Column(g, True) for g in names]
    for variant in run.variants:
        groups = scores.get(variant["title"], {})
        cells = [Cell(groups.get(g, math.nan), n=len(run.pairs)) for g in names]
        table.rows.append((variant["label"], variant["title"], cells))
    return _mark_best(table)


def _seconds_table(run: ModelRun) -> Table:
    items = list(run.items.values())
    devices = ", ".join(sorted({i.device for i in items if i.device})) or "unknown"
    sizes = ", ".join(str(b) for b in sorted({i.batch_size for i in items if i.batch_size})) or "unknown"
    caption = f"Table VI: mean seconds per explanation (device {devices}; batch size {sizes})"
    table = Table(
        "VI", run.name, caption, [Column("seconds", False, "seconds"), Column("failed", None, "count")], []
    )
    for variant in run.variants:
        mine = [i for i in items if i.variant == variant["label"]]
        seconds = [i.seconds for i in mine if i.error is None and i.seconds is not None]
        failed = sum(1 for i in mine if i.error is not None)
        cells = [
            Cell(_mean(np.array(seconds, dtype=np.float64)), n=len(seconds)),
            Cell(float(failed), n=len(mine)),
        ]
        table.rows.append((variant["label"], variant["title"], cells))
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
    groups = _groups_table(run, group_scores(run))
    if groups is not None:
        tables.append(groups)
    tables.append(_seconds_table(run))
    return tables


def dissection_table(run: ModelRun, bootstrap: int = 1000, seed: int = 0) -> Table | None:
    """Table VII of a dissection run: one row per transform, a column per metric and setting (``SI``,
    ``SI (G)``, ...), mean [95% bootstrap interval] over pairs, the top transform of each column marked.
    ``None`` when the run holds no single-transform Averaged Transforms."""
    from .dissection import transform_rows

    rows = transform_rows(run.variants)
    metrics = [m for m in run.metrics if m not in SENSITIVITY]
    settings = [j for j in (0, 1) if any(row[1 + j] for row in rows)]
    if not rows or not metrics:
        return None
    keys = [(m, j) for m in metrics for j in settings]
    nan = np.full(len(run.pairs), math.nan)
    values = np.stack(
        [run.column(row[1 + j]["label"], m) if row[1 + j] else nan for row in rows for m, j in keys], axis=1
    )
    mean, low, high = bootstrap_means(values, bootstrap, seed)
    counts = np.isfinite(values).sum(0)
    columns = [Column(m + (" (G)" if j else ""), _direction(m)) for m, j in keys]
    caption = (
        "Table VII: Averaged Transforms with one transform at a time, mean [95% bootstrap interval] over "
        "pairs; (G) guided"
    )
    table = Table("VII", run.name, caption, columns, [], row_name="transform")
    width = len(keys)
    for i, (name, *_) in enumerate(rows):
        cells = [
            Cell(float(mean[k]), float(low[k]), float(high[k]), int(counts[k]))
            for k in range(i * width, (i + 1) * width)
        ]
        table.rows.append((name, name, cells))
    table.notes = _value_notes(run, [v for row in rows for v in row[1:] if v], metrics)
    table.notes += _failure_notes(run)
    return _mark_best(table)


# ---------------------------------------------------------------------------------------------- formats
def _number(value: float, kind: str) -> str:
    if not np.isfinite(value):
        return "—"
    if kind == "count":
        return str(int(value))
    if kind == "seconds" and 0 < abs(value) < 10**-DIGITS:
        return f"{value:.2e}"
    return f"{value:.{DIGITS}f}"


def _interval(cell: Cell) -> str:
    return f" [{cell.low:.{DIGITS}f}, {cell.high:.{DIGITS}f}]" if np.isfinite(cell.low) else ""


def _arrow(column: Column) -> str:
    return {True: " ↑", False: " ↓", None: ""}[column.higher_is_better]


def _markdown(
    tables: list[Table], runs: list[ModelRun], bootstrap: int, seed: int, heading: str = "Evaluation report"
) -> str:
    lines = [
        f"# {heading}",
        "",
        "Mean over pairs [95% percentile bootstrap interval: "
        f"{bootstrap} resamples of the pairs, seed {seed}]; "
        "the best value of each column in **bold**; ↑ higher is better, ↓ lower is better. "
        f"Numbers to {DIGITS} decimals.",
    ]
    for run in runs:
        weights = run.facts.get("weights_sha256")
        lines += [
            "",
            f"## {run.name}",
            "",
            f"{len(run.pairs)} pairs, {len(run.variants)} method variants; weights: "
            f"{'sha256 ' + weights[:16] if weights else 'built-in'}; settings fingerprint "
            f"{run.facts.get('fingerprint', '—')}; stores: {', '.join(str(p) for p in run.paths)}",
        ]
        for table in (t for t in tables if t.model == run.name):
            header = [table.row_name] + [c.name + _arrow(c) for c in table.columns]
            lines += ["", f"### {table.caption}", "", _md_row(header), _md_row(["---"] * len(header))]
            for _, title, cells in table.rows:
                lines.append(_md_row([title] + [_md_cell(c, col) for c, col in zip(cells, table.columns)]))
            if table.notes:
                lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def _sanity_links(runs: list[ModelRun], out: Path) -> str:
    """A section per model whose store records a sanity study (``simexplain sanity --db``): the rank
    correlation with the original maps before and after the whole cascade, and links to the figures."""
    lines = []
    for run in runs:
        sanity = run.facts.get("sanity") or {}
        if not sanity:
            continue
        lines += [
            "",
            f"## Sanity checks: {run.name}",
            "",
            "Spearman rank correlation of the maps with the original model's (mean over pairs and both "
            "images) after each cascading randomisation step (Fig. 13); a faithful method falls towards 0.",
            "",
            _md_row(["method", "pairs", "layers randomised", "Spearman at the end", "grid"]),
            _md_row(["---"] * 5),
        ]
        for label, study in sanity.items():
            figure = _link(study.get("figure"), out)
            end = study.get("spearman") or [math.nan]
            steps = study.get("randomised") or [len(study.get("layers", [])) - 1]
            lines.append(
                _md_row([label, str(study.get("pairs", "")), str(steps[-1]), f"{end[-1]:.{DIGITS}f}", figure])
            )
        plots = {study.get("spearman_figure") for study in sanity.values()} - {None}
        lines += [""] + [f"Correlation plot: {_link(path, out)}" for path in sorted(plots)]
    return "\n".join(lines) + ("\n" if lines else "")


def _link(path: str | None, out: Path) -> str:
    """A Markdown link to ``path`` relative to the report folder (``—`` when missing on disk)."""
    if not path or not Path(path).is_file():
        return "— (figure missing)" if path else "—"
    relative = os.path.relpath(path, out.resolve())
    return f"[{Path(path).name}]({relative})"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _md_cell(cell: Cell, column: Column) -> str:
    value = _number(cell.value, column.kind)
    return (f"**{value}**" if cell.best else value) + (_interval(cell) if column.kind == "score" else "")


def _csv(tables: list[Table]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["model", "table", "method", "title", "metric", "direction", "mean", "low", "high", "n", "best"]
    )
    for table in tables:
        for label, title, cells in table.rows:
            for cell, column in zip(cells, table.columns):
                direction = {True: "higher", False: "lower", None: ""}[column.higher_is_better]
                writer.writerow(
                    [table.model, table.number, label, title, column.name, direction]
                    + [_csv_number(x) for x in (cell.value, cell.low, cell.high)]
                    + [cell.n, "*" if cell.best else ""]
                )
    return buffer.getvalue()


def _csv_number(value: float) -> str:
    return repr(float(value)) if np.isfinite(value) else ""


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "×": r"$\times$",
    "·": r"$\cdot$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "≤": r"$\leq$",
    "—": "---",
    "–": "--",
}


def tex_escape(text: str) -> str:
    """``text`` for LaTeX: special characters escaped, a few symbols as math.

    Example:
        >>> print(tex_escape("smooth_grad 50% & Input×Gradient"))
        smooth\\_grad 50\\% \\& Input$\\times$Gradient
    """
    return "".join(_TEX.get(char, char) for char in str(text))


def _latex(tables: list[Table]) -> str:
    blocks = [
        "% simexplain evaluation report: mean [95% bootstrap interval] over pairs, best per column in bold.",
        "% Needs no package beyond LaTeX itself (UTF-8 input).",
    ]
    for table in tables:
        spec = "l" + "r" * len(table.columns)
        header = [table.row_name.capitalize()] + [tex_escape(c.name + _arrow(c)) for c in table.columns]
        lines = [
            "",
            r"\begin{table}[ht]",
            r"\centering",
            rf"\caption{{{tex_escape(table.model)}: {tex_escape(table.caption)}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\hline",
            " & ".join(header) + r" \\",
            r"\hline",
        ]
        for _, title, cells in table.rows:
            text = tex_escape(title)
            cells_text = [_tex_cell(c, col) for c, col in zip(cells, table.columns)]
            lines.append(("{}" if text.startswith("[") else "") + " & ".join([text] + cells_text) + r" \\")
        lines += [r"\hline", r"\end{tabular}"]
        lines += [f"% {tex_escape(note)}" for note in table.notes]
        lines.append(r"\end{table}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks) + "\n"


def _tex_cell(cell: Cell, column: Column) -> str:
    value = _number(cell.value, column.kind)
    value = "---" if value == "—" else value
    return (rf"\textbf{{{value}}}" if cell.best else value) + (
        _interval(cell) if column.kind == "score" else ""
    )


def _pairs_csv(runs: list[ModelRun]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "pair", "method", "metric", "value"])
    for run in runs:
        order = {v["label"]: i for i, v in enumerate(run.variants)}
        metrics = {m: i for i, m in enumerate(run.metrics)}
        keys = sorted(
            (key for key in run.values if key[2] in metrics),
            key=lambda k: (k[0], order.get(k[1], len(order)), metrics[k[2]]),
        )
        for pair, label, metric in keys:
            value = run.values[pair, label, metric]
            writer.writerow([run.name, pair, label, metric, "" if value is None else repr(float(value))])
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- downstream
def parse_downstream(items: Sequence[str]) -> dict[str, float]:
    """``MODEL=ACCURACY`` items as model → accuracy (a fraction).

    An accuracy is a fraction in [0, 1] or a percentage in (1, 100] (divided by 100): ``0.75`` and ``75`` are
    the same, and ``1`` is 100%. One-line errors for anything else and for a model given twice.

    Example:
        >>> parse_downstream(["simclr=0.693", "dino=75.3"])
        {'simclr': 0.693, 'dino': 0.753}
    """
    if isinstance(items, str):
        items = [items]
    accuracy: dict[str, float] = {}
    for item in items:
        model, sep, text = str(item).partition("=")
        model = model.strip()
        if not sep or not model:
            raise SimexplainError(f"--downstream takes MODEL=ACCURACY, got {item!r}")
        value = _accuracy(model, text.strip())
        if accuracy.get(model, value) != value:
            raise SimexplainError(f"--downstream {model} is given twice with different accuracies")
        accuracy[model] = value
    return accuracy


def _accuracy(model: str, value: Any) -> float:
    """An accuracy as a fraction: values in [0, 1] as they are, percentages in (1, 100] divided by 100."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SimexplainError(f"--downstream {model}: accuracy {value!r} is not a number") from None
    if not 0 <= number <= 100:  # NaN fails too
        raise SimexplainError(
            f"--downstream {model}: accuracy {value} is neither a fraction in [0, 1] "
            "nor a percentage in (1, 100]"
        )
    return round(number / 100, 12) if number > 1 else number


def _downstream_models(
    runs: list[ModelRun], downstream: Mapping[str, float], log: Callable
) -> dict[str, float]:
    """The accuracies of the reported models; at least two are needed for a correlation."""
    names = [run.name for run in runs]
    for model in downstream:
        if model not in names:
            log(f"note: --downstream {model} ignored: no store of that model (models: {', '.join(names)})")
    for model in names:
        if model not in downstream:
            log(f"note: {model} has no downstream accuracy; left out of correlation.png")
    accuracy = {m: _accuracy(m, downstream[m]) for m in names if m in downstream}
    if len(accuracy) < 2:
        raise SimexplainError(
            f"--downstream needs the accuracy of at least 2 reported models for a correlation, got "
            f"{len(accuracy)} ({', '.join(accuracy) or 'none'}; models: {', '.join(names)})"
        )
    return accuracy


def family_scores(runs: list[ModelRun], scores: Mapping[str, Mapping[str, Mapping[str, float]]]):
    """Family → group → model → the mean group score of the family's variants (finite ones) in that model."""
    from ..methods import get

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


def _correlation_csv(families: Mapping, accuracy: Mapping[str, float]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["family", "group", "models", "r"])
    for family, by_group in families.items():
        for group, by_model in by_group.items():
            models = [m for m in by_model if m in accuracy]
            r = pearson_r([by_model[m] for m in models], [accuracy[m] for m in models])
            writer.writerow([family, group, ";".join(models), _csv_number(r)])
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- the report
def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def write_report(
    stores: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    downstream: Mapping[str, float] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the report of ``stores`` into the folder ``out`` (created); returns the written files.

    Files: ``pairs.csv`` (``model,pair,method,metric,value``: every stored value of a requested metric,
    sorted by model, pair, the run's variant order and metric order; empty when undefined; failed
    explanations have no rows and are counted in the tables' notes), ``tables.md``/``.csv``/``.tex``
    (per model: Tables I–IV, V, the summary groups and VI; see the module's notes on the numbers),
    ``dissection.md``/``.csv``/``.tex`` (Table VII, for the stores of ``simexplain dissect``: see
    :func:`dissection_table`), ``summary.png``/``.svg`` (the heatmap, when a summary group can be computed;
    ``tables.md`` also links the sanity figures recorded in a store by ``simexplain sanity --db``), and with
    ``downstream``
    (model → accuracy, a fraction or a percentage as in :func:`parse_downstream`)
    ``correlation.png``/``.svg``/``.csv``.

    ``downstream`` (``None`` or empty: no correlation) must give the accuracy of at least two reported models
    (one-line error before anything is written); models without one are left out with a note. Notes go to
    ``log`` (standard error by default). Models are reported in the order their first store is given.
    """
    bootstrap = checks.non_negative_int("bootstrap", bootstrap)
    seed = checks.non_negative_int("seed", seed)
    log = log or _stderr
    every_run = load_runs(stores)
    runs = [run for run in every_run if run.study != "dissection"]
    dissections = [run for run in every_run if run.study == "dissection"]
    accuracy = _downstream_models(runs, downstream, log) if downstream else None  # {}: none given
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SimexplainError(f"{out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    texts = {"pairs.csv": _pairs_csv(every_run)}
    if runs:
        tables = [table for run in runs for table in model_tables(run, bootstrap, seed)]
        texts["tables.md"] = _markdown(tables, runs, bootstrap, seed) + _sanity_links(runs, out)
        texts["tables.csv"] = _csv(tables)
        texts["tables.tex"] = _latex(tables)
    seventh = [t for t in (dissection_table(run, bootstrap, seed) for run in dissections) if t is not None]
    if seventh:
        texts["dissection.md"] = _markdown(seventh, dissections, bootstrap, seed, "Augmentation dissection")
        texts["dissection.csv"] = _csv(seventh)
        texts["dissection.tex"] = _latex(seventh)
    written = []
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    scores = {run.name: group_scores(run) for run in runs}
    if any(scores.values()):
        written += map(Path, save_figure(summary_heatmap(scores), out / "summary.png"))
    elif runs:
        log("note: summary.png not written: no summary group has all its metrics (G1 needs SI and CI, ...)")
    if accuracy is not None:
        families = family_scores(runs, scores)
        (out / "correlation.csv").write_text(_correlation_csv(families, accuracy), encoding="utf-8")
        written.append(out / "correlation.csv")
        if families:
            written += map(Path, save_figure(correlation_figure(families, accuracy), out / "correlation.png"))
        else:
            log("note: correlation.png not written: no summary group scores")
    return written


__all__ = [
    "ModelRun",
    "bootstrap_means",
    "dissection_table",
    "family_scores",
    "group_scores",
    "load_runs",
    "model_tables",
    "parse_downstream",
    "tex_escape",
    "write_report",
]
