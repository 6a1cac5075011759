"""Conditional and Pairwise Occlusion (docs/methods.md, Perturbation): analytic checks on tiny models
whose answers are known, per-pair randomness, the config contract and pairs of different sizes."""

import json
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
    assert e.extras["window1"].tolist() == [[12, 16]]
    assert e.grid1.shape == (1, 1, 2) and e.map1.shape == (1, 12, 20)
    assert e.extras["row_starts1"].tolist() == [[0]] and e.extras["col_starts1"].tolist() == [[0, 4]]
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
        ("conditional-occlusion", {"window": 8.7}),  # once silently ran with 8
        ("conditional-occlusion", {"stride": True}),
        ("conditional-occlusion", {"window": "8"}),
        ("conditional-occlusion", {"window": 4, "stride": 6}),  # would leave uncovered pixels
        ("conditional-occlusion", {"batch_size": 0}),
        ("pairwise-occlusion", {"scale": (0.3, 0.1)}),
        ("pairwise-occlusion", {"scale": 0.2}),
        ("pairwise-occlusion", {"ratio": (0, 1)}),
        ("pairwise-occlusion", {"temperature": 0}),
        ("pairwise-occlusion", {"temperature": float("nan")}),
        ("pairwise-occlusion", {"samples": 0}),
        ("pairwise-occlusion", {"samples": 2.5}),
        ("pairwise-occlusion", {"fill": "paint"}),
        ("pairwise-occlusion", {"seed": -1}),
        ("pairwise-occlusion", {"seed": [1, 2]}),  # two seeds for one pair
        ("pairwise-occlusion", {"seed": torch.Generator()}),
    ],
)
def test_bad_parameters_give_one_line_errors_before_any_forward(method, params):
    encoder = CountingEncoder(SmallCNN())
    model = PairModel(encoder)
    with pytest.raises(SimexplainError) as error:
        simexplain.explain(model, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), method, **params)
    assert "\n" not in str(error.value)
    assert encoder.calls == 0


def test_integral_floats_are_accepted_and_recorded_as_ints():
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    floats = simexplain.explain(model, x1, x2, "conditional-occlusion", window=8.0, stride=4.0)
    ints = simexplain.explain(model, x1, x2, "conditional-occlusion", window=8, stride=4)
    assert floats.config == ints.config == {"window": 8, "stride": 4, "fill": "zero", "output": "pixels"}
    assert isinstance(floats.config["window"], int)
    assert torch.equal(floats.map1, ints.map1)
    pw = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=6.0, seed=1, scale=(0.1, 0.2))
    assert pw.config == {
        "samples": 6,
        "scale": [0.1, 0.2],
        "ratio": [1.0, 1.5],
        "fill": "zero",
        "temperature": 1.0,
        "credit": "norm",
        "ridge": 0.1,
        "seed": 1,
    }


# ---------------------------------------------------------------------------------------------- the contract
REPLAYED = [
    ("conditional-occlusion", {"window": 6, "stride": 5, "fill": "mean"}),
    ("conditional-occlusion", {"window": 8, "stride": 8, "output": "grid"}),
    ("pairwise-occlusion", {"samples": 8, "seed": 3, "fill": "blur", "temperature": 0.5}),
    ("pairwise-occlusion", {"samples": 8, "seed": [4, 5, 6]}),
    ("pairwise-occlusion", {"samples": 8}),  # seedless: the drawn seed is recorded
]


def assert_same_explanation(a, b):
    for name in ("map1", "map2", "score", "grid1", "grid2"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or torch.equal(x, y), name
    assert a.method == b.method and a.config == b.config
    assert a.extras.keys() == b.extras.keys()
    for name in a.extras:
        assert torch.equal(a.extras[name], b.extras[name]), name


@pytest.mark.parametrize("method, params", REPLAYED)
def test_the_config_is_json_and_reproduces_the_explanation_exactly(method, params):
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    e = simexplain.explain(model, x1, x2, method, **params)
    assert json.loads(json.dumps(e.config)) == e.config
    assert "batch_size" not in e.config
    for name, tensor in e.extras.items():
        assert tensor.shape[0] == 3, name
    assert_same_explanation(simexplain.explain(model, x1, x2, e.method, **e.config), e)
    # One pair of the batch replays alone from its own slice of the config.
    one = e[1]
    alone = simexplain.explain(model, x1[1:2], x2[1:2], one.method, **one.config)
    torch.testing.assert_close(alone.map1, one.map1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(alone.map2, one.map2, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- randomness
def double_pairs(b: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(b)
    shape = (b, 3, size, size)
    return (
        torch.rand(shape, generator=generator, dtype=torch.float64),
        torch.rand(shape, generator=generator, dtype=torch.float64),
    )


def test_pairwise_batch_of_five_equals_each_pair_alone_for_one_seed_and_for_a_seed_list():
    # Float64, so that batched and single forwards agree far below any credit decision.
    model = PairModel(SmallCNN().double())
    x1, x2 = double_pairs(5)
    seeds = [10, 11, 12, 13, 14]
    for seed, pick in ((9, lambda i: 9), (seeds, lambda i: seeds[i])):
        batched = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=12, seed=seed, batch_size=6)
        for i in range(5):
            single = simexplain.explain(
                model, x1[i : i + 1], x2[i : i + 1], "pairwise-occlusion", samples=12, seed=pick(i)
            )
            assert torch.equal(batched.extras["rectangles1"][i], single.extras["rectangles1"][0])
            assert torch.equal(batched.extras["rectangles2"][i], single.extras["rectangles2"][0])
            assert torch.equal(batched.extras["credited"][i], single.extras["credited"][0])
            torch.testing.assert_close(batched.map1[i], single.map1[0], atol=1e-12, rtol=1e-10)
            torch.testing.assert_close(batched.map2[i], single.map2[0], atol=1e-12, rtol=1e-10)


def test_one_int_seed_gives_every_pair_the_same_rectangles_and_a_seed_list_gives_each_its_own():
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    shared = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=6, seed=2)
    rects = shared.extras["rectangles1"]
    assert torch.equal(rects[0], rects[1]) and torch.equal(rects[0], rects[2])
    own = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=6, seed=[2, 3, 4])
    assert own.config["seed"] == [2, 3, 4] and own[1].config["seed"] == [3]
    assert torch.equal(own.extras["rectangles1"][0], rects[0])  # pair 0 has seed 2 in both calls
    assert not torch.equal(own.extras["rectangles1"][1], own.extras["rectangles1"][2])
    assert not torch.equal(own.extras["rectangles2"][1], rects[1])


@pytest.mark.parametrize(
    "method, params",
    [
        ("conditional-occlusion", {"window": 6, "stride": 4, "fill": "blur"}),
        ("pairwise-occlusion", {"samples": 10, "seed": 5}),
        ("pairwise-occlusion", {"samples": 10, "seed": [5, 6, 7, 8, 9]}),
    ],
)
def test_batch_size_one_and_eight_agree_and_permuting_pairs_permutes_maps(method, params):
    model = PairModel(SmallCNN().double())
    x1, x2 = double_pairs(5)
    small = simexplain.explain(model, x1, x2, method, batch_size=1, **params)
    large = simexplain.explain(model, x1, x2, method, batch_size=8, **params)
    for name in ("map1", "map2", "score"):
        torch.testing.assert_close(getattr(small, name), getattr(large, name), atol=1e-12, rtol=1e-10)
    assert small.config == large.config
    order = [3, 0, 4, 2, 1]
    if isinstance(params.get("seed"), list):
        params = {**params, "seed": [params["seed"][i] for i in order]}
    permuted = simexplain.explain(model, x1[order], x2[order], method, batch_size=8, **params)
    torch.testing.assert_close(permuted.map1, large.map1[order], atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(permuted.map2, large.map2[order], atol=1e-12, rtol=1e-10)
    for name, tensor in large.extras.items():
        if tensor.dtype in (torch.long, torch.uint8):
            assert torch.equal(permuted.extras[name], tensor[order]), name


@pytest.mark.parametrize(
    "method, params",
    [
        ("conditional-occlusion", {"window": 16, "stride": 16}),
        ("pairwise-occlusion", {"samples": 6, "seed": 0}),
    ],
)
def test_a_shared_encoder_explains_pairs_of_two_sizes(method, params):
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 48, 80)
    e = simexplain.explain(model, x1, x2, method, **params)
    assert e.map1.shape == (2, 64, 64) and e.map2.shape == (2, 48, 80)
    assert torch.isfinite(e.map1).all() and torch.isfinite(e.map2).all()
    assert e.map1.abs().max() > 0 and e.map2.abs().max() > 0
    torch.testing.assert_close(e.score, model.similarity(model.embed(x1), model.embed(x2)).detach())
    if method == "pairwise-occlusion":
        top, left, h, w = e.extras["rectangles2"].reshape(-1, 4).T
        assert (top + h <= 48).all() and (left + w <= 80).all()
    else:
        assert e.grid1.shape == (2, 4, 4) and e.grid2.shape == (2, 3, 5)
        assert e.extras["col_starts2"].tolist() == [[0, 16, 32, 48, 64]] * 2


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
    assert torch.equal(a.map1, b.map1) and torch.equal(a.extras["rectangles2"], b.extras["rectangles2"])
    assert not torch.equal(a.extras["rectangles1"], c.extras["rectangles1"])
    fresh = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=10)
    assert isinstance(fresh.config["seed"], int)  # the drawn seed is recorded
    again = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=10, seed=fresh.config["seed"])
    assert torch.equal(fresh.map2, again.map2)


def test_pairwise_matches_a_direct_loop_over_samples():
    torch.manual_seed(2)
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    e = simexplain.explain(
        model, x1, x2, "pairwise-occlusion", samples=9, seed=11, temperature=0.05, batch_size=4
    )
    assert e.extras["rectangles1"].shape == e.extras["rectangles2"].shape == (2, 9, 4)
    assert e.extras["drops"].shape == e.extras["credited"].shape == (2, 9)
    clean = model(x1, x2).detach()
    maps1, maps2 = torch.zeros(2, 16, 16), torch.zeros(2, 16, 16)
    drops, first = torch.zeros(2, 9), torch.zeros(2, 9, dtype=torch.bool)
    for b in range(2):
        boxes = zip(e.extras["rectangles1"][b].tolist(), e.extras["rectangles2"][b].tolist())
        for n, ((t1, l1, h1, w1), (t2, l2, h2, w2)) in enumerate(boxes):
            p1, p2 = x1[b : b + 1].clone(), x2[b : b + 1].clone()
            p1[:, :, t1 : t1 + h1, l1 : l1 + w1] = 0
            p2[:, :, t2 : t2 + h2, l2 : l2 + w2] = 0
            z1, z2 = model.embed(p1).detach(), model.embed(p2).detach()
            drops[b, n] = clean[b] - model.similarity(z1, z2)[0]
            first[b, n] = z1.norm() < z2.norm()
    torch.testing.assert_close(e.extras["drops"], drops, atol=1e-6, rtol=1e-5)
    assert torch.equal(e.extras["credited"] == 1, first)
    weights = torch.softmax(drops / 0.05, 1)
    for b in range(2):
        boxes = zip(e.extras["rectangles1"][b].tolist(), e.extras["rectangles2"][b].tolist())
        for n, ((t1, l1, h1, w1), (t2, l2, h2, w2)) in enumerate(boxes):
            maps1[b, t1 : t1 + h1, l1 : l1 + w1] += weights[b, n] * first[b, n]
            maps2[b, t2 : t2 + h2, l2 : l2 + w2] += weights[b, n] * ~first[b, n]
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
    for t, left, h, w in probe.extras["rectangles1"][0].tolist():
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
    weights = torch.softmax(e.extras["drops"], 1)[0]
    zero_test = sum(float(w) for w, k in zip(weights, e.extras["credited"][0]) if k == 1)
    assert zero_test > 0


def test_pairwise_handles_images_of_different_sizes():
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(2, 3, 16, 24), torch.rand(2, 3, 20, 16)
    e = simexplain.explain(model, x1, x2, "pairwise-occlusion", samples=8, seed=1)
    assert e.map1.shape == (2, 16, 24) and e.map2.shape == (2, 20, 16)
    top, left, h, w = e.extras["rectangles2"].reshape(-1, 4).T
    assert (top + h <= 20).all() and (left + w <= 16).all()
    assert torch.isfinite(e.map1).all() and torch.isfinite(e.map2).all()
