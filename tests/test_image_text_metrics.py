"""Metrics of image–text explanations: word curves in closed form on a bag-of-words tower, the image's curves
conditioned on the text, batched equals one by one."""

from __future__ import annotations

import torch
from test_image_text import TEXTS, model_with, pictures

import simexplain
from simexplain import metrics


def test_word_curves_remove_and_add_words_best_scored_first():
    model = model_with(specials=True)  # dot product: a word's share is exact
    x = pictures()
    e = simexplain.explain(model, x, TEXTS, "input-x-gradient")
    r = metrics.evaluate(model, x, TEXTS, e, ["WD", "WI"])
    for b, scores in enumerate(e.word_scores):
        order = torch.argsort(scores, descending=True, stable=True)
        shares = scores[order].double()
        count = len(order)
        deletion = r["base"][b] - torch.cat([torch.zeros(1, dtype=torch.float64), shares.cumsum(0)])
        specials = r.curves["WI"][b, 0]  # the specials alone
        insertion = specials + torch.cat([torch.zeros(1, dtype=torch.float64), shares.cumsum(0)])
        torch.testing.assert_close(r.curves["WD"][b, : count + 1], deletion, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(r.curves["WI"][b, : count + 1], insertion, rtol=1e-5, atol=1e-5)
        assert r.curves["WD"][b, count + 1 :].isnan().all()  # shorter texts are padded
        fractions = torch.arange(count + 1, dtype=torch.float64) / count
        torch.testing.assert_close(r["WD"][b], torch.trapezoid(deletion, fractions))
    torch.testing.assert_close(r.curves["WD"][:, 0], r["base"])  # nothing deleted: the clean score


def test_the_image_curves_are_conditioned_on_the_text():
    model = model_with("scaled", specials=True, logit_scale=5.0)
    x = pictures()
    e = simexplain.explain(model, x, TEXTS, "pair-grad-cam")
    r = metrics.evaluate(model, x, TEXTS, e, ["CI", "CD", "CAD"], step=32)
    with torch.no_grad():
        text = model.embed(model.text_tower.tokenize(TEXTS), "b")
        blank = model.similarity(model.embed(torch.zeros_like(x), "a"), text)
        full = model.similarity(model.embed(x, "a"), text)
    torch.testing.assert_close(r.curves["CD"][:, 0], full.double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r.curves["CD"][:, -1], blank.double(), rtol=1e-5, atol=1e-5)  # all deleted
    torch.testing.assert_close(r.curves["CI"][:, -1], full.double(), rtol=1e-5, atol=1e-5)  # all inserted
    assert set(r) == {"CI", "CD", "CAD", "base"} and r.fractions["CD"][-1] == 1


def test_metrics_of_a_batch_equal_those_of_each_pair():
    model = model_with("scaled", specials=True, logit_scale=5.0)
    x = pictures()
    texts = [TEXTS[0], TEXTS[1], TEXTS[0]]
    e = simexplain.explain(model, x, texts, "interaction-cam")
    together = metrics.evaluate(model, x, texts, e, "all", step=32)
    assert list(together) == ["CI", "CD", "CAD", "WI", "WD", "base"]
    for i in range(3):
        alone = metrics.evaluate(model, x[i : i + 1], texts[i : i + 1], e[i], "all", step=32)
        for name in ("CI", "CD", "CAD", "WI", "WD"):
            torch.testing.assert_close(
                together[name][i : i + 1], alone[name], rtol=1e-5, atol=1e-6, equal_nan=True
            )
