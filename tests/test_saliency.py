import json

import pytest
import torch
from tiny import (
    CountingEncoder,
    LinearEncoder,
    SmallCNN,
    analytic_cosine_gradients,
    assert_same_state,
    model_state,
)

import simexplain
from simexplain import IMAGENET, PairModel, SimexplainError
from simexplain.methods.saliency import noise_scale
from simexplain.transforms import Rotation, get_transform

SIZE = 8


def linear_pair(**options):
    encoder = LinearEncoder(size=SIZE)
    return PairModel(encoder, **options), encoder.weight.detach()


def images(batch=2, seed=0, size=SIZE):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(batch, 3, size, size, generator=g, dtype=torch.float64),
        torch.rand(batch, 3, size, size, generator=g, dtype=torch.float64),
    )


def smap(x, g):
    return (x * g).abs().amax(1)


def noise(generator, size=SIZE):
    """One noise tensor as the methods draw it: float32 from the pair's CPU generator, then cast."""
    return torch.randn(3, size, size, generator=generator, dtype=torch.float32).double()


def cnn_pair():
    """A float64 SmallCNN (ReLUs for the guided variants): batched and one-by-one agree to ~1e-15."""
    return PairModel(SmallCNN().double())


def assert_same(a, b, exact=False):
    """Maps, score and extras of two explanations agree (bit for bit when ``exact``)."""
    check = (lambda x, y: torch.equal(x, y)) if exact else None
    for name in ("map1", "map2", "score"):
        x, y = getattr(a, name), getattr(b, name)
        if exact:
            assert check(x, y), name
        else:
            torch.testing.assert_close(x, y)
    assert a.extras.keys() == b.extras.keys()
    for name in a.extras:
        if exact:
            assert torch.equal(a.extras[name], b.extras[name]), name
        else:
            torch.testing.assert_close(a.extras[name], b.extras[name])


# Every random variant of the family: the consequence tests below run on each.
RANDOM_VARIANTS = [
    pytest.param("smooth-grad", {"samples": 3}, id="sg"),
    pytest.param("smooth-grad", {"samples": 3, "shared_noise": False}, id="sg-independent"),
    pytest.param("smooth-grad", {"samples": 3, "guided": True}, id="sg-guided"),
    pytest.param("averaged-transforms", {"steps": 3}, id="at-combine"),
    pytest.param("averaged-transforms", {"steps": 3, "noise": True}, id="at-noise"),
    pytest.param("averaged-transforms", {"steps": 3, "guided": True}, id="at-guided"),
    pytest.param(
        "averaged-transforms",
        {"steps": 3, "mode": "strength", "transform": "color-jitter", "noise": 0.1, "guided": True},
        id="at-strength-noise-guided",
    ),
]


# ------------------------------------------------------------------------------------------------ Smooth-Grad
def test_smooth_grad_with_zero_sigma_is_input_x_gradient():
    model, _ = linear_pair()
    x1, x2 = images(3)
    base = simexplain.explain(model, x1, x2, "input-x-gradient")
    e = simexplain.explain(model, x1, x2, "smooth-grad", sigma=0.0, samples=5, batch_size=4)
    torch.testing.assert_close(e.map1, base.map1)
    torch.testing.assert_close(e.map2, base.map2)
    torch.testing.assert_close(e.score, base.score)


@pytest.mark.parametrize("shared", [True, False])
def test_smooth_grad_one_sample_equals_the_hand_computed_noisy_gradient(shared):
    model, weight = linear_pair()
    x1, x2 = images(2)
    e = simexplain.explain(model, x1, x2, "smooth-grad", samples=1, seed=[7, 8], shared_noise=shared)
    sigma = 0.15 / (x1.flatten(1).amax(1) - x1.flatten(1).amin(1))  # the paper's default, per pair
    for i, seed in enumerate((7, 8)):
        g = torch.Generator().manual_seed(seed)  # pair i's own generator: image 1's noise, then image 2's
        eps1 = noise(g)
        eps2 = eps1 if shared else noise(g)
        n1, n2 = x1[i : i + 1] + sigma[i] * eps1, x2[i : i + 1] + sigma[i] * eps2
        g1, g2 = analytic_cosine_gradients(weight, n1, n2)
        torch.testing.assert_close(
            e.map1[i : i + 1], smap(x1[i : i + 1], g1)
        )  # the map multiplies the CLEAN image
        torch.testing.assert_close(e.map2[i : i + 1], smap(x2[i : i + 1], g2))


def test_smooth_grad_averages_the_samples():
    model, weight = linear_pair()
    x1, x2 = images(1)
    e = simexplain.explain(model, x1, x2, "smooth-grad", samples=3, sigma=0.2, seed=1)
    g, total1, total2 = torch.Generator().manual_seed(1), 0, 0
    for _ in range(3):
        eps = 0.2 * noise(g)
        g1, g2 = analytic_cosine_gradients(weight, x1 + eps, x2 + eps)
        total1, total2 = total1 + g1, total2 + g2
    torch.testing.assert_close(e.map1, smap(x1, total1 / 3))
    torch.testing.assert_close(e.map2, smap(x2, total2 / 3))


def test_default_sigma_is_the_papers():
    x = torch.zeros(2, 3, 4, 4)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 1.0, 4.0
    torch.testing.assert_close(noise_scale(x, None), torch.tensor([0.15, 0.0375]))
    assert noise_scale(torch.ones(1, 3, 2, 2), None).item() == 0  # constant image: no infinite σ
    with pytest.raises(SimexplainError, match="sigma"):
        noise_scale(x, -1.0)


def test_smooth_grad_seeds_reproduce_and_differ():
    model = PairModel(SmallCNN())
    x1, x2 = (x.float() for x in images(2))
    a = simexplain.explain(model, x1, x2, "smooth-grad", samples=4, seed=3)
    b = simexplain.explain(model, x1, x2, "smooth-grad", samples=4, seed=3, batch_size=3)
    c = simexplain.explain(model, x1, x2, "smooth-grad", samples=4, seed=4)
    torch.testing.assert_close(a.map1, b.map1)
    torch.testing.assert_close(a.map2, b.map2)
    assert not torch.allclose(a.map1, c.map1)


def test_smooth_grad_batches_on_the_batch_dimension():
    encoder = CountingEncoder(SmallCNN())
    model = PairModel(encoder)
    x1, x2 = (x.float() for x in images(2))
    simexplain.explain(model, x1, x2, "smooth-grad", samples=10, seed=0, batch_size=8)
    # 2 pairs × 10 samples = 20 noisy pairs = 40 images in chunks of 8, plus one clean forward for the score.
    assert (encoder.calls, encoder.images) == (5 + 1, 40 + 4)


def test_smooth_grad_config_is_resolved():
    model, _ = linear_pair()
    x1, x2 = images(2)
    e = simexplain.explain(model, x1, x2, "smooth-grad", samples=2.0, sigma=1, shared_noise="no", seed=4)
    assert e.config == {"samples": 2, "sigma": 1.0, "shared_noise": False, "guided": False, "seed": 4}
    assert (
        "batch_size" not in simexplain.explain(model, x1, x2, "smooth-grad", samples=1, batch_size=2).config
    )


# ---------------------------------------------------------------------------------------- Averaged Transforms
@pytest.mark.parametrize("mode", ["blend", "strength"])
def test_averaged_transforms_with_identity_is_input_x_gradient(mode):
    model, _ = linear_pair()
    x1, x2 = images(3)
    base = simexplain.explain(model, x1, x2, "input-x-gradient")
    e = simexplain.explain(
        model, x1, x2, "averaged-transforms", transform="identity", steps=4, mode=mode, batch_size=5
    )
    torch.testing.assert_close(e.map1, base.map1)
    torch.testing.assert_close(e.map2, base.map2)
    torch.testing.assert_close(e.score, base.score)


@pytest.mark.parametrize("batch_size", [4, 64])  # image 1 in its own forward / riding in the path's forward
def test_averaged_transforms_blend_path_matches_the_definition(batch_size):
    model, weight = linear_pair(preprocessing=IMAGENET)
    x1, x2 = images(2)
    x1, x2 = IMAGENET.to_model(x1), IMAGENET.to_model(x2)
    steps = 3
    e = simexplain.explain(
        model, x1, x2, "averaged-transforms", transform="grayscale", steps=steps, batch_size=batch_size
    )
    # T(x2) in [0, 1] space, back to model space; m_k = λ_k x2 + (1 − λ_k) T(x2), λ_k = 1 − k/K.
    gray = IMAGENET.to_pixels(x2)
    gray = (gray * torch.tensor([0.2989, 0.587, 0.114], dtype=gray.dtype).view(1, 3, 1, 1)).sum(
        1, keepdim=True
    )
    target = IMAGENET.to_model(gray.expand_as(x2))
    g1 = g2 = 0
    for k in range(1, steps + 1):
        lam = 1 - k / steps
        a, b = analytic_cosine_gradients(weight, x1, lam * x2 + (1 - lam) * target)
        g1, g2 = g1 + a / steps, g2 + b / steps
    torch.testing.assert_close(e.image2, target)
    torch.testing.assert_close(e.extras["image2"], target)
    torch.testing.assert_close(e.map1, smap(x1, g1))
    torch.testing.assert_close(e.map2, smap(target, g2))  # the map of the fully transformed view
    torch.testing.assert_close(e.score, model(x1, target).detach())


@pytest.mark.parametrize("mode", ["blend", "strength"])
def test_one_step_explains_the_transformed_pair(mode):
    model, _ = linear_pair()
    x1, x2 = images(2)
    e = simexplain.explain(model, x1, x2, "averaged-transforms", transform="rotate-90", steps=1, mode=mode)
    rotated = torch.rot90(x2, 1, (-2, -1))
    torch.testing.assert_close(e.image2, rotated)
    base = simexplain.explain(model, x1, rotated, "input-x-gradient")
    torch.testing.assert_close(e.map1, base.map1)
    torch.testing.assert_close(e.map2, base.map2)


def test_strength_mode_rotation_walks_the_angle_and_keeps_the_rotated_view():
    model, weight = linear_pair()
    x1, x2 = images(1)
    e = simexplain.explain(
        model, x1, x2, "averaged-transforms", transform=Rotation(90), steps=3, mode="strength"
    )
    rotation = get_transform("rotate-90")
    g1 = g2 = 0
    for k in (1, 2, 3):
        m = rotation(x2, strength=k / 3)  # 30°, 60°, 90°
        a, b = analytic_cosine_gradients(weight, x1, m)
        g1, g2 = g1 + a / 3, g2 + b / 3
    torch.testing.assert_close(e.image2, torch.rot90(x2, 1, (-2, -1)))
    torch.testing.assert_close(e.map1, smap(x1, g1))
    torch.testing.assert_close(e.map2, smap(e.image2, g2))
    assert e.config["transform"] == "rotate-90"  # a Transform object is recorded by its name


def test_image_one_is_embedded_once_and_the_path_is_batched():
    encoder = CountingEncoder(SmallCNN())
    model = PairModel(encoder)
    x1, x2 = (x.float() for x in images(2, size=16))
    simexplain.explain(model, x1, x2, "averaged-transforms", steps=10, seed=0, batch_size=8)
    assert (encoder.calls, encoder.images) == (1 + 3, 2 + 20)
    encoder.calls = encoder.images = 0
    simexplain.explain(model, x1, x2, "averaged-transforms", steps=10, seed=0, batch_size=22)
    assert (encoder.calls, encoder.images) == (1, 22)  # all fits: x1 rides in the path's forward


@pytest.mark.parametrize(
    "options",
    [
        {"transform": "combine", "noise": True},
        {"transform": "combine", "mode": "strength", "noise": True, "guided": True},
        {"transform": "color-jitter", "guided": True},
    ],
)
def test_averaged_transforms_seeds_reproduce_differ_and_ignore_batch_size(options):
    model = PairModel(SmallCNN())
    x1, x2 = (x.float() for x in images(2, size=16))
    a = simexplain.explain(model, x1, x2, "averaged-transforms", steps=4, seed=0, batch_size=3, **options)
    b = simexplain.explain(model, x1, x2, "averaged-transforms", steps=4, seed=0, batch_size=64, **options)
    c = simexplain.explain(model, x1, x2, "averaged-transforms", steps=4, seed=1, **options)
    for x, y in ((a.map1, b.map1), (a.map2, b.map2), (a.image2, b.image2)):
        torch.testing.assert_close(x, y)
    assert not torch.allclose(a.map2, c.map2)


def test_the_transform_settings_come_from_each_pairs_generator():
    model, _ = linear_pair()
    x1, x2 = images(2)
    e = simexplain.explain(
        model, x1, x2, "averaged-transforms", transform="color-jitter", steps=1, seed=[3, 4]
    )
    jitter = get_transform("color-jitter")
    for i, seed in enumerate((3, 4)):
        settings = jitter.sample(1, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(e.image2[i : i + 1], jitter.apply(x2[i : i + 1], settings))


def test_noise_touches_only_the_intermediate_steps():
    model, _ = linear_pair()
    x1, x2 = images(2)
    clean = simexplain.explain(model, x1, x2, "averaged-transforms", transform="rotate-30", steps=1, seed=0)
    noisy = simexplain.explain(
        model, x1, x2, "averaged-transforms", transform="rotate-30", steps=1, seed=0, noise=True
    )
    torch.testing.assert_close(noisy.map1, clean.map1)  # K = 1: no intermediate step to noise
    noisy3 = simexplain.explain(
        model, x1, x2, "averaged-transforms", transform="rotate-30", steps=3, seed=0, noise=0.5
    )
    clean3 = simexplain.explain(model, x1, x2, "averaged-transforms", transform="rotate-30", steps=3, seed=0)
    torch.testing.assert_close(noisy3.image2, clean3.image2)
    assert not torch.allclose(noisy3.map1, clean3.map1)


def test_noise_words_are_booleans_and_zero_sigma_is_no_noise():
    model, _ = linear_pair()
    x1, x2 = images(2)

    def run(noise):
        return simexplain.explain(
            model, x1, x2, "averaged-transforms", transform="color-jitter", steps=3, seed=2, noise=noise
        )

    clean, off, on, zero = run(False), run("false"), run("true"), run(0)
    assert (off.config["noise"], on.config["noise"], zero.config["noise"]) == (False, True, 0.0)
    assert_same(off, clean, exact=True)
    assert_same(zero, clean)  # σ = 0: the noise is drawn after the settings and scaled away
    assert_same(on, run(True), exact=True)
    assert not torch.allclose(on.map1, clean.map1)


def test_a_callable_transform_works_in_blend_mode_only():
    model, _ = linear_pair()
    x1, x2 = images(1)

    def mirror(p):
        return p.flip(-1)

    e = simexplain.explain(model, x1, x2, "averaged-transforms", transform=mirror, steps=2)
    torch.testing.assert_close(e.image2, x2.flip(-1))
    assert e.config["transform"] == "mirror"  # recorded by name: not reproducible from the JSON alone
    encoder = CountingEncoder(SmallCNN())
    with pytest.raises(SimexplainError, match="strength"):
        simexplain.explain(
            PairModel(encoder), x1, x2, "averaged-transforms", transform=mirror, mode="strength"
        )
    assert encoder.calls == 0  # refused before any forward


# ---------------------------------------------------------------------------------------- per-pair randomness
@pytest.mark.parametrize("method, options", RANDOM_VARIANTS)
def test_a_batch_equals_each_pair_explained_alone(method, options):
    model = cnn_pair()
    x1, x2 = images(5, size=16)
    batched = simexplain.explain(model, x1, x2, method, seed=11, **options)
    for i in range(5):
        assert_same(batched[i], simexplain.explain(model, x1[i], x2[i], method, seed=11, **options))


@pytest.mark.parametrize("method, options", RANDOM_VARIANTS)
def test_batch_size_never_changes_the_maps(method, options):
    model = cnn_pair()
    x1, x2 = images(5, size=16)
    one = simexplain.explain(model, x1, x2, method, seed=2, batch_size=1, **options)
    for batch_size in (8, 64):  # 64: Averaged Transforms' single-forward path
        assert_same(one, simexplain.explain(model, x1, x2, method, seed=2, batch_size=batch_size, **options))


@pytest.mark.parametrize("method, options", RANDOM_VARIANTS)
def test_permuting_the_pairs_permutes_the_maps(method, options):
    model = cnn_pair()
    x1, x2 = images(5, size=16)
    order = [3, 0, 4, 1, 2]
    seeds = [10, 11, 12, 13, 14]
    e = simexplain.explain(model, x1, x2, method, seed=seeds, **options)
    same_seed = simexplain.explain(model, x1, x2, method, seed=9, **options)
    permuted = simexplain.explain(
        model, x1[order], x2[order], method, seed=[seeds[i] for i in order], **options
    )
    permuted_same_seed = simexplain.explain(model, x1[order], x2[order], method, seed=9, **options)
    for position, i in enumerate(order):
        assert_same(permuted[position], e[i])
        assert_same(permuted_same_seed[position], same_seed[i])


@pytest.mark.parametrize("method, options", RANDOM_VARIANTS)
def test_a_seed_list_gives_each_pair_its_own_seed(method, options):
    model = cnn_pair()
    x1, x2 = images(3, size=16)
    e = simexplain.explain(model, x1, x2, method, seed=[5, 6, 7], **options)
    assert e.config["seed"] == [5, 6, 7] and e[1].config["seed"] == [6]
    for i, seed in enumerate((5, 6, 7)):
        assert_same(e[i], simexplain.explain(model, x1[i], x2[i], method, seed=seed, **options))
    assert not torch.allclose(
        e.map1[0], simexplain.explain(model, x1[0], x2[0], method, seed=6, **options).map1[0]
    )


@pytest.mark.parametrize("seed", [None, 3, [1, 2]])
@pytest.mark.parametrize("method, options", RANDOM_VARIANTS)
def test_explaining_again_with_the_config_reproduces_exactly(method, options, seed):
    model = cnn_pair()
    x1, x2 = images(2, size=16)
    e = simexplain.explain(model, x1, x2, method, seed=seed, **options)
    json.dumps(e.config)
    assert isinstance(e.config["seed"], int if seed is None else type(seed))
    again = simexplain.explain(model, x1, x2, e.method, **json.loads(json.dumps(e.config)))
    assert_same(again, e, exact=True)
    assert again.config == e.config


@pytest.mark.parametrize(
    "method, options, expected",
    [
        ("input-x-gradient", {}, {"guided": False}),
        (
            "smooth-grad",
            {},
            {"samples": 50, "sigma": None, "shared_noise": True, "guided": False, "seed": 0},
        ),
        (
            "averaged-transforms",
            {"transform": "solarise", "noise": 0.5},
            {"transform": "solarize", "steps": 10, "mode": "blend", "noise": 0.5, "guided": False, "seed": 0},
        ),
    ],
)
def test_config_holds_every_resolved_setting(method, options, expected):
    model, _ = linear_pair()
    x1, x2 = images(1)
    if "seed" in expected:
        options = {**options, "seed": 0}
    e = simexplain.explain(model, x1, x2, method, **options)
    assert e.config == expected
    json.dumps(e.config)


# --------------------------------------------------------------------------------------------- any-size pairs
def any_size_pair():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 48, 80, generator=g)


@pytest.mark.parametrize(
    "method, options",
    [
        ("input-x-gradient", {}),
        ("input-x-gradient", {"guided": True}),
        ("smooth-grad", {"samples": 2, "shared_noise": False}),
        ("smooth-grad", {"samples": 2, "shared_noise": False, "guided": True}),
        ("averaged-transforms", {"steps": 2, "noise": True}),
        ("averaged-transforms", {"steps": 2, "mode": "strength", "transform": "rotate-30"}),
    ],
)
def test_pairs_of_different_sizes_give_maps_of_each_images_size(method, options):
    model = PairModel(SmallCNN())  # global pooling: any input size
    x1, x2 = any_size_pair()
    if method != "input-x-gradient":
        options = {**options, "seed": 0}
    for batch_size in (4, 64):  # 64 would fit Averaged Transforms' single forward, which needs one size
        if method != "input-x-gradient":
            options["batch_size"] = batch_size
        e = simexplain.explain(model, x1, x2, method, **options)
        assert e.map1.shape == (2, 64, 64) and e.map2.shape == (2, 48, 80)
        if method == "averaged-transforms":
            assert e.image2.shape == (2, 3, 48, 80)
        assert e.map1.abs().sum() > 0 and e.map2.abs().sum() > 0
        first = simexplain.explain(model, x1[:1], x2[:1], method, **options)
        assert_same(e[0], first)


def test_smooth_grad_shared_noise_needs_images_of_one_size():
    encoder = CountingEncoder(SmallCNN())
    x1, x2 = any_size_pair()
    with pytest.raises(SimexplainError, match="use shared_noise=False") as error:
        simexplain.explain(PairModel(encoder), x1, x2, "smooth-grad", samples=2)
    assert "\n" not in str(error.value) and "64×64 and 48×80" in str(error.value)
    assert encoder.calls == 0


# ----------------------------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize(
    "method, options",
    [
        ("input-x-gradient", {"guided": True}),
        ("smooth-grad", {"samples": 3, "seed": 1}),
        ("averaged-transforms", {"steps": 3, "noise": True, "seed": 1}),
    ],
)
def test_float64_and_float16_inputs_meet_a_float32_model_in_its_dtype(method, options):
    model = PairModel(SmallCNN())
    x1, x2 = (x.float() for x in images(2, size=16))
    reference = simexplain.explain(model, x1, x2, method, **options)
    e64 = simexplain.explain(model, x1.double(), x2.double(), method, **options)
    assert e64.map1.dtype == torch.float32
    assert_same(e64, reference)
    h1, h2 = x1.half(), x2.half()
    e16 = simexplain.explain(model, h1, h2, method, **options)
    assert e16.map1.dtype == torch.float32
    assert_same(e16, simexplain.explain(model, h1.float(), h2.float(), method, **options))


# ------------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "method, options, message",
    [
        ("averaged-transforms", {"transform": "warp"}, "unknown transform.*rotate-90"),
        ("averaged-transforms", {"transform": 3}, "transform must be"),
        ("averaged-transforms", {"mode": "path"}, "mode"),
        ("averaged-transforms", {"steps": 0}, "steps"),
        ("averaged-transforms", {"steps": 2.5}, "steps"),
        ("averaged-transforms", {"noise": "loud"}, "noise must be"),
        ("averaged-transforms", {"noise": -0.1}, "noise must be"),
        ("averaged-transforms", {"guided": "maybe"}, "guided"),
        ("averaged-transforms", {"seed": [1, 2, 3]}, "seed holds 3 values for 1 pairs"),
        ("smooth-grad", {"samples": 0}, "samples"),
        ("smooth-grad", {"samples": True}, "samples"),
        ("smooth-grad", {"sigma": -1.0}, "sigma"),
        ("smooth-grad", {"sigma": "big"}, "sigma"),
        ("smooth-grad", {"shared_noise": "sometimes"}, "shared_noise"),
        ("smooth-grad", {"guided": 2}, "guided"),
        ("smooth-grad", {"seed": torch.Generator()}, "torch.Generator"),
        ("smooth-grad", {"seed": -1}, "seed"),
        ("smooth-grad", {"batch_size": 0}, "batch_size"),
        ("input-x-gradient", {"guided": "sure"}, "guided"),
    ],
)
def test_bad_parameters_give_one_line_errors_before_any_forward(method, options, message):
    encoder = CountingEncoder(SmallCNN())
    x1, x2 = (x.float() for x in images(1))
    with pytest.raises(SimexplainError, match=message) as error:
        simexplain.explain(PairModel(encoder), x1, x2, method, **options)
    assert "\n" not in str(error.value)
    assert encoder.calls == 0


def test_the_word_false_is_false():
    model = cnn_pair()
    x1, x2 = images(2, size=16)
    for method, options in (("smooth-grad", {"samples": 2}), ("averaged-transforms", {"steps": 2})):
        plain = simexplain.explain(model, x1, x2, method, seed=0, **options)
        words = simexplain.explain(model, x1, x2, method, seed=0, guided="false", **options)
        assert words.config["guided"] is False
        assert_same(words, plain, exact=True)
        guided = simexplain.explain(model, x1, x2, method, seed=0, guided="true", **options)
        assert guided.config["guided"] is True and not torch.allclose(guided.map1, plain.map1)


def test_methods_leave_the_model_untouched():
    model = PairModel(SmallCNN())
    model.encoder.train()
    before = model_state(model)
    x1, x2 = (x.float() for x in images(1, size=16))
    simexplain.explain(model, x1, x2, "smooth-grad", samples=2, seed=0)
    simexplain.explain(model, x1, x2, "averaged-transforms", steps=2, seed=0, noise=True)
    assert_same_state(before, model_state(model))
