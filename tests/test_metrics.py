"""Pair metrics (docs/methods.md, Metrics): closed forms, orderings that a faithful map must win, batching
and cost."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import CountingEncoder, LinearEncoder, RegionEncoder, assert_same_state, model_state
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

import simexplain
from simexplain.explanation import PairExplanation, upsample_maps
from simexplain.metrics import (
    METRICS,
    MetricResults,
    curve_points,
    drops,
    evaluate,
    format_table,
    masked_images,
    pixel_ranks,
    summary_groups,
)

SIZE = 16
STEP = 16  # 16×16 images → 17 curve points


class RegionLinear(nn.Module):
    """Bias-free linear map of one region: pixels outside it cannot matter; a zeroed region embeds to 0."""

    def __init__(self, region: tuple[int, int, int, int], dim: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.region = region
        r0, r1, c0, c1 = region
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(dim, 3 * (r1 - r0) * (c1 - c0), generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        r0, r1, c0, c1 = self.region
        return x[:, :, r0:r1, c0:c1].flatten(1) @ self.weight.T


def pairs(
    batch: int = 2, size: int | tuple[int, int] = SIZE, noise: float = 0.3, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Image 2 = image 1 plus noise, so the clean similarity is high."""
    h, w = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.randn(batch, 3, h, w, generator=generator)
    return x1, x1 + noise * torch.randn(batch, 3, h, w, generator=generator)


def region_maps(batch: int, region: tuple[int, int, int, int], seed: int = 1) -> Tensor:
    """1 + small noise inside the region, small noise outside: the region ranks first."""
    r0, r1, c0, c1 = region
    generator = torch.Generator().manual_seed(seed)
    maps = 0.1 * torch.rand(batch, SIZE, SIZE, generator=generator)
    maps[:, r0:r1, c0:c1] += 1
    return maps


# ---------------------------------------------------------------- faithful maps win
@pytest.mark.parametrize("encoder", ["linear", "cnn"])
@pytest.mark.parametrize("seed", [0, 1])
def test_region_first_map_beats_random_which_beats_inverted(encoder: str, seed: int) -> None:
    region = r0, r1, c0, c1 = (6, 10, 6, 10)
    net = RegionLinear(region, seed=seed) if encoder == "linear" else RegionEncoder(region, seed=seed)
    model = simexplain.PairModel(net)
    # The images agree inside the region (up to a little noise) and differ strongly outside it: similar as the
    # model sees them, while their blurred versions are not (the blur mixes the outside into the region).
    generator = torch.Generator().manual_seed(seed)
    x1, x2 = (3 * torch.randn(4, 3, SIZE, SIZE, generator=generator) for _ in range(2))
    core = torch.randn(4, 3, r1 - r0, c1 - c0, generator=generator)
    x1[:, :, r0:r1, c0:c1] = core
    x2[:, :, r0:r1, c0:c1] = core + 0.2 * torch.randn(core.shape, generator=generator)
    good, random = region_maps(4, region), torch.rand(4, SIZE, SIZE, generator=generator)

    def scores(map1: Tensor, map2: Tensor) -> dict[str, float]:
        return evaluate(model, x1, x2, PairExplanation(map1=map1, map2=map2), step=STEP).means()

    best, middle, worst = scores(good, good), scores(random, random.flip(0)), scores(-good, -good)
    # The conditional metrics order the maps for any region model. The simultaneous ones need an embedding in
    # which a zeroed region is far from everything (bias-free): otherwise two fully deleted regions look alike
    # (cos = 1, a known trait of SD), and a random-weight CNN embeds nearly everything alike anyway.
    checks = ["CD", "CI"] + (["SD", "SI"] if encoder == "linear" else [])
    for name in checks:
        higher_is_better = name.endswith("I")
        ordered = [best[name], middle[name], worst[name]]
        assert ordered == sorted(ordered, reverse=higher_is_better), (name, ordered)
        # cosines of a random-weight CNN sit near 1: there only the order is meaningful
        assert abs(best[name] - worst[name]) > (0.3 if encoder == "linear" else 1e-5), (name, ordered)


# ---------------------------------------------------------------- closed form
def test_deletion_curve_matches_the_closed_form_with_a_partial_last_step() -> None:
    size, step = 4, 3  # 16 pixels, 3 per step → points at 0,3,6,...,15,16 pixels: 7 points
    encoder = LinearEncoder(size=size, dim=6, seed=2)
    model = simexplain.PairModel(encoder)
    x1, x2 = (t.double() for t in pairs(batch=1, size=size))
    one_hot = torch.zeros(1, size, size)
    one_hot[0, 2, 1] = 1.0  # pixel 9 first, then ties in raster order
    order = [9] + [p for p in range(16) if p != 9]
    W = encoder.weight.detach()

    def cos(a: Tensor, b: Tensor) -> float:
        u, v = W @ a.flatten(), W @ b.flatten()
        return float(u @ v / (u.norm() * v.norm()))

    expected_sd, expected_cd1, counts = [], [], [0, 3, 6, 9, 12, 15, 16]
    for count in counts:
        gone = torch.zeros(16, dtype=torch.bool)
        gone[order[:count]] = True
        keep = (~gone).view(1, 1, size, size).double()
        expected_sd.append(cos(x1 * keep, x2 * keep) if count < 16 else 0.0)  # cos(0, 0) = 0 with eps
        expected_cd1.append(cos(x1 * keep, x2) if count < 16 else 0.0)
    result = evaluate(model, x1, x2, PairExplanation(map1=one_hot, map2=one_hot), ["SD", "CD"], step=step)
    assert curve_points(size, size, step) == 7
    torch.testing.assert_close(result.curves["SD"][0], torch.tensor(expected_sd, dtype=torch.float64))
    torch.testing.assert_close(result.curves["CD_1"][0], torch.tensor(expected_cd1, dtype=torch.float64))
    x = torch.tensor(counts, dtype=torch.float64) / 16
    area = sum((x[i + 1] - x[i]) * (expected_sd[i] + expected_sd[i + 1]) / 2 for i in range(6))
    assert math.isclose(float(result["SD"][0]), float(area), rel_tol=1e-9)
    assert math.isclose(float(result["CD"][0]), (float(result["CD_1"][0]) + float(result["CD_2"][0])) / 2)


def test_insertion_curve_starts_blurred_and_ends_clean() -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE, dim=6))
    x1, x2 = (t.double() for t in pairs(batch=2))
    e = PairExplanation(map1=torch.rand(2, SIZE, SIZE), map2=torch.rand(2, SIZE, SIZE))
    r = evaluate(model, x1, x2, e, ["SI", "CI"], step=STEP)
    b1, b2 = gaussian_blur(x1, [11, 11], [5.0, 5.0]), gaussian_blur(x2, [11, 11], [5.0, 5.0])
    torch.testing.assert_close(r.curves["SI"][:, 0], model(b1, b2).double())
    torch.testing.assert_close(r.curves["CI_1"][:, 0], model(b1, x2).double())
    torch.testing.assert_close(r.curves["CI_2"][:, 0], model(x1, b2).double())
    for key in ("SI", "CI_1", "CI_2"):
        torch.testing.assert_close(r.curves[key][:, -1], r["base"])


def test_pixel_ranks_are_descending_with_stable_ties() -> None:
    maps = torch.tensor([[[0.5, 0.9, 0.5], [0.1, 0.9, 0.5]]])
    assert pixel_ranks(maps).tolist() == [[2, 0, 3, 5, 1, 4]]


# ---------------------------------------------------------------- cost
class MaxBatch(CountingEncoder):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__(inner)
        self.largest = 0

    def forward(self, x: Tensor) -> Tensor:
        self.largest = max(self.largest, x.shape[0])
        return super().forward(x)


def test_conditional_metrics_embed_the_fixed_image_once_and_respect_batch_size() -> None:
    batch, points = 3, curve_points(SIZE, SIZE, STEP)
    counter = MaxBatch(LinearEncoder(size=SIZE))
    model = simexplain.PairModel(counter)
    x1, x2 = pairs(batch=batch)
    e = PairExplanation(map1=torch.rand(batch, SIZE, SIZE), map2=torch.rand(batch, SIZE, SIZE))
    evaluate(model, x1, x2, e, ["CD"], step=STEP, batch_size=7)
    # the clean images once each, then one perturbed sequence per image; nothing re-embedded per step
    assert counter.images == 2 * batch + 2 * batch * points
    assert counter.largest <= 7

    # all six metrics share the sequences: insertion + deletion + clean + masked images
    counter.images = 0
    evaluate(model, x1, x2, e, "all", step=STEP, batch_size=7)
    assert counter.images == 2 * batch * (2 * points + 2)


def test_asymmetric_model_sends_each_image_through_its_own_encoder_once() -> None:
    batch, points = 2, curve_points(SIZE, SIZE, STEP)
    side_a, side_b = (
        CountingEncoder(LinearEncoder(size=SIZE, seed=0)),
        CountingEncoder(LinearEncoder(size=SIZE, seed=1)),
    )
    model = simexplain.PairModel(side_a, encoder_b=side_b)
    x1, x2 = pairs(batch=batch)
    e = PairExplanation(map1=torch.rand(batch, SIZE, SIZE), map2=torch.rand(batch, SIZE, SIZE))
    r = evaluate(model, x1, x2, e, ["CI"], step=STEP)
    assert side_a.images == side_b.images == batch + batch * points
    torch.testing.assert_close(r["base"], model(x1, x2).double())


# ---------------------------------------------------------------- edge cases
def test_constant_map_gives_defined_values_in_raster_order() -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = pairs(batch=2)
    constant = PairExplanation(map1=torch.full((2, SIZE, SIZE), 3.0), map2=torch.zeros(2, SIZE, SIZE))
    raster = -torch.arange(SIZE * SIZE, dtype=torch.float32).view(1, SIZE, SIZE).repeat(2, 1, 1)
    r = evaluate(model, x1, x2, constant, "all", step=STEP)
    for name in METRICS:
        assert torch.isfinite(r[name]).all(), name
    assert r.counts["constant_maps"] == 4
    same = evaluate(model, x1, x2, PairExplanation(map1=raster, map2=raster), ["SD"], step=STEP)
    torch.testing.assert_close(r["SD"], same["SD"])
    # ê = 0 for a constant map: the masked images are zero, cos(f(0), f(0)) = 0 for a bias-free encoder
    torch.testing.assert_close(r["SAD"], torch.ones(2, dtype=torch.float64))


def test_non_positive_base_is_undefined_and_counted_never_negative() -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, _ = pairs(batch=2)
    x2 = torch.stack([x1[0] + 0.1, -x1[1]])  # pair 0 similar, pair 1 at cosine −1
    e = PairExplanation(map1=torch.rand(2, SIZE, SIZE), map2=torch.rand(2, SIZE, SIZE))
    r = evaluate(model, x1, x2, e, ["SAD", "CAD"], step=STEP)
    assert r["base"][1] < 0
    for name in ("SAD", "CAD", "CAD_1", "CAD_2"):
        assert not r[name][0].isnan() and r[name][0] >= 0
        assert r[name][1].isnan()
    assert r.counts["SAD_undefined"] == r.counts["CAD_undefined"] == 1
    assert r.means()["SAD"] == pytest.approx(float(r["SAD"][0]))
    assert set(r.increase_rates()) == {"SAD", "CAD"}
    assert "base similarity ≤ 0 for 1 pair(s) in SAD" in format_table(r)


def test_non_square_images_work() -> None:
    h, w = 12, 20
    model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * h * w, 8, bias=False)))
    x1, x2 = pairs(batch=2, size=(h, w))
    e = simexplain.explain(model, x1, x2)
    r = evaluate(model, x1, x2, e, "all", step=STEP)
    assert r.curves["SD"].shape == (2, math.ceil(h * w / STEP) + 1)
    for name in METRICS:
        assert torch.isfinite(r[name]).all(), name
    torch.testing.assert_close(r.curves["SD"][:, 0], r["base"])
    assert float(r.fractions["SD"][-1]) == 1.0


def test_feature_grid_map_is_upsampled_first() -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = pairs(batch=2)
    grid1, grid2 = torch.rand(2, 4, 4), torch.rand(2, 4, 4)
    small = evaluate(model, x1, x2, PairExplanation(map1=grid1, map2=grid2), "all", step=STEP)
    full = PairExplanation(map1=upsample_maps(grid1, (SIZE, SIZE)), map2=upsample_maps(grid2, (SIZE, SIZE)))
    big = evaluate(model, x1, x2, full, "all", step=STEP)
    assert small.curves["SD"].shape[1] == curve_points(SIZE, SIZE, STEP)
    for name in METRICS:
        torch.testing.assert_close(small[name], big[name])


def test_explanation_images_replace_the_inputs() -> None:
    """Averaged Transforms explains a transformed second view: the metrics must perturb that view."""
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = pairs(batch=1)
    view = x2.flip(-1)
    maps = torch.rand(1, SIZE, SIZE)
    carried = evaluate(
        model, x1, x2, PairExplanation(map1=maps, map2=maps, extras={"image2": view}), ["CD"], step=STEP
    )
    direct = evaluate(model, x1, view, PairExplanation(map1=maps, map2=maps), ["CD"], step=STEP)
    torch.testing.assert_close(carried["CD"], direct["CD"])


# ---------------------------------------------------------------- batching and safety
def test_batched_equals_one_pair_at_a_time_and_leaves_the_model_alone() -> None:
    model = simexplain.PairModel(RegionEncoder((0, 10, 2, 14)))
    model.encoder.train()  # a mode the metrics must restore
    before = model_state(model)
    x1, x2 = pairs(batch=4)
    e = PairExplanation(map1=torch.rand(4, SIZE, SIZE), map2=torch.rand(4, SIZE, SIZE))
    together = evaluate(model, x1, x2, e, "all", step=STEP, batch_size=5)
    assert_same_state(before, model_state(model))
    for i in range(4):
        alone = evaluate(model, x1[i : i + 1], x2[i : i + 1], e[i], "all", step=STEP, batch_size=64)
        for name in together:
            torch.testing.assert_close(together[name][i : i + 1], alone[name], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            together.curves["CI_2"][i : i + 1], alone.curves["CI_2"], atol=1e-5, rtol=1e-5
        )


def test_result_shape_table_and_json() -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = pairs(batch=2)
    r = evaluate(model, x1, x2, simexplain.explain(model, x1, x2), "all", step=STEP)
    assert isinstance(r, dict) and isinstance(r, MetricResults)
    assert list(r)[:6] == list(METRICS)
    assert {"CI_1", "CI_2", "CD_1", "CD_2", "CAD_1", "CAD_2", "SAD_increase", "CAD_increase", "base"} <= set(
        r
    )
    assert set(r.curves) == {"SI", "SD", "CI_1", "CI_2", "CD_1", "CD_2"}
    assert all(v.shape == (2,) and v.dtype == torch.float64 for v in r.values())
    table = format_table({"input-x-gradient": r, "again": r})
    assert table.splitlines()[0].startswith(
        "| method | pairs | SI ↑ | SD ↓ | CI ↑ | CD ↓ | SAD ↓ | CAD ↓ | G1 ↑"
    )
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 4
    data = r.to_dict()
    assert data["pairs"] == 2 and set(data["groups"]) == {"G1", "G2", "G3"}
    assert len(data["curves"]["SD"][0]) == curve_points(SIZE, SIZE, STEP)
    assert data["per_pair"]["SD"] == [float(x) for x in r["SD"]]
    assert data["curves"]["CI_2"] == [[float(x) for x in row] for row in r.curves["CI_2"]]
    assert data["fractions"]["SD"] == [float(x) for x in r.fractions["SD"]]
    assert all(isinstance(x, float) for x in data["curves"]["SD"][0] + data["fractions"]["SD"])


def test_summary_groups() -> None:
    groups = summary_groups(
        {"SI": 0.6, "CI": 0.8, "SD": 0.2, "CD": 0.4, "SAD": torch.tensor([0.5, 0.5]), "CAD": 0.3}
    )
    assert groups == pytest.approx({"G1": 0.7, "G2": 0.7, "G3": 0.6})
    assert summary_groups({"SI": 0.5}) == {}


def test_unknown_metric_and_bad_maps_are_clear_errors() -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = pairs(batch=1)
    e = PairExplanation(map1=torch.rand(1, SIZE, SIZE), map2=torch.rand(1, SIZE, SIZE))
    with pytest.raises(simexplain.SimexplainError, match="unknown metric 'XY'"):
        evaluate(model, x1, x2, e, ["XY"])
    bad = PairExplanation(map1=torch.full((1, SIZE, SIZE), float("nan")), map2=torch.rand(1, SIZE, SIZE))
    with pytest.raises(simexplain.SimexplainError, match="NaN"):
        evaluate(model, x1, x2, bad, ["SD"])
    with pytest.raises(simexplain.SimexplainError, match="pairs of maps"):
        evaluate(model, torch.cat([x1, x1]), torch.cat([x2, x2]), e, ["SD"])


def test_conditional_metrics_work_with_images_of_different_sizes() -> None:
    model = simexplain.PairModel(RegionEncoder((0, 8, 0, 8)))  # pooled CNN: any input size
    x1, _ = pairs(batch=2)
    _, x2 = pairs(batch=2, size=(12, 20))
    e = PairExplanation(map1=torch.rand(2, SIZE, SIZE), map2=torch.rand(2, 12, 20))
    r = evaluate(model, x1, x2, e, ["CI", "CD", "SAD", "CAD"], step=STEP)
    assert r.curves["CD_1"].shape[1] == curve_points(SIZE, SIZE, STEP)
    assert r.curves["CD_2"].shape[1] == curve_points(12, 20, STEP)
    assert all(torch.isfinite(r[name]).all() for name in ("CI", "CD", "SAD", "CAD"))
    # by hand: each direction deletes its own image's top pixels against the clean partner of the other size
    for key, maps, points in (("CD_1", e.map1, (0, 5, 16)), ("CD_2", e.map2, (0, 7, 15))):
        ranks = pixel_ranks(maps)
        for k in points:
            keep = (ranks >= k * STEP).view(2, 1, *maps.shape[-2:])
            pair = (x1 * keep, x2) if key == "CD_1" else (x1, x2 * keep)
            torch.testing.assert_close(r.curves[key][:, k], model(*pair).double(), rtol=1e-5, atol=1e-6)
    masked = model(masked_images(x1, e.map1), masked_images(x2, e.map2)).double()
    torch.testing.assert_close(r["SAD"], drops(r["base"], masked)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(simexplain.SimexplainError, match="same size|one size"):
        evaluate(model, x1, x2, e, ["SD"], step=STEP)
