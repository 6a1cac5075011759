"""Conditional and Pairwise Occlusion (SPEC §2): analytic checks on tiny models whose answers are known."""

import math

import pytest
import torch
from tiny import CountingEncoder, RegionEncoder, SmallCNN, assert_same_state, model_state

import simexplain
from simexplain import PairModel, SimexplainError
from simexplain.methods.occlusion import (
    fill_values,
    occlude,
    sample_rectangles,
    spans,
    window_starts,
    windows_to_pixels,
)

REGION = (8, 16, 12, 20)  # rows 8:16, cols 12:20 of a 32×32 image


class SizeRecorder(CountingEncoder):
    """Counting wrapper that also keeps the batch size of every forward."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__(inner)
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return super().forward(x)


def region_mask(size: int = 32, region: tuple[int, int, int, int] = REGION) -> torch.Tensor:
    inside = torch.zeros(size, size, dtype=torch.bool)
    inside[region[0] : region[1], region[2] : region[3]] = True
    return inside


def windows_touch_region(starts: torch.Tensor, window: int, low: int, high: int) -> torch.Tensor:
    return (starts + window > low) & (starts < high)


# ---------------------------------------------------------------------------------------------- conditional
def test_windows_away_from_the_region_have_zero_drop_and_the_map_peaks_on_it():
    torch.manual_seed(0)
    # Float64: with x2 = x1 the clean cosine is 1 and every occlusion can only lower it (drops >= 0), but
    # only to second order, so drops are small and must stand well above rounding noise.
    model = PairModel(RegionEncoder(REGION).double())
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    e = simexplain.explain(model, x, x.clone(), "conditional-occlusion", window=8, stride=4)
    starts = window_starts(32, 8, 4)
    touches = windows_touch_region(starts, 8, *REGION[:2])[:, None] & windows_touch_region(
        starts, 8, *REGION[2:]
    )
    for grid, pixels in ((e.grid1, e.map1), (e.grid2, e.map2)):
        assert grid.shape == (2, len(starts), len(starts))
        assert grid[:, ~touches].abs().max() < 1e-12
        assert grid[:, touches].min() > -1e-12 and grid[:, touches].max() > 1e-6
        # Pixels farther than a window from the region are only covered by windows that do not touch it.
        near = torch.zeros(32, 32, dtype=torch.bool)
        near[REGION[0] - 7 : REGION[1] + 7, REGION[2] - 7 : REGION[3] + 7] = True
        assert pixels[:, ~near].abs().max() < 1e-12
        for b in range(2):
            peak = divmod(int(pixels[b].argmax()), 32)
            assert region_mask()[peak], f"map peaks at {peak}, outside the region"


def test_each_grid_value_is_the_drop_of_its_window_and_pixels_average_the_grid():
    torch.manual_seed(1)
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    e = simexplain.explain(model, x1, x2, "conditional-occlusion", window=6, stride=4, batch_size=5)
    starts = window_starts(16, 6, 4).tolist()
    assert starts == [0, 4, 8, 10]  # stride 4 does not divide 16 - 6: last window on the border
    clean = model(x1, x2).detach()
    total, count = torch.zeros(2, 16, 16), torch.zeros(16, 16)
    for i, r in enumerate(starts):
        for j, c in enumerate(starts):
            occluded = x1.clone()
            occluded[:, :, r : r + 6, c : c + 6] = 0
            drop = clean - model(occluded, x2).detach()
            torch.testing.assert_close(e.grid1[:, i, j], drop, atol=1e-6, rtol=1e-5)
            occluded2 = x2.clone()
            occluded2[:, :, r : r + 6, c : c + 6] = 0
            torch.testing.assert_close(
                e.grid2[:, i, j], clean - model(x1, occluded2).detach(), atol=1e-6, rtol=1e-5
            )
            total[:, r : r + 6, c : c + 6] += drop[:, None, None]
            count[r : r + 6, c : c + 6] += 1
    assert count.min() >= 1  # every pixel covered
    torch.testing.assert_close(e.map1, total / count, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(e.score, clean)
    grid_only = simexplain.explain(model, x1, x2, "conditional-occlusion", window=6, stride=4, output="grid")
    torch.testing.assert_close(grid_only.map1, e.grid1)
    torch.testing.assert_close(grid_only.map2, e.grid2)


def test_windows_to_pixels_on_a_hand_made_grid():
    rows = spans(window_starts(5, 3, 2), 3, 5)  # windows 0:3 and 2:5, pixel 2 covered twice
    cols = spans(window_starts(1, 1, 1), 1, 1)
    pixels = windows_to_pixels(torch.tensor([[[2.0], [4.0]]]), rows, cols)
    assert pixels[0, :, 0].tolist() == [2.0, 2.0, 3.0, 4.0, 4.0]


def test_window_larger_than_the_image_is_clipped_and_non_square_images_work():
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(1, 3, 12, 20), torch.rand(1, 3, 12, 20)
    e = simexplain.explain(model, x1, x2, "conditional-occlusion", window=16, stride=4)
    assert e.params["window1"] == (12, 16)
    assert e.grid1.shape == (1, 1, 2) and e.map1.shape == (1, 12, 20)
    assert e.params["starts1"][0].tolist() == [0] and e.params["starts1"][1].tolist() == [0, 4]
    assert torch.isfinite(e.map1).all() and e.map1.abs().sum() > 0
    # Different sizes for the two images (a shared encoder cannot concatenate them).
    other = torch.rand(1, 3, 16, 16)
    e = simexplain.explain(model, x1, other, "conditional-occlusion", window=8, stride=8)
    assert e.map1.shape == (1, 12, 20) and e.map2.shape == (1, 16, 16)
    torch.testing.assert_close(e.score, model.similarity(model.embed(x1), model.embed(other)).detach())


def test_fills_put_the_right_values_in_the_window():
    x = torch.rand(2, 3, 12, 12)
    rows, cols = spans(torch.tensor([2, 2]), 5, 12), spans(torch.tensor([3, 3]), 4, 12)
    inside = rows[0][:, None] & cols[0][None, :]
    for fill in ("zero", "mean", "blur"):
        values = fill_values(x, fill).expand_as(x)
        out = occlude(x, fill_values(x, fill), rows, cols)
        assert torch.equal(out[:, :, ~inside], x[:, :, ~inside])
        assert torch.equal(out[:, :, inside], values[:, :, inside])
    torch.testing.assert_close(fill_values(x, "mean")[:, :, 0, 0], x.mean((2, 3)))
    model = PairModel(SmallCNN())
    kwargs = {"window": 8, "stride": 4}
    zero = simexplain.explain(model, x, x.flip(-1), "conditional-occlusion", fill="zero", **kwargs)
    blur = simexplain.explain(model, x, x.flip(-1), "conditional-occlusion", fill="blur", **kwargs)
    assert not torch.allclose(zero.grid1, blur.grid1)


def test_asymmetric_model_occludes_each_image_through_its_own_encoder():
    enc_a, enc_b = SizeRecorder(SmallCNN(seed=0)), SizeRecorder(SmallCNN(seed=1))
    model = PairModel(enc_a, encoder_b=enc_b)
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    e = simexplain.explain(model, x1, x2, "conditional-occlusion", window=8, stride=4, batch_size=7)
    positions = 3 * 3
    assert enc_a.images == enc_b.images == 2 + 2 * positions
    occluded = x1.clone()
    occluded[:, :, 4:12, 0:8] = 0
    torch.testing.assert_close(e.grid1[:, 1, 0], model(x1, x2) - model(occluded, x2), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- both methods
@pytest.mark.parametrize(
    "method, params",
    [
        ("conditional-occlusion", {"window": 8, "stride": 4}),
        ("pairwise-occlusion", {"samples": 12, "seed": 3}),
    ],
)
def test_clean_embeddings_once_and_forwards_bounded_by_batch_size(method, params):
    encoder = SizeRecorder(RegionEncoder(REGION))
    model = PairModel(encoder)
    x1, x2 = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    simexplain.explain(model, x1, x2, method, batch_size=10, **params)
    perturbed = 3 * 7 * 7 if method == "conditional-occlusion" else 3 * 12
    # One forward of [x1; x2] for the clean embeddings, then only occluded images.
    assert encoder.sizes[0] == 6
    assert encoder.images == 6 + 2 * perturbed
    assert max(encoder.sizes[1:]) <= 10
    assert encoder.calls == 1 + (
        2 * math.ceil(perturbed / 10) if method == "conditional-occlusion" else math.ceil(perturbed / 5)
    )


@pytest.mark.parametrize(
    "method, params",
    [
        ("conditional-occlusion", {"window": 6, "stride": 5, "fill": "mean"}),
        ("pairwise-occlusion", {"samples": 10, "seed": 7, "fill": "blur"}),
    ],
)
def test_batched_equals_one_by_one_and_state_is_restored(method, params):
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    before = model_state(model)
    batched = simexplain.explain(model, x1, x2, method, batch_size=8, **params)
    assert_same_state(before, model_state(model))
    for i in range(3):
        single = simexplain.explain(model, x1[i : i + 1], x2[i : i + 1], method, batch_size=3, **params)
        torch.testing.assert_close(batched.map1[i : i + 1], single.map1, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(batched.map2[i : i + 1], single.map2, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(batched.score[i : i + 1], single.score)
    # Results are ordinary tensors (not inference tensors): in-place edits work.
    batched.map1 += 0
    assert not batched.map1.requires_grad


@pytest.mark.parametrize(
    "method, params",
    [
        ("conditional-occlusion", {"fill": "paint"}),
        ("conditional-occlusion", {"output": "heatmap"}),
        ("conditional-occlusion", {"stride": 0}),
        ("conditional-occlusion", {"window": 4, "stride": 6}),  # would leave uncovered pixels
        ("conditional-occlusion", {"batch_size": 0}),
        ("pairwise-occlusion", {"scale": (0.3, 0.1)}),
        ("pairwise-occlusion", {"ratio": (0, 1)}),
        ("pairwise-occlusion", {"temperature": 0}),
        ("pairwise-occlusion", {"samples": 0}),
    ],
)
def test_bad_parameters_give_clear_errors(method, params):
    model = PairModel(SmallCNN())
    with pytest.raises(SimexplainError):
        simexplain.explain(model, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), method, **params)


# ---------------------------------------------------------------------------------------------- pairwise
def test_rectangles_follow_random_erasing():
    boxes = sample_rectangles(500, 40, 30, (0.1, 0.3), (1, 1.5), torch.Generator().manual_seed(0))
    top, left, h, w = boxes.T
    assert (h < 40).all() and (w < 30).all() and (h > 0).all() and (w > 0).all()
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40).all() and (left + w <= 30).all()
    area = (h * w).double() / (40 * 30)
    assert area.min() > 0.08 and area.max() < 0.33  # scale (0.1, 0.3) up to rounding
    aspect = h.double() / w
    assert aspect.min() > 0.85 and aspect.max() < 1.7
    assert top.max() > 20 and left.max() > 10  # corners spread over the image
    # No rectangle can fit in 10 tries: an empty rectangle (nothing erased, no credit).
    empty = sample_rectangles(20, 16, 16, (2.0, 3.0), (1, 1.5), torch.Generator().manual_seed(0))
    assert (empty[:, 2:] == 0).all()


def test_seeds_reproduce_and_differ():
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    a = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=10, seed=5)
    b = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=10, seed=5)
    c = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=10, seed=6)
    assert torch.equal(a.map1, b.map1) and torch.equal(a.params["rectangles2"], b.params["rectangles2"])
    assert not torch.equal(a.params["rectangles1"], c.params["rectangles1"])
    fresh = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=10)
    again = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=10, seed=fresh.params["seed"])
    assert torch.equal(fresh.map2, again.map2)


def test_pairwise_matches_a_direct_loop_over_samples():
    torch.manual_seed(2)
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    e = simexplain.explain(
        model, x1, x2, "pairwise-occlusion", samples=9, seed=11, temperature=0.05, batch_size=4
    )
    clean = model(x1, x2).detach()
    maps1, maps2 = torch.zeros(2, 16, 16), torch.zeros(2, 16, 16)
    drops, to_first = [], []
    for (t1, l1, h1, w1), (t2, l2, h2, w2) in zip(
        e.params["rectangles1"].tolist(), e.params["rectangles2"].tolist()
    ):
        p1, p2 = x1.clone(), x2.clone()
        p1[:, :, t1 : t1 + h1, l1 : l1 + w1] = 0
        p2[:, :, t2 : t2 + h2, l2 : l2 + w2] = 0
        z1, z2 = model.embed(p1).detach(), model.embed(p2).detach()
        drops.append(clean - model.similarity(z1, z2))
        to_first.append(z1.norm(dim=1) < z2.norm(dim=1))
    drops_t, first = torch.stack(drops, 1), torch.stack(to_first, 1)
    torch.testing.assert_close(e.params["drops"], drops_t, atol=1e-6, rtol=1e-5)
    assert torch.equal(e.params["credited"] == 1, first)
    weights = torch.softmax(drops_t / 0.05, 1)
    for n, ((t1, l1, h1, w1), (t2, l2, h2, w2)) in enumerate(
        zip(e.params["rectangles1"].tolist(), e.params["rectangles2"].tolist())
    ):
        maps1[:, t1 : t1 + h1, l1 : l1 + w1] += (weights[:, n] * first[:, n])[:, None, None]
        maps2[:, t2 : t2 + h2, l2 : l2 + w2] += (weights[:, n] * ~first[:, n])[:, None, None]
    maps1 = maps1 / (maps1.amax((1, 2), keepdim=True) + 1e-9)
    maps2 = maps2 / (maps2.amax((1, 2), keepdim=True) + 1e-9)
    torch.testing.assert_close(e.map1, maps1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(e.map2, maps2, atol=1e-5, rtol=1e-4)
    assert max(e.map1.max(), e.map2.max()) > 0.999


def test_black_square_outside_the_region_gets_no_credit():
    model = PairModel(RegionEncoder((0, 16, 0, 16)))
    x1, x2 = torch.rand(1, 3, 32, 32) + 0.1, torch.rand(1, 3, 32, 32) + 0.1
    kwargs = {"samples": 6, "seed": 4, "scale": (0.02, 0.05)}
    probe = simexplain.explain(model, x1, x2, "pairwise-occlusion", **kwargs)
    # Rectangles do not depend on the images: find a 3×3 square, outside the region, that no rectangle covers.
    covered = torch.zeros(32, 32, dtype=torch.bool)
    for t, left, h, w in probe.params["rectangles1"].tolist():
        covered[t : t + h, left : left + w] = True
    free = [(r, c) for r in range(16, 29) for c in range(16, 29) if not covered[r : r + 3, c : c + 3].any()]
    assert free, "test setup: every square is covered"
    r, c = free[0]
    x1[:, :, r : r + 3, c : c + 3] = 0  # genuinely black pixels, never erased
    e = simexplain.explain(model, x1, x2, "pairwise-occlusion", **kwargs)
    assert e.map1[0, r : r + 3, c : c + 3].abs().max() == 0
    assert e.map1.max() > 0 or e.map2.max() > 0
    # The model cannot see the square: making it black changes nothing at all.
    torch.testing.assert_close(e.map1, probe.map1)
    torch.testing.assert_close(e.map2, probe.map2)
    # Recovering erased pixels by testing for zeros (the authors' way) would credit the square.
    weights = torch.softmax(e.params["drops"], 1)[0]
    zero_test = sum(float(w) for w, k in zip(weights, e.params["credited"][0]) if k == 1)
    assert zero_test > 0


def test_pairwise_handles_images_of_different_sizes():
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(2, 3, 16, 24), torch.rand(2, 3, 20, 16)
    e = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=8, seed=1)
    assert e.map1.shape == (2, 16, 24) and e.map2.shape == (2, 20, 16)
    top, left, h, w = e.params["rectangles2"].T
    assert (top + h <= 20).all() and (left + w <= 16).all()
    assert torch.isfinite(e.map1).all() and torch.isfinite(e.map2).all()
