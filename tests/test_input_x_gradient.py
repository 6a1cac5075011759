import pytest
import torch
from tiny import (
    LinearEncoder,
    RegionEncoder,
    SmallCNN,
    analytic_cosine_gradients,
    assert_same_state,
    model_state,
)

import simexplain
from simexplain import PairModel, SimexplainError


def test_linear_encoder_matches_the_closed_form_gradient_map():
    encoder = LinearEncoder(size=8)
    model = PairModel(encoder)
    x1, x2 = torch.rand(3, 3, 8, 8, dtype=torch.float64), torch.rand(3, 3, 8, 8, dtype=torch.float64)
    e = simexplain.explain(model, x1, x2, "input-x-gradient")
    g1, g2 = analytic_cosine_gradients(encoder.weight.detach(), x1, x2)
    torch.testing.assert_close(e.map1, (x1 * g1).abs().amax(1))
    torch.testing.assert_close(e.map2, (x2 * g2).abs().amax(1))
    torch.testing.assert_close(e.score, model(x1, x2).detach())


def test_maps_are_zero_outside_the_region_the_model_sees():
    model = PairModel(RegionEncoder((4, 12, 2, 10)))
    e = simexplain.explain(model, torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), "input-x-gradient")
    for m in (e.map1, e.map2):
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[4:12, 2:10] = True
        assert m[:, ~inside].abs().max() == 0
        assert m[:, inside].abs().max() > 0


def test_batched_equals_one_by_one():
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    batched = simexplain.explain(model, x1, x2, "input-x-gradient")
    for i in range(4):
        single = simexplain.explain(model, x1[i : i + 1], x2[i : i + 1], "input-x-gradient")
        torch.testing.assert_close(batched.map1[i : i + 1], single.map1)
        torch.testing.assert_close(batched.map2[i : i + 1], single.map2)


def test_explain_leaves_the_model_untouched_also_when_it_raises():
    class Exploding(SmallCNN):
        def forward(self, x):
            raise RuntimeError("boom")

    for encoder in (SmallCNN(), Exploding()):
        encoder.train()
        for p in list(encoder.parameters())[:2]:
            p.requires_grad_(False)
        model = PairModel(encoder)
        encoder.train()
        before = model_state(model)
        try:
            simexplain.explain(model, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), "input-x-gradient")
        except RuntimeError:
            pass
        assert_same_state(before, model_state(model))


def test_bad_inputs_give_clear_errors():
    model = PairModel(SmallCNN())
    with pytest.raises(SimexplainError, match="unknown method"):
        simexplain.explain(model, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), "magic")
    with pytest.raises(SimexplainError, match="no parameter"):
        simexplain.explain(model, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), "input-x-gradient", foo=1)
    with pytest.raises(SimexplainError, match="B×3×H×W"):
        simexplain.explain(model, torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(SimexplainError, match="hold"):
        simexplain.explain(model, torch.rand(2, 3, 8, 8), torch.rand(1, 3, 8, 8))
