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


# ---------------------------------------------------------------------------------------------------- Smooth-Grad
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
    e = simexplain.explain(model, x1, x2, "smooth-grad", samples=1, seed=7, shared_noise=shared)
    g = torch.Generator().manual_seed(7)
    sigma = 0.15 / (x1.flatten(1).amax(1) - x1.flatten(1).amin(1))  # the paper's default, per pair
    for i in range(2):
        eps1 = torch.randn(3, SIZE, SIZE, generator=g, dtype=torch.float64)
        eps2 = eps1 if shared else torch.randn(3, SIZE, SIZE, generator=g, dtype=torch.float64)
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
        eps = 0.2 * torch.randn(3, SIZE, SIZE, generator=g, dtype=torch.float64)
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
    x1, x2 = images(2)
    x1, x2 = x1.float(), x2.float()
    a = simexplain.explain(model, x1, x2, "smooth-grad", samples=4, seed=3)
    b = simexplain.explain(model, x1, x2, "smooth-grad", samples=4, seed=3, batch_size=3)
    c = simexplain.explain(model, x1, x2, "smooth-grad", samples=4, seed=4)
    torch.testing.assert_close(a.map1, b.map1)
    torch.testing.assert_close(a.map2, b.map2)
    assert not torch.allclose(a.map1, c.map1)


def test_smooth_grad_batched_equals_one_by_one_with_the_generator_passed_along():
    model = PairModel(SmallCNN())
    x1, x2 = (x.float() for x in images(3))
    batched = simexplain.explain(
        model, x1, x2, "smooth-grad", samples=3, seed=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    for i in range(3):
        single = simexplain.explain(model, x1[i], x2[i], "smooth-grad", samples=3, seed=g)
        torch.testing.assert_close(batched.map1[i : i + 1], single.map1)
        torch.testing.assert_close(batched.map2[i : i + 1], single.map2)


def test_smooth_grad_batches_on_the_batch_dimension():
    encoder = CountingEncoder(SmallCNN())
    model = PairModel(encoder)
    x1, x2 = (x.float() for x in images(2))
    simexplain.explain(model, x1, x2, "smooth-grad", samples=10, seed=0, batch_size=8)
    # 2 pairs × 10 samples = 20 noisy pairs = 40 images in chunks of 8, plus one clean forward for the score.
    assert (encoder.calls, encoder.images) == (5 + 1, 40 + 4)


# ---------------------------------------------------------------------------------------------------- Averaged Transforms
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


def test_averaged_transforms_batched_equals_one_by_one():
    model = PairModel(SmallCNN())
    x1, x2 = (x.float() for x in images(3, size=16))
    batched = simexplain.explain(
        model, x1, x2, "averaged-transforms", transform="rotate-60", mode="strength", steps=3
    )
    for i in range(3):
        single = simexplain.explain(
            model, x1[i], x2[i], "averaged-transforms", transform="rotate-60", mode="strength", steps=3
        )
        torch.testing.assert_close(batched.map1[i : i + 1], single.map1)
        torch.testing.assert_close(batched.map2[i : i + 1], single.map2)


def test_a_callable_transform_works_in_blend_mode_only():
    model, _ = linear_pair()
    x1, x2 = images(1)
    e = simexplain.explain(model, x1, x2, "averaged-transforms", transform=lambda p: p.flip(-1), steps=2)
    torch.testing.assert_close(e.image2, x2.flip(-1))
    with pytest.raises(SimexplainError, match="strength"):
        simexplain.explain(model, x1, x2, "averaged-transforms", transform=lambda p: p, mode="strength")


def test_bad_parameters_give_clear_errors():
    model, _ = linear_pair()
    x1, x2 = images(1)
    with pytest.raises(SimexplainError, match="unknown transform.*rotate-90"):
        simexplain.explain(model, x1, x2, "averaged-transforms", transform="warp")
    with pytest.raises(SimexplainError, match="mode"):
        simexplain.explain(model, x1, x2, "averaged-transforms", mode="path")
    with pytest.raises(SimexplainError, match="steps"):
        simexplain.explain(model, x1, x2, "averaged-transforms", steps=0)
    with pytest.raises(SimexplainError, match="noise must be"):
        simexplain.explain(model, x1, x2, "averaged-transforms", noise="yes")
    with pytest.raises(SimexplainError, match="samples"):
        simexplain.explain(model, x1, x2, "smooth-grad", samples=0)


def test_methods_leave_the_model_untouched():
    model = PairModel(SmallCNN())
    model.encoder.train()
    before = model_state(model)
    x1, x2 = (x.float() for x in images(1, size=16))
    simexplain.explain(model, x1, x2, "smooth-grad", samples=2, seed=0)
    simexplain.explain(model, x1, x2, "averaged-transforms", steps=2, seed=0, noise=True)
    assert_same_state(before, model_state(model))
