"""The pair engine's promises, checked for EVERY registered method (so a new method is covered too)."""

import json

import pytest
import torch
from tiny import SmallCNN

import simexplain
from simexplain import SimexplainError

SMALL = {"samples": 3, "steps": 3, "window": 16, "stride": 8}  # only the settings a method has are passed
NEEDS_EQUAL_SIZES = {("smooth-grad", "shared_noise"), ("interaction-cam", "gradient_interaction")}


def _settings(method: str, **extra) -> dict:
    known = simexplain.methods.get(method).parameters()
    return {k: v for k, v in {**SMALL, **extra}.items() if k in known}


@pytest.fixture(scope="module")
def model():
    return simexplain.PairModel(SmallCNN(), layer="features.3", name="small")


def _images(seed: int, *shapes):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(*shape, generator=generator) for shape in shapes]


@pytest.mark.parametrize("method", simexplain.methods.image_pair_methods())
def test_a_rerun_from_the_config_reproduces_the_explanation_exactly(model, method):
    x1, x2 = _images(0, (2, 3, 32, 32), (2, 3, 32, 32))
    e = simexplain.explain(model, x1, x2, method, **_settings(method))
    assert json.loads(json.dumps(e.config)) == e.config
    again = simexplain.explain(model, x1, x2, e.method, **e.config)
    for name in ("map1", "map2", "score"):
        assert torch.equal(getattr(e, name), getattr(again, name)), name
    assert e.extras.keys() == again.extras.keys()
    assert all(torch.equal(e.extras[k], again.extras[k]) for k in e.extras)


@pytest.mark.parametrize("method", simexplain.methods.image_pair_methods())
def test_a_batch_equals_its_pairs_alone_and_any_batch_size(model, method):
    x1, x2 = _images(1, (5, 3, 32, 32), (5, 3, 32, 32))
    settings = _settings(method, seed=[3, 1, 4, 1, 5])
    sized = {"batch_size": 1} if "batch_size" in simexplain.methods.get(method).parameters() else {}
    batched = simexplain.explain(model, x1, x2, method, **settings, **sized)
    wide = simexplain.explain(model, x1, x2, method, **settings)
    torch.testing.assert_close(batched.map1, wide.map1)
    torch.testing.assert_close(batched.map2, wide.map2)
    for i in (0, 3, 4):
        alone = simexplain.explain(model, x1[i : i + 1], x2[i : i + 1], method, **batched[i].config)
        torch.testing.assert_close(alone.map1, batched[i].map1)
        torch.testing.assert_close(alone.map2, batched[i].map2)
    order = [4, 2, 0, 3, 1]
    shuffled = dict(batched.config)
    if "seed" in shuffled:
        shuffled["seed"] = [shuffled["seed"][j] for j in order]
    permuted = simexplain.explain(model, x1[order], x2[order], method, **shuffled)
    torch.testing.assert_close(permuted.map1, batched.map1[order])
    torch.testing.assert_close(permuted.map2, batched.map2[order])


@pytest.mark.parametrize("method", simexplain.methods.image_pair_methods())
def test_images_of_two_sizes_through_a_shared_encoder(model, method):
    x1, x2 = _images(2, (2, 3, 64, 64), (2, 3, 48, 80))
    e = simexplain.explain(model, x1, x2, method, **_settings(method, shared_noise=False))
    assert e.map1.shape == (2, 64, 64) and e.map2.shape == (2, 48, 80)
    for m, parameter in NEEDS_EQUAL_SIZES:
        if m == method:
            with pytest.raises(SimexplainError) as info:
                simexplain.explain(model, x1, x2, method, **{parameter: True})
            assert "\n" not in str(info.value)


def test_indexing_an_explanation_is_bounded():
    e = simexplain.PairExplanation(
        map1=torch.rand(3, 4, 4), map2=torch.rand(3, 4, 4), config={"seed": [1, 2, 3]}
    )
    assert len(list(e)) == 3
    assert e[-1].config["seed"] == [3] and torch.equal(e[-1].map1, e.map1[2:])
    assert len(e[1:]) == 2 and e[1:].config["seed"] == [2, 3]
    for bad in (3, -4):
        with pytest.raises(IndexError):
            e[bad]


def test_an_empty_batch_is_one_line():
    model = simexplain.PairModel(SmallCNN(), layer="features.3")
    empty = torch.rand(0, 3, 8, 8)
    with pytest.raises(SimexplainError, match="no images"):
        simexplain.explain(model, empty, empty, "interaction-cam")
