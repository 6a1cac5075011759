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


def test_config_records_the_guided_flag_and_reproduces():
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    e = simexplain.explain(model, x1, x2, "input-x-gradient", guided="yes")
    assert e.config == {"guided": True}
    again = simexplain.explain(model, x1, x2, e.method, **e.config)
    assert torch.equal(again.map1, e.map1) and torch.equal(again.map2, e.map2)


def test_images_of_two_sizes_get_their_own_gradients_and_maps():
    encoder = SmallCNN().double()  # global pooling: any input size
    model = PairModel(encoder)
    x1, x2 = torch.rand(2, 3, 64, 64, dtype=torch.float64), torch.rand(2, 3, 48, 80, dtype=torch.float64)
    e = simexplain.explain(model, x1, x2, "input-x-gradient")
    # By hand: each image through the encoder on its own, the cosine, its gradient.
    a, b = x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)
    score = torch.nn.functional.cosine_similarity(encoder(a), encoder(b), eps=1e-8)
    g1, g2 = torch.autograd.grad(score.sum(), (a, b))
    assert e.map1.shape == (2, 64, 64) and e.map2.shape == (2, 48, 80)
    torch.testing.assert_close(e.map1, (x1 * g1).abs().amax(1))
    torch.testing.assert_close(e.map2, (x2 * g2).abs().amax(1))
    torch.testing.assert_close(e.score, score.detach())


def test_a_float64_input_on_a_float32_model_gives_the_float32_map():
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    e32 = simexplain.explain(model, x1, x2, "input-x-gradient")
    e64 = simexplain.explain(model, x1.double(), x2.double(), "input-x-gradient")
    assert e64.map1.dtype == torch.float32
    torch.testing.assert_close(e64.map1, e32.map1)
    torch.testing.assert_close(e64.map2, e32.map2)
