"""The web API with a model served with its text tower: a text in place of image 2, the words and their
scores in the answer, refusals in one line."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

import simexplain  # noqa: E402
from simexplain.web import WebSettings, create_app  # noqa: E402

TINY = "python:test_image_text_doors:tiny_clip"


@pytest.fixture(scope="module")
def client():
    settings = WebSettings(models=("efficientnet-lite0",), text_models=(TINY,))
    with TestClient(create_app(settings)) as client:
        yield client


def photo() -> tuple[str, bytes, str]:
    return ("cat.jpg", simexplain.sample_path("chelsea.jpg").read_bytes(), "image/jpeg")


def test_a_text_model_takes_an_image_and_a_text_and_answers_the_words(client):
    models = {m["name"]: m["text"] for m in client.get("/api/models").json()}
    assert models == {"efficientnet-lite0": False, TINY: True}
    methods = {m["name"]: m["text"] for m in client.get("/api/methods").json()}
    assert methods["word-occlusion"] and not methods["deep-similarity"]
    form = {"model": TINY, "text": "a cat on the sofa", "methods": "pair-interaction,word-occlusion"}
    response = client.post("/api/explain", data=form, files={"image1": photo()})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["text"] == "a cat on the sofa" and answer["images"] == ["cat.jpg"]
    assert len(answer["inputs"]) == 1 and client.get(answer["inputs"][0]).status_code == 200
    pair, words = answer["explanations"]
    assert pair["words"] == ["#0", "#1", "#2", "#3", "#4"] and len(pair["word_scores"]) == 5
    assert pair["token_words"] == [None, 0, 1, 2, 3, 4, None] and len(pair["interaction_words"]) == 4
    assert "map1" not in words and len(words["word_scores"]) == 5
    assert client.get(answer["figures"]["png"]).content[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "form, files, status, words",
    [
        ({"model": TINY}, {"image1": photo()}, 422, "send a non-empty text"),
        (
            {"model": TINY, "text": "a cat", "methods": "pairwise-occlusion"},
            {"image1": photo()},
            422,
            "no image–text",
        ),
        ({"model": TINY, "text": "a cat"}, {"image1": photo(), "image2": photo()}, 422, "not both"),
        ({"model": "efficientnet-lite0", "text": "a cat"}, {"image1": photo()}, 422, "send image2, not text"),
        ({"model": TINY, "text": "a " * 600}, {"image1": photo()}, 413, "text too long"),
    ],
)
def test_text_requests_are_refused_in_one_line(client, form, files, status, words):
    response = client.post("/api/explain", data=form, files=files)
    assert response.status_code == status and words in response.json()["error"]
