"""A report's text files from its tables (:mod:`.tables`) and runs: Markdown, CSV and LaTeX, ``pairs.csv`` and
``correlation.csv``. Numbers are written to :data:`DIGITS` decimals (CSV: every digit)."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .runs import ModelRun
from .tables import Cell, Column, Correlation, Table

DIGITS = 3


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


def markdown(
    tables: list[Table], runs: list[ModelRun], bootstrap: int, seed: int, heading: str = "Evaluation report"
) -> str:
    """The Markdown report: a heading with the bootstrap's settings, then per run its facts and tables."""
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
        lines += _recomputed(run)
        for table in (t for t in tables if t.model == run.name):
            header = [table.row_name] + [c.name + _arrow(c) for c in table.columns]
            lines += ["", f"### {table.caption}", "", _md_row(header), _md_row(["---"] * len(header))]
            for _, title, cells in table.rows:
                lines.append(_md_row([title] + [_md_cell(c, col) for c, col in zip(cells, table.columns)]))
            if table.definitions or table.notes:
                lines += [""] + [f"- {line}" for line in table.definitions + table.notes]
    return "\n".join(lines) + "\n"


def _recomputed(run: ModelRun, shown: int = 20) -> list[str]:
    """A line naming the pairs whose results were recomputed because their images changed (none: none)."""
    if not run.recomputed:
        return []
    names = [f"{pair} ({when})" for pair, when in sorted(run.recomputed.items())]
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return [
        "",
        f"Pairs recomputed because their images changed after they were first stored ({len(names)}): "
        + ", ".join(names[:shown])
        + more,
    ]


def sanity_section(runs: list[ModelRun], out: Path) -> str:
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


def tables_csv(tables: list[Table]) -> str:
    """One CSV row per cell: ``model,table,method,title,metric,direction,mean,low,high,n,best``."""
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
    "−": r"$-$",
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


def tables_latex(tables: list[Table]) -> str:
    """One LaTeX ``table`` per table (best per column in bold, the definitions of the columns under it, the
    notes as comments); it compiles with the LaTeX kernel alone (no package)."""
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
        if table.definitions:  # one line each, under the table: a column's meaning, not a comment
            lines += [r"\par\smallskip\footnotesize"] + [
                tex_escape(line) + r"\par" for line in table.definitions
            ]
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


def pairs_csv(runs: list[ModelRun]) -> str:
    """``model,pair,method,metric,value``: every stored value of a requested metric, in a stable order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "pair", "method", "metric", "value"])
    for run in runs:
        order = {v["label"]: i for i, v in enumerate(run.variants)}
        metrics = {m: i for i, m in enumerate(run.metrics)}

        def position(key: tuple[str, str, str]) -> tuple[str, int, int]:
            pair, label, metric = key
            return pair, order.get(label, len(order)), metrics[metric]

        keys = sorted((key for key in run.values if key[2] in metrics), key=position)
        for pair, label, metric in keys:
            value = run.values[pair, label, metric]
            writer.writerow([run.name, pair, label, metric, "" if value is None else repr(float(value))])
    return buffer.getvalue()


def correlation_csv(correlations: Mapping[str, Mapping[str, Correlation]]) -> str:
    """``family,group,models,r``: one row per (family, group) of :func:`.tables.correlations`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["family", "group", "models", "r"])
    for family, by_group in correlations.items():
        for group, (models, r) in by_group.items():
            writer.writerow([family, group, ";".join(models), _csv_number(r)])
    return buffer.getvalue()


__all__ = [
    "DIGITS",
    "correlation_csv",
    "markdown",
    "pairs_csv",
    "sanity_section",
    "tables_csv",
    "tables_latex",
    "tex_escape",
]
