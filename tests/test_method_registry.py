"""The method registry: every parameter declares its check, so requests are checked before any model work."""

from typing import Annotated

import pytest
import torch
from tiny import CountingEncoder, SmallCNN

import simexplain
from simexplain import PairExplanation, SimexplainError, checks, service
from simexplain.cli import main
from simexplain.methods import registry, saliency


def test_every_registered_parameter_has_a_validator():
    for name in simexplain.methods.available():
        entry = registry.get(name)
        assert set(entry.validators()) == set(entry.parameters()), name


@pytest.mark.parametrize(
    "method, params, words",
    [
        ("input-x-gradient", {"guided": "maybe"}, "guided must be true or false"),
        ("conditional-occlusion", {"window": 8.7}, "window must be an integer"),
        ("conditional-occlusion", {"fill": "purple"}, "unknown fill"),
        ("smooth-grad", {"samples": 0}, "samples must be a positive integer"),
        ("smooth-grad", {"seed": -1}, "seed"),
        ("smooth-grad", {"sigma": "wide"}, "sigma"),
        ("averaged-transforms", {"transform": "no-such-transform"}, "no-such-transform"),
        ("averaged-transforms", {"noise": "loud"}, "noise"),
        ("pairwise-occlusion", {"scale": (0.5, 0.1)}, "scale"),
        ("pairwise-occlusion", {"temperature": 0}, "temperature"),
        ("interaction-cam", {"reduction": "median"}, "reduction"),
        ("pair-grad-cam", {"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_values_are_refused_by_prepare_without_a_model(method, params, words):
    with pytest.raises(SimexplainError, match=words) as info:
        service.prepare([method], {f"{method}.{k}": v for k, v in params.items()})
    assert "\n" not in str(info.value)


def test_values_arrive_in_their_canonical_types():
    request = service.prepare(
        ["conditional-occlusion", "smooth-grad"], {"window": 16.0, "guided": "yes", "seed": "[1, 2]"}
    )
    methods = dict(request.methods)
    assert (
        methods["conditional-occlusion"]["window"] == 16
        and type(methods["conditional-occlusion"]["window"]) is int
    )
    assert methods["smooth-grad"] == {"guided": True, "seed": [1, 2]}


def test_direct_calls_of_a_method_function_are_checked_before_the_model_runs():
    counting = CountingEncoder(SmallCNN())
    model = simexplain.PairModel(counting)
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(SimexplainError, match="samples"):
        saliency.smooth_grad(model, x, x, samples=0)
    assert counting.calls == 0


def test_cli_refuses_a_bad_value_with_status_2_before_loading_a_model(monkeypatch, capsys):
    monkeypatch.setattr(service, "get_model", lambda *a, **k: pytest.fail("model loaded before the check"))
    cat = str(simexplain.sample_path("chelsea.jpg"))
    assert main(["explain", cat, cat, "--method", "input-x-gradient", "--set", "guided=maybe"]) == 2
    assert "guided must be true or false" in capsys.readouterr().err


def test_a_method_must_declare_its_checks_and_a_name_is_registered_once():
    with pytest.raises(SimexplainError, match="declares no check"):

        @registry.register("test-unchecked", "saliency", "no checks")
        def unchecked(model, x1, x2, *, power: float = 2.0) -> PairExplanation:
            raise AssertionError("never called")

    with pytest.raises(SimexplainError, match="already registered"):

        @registry.register("input-x-gradient", "saliency", "a second one")
        def again(model, x1, x2, *, power: Annotated[float, checks.positive_number] = 2.0) -> PairExplanation:
            raise AssertionError("never called")

    assert "test-unchecked" not in simexplain.methods.available()
    assert registry.get("input-x-gradient").fn.__name__ == "input_x_gradient"
