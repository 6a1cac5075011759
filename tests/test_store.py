"""The evaluation store: refuses another run naming what differs (model, weights, each setting); keys pairs by
their images' content (changed pairs, shards that recomputed them, stores written before content keys)."""

import json
import sqlite3

import pytest

from simexplain import SimexplainError
from simexplain.studies.store import Item, Pair, Store

SETTINGS = {
    "variants": ["input-x-gradient", "smooth-grad[samples=10]"],
    "metrics": ["SAD"],
    "metric_options": {"step": 224},
    "seed": 0,
}
IDENTITY = {"model": "m", "weights_sha256": None, "fingerprint": "f1"}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.check_run(IDENTITY, {"settings": SETTINGS})
        yield store


def _refusal(store, identity, settings=None):
    with pytest.raises(SimexplainError) as raised:
        store.refuse_other_run({**IDENTITY, **identity}, settings)
    message = str(raised.value)
    assert "\n" not in message and message.endswith("use another --db to keep results apart")
    return message


def test_another_model_or_weights_is_named(store):
    assert "another model ('m' here, 'n' now)" in _refusal(store, {"model": "n"})
    message = _refusal(store, {"weights_sha256": "ab" * 32})
    assert "other weights (built-in here, sha256 abababababababab now)" in message


def test_each_differing_setting_is_named_with_both_values(store):
    now = {**SETTINGS, "metrics": ["SAD", "SD"], "seed": 3, "metric_options": {"step": 32}}
    message = _refusal(store, {"fingerprint": "f2"}, now)
    assert "metrics SAD here, SAD, SD now" in message and "seed 0 here, 3 now" in message
    assert "metric options step=224 here, step=32 now" in message
    assert "variants" not in message and "f1" not in message  # the same variants; no fingerprint


def test_check_run_names_the_settings_and_a_bare_identity_lists_the_stored_ones(store):
    with pytest.raises(SimexplainError, match="other settings: variants input-x-gradient, smooth-grad"):
        store.check_run({**IDENTITY, "fingerprint": "f2"}, {"settings": {**SETTINGS, "variants": []}})
    message = _refusal(store, {"fingerprint": "f2"})  # only the identity: what the store holds
    assert "other settings (here: variants input-x-gradient, smooth-grad[samples=10]; metrics SAD" in message


# ---------------------------------------------------------------- pairs keyed by their images' content
OLD_SCHEMA = """
CREATE TABLE run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE variants (label TEXT PRIMARY KEY, method TEXT NOT NULL, params TEXT NOT NULL,
    title TEXT NOT NULL,
    position INTEGER);
CREATE TABLE pairs (pair TEXT PRIMARY KEY, image1 TEXT NOT NULL, image2 TEXT, seed INTEGER);
CREATE TABLE items (pair TEXT NOT NULL, variant TEXT NOT NULL, seconds REAL, config TEXT, device TEXT,
    batch_size INTEGER, error TEXT, engine TEXT, PRIMARY KEY (pair, variant));
CREATE TABLE metrics (pair TEXT NOT NULL, variant TEXT NOT NULL, metric TEXT NOT NULL, value REAL,
    PRIMARY KEY (pair, variant, metric));
CREATE TABLE curves (pair TEXT NOT NULL, variant TEXT NOT NULL, curve TEXT NOT NULL, points BLOB NOT NULL,
    PRIMARY KEY (pair, variant, curve));
"""  # the store as written before pairs were keyed by content


def _results(store, pairs, value):
    items = [Item(p.id, "ixg", 0.1, {}, "cpu", 1) for p in pairs]
    store.write(pairs, items, [(p.id, "ixg", "SD", value) for p in pairs], [])


def test_a_pair_whose_images_changed_is_not_done_and_forgetting_drops_its_results(store):
    pairs = [Pair("a", "a.png", None, 1, "1" * 64), Pair("b", "b.png", "c.png", 2, "2" * 64, "3" * 64)]
    _results(store, pairs, 0.5)
    now = {"a": ("1" * 64, None), "b": ("2" * 64, "4" * 64)}  # b's image 2 was replaced
    assert store.changed(now) == {"b"} and store.done(now) == {("a", "ixg")}
    assert store.changed({"a": (None, None), "b": ("2" * 64, None)}) == set()  # unreadable now: no change
    store.forget([Pair("b", "b.png", "c.png", 2, "2" * 64, "4" * 64, "2030-01-01T00:00:00")])
    assert {p for p, _, _, _ in store.metric_rows()} == {"a"} and store.changed(now) == set()
    _results(store, pairs[1:], 0.25)  # computed again: the rewritten row keeps when it was recomputed
    assert store.recomputed() == {"b": "2030-01-01T00:00:00"}


def test_merging_a_shard_that_recomputed_a_pair_drops_the_main_stores_stale_results(tmp_path):
    identity, facts = {"model": "m", "fingerprint": "f"}, {}
    with Store(tmp_path / "main.sqlite") as main, Store(tmp_path / "shard.sqlite") as shard:
        for store in (main, shard):
            store.check_run(identity, facts)
        main.write(
            [Pair("a", "a.png", None, 1, "1" * 64)],
            [Item("a", v, 0.1, {}, "cpu", 1) for v in ("ixg", "sg")],
            [("a", v, "SD", 0.5) for v in ("ixg", "sg")],
            [],
        )
        # The shard recomputed a for new images; its sg failed this time: no old sg value may survive.
        new = Pair("a", "a.png", None, 1, "9" * 64, None, "2030-01-01T00:00:00")
        shard.forget([new])
        shard.write(
            [new],
            [Item("a", "ixg", 0.1, {}, "cpu", 1), Item("a", "sg", None, {}, "cpu", 1, "bad")],
            [("a", "ixg", "SD", 0.75)],
            [],
        )
        assert main.merge([tmp_path / "shard.sqlite"]) == 0  # the same two items, replaced
        assert list(main.metric_rows()) == [("a", "ixg", "SD", 0.75)]
        assert main.recomputed() == {"a": "2030-01-01T00:00:00"}
        assert main.changed({"a": ("9" * 64, None)}) == set()


def test_a_store_written_before_content_keys_reads_and_is_adopted_once(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO run VALUES ('model', ?)", (json.dumps("m"),))
    db.execute("INSERT INTO pairs VALUES ('a', ?, NULL, 1)", (str(tmp_path / "a.png"),))
    db.execute("INSERT INTO items VALUES ('a', 'ixg', 0.1, '{}', 'cpu', 1, NULL, NULL)")
    db.commit()
    db.close()
    with Store(path, readonly=True) as old:  # read as it is (a report)
        assert old.changed({"a": ("1" * 64, None)}) == set() and old.recomputed() == {}
    digests = {str(tmp_path / "a.png"): "1" * 64, "moved/a.png": "5" * 64, None: None}
    with Store(path) as store:
        # the images the run names for its pairs (a folder moved since), else those at the recorded paths
        assert store.adopt_legacy_pairs(digests.get, {"a": ("moved/a.png", None)}) == 1
        assert store.adopt_legacy_pairs(digests.get) == 0  # once
        assert store.done({"a": ("5" * 64, None)}) == {("a", "ixg")}
        assert store.changed({"a": ("2" * 64, None)}) == {"a"}  # from now on, a change is seen
