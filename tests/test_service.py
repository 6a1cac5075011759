"""The service layer: plans checked without a model, any image source, one cached model, JSON out."""

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


def test_plan_routes_settings_parses_text_and_adds_seed_and_batch_size():
    p = service.plan(
        "smooth-grad,interaction-cam",
        {"samples": "3", "interaction-cam.reduction": "max", "guided": "no"},
        "all",
        seed=7,
        batch_size=4,
    )
    assert dict(p.methods) == {
        "smooth-grad": {"samples": 3, "guided": False, "seed": 7, "batch_size": 4},
        "interaction-cam": {"reduction": "max", "batch_size": 4},
    }
    assert p.metrics == ("SI", "SD", "CI", "CD", "SAD", "CAD") and p.batch_size == 4


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"methods": "nope"}, "unknown method"),
        ({"methods": ""}, "no method"),
        ({"methods": "smooth-grad,smooth-grad"}, "twice"),
        ({"methods": "input-x-gradient", "params": {"samples": 2}}, "no chosen method"),
        ({"methods": "input-x-gradient", "metrics": "SX"}, "unknown metric"),
        ({"methods": "input-x-gradient", "batch_size": 0}, "batch size"),
        ({"methods": "input-x-gradient", "batch_size": 2.5}, "batch size"),
        ({"methods": "input-x-gradient", "metric_options": {"step": 0}}, "step"),
        ({"methods": "input-x-gradient", "metric_options": {"steps": 4}}, "unknown metric setting"),
    ],
)
def test_plan_refuses_bad_requests_in_one_line(kwargs, words):
    with pytest.raises(SimexplainError, match=words) as info:
        service.plan(**kwargs)
    assert "\n" not in str(info.value)


def test_run_takes_paths_bytes_pil_and_arrays_alike(model):
    path = simexplain.sample_path("chelsea.jpg")
    data = path.read_bytes()
    pil = Image.open(io.BytesIO(data))
    array = np.asarray(pil)
    p = service.plan(["input-x-gradient"])
    maps = [
        service.run(model, path, source, p).outcomes[0].explanation.map2
        for source in (data, pil, array, path)
    ]
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0])


def test_report_json_holds_configs_seconds_scores_and_metrics(model):
    p = service.plan(["pairwise-occlusion", "interaction-cam"], {"samples": 3}, "SAD")
    x = torch.rand(1, 3, 32, 32)
    report = service.run(model, x, x.flip(-1), p)
    document = json.loads(json.dumps(report.to_json()))  # plain JSON all the way down
    assert document["model"] == "small"
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
