"""An evaluation over a CSV of image–text pairs: both sides' metrics stored, resumable."""

from __future__ import annotations

import sqlite3

import simexplain
from simexplain.cli import main
from simexplain.studies import load_pairs


def test_evaluate_stores_the_image_and_the_word_metrics_of_image_text_pairs(tmp_path, capsys):
    photos = [simexplain.sample_path(n) for n in ("chelsea.jpg", "coffee.jpg")]
    source = tmp_path / "pairs.csv"
    source.write_text(f"image,text\n{photos[0]},a cat on the sofa\n{photos[1]},a red car\n")
    specs = load_pairs(str(source))
    assert [(s.id, s.text, s.image2) for s in specs] == [
        ("row-1", "a cat on the sofa", None),
        ("row-2", "a red car", None),
    ]
    db = tmp_path / "results.sqlite"
    args = [
        "evaluate",
        "--pairs",
        str(source),
        "--db",
        str(db),
        "--model",
        "python:test_image_text_doors:tiny_clip",
    ]
    args += ["--methods", "input-x-gradient,word-occlusion", "--metrics", "all", "--set", "metrics.step=64"]
    assert main(args) == 0
    with sqlite3.connect(db) as store:
        rows = store.execute("SELECT variant, metric FROM metrics WHERE pair = 'row-1'").fetchall()
        curves = {r[0] for r in store.execute("SELECT curve FROM curves WHERE variant = 'word-occlusion'")}
    found = {variant: {metric for v, metric in rows if v == variant} for variant, _ in rows}
    assert found["input-x-gradient"] == {"CI", "CD", "CAD", "WI", "WD", "base"}
    assert found["word-occlusion"] == {"WI", "WD", "base"}  # no image map: no image metrics
    assert curves == {"WI", "WD"}
    assert main(args) == 0 and "4 already stored" in capsys.readouterr().out  # resumed: nothing to do


def test_image_text_pairs_refuse_methods_without_a_text_form_before_any_work(tmp_path, capsys):
    source = tmp_path / "pairs.csv"
    source.write_text(f"image,text\n{simexplain.sample_path('chelsea.jpg')},a cat\n")
    args = ["evaluate", "--pairs", str(source), "--db", str(tmp_path / "r.sqlite"), "--model", "hf:x/y"]
    assert main([*args, "--methods", "deep-similarity"]) == 2
    assert "no image–text form" in capsys.readouterr().err
    assert main([*args, "--metrics", "SI"]) == 2
    assert "unknown metric 'SI' for image–text pairs" in capsys.readouterr().err
