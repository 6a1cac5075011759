"""Image–text pairs through the doors: the service's one answer shape with the text fields, the figure, and
``simexplain explain IMAGE --text TEXT`` (usage errors exit 2 before any model work)."""

from __future__ import annotations

import json

import pytest
from test_image_text import model_with

import simexplain
from simexplain import SimexplainError, service
from simexplain.cli import main
from simexplain.figures.output import render_figure

CAT = str(simexplain.sample_path("chelsea.jpg"))
SMALL = simexplain.Preprocessing(input_size=(16, 16), resize=18)


def tiny_clip(weights=None):
    """The analytic image–text model at 16×16 inputs (``python:test_image_text_doors:tiny_clip``)."""
    return model_with("scaled", specials=True, logit_scale=5.0, preprocessing=SMALL, name="tiny-clip")


def test_the_service_answers_words_and_their_scores_and_draws_the_caption():
    request = service.prepare(["interaction-cam", "pair-interaction"], metrics="all", text=True, seed=0)
    report = service.run(tiny_clip(), CAT, None, request, text="a cat on the sofa")
    answer = report.to_json(maps=True)
    assert answer["images"] == [CAT] and answer["text"] == "a cat on the sofa"
    first, second = answer["explanations"]
    assert first["words"] == ["#0", "#1", "#2", "#3", "#4"] and len(first["word_scores"]) == 5
    assert len(first["map1"]) == 4 and "map2" not in first  # the CAM grid over the image
    assert set(first["metrics"]["mean"]) == {"CI", "CD", "CAD", "WI", "WD", "base"}
    assert len(second["interaction_words"]) == 4 and len(second["interaction_words"][0][0]) == 7
    json.dumps(answer, allow_nan=False)
    assert render_figure(report.figure())[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_text_request_is_checked_before_any_model_work():
    with pytest.raises(SimexplainError, match="no image–text form"):
        service.prepare(["pairwise-occlusion"], text=True)
    with pytest.raises(SimexplainError, match="unknown metric 'SI' for an image and a text"):
        service.prepare(["input-x-gradient"], metrics="SI", text=True)
    words_only = service.prepare(["word-occlusion"], metrics="CI,WD", text=True)
    report = service.run(tiny_clip(), CAT, None, words_only, text="a dog")
    assert list(report.outcomes[0].metrics) == ["WD", "base"]  # CI needs an image map


def test_explain_with_text_writes_the_figure_and_the_json(tmp_path, capsys):
    out, document = tmp_path / "fig.png", tmp_path / "out.json"
    args = [
        "explain",
        CAT,
        "--text",
        "a cat on the sofa",
        "--model",
        "python:test_image_text_doors:tiny_clip",
    ]
    args += ["--method", "input-x-gradient", "--method", "word-occlusion", "--metrics", "all"]
    assert main([*args, "--out", str(out), "--json", str(document)]) == 0
    printed = capsys.readouterr().out
    assert "score" in printed and "#1:" in printed and "WD" in printed
    answer = json.loads(document.read_text())
    assert answer["text"] == "a cat on the sofa" and answer["files"] == [
        str(out),
        str(out.with_suffix(".svg")),
    ]
    assert [e["config"] for e in answer["explanations"]] == [{"guided": False}, {"mode": "leave-out"}]


@pytest.mark.parametrize(
    "args, words",
    [
        ([CAT, CAT, "--text", "a cat", "--model", "hf:x/y"], "exactly one image"),
        ([CAT, "--text", "a cat"], "--text needs an image–text model"),
        ([CAT, "--text", " ", "--model", "hf:x/y"], "text 1 is empty"),
        ([CAT, "--text", "a cat", "--model", "efficientnet-lite0"], "has no text tower"),
        ([CAT, "--text", "a cat", "--model", "hf:x/y", "--method", "deep-similarity"], "no image–text form"),
        ([CAT, "--text", "a cat", "--model", "hf:x/y", "--point", "1:3,4"], "--point is for two images"),
    ],
)
def test_text_usage_errors_exit_2_with_one_line(args, words, monkeypatch, capsys):
    monkeypatch.setattr(service, "get_model", lambda *a, **k: pytest.fail("model work before the checks"))
    assert main(["explain", *args]) == 2
    error = capsys.readouterr().err.strip()
    assert words in error and "\n" not in error
