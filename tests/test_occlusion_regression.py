"""Pairwise Occlusion with credit="regression": a ridge fit of the drops on the rectangle indicators."""

import torch
from tiny import RegionEncoder

import simexplain
from simexplain.methods.occlusion import rectangle_spans, ridge_rectangle_credit


def test_a_model_that_sees_one_region_credits_that_region():
    region = (4, 12, 14, 22)  # rows 4..11, columns 14..21 of a 24×24 image
    model = simexplain.PairModel(RegionEncoder(region))
    generator = torch.Generator().manual_seed(0)
    x1, x2 = torch.rand(2, 1, 3, 24, 24, generator=generator)
    e = simexplain.explain(
        model, x1, x2, "pairwise-occlusion", credit="regression", samples=150, seed=0, batch_size=64
    )
    assert e.config["credit"] == "regression" and e.config["ridge"] == 0.1
    inside = torch.zeros(24, 24, dtype=torch.bool)
    inside[region[0] : region[1], region[2] : region[3]] = True
    for credit in (e.map1[0].abs(), e.map2[0].abs()):
        assert inside.flatten()[credit.flatten().argmax()]  # the largest coefficient lies in the region
        # Rectangles that overlap the region spread some credit around it (150 equations, 1152 unknowns).
        assert credit[inside].mean() > 1.8 * credit[~inside].mean()


def test_the_fit_recovers_additive_pixel_drops():
    # Drops that ARE a sum of per-pixel values over the erased rectangles: a weak ridge recovers the fit.
    generator = torch.Generator().manual_seed(1)
    truth1, truth2 = torch.zeros(8, 8, dtype=torch.float64), torch.zeros(8, 8, dtype=torch.float64)
    truth1[2:4, 5:7], truth2[6:8, 0:3] = 1.0, -0.5
    boxes = simexplain.methods.occlusion.pair_rectangles([1], 400, (8, 8), (8, 8), (0.05, 0.3), (0.5, 2))
    rows1, cols1 = rectangle_spans(boxes[0], 8, 8)
    rows2, cols2 = rectangle_spans(boxes[1], 8, 8)
    ind1 = (rows1[..., :, None] & cols1[..., None, :]).double()
    ind2 = (rows2[..., :, None] & cols2[..., None, :]).double()
    drops = (ind1 * truth1).sum((2, 3)) + (ind2 * truth2).sum((2, 3)) + 0.25
    drops = drops + 1e-3 * torch.randn(drops.shape, generator=generator, dtype=torch.float64)
    a1, a2 = ridge_rectangle_credit(drops, rows1, cols1, rows2, cols2, 1e-4)
    assert torch.allclose(a1[0], truth1, atol=0.05)
    assert torch.allclose(a2[0], truth2, atol=0.05)


def test_the_default_credit_is_unchanged_and_uses_the_same_forwards():
    model = simexplain.PairModel(RegionEncoder((0, 8, 0, 8)))
    x1, x2 = torch.rand(2, 2, 3, 16, 16)
    norm = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=10, seed=[1, 2])
    regression = simexplain.explain(
        model, x1, x2, "pairwise-occlusion", samples=10, seed=[1, 2], credit="regression"
    )
    assert norm.config["credit"] == "norm"
    assert torch.equal(norm.extras["drops"], regression.extras["drops"])
    assert torch.equal(norm.extras["rectangles1"], regression.extras["rectangles1"])
    assert not torch.allclose(norm.map1, regression.map1)
