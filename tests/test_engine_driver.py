"""The evaluation driver with an engine: equal values, each item's engine recorded, resumable with another."""

from __future__ import annotations

import sqlite3
import warnings

import pytest
from tiny import evaluation_model

from simexplain import engines
from simexplain.studies import Evaluation, Store, evaluate_pairs, load_pairs, parse_variants

VARIANTS = "input-x-gradient,conditional-occlusion[window=16;stride=8]"
METRICS = ["SI", "SD", "CI", "CD", "SAD", "CAD"]


@pytest.fixture(autouse=True)
def graph_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMEXPLAIN_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", engines.EngineWarning)
        yield


def _run(engine: str, db, limit: int) -> dict:
    model = evaluation_model()
    model.engine = engine
    run = Evaluation(model, parse_variants(VARIANTS), METRICS, {"step": 64}, seed=1, batch_size=3)
    summary = evaluate_pairs(run, load_pairs("demo", seed=1, limit=limit), db, progress=False)
    assert summary.failed == 0, summary.errors
    with Store(db, readonly=True) as store:
        values = {(p, v, m): value for p, v, m, value in store.metric_rows()}
        return {"values": values, "items": store.items(), "facts": store.run_facts()}


def test_driver_values_with_an_engine_equal_pytorch_and_each_item_records_its_engine(tmp_path):
    eager = _run("torch", tmp_path / "torch.sqlite", 2)
    exported = _run("onnxruntime", tmp_path / "ort.sqlite", 2)
    assert eager["values"].keys() == exported["values"].keys()
    # The six metrics (the extra SAD/CAD "increase" indicators compare two nearly equal scores of this tiny
    # random CNN: float rounding may flip them).
    for key, value in eager["values"].items():
        if key[2] in METRICS:
            assert exported["values"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert {i.engine for i in eager["items"]} == {"torch (fp32)"}
    assert {i.engine for i in exported["items"]} == {"onnxruntime (fp32)"}
    assert exported["facts"]["engine"]["encoders"]["a"]["engine"] == "onnxruntime"


def test_a_resumed_run_may_use_another_engine_and_old_stores_gain_the_column(tmp_path):
    db = tmp_path / "r.sqlite"
    _run("torch", db, 1)
    with sqlite3.connect(db) as raw:  # as a store written before engines were recorded
        raw.execute("ALTER TABLE items DROP COLUMN engine")
    with Store(db, readonly=True) as store:
        assert {i.engine for i in store.items()} == {None}
    resumed = _run("onnxruntime", db, 2)  # same run, another engine: not refused
    engines_by_pair = {i.pair: i.engine for i in resumed["items"]}
    assert set(engines_by_pair.values()) == {"onnxruntime (fp32)", None}
    assert {pair for pair, _, _ in resumed["values"]} == set(engines_by_pair)


def test_every_gradient_free_image_of_the_driver_reaches_the_engine(tmp_path):
    model = evaluation_model()
    model.engine = "onnxruntime"
    routed = []
    original = model._engines.embed

    def spy(name, side, encoder, x, lock):
        routed.append(len(x))
        return original(name, side, encoder, x, lock)

    model._engines.embed = spy
    run = Evaluation(model, parse_variants("input-x-gradient"), ["SD", "CAD"], {"step": 256}, seed=1)
    evaluate_pairs(run, load_pairs("demo", seed=1, limit=1), tmp_path / "r.sqlite", progress=False)
    # the clean pair (2), the deletion sequences of both images (2 × 5 points), the masked pair (2)
    assert sum(routed) == 2 + 2 * 5 + 2


def test_each_forward_of_a_driver_step_is_full_with_curve_points_of_several_pairs(tmp_path):
    model = evaluation_model()
    model.engine = "onnxruntime"
    sizes = []
    original = model._engines.embed

    def spy(name, side, encoder, x, lock):
        sizes.append(len(x))
        return original(name, side, encoder, x, lock)

    model._engines.embed = spy
    run = Evaluation(model, parse_variants("input-x-gradient"), ["SD", "CAD"], {"step": 256}, batch_size=4)
    evaluate_pairs(run, load_pairs("demo", seed=1, limit=2), tmp_path / "r.sqlite", progress=False)
    # the step's clean pairs (4 images), then ONE virtual batch of both pairs' deletion sequences (2 pairs ×
    # 2 images × 5 points) and masked images (4): six full chunks of 4
    assert sizes == [4] + [4] * 6
