"""The evaluation store: one SQLite file (standard library, WAL journal) per run or per rank's shard.

Tables:

- ``run``: ``key → value`` facts of the run (model, weights' SHA-256, the settings fingerprint, package
  versions, device, command line). A second run into the same store must have the same fingerprint.
- ``variants``: the method variants in the run's order (label, method, params JSON, title).
- ``pairs``: the pairs: id, image paths, seed, the SHA-256 of each image file's bytes when it was read, and
  when its results were last recomputed because its images changed. A pair is its id together with its
  images' content: a rerun whose images differ from the stored ones (:meth:`Store.changed`) drops the
  pair's results (:meth:`Store.forget`) and computes them again, never reusing numbers of other images.
- ``items``: one row per finished (pair, variant): seconds, resolved config JSON, device, batch size, the
  one-line error when it failed, and the engine that ran its gradient-free passes (like the batch size, a
  speed setting: a resumed run may use another). A row here means "done": a rerun skips it.
- ``metrics``: one row per (pair, variant, metric) with its value (NULL when undefined, e.g. SAD with a
  base ≤ 0).
- ``curves``: the insertion/deletion curves per (pair, variant, curve) as float32 little-endian bytes.

Every (step, variant) is written in one transaction, so a ``kill -9`` loses at most that work and the file
stays readable. Shards (one per process of a distributed run) are merged with :meth:`Store.merge`.

A store written before pairs were keyed by content opens as it is for reading; opened for writing it gains
the content columns, and :meth:`Store.adopt_legacy_pairs` records the images now at its pairs' paths as
theirs (their stored results are kept: nothing says which images produced them).

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
CREATE TABLE IF NOT EXISTS pairs (
    pair TEXT PRIMARY KEY, image1 TEXT NOT NULL, image2 TEXT, seed INTEGER,
    image1_sha256 TEXT, image2_sha256 TEXT, recomputed TEXT
);
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
RESULTS = ("items", "metrics", "curves")  # a pair's results: dropped together when its images change
CONTENT = ("image1_sha256", "image2_sha256", "recomputed")  # the pairs' columns added by content keys
LEGACY = "pairs_before_content_keys"  # run fact: pairs stored before content keys, not adopted yet
# A pair row written again keeps what it knew: a digest of an image unreadable now, when it was recomputed.
_PAIR_UPSERT = """ON CONFLICT(pair) DO UPDATE SET image1 = excluded.image1, image2 = excluded.image2,
    seed = excluded.seed, image1_sha256 = COALESCE(excluded.image1_sha256, pairs.image1_sha256),
    image2_sha256 = COALESCE(excluded.image2_sha256, pairs.image2_sha256),
    recomputed = COALESCE(excluded.recomputed, pairs.recomputed)"""
_PAIR_COLUMNS = "pair, image1, image2, seed, image1_sha256, image2_sha256, recomputed"

Digests = tuple[str | None, str | None]  # the SHA-256 of image 1's and image 2's bytes (None: not known)


@dataclass(frozen=True)
class Pair:
    """A stored pair: its id, image paths (``image2`` ``None``: a seeded SimCLR view of image 1), seed, the
    SHA-256 of its image files (``None``: a view, or a file unreadable when hashed) and, when its results
    were recomputed because its images changed, when (ISO time)."""

    id: str
    image1: str
    image2: str | None
    seed: int
    image1_sha256: str | None = None
    image2_sha256: str | None = None
    recomputed: str | None = None


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
                _add_content_columns(self.db)
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

    # ------------------------------------------------------------------ the pairs' content
    def adopt_legacy_pairs(
        self,
        digest: Callable[[str | None], str | None],
        paths: Mapping[str, tuple[str, str | None]] | None = None,
    ) -> int:
        """In a store written before pairs were keyed by content, record ``digest(path)`` of each stored
        pair's images as its content, once (their results are kept): the images now at ``paths`` (pair id →
        image paths of the run) or, for a pair the run does not name, at its recorded paths. Returns how many
        pairs were adopted."""
        if not self.run_facts().get(LEGACY):
            return 0
        paths = paths or {}
        rows = [
            (pair, *paths.get(pair, (image1, image2)))
            for pair, image1, image2 in self.db.execute("SELECT pair, image1, image2 FROM pairs")
        ]
        with self._transaction():
            self.db.executemany(
                "UPDATE pairs SET image1_sha256 = ?, image2_sha256 = ? WHERE pair = ?",
                [(digest(image1), digest(image2), pair) for pair, image1, image2 in rows],
            )
            self.db.execute("DELETE FROM run WHERE key = ?", (LEGACY,))
        return len(rows)

    def changed(self, current: Mapping[str, Digests]) -> set[str]:
        """The pairs of ``current`` (id → the digests of its images now) with stored results computed for
        other images. An image unreadable now (digest ``None``) is not taken for a change."""
        if not _has_content_columns(self.db):  # a store written before content keys, read as it is
            return set()
        stored = {
            pair: (first, second)
            for pair, first, second in self.db.execute(
                "SELECT pair, image1_sha256, image2_sha256 FROM pairs "
                "WHERE pair IN (SELECT DISTINCT pair FROM items)"
            )
        }
        return {
            pair
            for pair, now in current.items()
            if pair in stored and any(n is not None and n != s for n, s in zip(now, stored[pair]))
        }

    def forget(self, pairs: Sequence[Pair]) -> None:
        """Drop the results of ``pairs`` and record them (their new digests, ``recomputed``) in ONE
        transaction: their images changed, their results are computed again."""
        ids = [(p.id,) for p in pairs]
        with self._transaction():
            for table in RESULTS:
                self.db.executemany(f"DELETE FROM {table} WHERE pair = ?", ids)
            self._upsert_pairs(pairs)

    def recomputed(self) -> dict[str, str]:
        """Pair id → when its results were last recomputed because its images changed (ISO time)."""
        if not _has_content_columns(self.db):
            return {}
        rows = self.db.execute(
            "SELECT pair, recomputed FROM pairs WHERE recomputed IS NOT NULL ORDER BY pair"
        )
        return dict(rows)

    # ------------------------------------------------------------------ writing
    def done(self, current: Mapping[str, Digests] | None = None) -> set[tuple[str, str]]:
        """Every finished ``(pair, variant)`` (failed ones included: they are recorded with their error);
        given ``current`` (pair id → its images' digests now), not those of pairs whose images changed."""
        changed = self.changed(current) if current else set()
        return {(p, v) for p, v in self.db.execute("SELECT pair, variant FROM items") if p not in changed}

    def _upsert_pairs(self, pairs: Iterable[Pair]) -> None:
        self.db.executemany(
            f"INSERT INTO pairs ({_PAIR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) {_PAIR_UPSERT}",
            [
                (p.id, p.image1, p.image2, p.seed, p.image1_sha256, p.image2_sha256, p.recomputed)
                for p in pairs
            ],
        )

    def write(
        self,
        pairs: Iterable[Pair],
        items: Iterable[Item],
        metrics: Iterable[tuple[str, str, str, float | None]],
        curves: Iterable[tuple[str, str, str, np.ndarray]],
    ) -> None:
        """Write one batch in ONE transaction: all of it is stored, or (after a crash) none of it."""
        with self._transaction():
            self._upsert_pairs(pairs)
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
        The shards must hold the same run (same identity). A pair a shard computed for other images than
        this store's loses its results here first (the shard recomputed them)."""
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
                    self._merge_shard()
            finally:
                self.db.execute("DETACH DATABASE shard")
        return self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0] - before

    def _merge_shard(self) -> None:
        """The attached ``shard``'s rows into this store: stale results of its changed pairs dropped, pairs
        upserted, everything else copied."""
        changed = """SELECT s.pair FROM shard.pairs s JOIN main.pairs m ON s.pair = m.pair
            WHERE (s.image1_sha256 IS NOT NULL AND s.image1_sha256 IS NOT m.image1_sha256)
               OR (s.image2_sha256 IS NOT NULL AND s.image2_sha256 IS NOT m.image2_sha256)"""
        for table in RESULTS:
            self.db.execute(f"DELETE FROM main.{table} WHERE pair IN ({changed})")
        self.db.execute(
            f"INSERT INTO main.pairs ({_PAIR_COLUMNS}) SELECT {_PAIR_COLUMNS} FROM shard.pairs WHERE true "
            + _PAIR_UPSERT
        )
        for table in TABLES:
            if table != "pairs":
                self.db.execute(f"INSERT OR REPLACE INTO main.{table} SELECT * FROM shard.{table}")

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


def _has_content_columns(db: sqlite3.Connection) -> bool:
    return any(row[1] == "image1_sha256" for row in db.execute("PRAGMA table_info(pairs)"))


def _add_content_columns(db: sqlite3.Connection) -> None:
    """A store written before pairs were keyed by content gets the columns, and the run fact that its pairs
    wait for :meth:`Store.adopt_legacy_pairs` (one transaction: a crash leaves the store as it was)."""
    if _has_content_columns(db):
        return
    with _Transaction(db):
        if _has_content_columns(db):  # another process added them while this one waited
            return
        for column in CONTENT:
            db.execute(f"ALTER TABLE pairs ADD COLUMN {column} TEXT")
        if db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]:
            db.execute("INSERT OR REPLACE INTO run (key, value) VALUES (?, 'true')", (LEGACY,))


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."
