"""explain_margin: why `better` beats `worse` for a query; closed forms and agreement with pair methods."""

import pytest
import torch
from tiny import LinearEncoder, SmallCNN, assert_same_state, model_state

import simexplain
from simexplain import SimexplainError


def triplet(batch: int = 2, size: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, batch, 3, size, size, generator=generator, dtype=torch.float64)


def test_input_x_gradient_margin_on_a_linear_dot_encoder_equals_the_closed_form():
    encoder = LinearEncoder(size=8, dim=5)
    model = simexplain.PairModel(encoder, similarity="dot")
    q, b, w = triplet()
    before = model_state(model)
    m = simexplain.explain_margin(model, q, b, w, "input-x-gradient")
    assert_same_state(before, model_state(model))
    weight = encoder.weight.detach()
    gram = weight.T @ weight  # s(q, b) = qᵀ WᵀW b
    flat = [x.flatten(1) for x in (q, b, w)]
    grad_q = ((flat[1] - flat[2]) @ gram).view_as(q)
    grad_b = (flat[0] @ gram).view_as(b)
    grad_w = -grad_b
    expected = [(x * g).abs().amax(1) for x, g in ((q, grad_q), (b, grad_b), (w, grad_w))]
    for got, want in zip((m.map_query, m.map_better, m.map_worse), expected):
        torch.testing.assert_close(got, want)
    margin = ((flat[0] @ gram) * (flat[1] - flat[2])).sum(1)
    torch.testing.assert_close(m.margin, margin)


def test_conditional_occlusion_margin_is_the_difference_of_the_pair_drops():
    model = simexplain.PairModel(SmallCNN())
    q, b, w = (x.float() for x in triplet(2, 16))
    settings = {"window": 8, "stride": 4}
    m = simexplain.explain_margin(model, q, b, w, "conditional-occlusion", **settings)
    with_better = simexplain.explain(model, q, b, "conditional-occlusion", **settings)
    with_worse = simexplain.explain(model, q, w, "conditional-occlusion", **settings)
    torch.testing.assert_close(m.map_query, with_better.map1 - with_worse.map1)
    torch.testing.assert_close(m.map_better, with_better.map2)
    torch.testing.assert_close(m.map_worse, -with_worse.map2)
    torch.testing.assert_close(m.margin, with_better.score - with_worse.score)
    assert m.config == {**with_better.config}


def test_pair_grad_cam_margin_uses_the_difference_of_the_gradients():
    model = simexplain.PairModel(SmallCNN(), layer="features.3")
    q, b, w = (x.float() for x in triplet(1, 16))
    m = simexplain.explain_margin(model, q, b, w, "pair-grad-cam")
    _, a1, a2, g1b, g2b = model.activations_and_gradients(q, b)
    _, _, a3, g1w, g2w = model.activations_and_gradients(q, w)
    expected_query = (a1 * (g1b - g1w).clamp_min(0)).sum(1)
    grid = torch.nn.functional.interpolate(expected_query[:, None], size=(16, 16), mode="bilinear")[:, 0]
    torch.testing.assert_close(m.map_query, grid)
    worse_grid = (a3 * (-g2w).clamp_min(0)).sum(1)
    torch.testing.assert_close(
        m.map_worse,
        torch.nn.functional.interpolate(worse_grid[:, None], size=(16, 16), mode="bilinear")[:, 0],
    )


def test_methods_without_a_margin_form_are_refused():
    model = simexplain.PairModel(SmallCNN(), layer="features.3")
    q, b, w = (x.float() for x in triplet(1, 16))
    with pytest.raises(SimexplainError, match="explain_margin supports"):
        simexplain.explain_margin(model, q, b, w, "pairwise-occlusion")
    with pytest.raises(SimexplainError, match="guided"):
        simexplain.explain_margin(model, q, b, w, "input-x-gradient", guided=True)


def test_the_triplet_figure_renders():
    from simexplain.figures.output import render_figure
    from simexplain.figures.retrieval import margin_figure

    model = simexplain.PairModel(SmallCNN(), layer="features.3")
    q, b, w = (x.float() for x in triplet(1, 16))
    m = simexplain.explain_margin(model, q, b, w, "pair-grad-cam")
    fig = margin_figure(q, b, w, m, model.preprocessing)
    assert len(fig.axes) == 3 and "margin" in fig.texts[0].get_text()
    assert render_figure(fig, "png")[:4] == b"\x89PNG"
