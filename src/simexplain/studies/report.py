"""Reports of evaluation stores: ``pairs.csv``, the paper's Tables I–VI (Markdown, CSV, LaTeX), the summary
heatmap (Fig. 14) and, given downstream accuracies, the correlation figure (Fig. 15).

Stores are grouped by their run's model: stores of one model (a run's shard files, say) are read as one run
and must hold the same run (model, weights and settings); stores of different models give one table per model
and one heatmap over all of them.

Numbers: each table cell is the mean over the pairs that have a value (an undefined value, e.g. an average
drop whose clean similarity is ≤ 0, is left out and counted in the notes) and its 95% percentile bootstrap
interval. The bootstrap resamples the model's pairs (sorted by id) with replacement, ``bootstrap`` times, with
indices ``numpy.random.default_rng(seed).integers(0, n, (bootstrap, n))`` drawn once per model and shared by
every cell, so all the model's methods are compared on the same resampled pairs. A summary group's interval
combines each resample's metric means as the group combines the means; each group is defined in one line
under its table and in the caption of ``summary.png`` (:class:`~simexplain.metrics.groups.SummaryGroup`).

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

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import checks
from ..errors import SimexplainError
from ..figures.output import save_figure
from ..figures.summary import correlation_figure, summary_heatmap
from ..metrics.groups import group_definitions
from . import render
from .runs import ModelRun, load_runs
from .tables import correlations, dissection_table, family_scores, group_scores, model_tables


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
    :func:`~simexplain.studies.tables.dissection_table`), ``summary.png``/``.svg`` (the heatmap with a caption
    that defines the groups, when a summary group can be computed; ``tables.md`` also links the sanity figures
    recorded in a store by
    ``simexplain sanity --db``), and with ``downstream`` (model → accuracy, a fraction or a percentage as in
    :func:`parse_downstream`) ``correlation.png``/``.svg``/``.csv``.

    ``downstream`` (``None`` or empty: no correlation) must give the accuracy of at least two reported models
    (one-line error before anything is written); models without one are left out with a note. Notes go to
    ``log`` (standard error by default). Models are reported in the order their first store is given.
    """
    bootstrap = checks.non_negative_int("bootstrap", bootstrap)
    seed = checks.non_negative_int("seed", seed)
    log = log or _stderr
    every_run = load_runs(stores)
    runs = [run for run in every_run if run.study != "dissection"]
    accuracy = _downstream_models(runs, downstream, log) if downstream else None  # {}: none given
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SimexplainError(f"{out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    texts = _texts(every_run, out, bootstrap, seed)
    written = []
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    scores = {run.name: group_scores(run) for run in runs}
    if any(scores.values()):
        names = {group for by_title in scores.values() for groups in by_title.values() for group in groups}
        definitions = [group.definition for group in group_definitions(names)]
        figure = summary_heatmap(scores, definitions=definitions)
        written += map(Path, save_figure(figure, out / "summary.png"))
    elif runs:
        log("note: summary.png not written: no summary group has all its metrics (G1 needs SI and CI, ...)")
    if accuracy is not None:
        written += _correlation(runs, scores, accuracy, out, log)
    return written


def _texts(every_run: list[ModelRun], out: Path, bootstrap: int, seed: int) -> dict[str, str]:
    """File name → text: ``pairs.csv``, the evaluation tables and the dissection tables (when there are
    runs of that kind)."""
    runs = [run for run in every_run if run.study != "dissection"]
    dissections = [run for run in every_run if run.study == "dissection"]
    texts = {"pairs.csv": render.pairs_csv(every_run)}
    if runs:
        tables = [table for run in runs for table in model_tables(run, bootstrap, seed)]
        texts["tables.md"] = render.markdown(tables, runs, bootstrap, seed) + render.sanity_section(runs, out)
        texts["tables.csv"] = render.tables_csv(tables)
        texts["tables.tex"] = render.tables_latex(tables)
    seventh = [t for t in (dissection_table(run, bootstrap, seed) for run in dissections) if t is not None]
    if seventh:
        heading = "Augmentation dissection"
        texts["dissection.md"] = render.markdown(seventh, dissections, bootstrap, seed, heading)
        texts["dissection.csv"] = render.tables_csv(seventh)
        texts["dissection.tex"] = render.tables_latex(seventh)
    return texts


def _correlation(
    runs: list[ModelRun],
    scores: Mapping[str, Any],
    accuracy: Mapping[str, float],
    out: Path,
    log: Callable[[str], None],
) -> list[Path]:
    """``correlation.csv`` and, when there are group scores, ``correlation.png``/``.svg``."""
    families = family_scores(runs, scores)
    found = correlations(families, accuracy)
    (out / "correlation.csv").write_text(render.correlation_csv(found), encoding="utf-8")
    written = [out / "correlation.csv"]
    if not families:
        log("note: correlation.png not written: no summary group scores")
        return written
    r = {family: {group: c.r for group, c in by_group.items()} for family, by_group in found.items()}
    figure = correlation_figure(families, accuracy, r)
    return written + list(map(Path, save_figure(figure, out / "correlation.png")))


__all__ = ["parse_downstream", "write_report"]
