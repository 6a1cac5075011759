"""The runs a report reads: evaluation stores loaded and grouped by model (:class:`ModelRun`).

Stores of one model (a run's shard files, say) are read as one run and must hold the same run (model, weights
and settings); stores of different models are different runs.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SimexplainError
from ..metrics.registry import METRIC_INFO
from .store import Item, Store


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
        recomputed: pair id → when its results were last recomputed because its images changed.
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
    recomputed: dict[str, str] = field(default_factory=dict)

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
        facts, variants, rows, items, recomputed = _read(path)
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
        run.recomputed.update(recomputed)
    for run in runs.values():
        run.pairs = sorted({pair for pair, _ in run.items})
        if not run.metrics:  # a store without settings: the known metrics it holds
            stored = {metric for _, _, metric in run.values}
            run.metrics = [name for name in METRIC_INFO if name in stored]
        _unique_titles(run.variants)
    return list(runs.values())


def _read(path: Path) -> tuple[dict, list[dict], list[tuple], list[Item], dict[str, str]]:
    with Store(path, readonly=True) as store:
        try:
            rows = list(store.metric_rows())
            return store.run_facts(), store.variants(), rows, store.items(), store.recomputed()
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


__all__ = ["ModelRun", "load_runs"]
