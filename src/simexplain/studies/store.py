"""The evaluation store: one SQLite file (standard library, WAL journal) per run or per rank's shard.

Tables:

- ``run``: ``key → value`` facts of the run (model, weights' SHA-256, the settings fingerprint, package
  versions, device, command line). A second run into the same store must have the same fingerprint.
- ``variants``: the method variants in the run's order (label, method, params JSON, title).
- ``pairs``: the pairs (id, image paths, seed).
- ``items``: one row per finished (pair, variant): seconds, resolved config JSON, device, batch size, the
  one-line error when it failed, and the engine that ran its gradient-free passes (like the batch size, a
  speed setting: a resumed run may use another). A row here means "done": a rerun skips it.
- ``metrics``: one row per (pair, variant, metric) with its value (NULL when undefined, e.g. SAD with a
  base ≤ 0).
- ``curves``: the insertion/deletion curves per (pair, variant, curve) as float32 little-endian bytes.

Every (step, variant) is written in one transaction, so a ``kill -9`` loses at most that work and the file
stays readable. Shards (one per process of a distributed run) are merged with :meth:`Store.merge`.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "results.sqlite")
    >>> store = Store(path)
    >>> store.check_run({"model": "demo"}, {"fingerprint": "abc"})
    >>> store.write([Pair("p1", "a.jpg", None, 7)], [Item("p1", "input-x-gradient", 0.5, {}, "cpu", 8)],
    ...             [("p1", "input-x-gradient", "SD", 0.25)], [])
    >>> store.done()
    {('p1', 'input-x-gradient')}
    >>> store.close()
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SimexplainError

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS variants (
    label TEXT PRIMARY KEY, method TEXT NOT NULL, params TEXT NOT NULL, title TEXT NOT NULL, position INTEGER
);
CREATE TABLE IF NOT EXISTS pairs (pair TEXT PRIMARY KEY, image1 TEXT NOT NULL, image2 TEXT, seed INTEGER);
CREATE TABLE IF NOT EXISTS items (
    pair TEXT NOT NULL, variant TEXT NOT NULL, seconds REAL, config TEXT, device TEXT, batch_size INTEGER,
    error TEXT, engine TEXT, PRIMARY KEY (pair, variant)
);
CREATE TABLE IF NOT EXISTS metrics (
    pair TEXT NOT NULL, variant TEXT NOT NULL, metric TEXT NOT NULL, value REAL,
    PRIMARY KEY (pair, variant, metric)
);
CREATE TABLE IF NOT EXISTS curves (
    pair TEXT NOT NULL, variant TEXT NOT NULL, curve TEXT NOT NULL, points BLOB NOT NULL,
    PRIMARY KEY (pair, variant, curve)
);
"""
TABLES = ("variants", "pairs", "items", "metrics", "curves")


@dataclass(frozen=True)
class Pair:
    """A stored pair: its id, image paths (``image2`` ``None``: a seeded SimCLR view of image 1) and seed."""

    id: str
    image1: str
    image2: str | None
    seed: int


@dataclass(frozen=True)
class Item:
    """One finished (pair, variant): seconds, resolved config, device, batch size, the error if it failed, and
    the engine of its gradient-free passes (``simexplain.engines.describe(model)["label"]``)."""

    pair: str
    variant: str
    seconds: float | None
    config: dict[str, Any]
    device: str
    batch_size: int | None
    error: str | None = None
    engine: str | None = None


def shard_path(path: str | os.PathLike, rank: int, world: int) -> Path:
    """The shard file of ``rank`` next to the store: ``results.sqlite`` → ``results.rank1-of-4.sqlite``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{rank}-of-{world}{path.suffix or '.sqlite'}")


class Store:
    """An evaluation store at ``path`` (created with its folder when missing).

    ``readonly=True`` opens an existing store for reading (reports), refusing a missing or foreign file.
    """

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise SimexplainError(f"{self.path}: no such store")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{self.path}?mode=ro" if readonly else str(self.path)
        try:
            self.db = sqlite3.connect(uri, uri=readonly, timeout=60, isolation_level=None)
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(SCHEMA)
                _add_engine_column(self.db)
            names = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as error:
            raise SimexplainError(f"{self.path}: not an evaluation store ({error})") from None
        if not {"run", *TABLES} <= names:
            raise SimexplainError(f"{self.path}: not an evaluation store (tables missing)")

    # ------------------------------------------------------------------ the run's identity
    def run_facts(self) -> dict[str, Any]:
        """The run table as a dict (values decoded from JSON)."""
        return {key: json.loads(value) for key, value in self.db.execute("SELECT key, value FROM run")}

    def refuse_other_run(self, identity: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
        """Refuse, in one line, a stored run whose identity differs from ``identity`` on a shared key, naming
        what differs: the model, the weights, or for the settings fingerprint each setting that differs
        from ``settings`` (the run's ``settings`` fact: variants, metrics, metric options, seed), or the
        stored settings when ``settings`` is not given."""
        stored = self.run_facts()
        for key, value in identity.items():
            if key in stored and stored[key] != value:
                raise SimexplainError(
                    f"{self.path} holds a run with {_difference(key, stored, value, settings)}; "
                    "use another --db to keep results apart"
                )

    def check_run(self, identity: dict[str, Any], facts: dict[str, Any]) -> None:
        """Record ``identity`` (what must match for results to be comparable) and ``facts`` on the first run;
        on a later run refuse, in one line, any identity that differs (another model, weights or settings)."""
        self.refuse_other_run(identity, facts.get("settings"))
        rows = [(k, json.dumps(v)) for k, v in {**facts, **identity}.items()]
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO run (key, value) VALUES (?, ?)", rows)

    def record_sanity(self, model: str, results: dict[str, dict[str, Any]]) -> None:
        """Keep a sanity study's summary (variant label → figure path and correlations, as made by
        :func:`simexplain.studies.sanity.sanity_summary`) with the run, so its report links the figures.
        Refuses, in one line, a store of another model; a variant recorded again is replaced."""
        stored = self.run_facts()
        if stored.get("model") not in (None, model):
            raise SimexplainError(
                f"{self.path} holds a run of model {stored['model']!r}, not {model!r}; use that model's store"
            )
        sanity = {**stored.get("sanity", {}), **results}
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO run (key, value) VALUES ('sanity', ?)", (json.dumps(sanity),)
            )

    def set_variants(self, variants: Sequence[tuple[str, str, dict[str, Any], str]]) -> None:
        """Record the variants ``(label, method, params, title)`` in the run's order."""
        rows = [
            (label, method, json.dumps(params), title, i)
            for i, (label, method, params, title) in enumerate(variants)
        ]
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO variants VALUES (?, ?, ?, ?, ?)", rows)

    # ------------------------------------------------------------------ writing
    def done(self) -> set[tuple[str, str]]:
        """Every finished ``(pair, variant)`` (failed ones included: they are recorded with their error)."""
        return set(self.db.execute("SELECT pair, variant FROM items"))

    def write(
        self,
        pairs: Iterable[Pair],
        items: Iterable[Item],
        metrics: Iterable[tuple[str, str, str, float | None]],
        curves: Iterable[tuple[str, str, str, np.ndarray]],
    ) -> None:
        """Write one batch in ONE transaction: all of it is stored, or (after a crash) none of it."""
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?)",
                [(p.id, p.image1, p.image2, p.seed) for p in pairs],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
                [
                    (p, v, m, None if value is None or value != value else float(value))
                    for p, v, m, value in metrics
                ],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO curves VALUES (?, ?, ?, ?)",
                [(p, v, c, np.asarray(points, dtype="<f4").tobytes()) for p, v, c, points in curves],
            )
            # Items last: a row here marks the (pair, variant) done.
            self.db.executemany(
                "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        i.pair,
                        i.variant,
                        i.seconds,
                        json.dumps(i.config),
                        i.device,
                        i.batch_size,
                        i.error,
                        i.engine,
                    )
                    for i in items
                ],
            )

    def merge(self, others: Sequence[str | os.PathLike]) -> int:
        """Copy the rows of other stores (a distributed run's shards) into this one; returns the items added.
        The shards must hold the same run (same identity)."""
        before = self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        mine = self.run_facts()
        for other in others:
            theirs = Store(other, readonly=True)
            try:
                facts = theirs.run_facts()
            finally:
                theirs.close()
            if mine.get("fingerprint") != facts.get("fingerprint"):
                raise SimexplainError(f"{other}: a shard of another run; not merged")
            self.db.execute("ATTACH DATABASE ? AS shard", (str(other),))
            try:
                with self._transaction():
                    for table in TABLES:
                        self.db.execute(f"INSERT OR REPLACE INTO main.{table} SELECT * FROM shard.{table}")
            finally:
                self.db.execute("DETACH DATABASE shard")
        return self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0] - before

    # ------------------------------------------------------------------ reading
    def variants(self) -> list[dict[str, Any]]:
        """The variants in the run's order: ``label``, ``method``, ``params``, ``title``."""
        rows = self.db.execute("SELECT label, method, params, title FROM variants ORDER BY position")
        return [{"label": lab, "method": m, "params": json.loads(p), "title": t} for lab, m, p, t in rows]

    def metric_rows(self) -> Iterator[tuple[str, str, str, float | None]]:
        """``(pair, variant, metric, value)`` for every stored value, in a stable order."""
        return iter(
            self.db.execute("SELECT pair, variant, metric, value FROM metrics ORDER BY pair, variant, metric")
        )

    def items(self) -> list[Item]:
        """Every finished (pair, variant), failed ones included."""
        engine = "engine" if _has_engine_column(self.db) else "NULL"  # a store written before engines
        rows = self.db.execute(
            f"SELECT pair, variant, seconds, config, device, batch_size, error, {engine} "
            "FROM items ORDER BY pair, variant"
        )
        return [Item(p, v, s, json.loads(c) if c else {}, d, b, e, g) for p, v, s, c, d, b, e, g in rows]

    def curves(self) -> Iterator[tuple[str, str, str, np.ndarray]]:
        """``(pair, variant, curve, points)`` with the points as float32 arrays."""
        for pair, variant, curve, blob in self.db.execute(
            "SELECT pair, variant, curve, points FROM curves ORDER BY pair, variant, curve"
        ):
            yield pair, variant, curve, np.frombuffer(blob, dtype="<f4")

    def counts(self) -> dict[str, int]:
        """Pairs, finished items and failed items."""
        pairs = self.db.execute("SELECT COUNT(DISTINCT pair) FROM items").fetchone()[0]
        items = self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        failed = self.db.execute("SELECT COUNT(*) FROM items WHERE error IS NOT NULL").fetchone()[0]
        return {"pairs": pairs, "items": items, "failed": failed}

    # ------------------------------------------------------------------ plumbing
    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an exception): one batch, all or nothing."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type | None, *rest: object) -> None:
        self.db.execute("ROLLBACK" if kind is not None else "COMMIT")


def _difference(key: str, stored: dict[str, Any], value: Any, settings: dict[str, Any] | None) -> str:
    """What differs, in words: ``another model ('a' here, 'b' now)``, ``other weights (...)``, or the
    settings that differ (``other settings: metrics SD here, SD, SI now; seed 0 here, 1 now``)."""
    if key == "model":
        return f"another model ({stored[key]!r} here, {value!r} now)"
    if key == "weights_sha256":
        return f"other weights ({_weights(stored[key])} here, {_weights(value)} now)"
    if key != "fingerprint" or not isinstance(stored.get("settings"), dict):
        return f"another {key} ({_short(stored[key])} here, {_short(value)} now)"
    before = stored["settings"]
    if not isinstance(settings, dict):
        listed = "; ".join(f"{_SETTINGS.get(k, k)} {_listed(v)}" for k, v in before.items())
        return f"other settings (here: {listed})"
    changed = [
        f"{_SETTINGS.get(k, k)} {_listed(before.get(k))} here, {_listed(settings.get(k))} now"
        for k in dict.fromkeys([*before, *settings])
        if before.get(k) != settings.get(k)
    ]
    if not changed:  # the same settings fact, another fingerprint (another version's): name the fingerprints
        return f"another settings fingerprint ({_short(stored[key])} here, {_short(value)} now)"
    return "other settings: " + "; ".join(changed)


_SETTINGS = {"metric_options": "metric options"}


def _listed(value: Any) -> str:
    """A setting in words: lists comma-separated, options as ``key=value``, ``none`` for nothing."""
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return "none" if value is None else str(value)


def _weights(sha256: str | None) -> str:
    return f"sha256 {sha256[:16]}" if sha256 else "built-in"


def _has_engine_column(db: sqlite3.Connection) -> bool:
    return any(row[1] == "engine" for row in db.execute("PRAGMA table_info(items)"))


def _add_engine_column(db: sqlite3.Connection) -> None:
    """A store written before the engines were recorded gets the column (empty for its earlier items)."""
    if not _has_engine_column(db):
        db.execute("ALTER TABLE items ADD COLUMN engine TEXT")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."
