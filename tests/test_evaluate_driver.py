"""The evaluation driver: stored values equal direct calls, resume after SIGKILL, torchrun shards, faults."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import evaluation_model

import simexplain
from simexplain import SimexplainError, metrics
from simexplain.cli import main
from simexplain.studies import Evaluation, Store, evaluate_pairs, load_pairs, pair_images, parse_variants

TESTS = Path(__file__).resolve().parent
VARIANTS = (
    "input-x-gradient,smooth-grad[samples=2],pairwise-occlusion[samples=4],interaction-cam[reduction=max]"
)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    generator = np.random.default_rng(0)
    for i in range(6):
        pixels = generator.integers(0, 256, size=(40 + 4 * i, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / ("sub" if i % 2 else "") / f"img{i}.png")
    return folder


def _stored(db) -> dict:
    with Store(db, readonly=True) as store:
        return {(p, v, m): value for p, v, m, value in store.metric_rows()}


def _main(*args) -> int:
    return main([str(a) for a in args])


def _cli(*args, timeout=300, env=None, wait=True):
    environment = {**os.environ, "PYTHONPATH": str(TESTS), **(env or {})}
    command = [sys.executable, "-m", "simexplain", *map(str, args)]
    if not wait:
        return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)


def test_stored_values_equal_direct_calls(photos, tmp_path):
    model = evaluation_model()
    variants = parse_variants(VARIANTS)
    specs = load_pairs(str(photos), seed=3, limit=4)
    run = Evaluation(
        model, variants, ["SI", "SD", "CI", "CD", "SAD", "CAD"], {"step": 64}, seed=3, batch_size=3
    )
    summary = evaluate_pairs(run, specs, tmp_path / "results.sqlite", progress=False)
    assert (summary.done, summary.failed, summary.skipped) == (len(specs) * len(variants), 0, 0)
    stored = _stored(tmp_path / "results.sqlite")
    for spec in specs[2:4]:  # the second step
        x1, x2 = pair_images(spec, model)
        for variant in variants:
            params = dict(variant.params)
            if "seed" in simexplain.methods.get(variant.method).parameters():
                params["seed"] = spec.seed
            e = simexplain.explain(model, x1, x2, variant.method, **params)
            direct = metrics.evaluate(model, x1, x2, e, "all", step=64)
            for name in ("SI", "SD", "CI", "CD", "SAD", "CAD"):
                got, want = stored[(spec.id, variant.label, name)], float(direct[name][0])
                assert got == pytest.approx(want, rel=1e-5, abs=1e-6), (spec.id, variant.label, name)
    with Store(tmp_path / "results.sqlite", readonly=True) as store:
        items = store.items()
        assert all(i.seconds > 0 and i.error is None for i in items)
        assert {i.config.get("samples") for i in items if i.variant.startswith("pairwise")} == {4}
        assert next(store.curves())[3].dtype == np.float32
    again = evaluate_pairs(run, specs, tmp_path / "results.sqlite", progress=False)
    assert again.done == 0 and again.skipped == len(specs) * len(variants)


def test_a_corrupt_image_is_recorded_and_the_rest_finishes(photos, tmp_path, capsys):
    (photos / "broken.png").write_bytes(b"not a png at all")
    code = _main(
        "evaluate",
        "--pairs",
        photos,
        "--db",
        tmp_path / "r.sqlite",
        "--model",
        "python:tiny:evaluation_model",
        "--methods",
        "input-x-gradient,pair-grad-cam",
        "--metrics",
        "SAD,CAD",
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "2 FAILED" in out and "broken.png" in out
    with Store(tmp_path / "r.sqlite", readonly=True) as store:
        counts = store.counts()
        failed = [i for i in store.items() if i.error]
    assert counts == {"pairs": 7, "items": 14, "failed": 2}
    assert {i.pair for i in failed} == {"broken.png"} and "\n" not in failed[0].error


def test_a_different_model_or_setting_into_the_same_store_is_refused(photos, tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    args = [
        "evaluate",
        "--pairs",
        str(photos),
        "--db",
        str(db),
        "--methods",
        "input-x-gradient",
        "--metrics",
        "SAD",
    ]
    assert main([*args, "--model", "python:tiny:evaluation_model", "--limit", "2"]) == 0
    capsys.readouterr()
    assert main([*args, "--model", "python:tiny:evaluation_model_b", "--limit", "2"]) == 1
    err = capsys.readouterr().err
    assert "another model" in err and err.count("\n") == 1
    assert main([*args[:-1], "SD", "--model", "python:tiny:evaluation_model"]) == 1
    err = capsys.readouterr().err  # what differs, both ways, in words (not a fingerprint)
    assert "other settings" in err and "metrics SAD here, SD now" in err and err.count("\n") == 1
    assert main([*args, "--model", "python:tiny:evaluation_model"]) == 0  # more pairs, same run: resumes
    assert "4 explanations scored, 2 already stored" in capsys.readouterr().out


def test_usage_errors_exit_2_before_any_work(photos, tmp_path, capsys):
    for args, words in (
        (["--methods", "nope"], "unknown method"),
        (["--metrics", "XX"], "unknown metric"),
        (["--set", "metrics.steps=3"], "metrics.steps"),
        (["--set", "smooth-grad.samples=0", "--methods", "smooth-grad"], "samples"),
        (["--pairs", str(tmp_path / "missing")], "missing"),
        (["--db", str(tmp_path / "no" / "r.sqlite")], "does not exist"),
    ):
        full = ["evaluate", "--pairs", str(photos), "--db", str(tmp_path / "r.sqlite"), *args]
        assert main(full) == 2, args
        assert words in capsys.readouterr().err, args
    assert not (tmp_path / "r.sqlite").exists()


def test_sigkill_then_resume_gives_the_uninterrupted_results(photos, tmp_path, capsys):
    args = [
        "--pairs",
        photos,
        "--model",
        "python:tiny:evaluation_model",
        "--batch-size",
        1,
        "--metrics",
        "SD,CAD",
    ]
    args += ["--methods", "input-x-gradient,pairwise-occlusion[samples=4]", "--set", "metrics.step=32"]
    assert _main("evaluate", *args, "--db", tmp_path / "whole.sqlite") == 0
    killed = tmp_path / "killed.sqlite"
    process = _cli("evaluate", *args, "--db", killed, wait=False)
    deadline = time.time() + 120
    while time.time() < deadline:
        if killed.exists() and _items(killed) > 0:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    partial = _items(killed)
    assert 0 < partial < 6 * 2, partial
    capsys.readouterr()
    assert _main("evaluate", *args, "--db", killed) == 0
    assert f"{partial} already stored" in capsys.readouterr().out
    whole, again = _stored(tmp_path / "whole.sqlite"), _stored(killed)
    assert whole.keys() == again.keys()
    for key, value in whole.items():
        assert again[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert _main("evaluate", *args, "--db", killed) == 0
    assert "0 explanations scored" in capsys.readouterr().out


def _items(db) -> int:
    try:
        with Store(db, readonly=True) as store:
            return store.counts()["items"]
    except (SimexplainError, Exception):  # noqa: BLE001  (the file may be half-created while polled)
        return 0


def test_torchrun_with_two_processes_gives_the_single_process_results(photos, tmp_path):
    args = ["--pairs", photos, "--model", "python:tiny:evaluation_model", "--methods", VARIANTS]
    args += ["--set", "metrics.step=64", "--batch-size", 2, "--metrics", "SD,CI,SAD"]
    assert _main("evaluate", *args, "--db", tmp_path / "one.sqlite") == 0
    _torchrun(*args, "--db", tmp_path / "two.sqlite")
    _assert_same_values(tmp_path / "one.sqlite", tmp_path / "two.sqlite")
    # An image replaced: the shards recompute its pair and the merge replaces the store's results.
    _replace_pixels(photos / "sub" / "img3.png", seed=11)
    _torchrun(*args, "--db", tmp_path / "two.sqlite")
    assert _main("evaluate", *args, "--db", tmp_path / "fresh.sqlite") == 0
    _assert_same_values(tmp_path / "fresh.sqlite", tmp_path / "two.sqlite")
    with Store(tmp_path / "two.sqlite", readonly=True) as store:
        assert list(store.recomputed()) == ["sub/img3.png"]


def _torchrun(*args) -> None:
    # --standalone: a local rendezvous on a free port
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1"}
    command = [*torchrun, "-m", "simexplain", "evaluate", *map(str, args)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(Path(args[-1]).parent.glob("*.rank*")), "shards are merged and removed"


def _assert_same_values(expected_db, db) -> None:
    expected, got = _stored(expected_db), _stored(db)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_the_run_table_records_what_reproduces_it(photos, tmp_path):
    run = Evaluation(evaluation_model(), parse_variants("input-x-gradient"), ["SAD"], seed=5)
    evaluate_pairs(run, load_pairs(str(photos), limit=1), tmp_path / "r.sqlite", progress=False, command="x")
    with Store(tmp_path / "r.sqlite", readonly=True) as store:
        facts = store.run_facts()
    assert facts["model"] == "tiny-cnn-0" and facts["settings"]["seed"] == 5 and facts["command"] == "x"
    from importlib.metadata import version

    assert facts["versions"]["torch"] == version("torch") and facts["versions"]["simexplain"] == version(
        "simexplain"
    )
    assert facts["weights_sha256"] is None and facts["device"] == "cpu"


def test_given_clean_embeddings_are_used_and_change_nothing():
    from tiny import CountingEncoder, SmallCNN

    counting = CountingEncoder(SmallCNN())
    model = simexplain.PairModel(counting, layer="inner.features")
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    e = simexplain.explain(model, x1, x2, "input-x-gradient")
    counting.images = 0
    plain = metrics.evaluate(model, x1, x2, e, ["SD", "CAD"], step=64)
    seen = counting.images
    with torch.no_grad():
        clean = model.embed_pair(x1, x2)
    counting.images = 0
    given = metrics.evaluate(model, x1, x2, e, ["SD", "CAD"], step=64, clean=clean)
    assert counting.images == seen - 4  # the two clean images of both pairs are not embedded again
    for name in ("SD", "CAD", "base"):
        torch.testing.assert_close(given[name], plain[name])


# ---------------------------------------------------------------- results tied to the images' content
def _evaluate(folder, db, **options):
    run = Evaluation(
        evaluation_model(), parse_variants("input-x-gradient"), ["SD", "SAD"], seed=1, batch_size=2
    )
    return evaluate_pairs(run, load_pairs(str(folder), seed=1, **options), db, progress=False)


def _replace_pixels(path, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(44, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_the_same_names_in_another_folder_are_computed_for_that_folders_images(photos, tmp_path, capsys):
    other = tmp_path / "other"
    for i, path in enumerate(sorted(photos.rglob("*.png"))):  # the same relative names, other pixels
        target = other / path.relative_to(photos)
        target.parent.mkdir(parents=True, exist_ok=True)
        _replace_pixels(target, seed=100 + i)
    db = tmp_path / "r.sqlite"
    _evaluate(photos, db)
    summary = _evaluate(other, db)
    assert (summary.done, summary.skipped, summary.recomputed) == (6, 0, 6)
    assert "6 pairs recomputed: images changed" in summary.line()
    _evaluate(other, tmp_path / "fresh.sqlite")
    assert _stored(db) == _stored(tmp_path / "fresh.sqlite")  # never the first folder's numbers
    with Store(db, readonly=True) as store:
        assert {p.split("/")[-1] for p in store.recomputed()} == {f"img{i}.png" for i in range(6)}


def test_an_image_replaced_in_place_recomputes_exactly_its_pair_and_the_report_names_it(photos, tmp_path):
    from simexplain.studies import write_report

    db = tmp_path / "r.sqlite"
    _evaluate(photos, db)
    before = _stored(db)
    _replace_pixels(photos / "img2.png", seed=99)
    summary = _evaluate(photos, db)
    assert (summary.done, summary.skipped, summary.recomputed) == (1, 5, 1)
    after = _stored(db)
    changed = {k for k in before if before[k] != after[k]}
    assert {pair for pair, _, _ in changed} == {"img2.png"} and (
        "img2.png",
        "input-x-gradient",
        "SD",
    ) in changed
    _evaluate(photos, tmp_path / "fresh.sqlite")
    assert after == _stored(tmp_path / "fresh.sqlite")
    assert _evaluate(photos, db).recomputed == 0  # recorded: the next run finds nothing to do
    write_report([db], tmp_path / "report", bootstrap=10)
    text = (tmp_path / "report" / "tables.md").read_text()
    assert (
        "Pairs recomputed because their images changed after they were first stored (1): img2.png (" in text
    )


def test_each_image_file_is_hashed_once_per_run(photos, tmp_path, monkeypatch):
    from simexplain.studies import sources

    csv = tmp_path / "pairs.csv"
    csv.write_text("image1,image2\nphotos/img0.png,photos/img2.png\nphotos/img0.png,photos/img4.png\n")
    hashed = []
    monkeypatch.setattr(sources, "file_sha256", lambda path: hashed.append(path) or "0" * 64)
    _evaluate(csv, tmp_path / "r.sqlite")
    assert sorted(os.path.basename(p) for p in hashed) == ["img0.png", "img2.png", "img4.png"]


def test_a_store_written_before_content_keys_is_reported_then_adopted_and_resumed(photos, tmp_path, capsys):
    import sqlite3

    from simexplain.studies import write_report

    db = tmp_path / "old.sqlite"
    _evaluate(photos, db, limit=4)
    connection = sqlite3.connect(db)  # back to the old layout: pairs without their images' digests
    connection.executescript(
        "CREATE TABLE old (pair TEXT PRIMARY KEY, image1 TEXT NOT NULL, image2 TEXT, seed INTEGER); "
        "INSERT INTO old SELECT pair, image1, image2, seed FROM pairs; DROP TABLE pairs; "
        "ALTER TABLE old RENAME TO pairs;"
    )
    connection.close()
    assert write_report([db], tmp_path / "report", bootstrap=10)  # read as it is
    args = ["evaluate", "--pairs", photos, "--db", db, "--model", "python:tiny:evaluation_model", "--seed", 1]
    args += ["--methods", "input-x-gradient", "--metrics", "SD,SAD", "--batch-size", 2]
    assert _main(*args) == 0
    out = capsys.readouterr().out
    assert "2 explanations scored, 4 already stored" in out  # the two pairs beyond the old --limit
    assert "4 pairs stored before pairs were keyed by content kept as results of the images now" in out
    _replace_pixels(photos / "img0.png", seed=7)
    assert _main(*args) == 0
    out = capsys.readouterr().out
    assert "1 explanations scored, 5 already stored; 1 pair recomputed: images changed" in out
    assert "before pairs were keyed" not in out  # adopted once
