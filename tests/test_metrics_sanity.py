"""Maximum sensitivity and the sanity check (SPEC 4.3, 4.4), and the cascade figure."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import LinearEncoder, SmallCNN, assert_same_state, model_state, small_pair_model
from torch import Tensor

import simexplain
from simexplain.explanation import PairExplanation
from simexplain.figures.sanity import sanity_figure, spearman_curve_figure
from simexplain.methods import registry
from simexplain.metrics import evaluate, max_sensitivity, randomizable_layers, sanity_check, spearman

SIZE = 16


def images(batch: int = 2, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.rand(batch, 3, SIZE, SIZE, generator=generator)
    return x1, (x1 + 0.2 * torch.rand(batch, 3, SIZE, SIZE, generator=generator)).clamp(0, 1)


# ---------------------------------------------------------------- maximum sensitivity
def test_max_sensitivity_is_zero_without_noise_and_seeded() -> None:
    model = small_pair_model()
    x1, x2 = images()
    assert torch.equal(
        max_sensitivity(model, x1, x2, "input-x-gradient", samples=3, radius=0.0, seed=0),
        torch.zeros(2, dtype=torch.float64),
    )
    a = max_sensitivity(model, x1, x2, "input-x-gradient", samples=4, seed=7, batch_size=3)
    b = max_sensitivity(model, x1, x2, "input-x-gradient", samples=4, seed=7)
    torch.testing.assert_close(a, b)
    assert a.shape == (2,) and bool((a > 0).all())
    # the max over more samples (the first four among them, same seed) can only grow
    assert bool((max_sensitivity(model, x1, x2, "input-x-gradient", samples=8, seed=7) >= a - 1e-12).all())


def test_max_sensitivity_adds_the_same_noise_to_both_images_and_matches_the_formula() -> None:
    seen: list[Tensor] = []

    @registry.register("test-spy-map", "test", "map = image 1 − image 2 (spy)")
    def spy(model, x1, x2) -> PairExplanation:
        seen.append(x1 - x2)
        return PairExplanation(map1=x1.sum(1), map2=x2.sum(1) + 1, method="test-spy-map")

    try:
        model = simexplain.PairModel(LinearEncoder(size=SIZE))
        x1, x2 = images(batch=1)
        rho = max_sensitivity(model, x1, x2, "test-spy-map", samples=5, radius=0.1, seed=3)
        for difference in seen:
            torch.testing.assert_close(difference, (x1 - x2).expand_as(difference))  # shared noise cancels
        generator = torch.Generator().manual_seed(3)
        noise = (2 * torch.rand((5, *x1.shape), generator=generator) - 1) * 0.1
        e1, e2 = x1.sum(1), x2.sum(1) + 1
        n1 = torch.stack([(x1 + n).sum(1) for n in noise])
        n2 = torch.stack([(x2 + n).sum(1) + 1 for n in noise])
        r1 = max(float((m - e1).norm() / e1.norm()) for m in n1)
        r2 = max(float((m - e2).norm() / e2.norm()) for m in n2)
        assert float(rho[0]) == pytest.approx((r1 + r2) / 2, rel=1e-5)
        # also reachable from evaluate, re-running the explanation's own method
        r = evaluate(model, x1, x2, spy(model, x1, x2), ["MS"])
        assert r["MS"].shape == (1,)
    finally:
        registry._METHODS.pop("test-spy-map", None)


def test_max_sensitivity_of_a_foreign_explanation_is_a_clear_error() -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = images(batch=1)
    e = PairExplanation(map1=torch.rand(1, SIZE, SIZE), map2=torch.rand(1, SIZE, SIZE), method="other-tool")
    with pytest.raises(simexplain.SimexplainError, match="not a registered method"):
        evaluate(model, x1, x2, e, ["MS"])


# ---------------------------------------------------------------- sanity check
def test_spearman_with_ties_and_constants() -> None:
    a = torch.tensor([[[1.0, 2.0, 2.0, 4.0]]])
    assert float(spearman(a, a)) == pytest.approx(1.0)
    assert float(spearman(a, -a)) == pytest.approx(-1.0)
    assert float(spearman(a, torch.zeros_like(a))) == 0.0
    # a batch: each row on its own; tied ranks 1, 2.5, 2.5, 4 against 4, 3, 2, 1 give −4.5 / √(4.5 · 5)
    b = torch.tensor([[[4.0, 3.0, 2.0, 1.0]]])
    batch = spearman(torch.cat([a, a, a]), torch.cat([b, a, torch.zeros_like(a)]))
    torch.testing.assert_close(batch, torch.tensor([-4.5 / math.sqrt(22.5), 1.0, 0.0], dtype=torch.float64))


def test_cascade_order_runs_from_the_output_end() -> None:
    model = small_pair_model()
    steps = randomizable_layers(model)
    assert steps[0] == ["encoder.head.2"] and steps[-1] == ["encoder.features.0"]
    asymmetric = simexplain.PairModel(SmallCNN(seed=0), encoder_b=SmallCNN(seed=1))
    assert randomizable_layers(asymmetric)[0] == ["encoder.head.2", "encoder_b.head.2"]


def test_sanity_check_leaves_the_model_untouched_and_similarity_falls() -> None:
    model = small_pair_model(seed=3)
    before = model_state(model)
    rng = torch.get_rng_state()
    x1, x2 = images(batch=2)
    result = sanity_check(model, x1, x2, "input-x-gradient", seed=0)
    assert_same_state(before, model_state(model))
    assert torch.equal(rng, torch.get_rng_state())  # re-initialisation draws from its own seeded stream
    assert result.layers[0] == "original" and len(result.layers) == 1 + len(randomizable_layers(model))
    assert result.maps1.shape == (len(result.layers), 2, SIZE, SIZE)
    rho = result.mean_spearman()
    assert float(rho[0]) == pytest.approx(1.0)
    assert float(rho[-1]) < 0.9 * float(rho[0]) and float(rho[-1]) < float(rho[1]) + 1e-9
    assert result.ssim1 is None or result.ssim1.shape == result.spearman1.shape
    again = sanity_check(model, x1, x2, "input-x-gradient", seed=0, every=2)
    assert again.layers[-1] == result.layers[-1] and len(again.layers) < len(result.layers)
    torch.testing.assert_close(again.maps1[-1], result.maps1[-1])


def test_sanity_figure_writes_png_and_svg(tmp_path) -> None:
    model = small_pair_model()
    x1, x2 = images(batch=1)
    result = sanity_check(model, x1, x2, "input-x-gradient", steps=3)
    figure = sanity_figure({"Input×Gradient": result, "again": result}, tmp_path / "cascade.png", every=2)
    assert len(figure.axes) == 4 * 4  # 2 methods × 2 images; image + original + steps 2 and 3
    sanity_figure(result, tmp_path / "cascade.svg")
    spearman_curve_figure(result, tmp_path / "curve.png")
    for name in ("cascade.png", "cascade.svg", "curve.png"):
        assert (tmp_path / name).stat().st_size > 1000
