"""--engine and --precision reach the model from every command that loads one, and answers record what ran."""

from __future__ import annotations

import json

import pytest
from webtools import TINY

import simexplain
from simexplain import service
from simexplain.cli import main

IMAGES = [str(simexplain.sample_path("chelsea.jpg")), str(simexplain.sample_path("coffee.jpg"))]


@pytest.fixture(autouse=True)
def graph_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMEXPLAIN_CACHE", str(tmp_path / "cache"))


def explain_json(tmp_path, *options: str) -> dict:
    out = tmp_path / f"answer{len(list(tmp_path.glob('*.json')))}.json"
    argv = ["explain", *IMAGES, "--model", TINY, "--method", "conditional-occlusion", "--json", str(out)]
    assert main([*argv, "--set", "window=16", "--set", "stride=16", *options]) == 0
    return json.loads(out.read_text())


def test_explain_records_the_engine_that_ran_and_agrees_with_torch(tmp_path):
    eager = explain_json(tmp_path, "--engine", "torch")
    exported = explain_json(tmp_path, "--engine", "onnxruntime")
    assert eager["engine"]["label"] == "torch (fp32)"
    assert exported["engine"]["encoders"]["a"]["engine"] == "onnxruntime"
    assert exported["engine"]["label"] == "onnxruntime (fp32)"
    assert exported["score"] == pytest.approx(eager["score"], rel=1e-4)
    # The tiny model is below auto's size threshold: auto keeps PyTorch (docs/engine.md).
    assert explain_json(tmp_path)["engine"]["encoders"]["a"]["engine"] == "torch"


def test_the_loader_gets_the_engine_and_precision_of_each_command(monkeypatch, tmp_path):
    asked = []
    load = service.get_model

    def spy(name=None, **where):
        asked.append((where["engine"], where["precision"]))
        return load(name, **where)

    monkeypatch.setattr(service, "get_model", spy)
    explain_json(tmp_path, "--engine", "torch", "--precision", "bf16")
    assert asked == [("torch", "bf16")]


def test_an_unknown_engine_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["explain", "--demo", "--engine", "tensorrt"])
    assert stop.value.code == 2
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_serve_passes_engine_and_precision_to_its_settings():
    from simexplain.cli import build_parser, check_serve

    args = build_parser().parse_args(["serve", "--model", TINY, "--engine", "torch", "--precision", "bf16"])
    settings = check_serve(args)
    assert (settings.engine, settings.precision) == ("torch", "bf16")
