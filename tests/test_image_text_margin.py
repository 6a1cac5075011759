"""This caption or that one: the margin of two texts for one image, and zero-shot (winner vs runner-up)."""

from __future__ import annotations

import torch
from test_image_text import model_with, pictures

import simexplain


def test_the_margin_splits_over_the_words_of_both_texts_and_maps_the_image():
    model = model_with()  # dot product, no special tokens: the words' shares add up to the margin
    x = pictures(2)
    better, worse = ["a cat on the sofa", "a red car"], ["a dog", "a photo of a cat"]
    m = simexplain.explain_margin(model, x, better, worse, "input-x-gradient")
    torch.testing.assert_close(m.margin, m.score_better - m.score_worse)
    shares = torch.stack([b.sum() + w.sum() for b, w in zip(m.word_scores_better, m.word_scores_worse)])
    torch.testing.assert_close(shares, m.margin, rtol=1e-5, atol=1e-5)
    image = x.clone().requires_grad_(True)
    tokens = [model.text_tower.tokenize(t) for t in (better, worse)]
    margin = model(image, tokens[0]) - model(image, tokens[1])
    (gradient,) = torch.autograd.grad(margin.sum(), image)
    torch.testing.assert_close(m.map, (x * gradient).abs().amax(1), rtol=1e-5, atol=1e-6)
    assert m.better.texts == better and len(m.word_scores_worse[1]) == 5


def test_every_method_with_an_image_side_explains_a_margin():
    model = model_with("scaled", specials=True, logit_scale=5.0)
    x = pictures(1)
    for method in (
        "smooth-grad",
        "conditional-occlusion",
        "pair-grad-cam",
        "pair-interaction",
        "word-occlusion",
    ):
        options = {"samples": 3, "seed": 0} if method == "smooth-grad" else {}
        m = simexplain.explain_margin(model, x, "a cat", "a dog on the sofa", method, **options)
        assert (m.map is None) == (method == "word-occlusion"), method
        assert (m.word_scores_better is None) == (
            method in ("smooth-grad", "conditional-occlusion", "pair-grad-cam")
        )


def test_zero_shot_explains_the_winner_against_the_runner_up():
    model = model_with("scaled", specials=True, logit_scale=5.0)
    prompts = ["a photo of a cat", "a photo of a dog", "a photo of a red car"]
    z = simexplain.explain_zero_shot(model, pictures(1), prompts, "interaction-cam")
    order = torch.argsort(z.scores, descending=True).tolist()
    assert (z.winner, z.runner_up) == tuple(order[:2])
    assert z.margin.better.texts == [prompts[z.winner]] and z.margin.worse.texts == [prompts[z.runner_up]]
    torch.testing.assert_close(z.margin.margin, (z.scores[z.winner] - z.scores[z.runner_up])[None])
