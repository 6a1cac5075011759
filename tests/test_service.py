"""The service layer: requests checked without a model, any image source, one cached model, one run loop with
progress and cancel, one JSON shape."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import SmallCNN

import simexplain
from simexplain import SimexplainError, service


@pytest.fixture
def model():
    return simexplain.PairModel(SmallCNN(), layer="features.3", name="small")


def test_prepare_routes_settings_parses_text_and_adds_seed_and_batch_size():
    request = service.prepare(
        "smooth-grad,interaction-cam",
        {"samples": "3", "interaction-cam.reduction": "max", "guided": "no", "metrics.step": "32"},
        "all",
        seed=7,
        batch_size=4,
    )
    assert dict(request.methods) == {
        "smooth-grad": {"samples": 3, "guided": False, "seed": 7, "batch_size": 4},
        "interaction-cam": {"reduction": "max", "batch_size": 4},
    }
    assert request.metrics == ("SI", "SD", "CI", "CD", "SAD", "CAD") and request.batch_size == 4
    assert request.metric_options == {"step": 32}


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"methods": "nope"}, "unknown method"),
        ({"methods": ""}, "no method"),
        ({"methods": "smooth-grad,smooth-grad"}, "twice"),
        ({"methods": "input-x-gradient", "settings": {"samples": 2}}, "no chosen method"),
        ({"methods": "input-x-gradient", "metrics": "SX"}, "unknown metric"),
        ({"methods": "input-x-gradient", "batch_size": 0}, "batch size"),
        ({"methods": "input-x-gradient", "batch_size": 2.5}, "batch size"),
        ({"methods": "input-x-gradient", "metrics": "SI", "settings": {"metrics.step": 0}}, "step"),
        (
            {"methods": "input-x-gradient", "metrics": "SI", "settings": ["metrics.steps=4"]},
            "no setting 'steps'",
        ),
        ({"methods": "input-x-gradient", "settings": ["metrics.step=4"]}, "no metrics are asked for"),
        ({"methods": "input-x-gradient", "settings": ["guided=1", "guided=0"]}, "given twice"),
    ],
)
def test_prepare_refuses_bad_requests_in_one_line(kwargs, words):
    with pytest.raises(SimexplainError, match=words) as info:
        service.prepare(**kwargs)
    assert "\n" not in str(info.value)


def test_run_takes_paths_bytes_pil_and_arrays_alike(model):
    path = simexplain.sample_path("chelsea.jpg")
    data = path.read_bytes()
    pil = Image.open(io.BytesIO(data))
    array = np.asarray(pil)
    request = service.prepare(["input-x-gradient"])
    maps = [
        service.run(model, path, source, request).outcomes[0].explanation.map2
        for source in (data, pil, array, path)
    ]
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0])


def test_report_json_holds_configs_seconds_scores_and_metrics(model):
    request = service.prepare(["pairwise-occlusion", "interaction-cam"], {"samples": 3}, "SAD")
    x = torch.rand(1, 3, 32, 32)
    report = service.run(model, x, x.flip(-1), request)
    document = json.loads(json.dumps(report.to_json()))  # plain JSON all the way down
    assert document["model"] == document["model_name"] == "small"
    first, second = document["explanations"]
    assert first["method"] == "pairwise-occlusion" and first["config"]["samples"] == 3
    assert isinstance(first["config"]["seed"], int) and first["seconds"] > 0
    assert second["config"]["reduction"] == "mean"
    assert isinstance(second["metrics"]["mean"]["SAD"], float)
    with torch.no_grad():
        assert document["score"] == pytest.approx(float(model(x, x.flip(-1))))


def test_models_are_loaded_once_and_shared():
    assert service.get_model() is service.get_model("efficientnet-lite0")
    with pytest.raises(SimexplainError, match="unknown model"):
        service.get_model("no-such-model")


def test_demo_pair_is_seeded():
    model = service.get_model()
    a1, a2, _ = service.demo_pair(model, 3)
    b1, b2, labels = service.demo_pair(model, 3)
    assert torch.equal(a2, b2) and "seed 3" in labels[1]
    assert not torch.equal(service.demo_pair(model, 4)[1], a2)


def test_one_run_reports_progress_per_method_and_chunk_and_computes_the_clean_score_once(model, monkeypatch):
    request = service.prepare(["smooth-grad", "input-x-gradient"], {"samples": 4, "batch_size": 2, "seed": 0})
    x = torch.rand(1, 3, 32, 32)
    calls = []
    forward = type(model).forward

    def counted(self, x1, x2):
        calls.append(torch.equal(x1, x))  # a forward of the clean pair, or of noisy copies
        return forward(self, x1, x2)

    monkeypatch.setattr(type(model), "forward", counted)
    seen = []
    report = service.run(model, x, x.flip(-1), request, observer=lambda p, stage: seen.append((p, stage)))
    stages = [stage for _, stage in seen if stage is not None]
    assert stages == ["reading the images", "smooth-grad (1 of 2)", "input-x-gradient (2 of 2)"]
    progress = [p for p, _ in seen]
    assert progress[0] == 0.0 and max(progress) == 1.0 and len(seen) > len(stages)  # chunks in between
    assert all(0 <= p <= 1 for p in progress)
    # the clean pair: once for the request's score, then smooth-grad's own score and Input×Gradient's forward
    assert calls.count(True) == 3 and report.score.shape == (1,)


def test_an_observer_that_raises_cancels_and_leaves_the_model_as_it_was(model):
    from tiny import assert_same_state, model_state

    request = service.prepare(["smooth-grad"], {"samples": 8, "batch_size": 2, "seed": 0})
    before = model_state(model)

    class Stop(Exception):
        pass

    def observer(progress, stage):
        if progress > 0.3:
            raise Stop

    with pytest.raises(Stop):
        service.run(model, torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), request, observer=observer)
    assert_same_state(before, model_state(model))


def test_the_answer_has_one_shape_and_maps_on_request(model):
    from typing_extensions import get_type_hints

    request = service.prepare(["pair-interaction", "conditional-occlusion"], {"window": 16, "stride": 8})
    x = torch.rand(1, 3, 32, 32)
    report = service.run(model, x, x.flip(-1), request, model_label="python:tiny:small")
    plain, with_maps = report.to_json(), report.to_json(maps=True)
    text_only = {"text"}  # the answer of an image and a text (docs/image_text.md)
    assert set(plain) == set(get_type_hints(service.AnswerJSON)) - text_only
    assert plain["model"] == "python:tiny:small" and plain["model_name"] == "small"
    interaction, occlusion = with_maps["explanations"]
    assert "map1" not in plain["explanations"][0] and isinstance(plain["explanations"][0]["score"], float)
    assert torch.tensor(occlusion["map1"]).shape == report.outcomes[1].explanation.grid1[0].shape
    assert (
        torch.tensor(interaction["interaction"]).shape == (16, 16, 16, 16) and "interaction" not in occlusion
    )


def test_clean_embeddings_given_by_the_caller_give_the_score_and_feed_the_metrics(model):
    from simexplain import metrics

    request = service.prepare(["input-x-gradient"], {"metrics.step": 256}, "SD,CAD")
    x1, x2 = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        clean = model.embed(x1, "a"), model.embed(x2, "b")
    report = service.run(model, x1, x2, request, clean=clean)
    torch.testing.assert_close(report.score, model.similarity(*clean))
    direct = metrics.evaluate(
        model, x1, x2, report.outcomes[0].explanation, ["SD", "CAD"], step=256, clean=clean
    )
    for name in ("SD", "CAD"):
        assert torch.equal(report.outcomes[0].metrics[name], direct[name])
