import pytest
import torch
import torchvision.transforms.functional as TF

from simexplain import IMAGENET, SimexplainError
from simexplain.transforms import (
    ColorJitter,
    GaussianBlur,
    Rotation,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    available_transforms,
    combine,
    gaussian_blur,
    get_transform,
    in_model_space,
    simclr_view,
)


def pixels(batch=3, size=16, seed=0, dtype=torch.float64):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("name", available_transforms())
def test_strength_zero_is_the_identity_and_strength_one_the_transform(name):
    x = pixels()
    t = get_transform(name)
    params = t.sample(3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(t.apply(x, params, 0.0), x)
    assert t.apply(x, params, 1.0).shape == x.shape
    if name not in ("identity", "combine"):  # combine may draw "apply nothing" for an image
        assert not torch.allclose(t.apply(x, params, 1.0), x)


def test_deterministic_transforms_match_their_definitions():
    x = pixels()
    torch.testing.assert_close(
        get_transform("rotate-90")(x), torch.rot90(x, 1, (-2, -1))
    )  # counter-clockwise
    torch.testing.assert_close(get_transform("rotate-180")(x), x.flip(-1, -2))
    torch.testing.assert_close(
        get_transform("rotate-30")(x), TF.rotate(x, 30.0, TF.InterpolationMode.BILINEAR)
    )
    torch.testing.assert_close(get_transform("hflip")(x), x.flip(-1))
    torch.testing.assert_close(get_transform("grayscale")(x), TF.rgb_to_grayscale(x, 3))
    torch.testing.assert_close(get_transform("solarise")(x), TF.solarize(x, 0.5))
    torch.testing.assert_close(get_transform("blur")(x), TF.gaussian_blur(x, [11, 11], [5.0, 5.0]))


def test_colour_operations_match_torchvision():
    x = pixels(2, dtype=torch.float32)
    f = torch.tensor([0.4, 1.7])
    for mine, theirs in (
        (adjust_brightness, TF.adjust_brightness),
        (adjust_contrast, TF.adjust_contrast),
        (adjust_saturation, TF.adjust_saturation),
    ):
        expected = torch.stack([theirs(x[i], f[i].item()) for i in range(2)])
        torch.testing.assert_close(mine(x, f), expected, atol=1e-5, rtol=0)
    shift = torch.tensor([0.3, -0.15])
    expected = torch.stack([TF.adjust_hue(x[i], shift[i].item()) for i in range(2)])
    torch.testing.assert_close(adjust_hue(x, shift), expected, atol=1e-5, rtol=0)
    sigma = torch.tensor([0.5, 1.8])
    expected = torch.stack([TF.gaussian_blur(x[i], [7, 7], [sigma[i].item()] * 2) for i in range(2)])
    torch.testing.assert_close(gaussian_blur(x, sigma, 7), expected)


def test_per_image_strength_interpolates_the_setting():
    x = pixels(2)
    rotation = Rotation(90)
    out = rotation.apply(x, {}, torch.tensor([0.0, 0.5], dtype=x.dtype))
    assert torch.equal(out[0], x[0])
    torch.testing.assert_close(out[1:], TF.rotate(x[1:], 45.0, TF.InterpolationMode.BILINEAR))
    blur = GaussianBlur(5, 2.0)
    torch.testing.assert_close(
        blur.apply(x, blur.sample(2), 0.25), gaussian_blur(x, torch.tensor([0.5, 0.5]), 5)
    )


def test_jitter_strength_moves_the_factors_from_one():
    jitter = ColorJitter(0.8, 0.8, 0.8, 0.4)
    params = jitter.sample(4, generator=torch.Generator().manual_seed(0))
    params["order"] = torch.arange(4).expand(4, 4)  # brightness, contrast, saturation, hue
    x = pixels(4)
    half = {
        **params,
        "brightness": 1 + 0.5 * (params["brightness"] - 1),
        "contrast": 1 + 0.5 * (params["contrast"] - 1),
        "saturation": 1 + 0.5 * (params["saturation"] - 1),
        "hue": 0.5 * params["hue"],
    }
    torch.testing.assert_close(jitter.apply(x, params, 0.5), jitter.apply(x, half, 1.0))


def test_seeds_reproduce_and_differ():
    x = pixels(8)
    t = combine()
    a = t(x, generator=torch.Generator().manual_seed(0))
    b = t(x, generator=0)
    c = t(x, generator=1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_combine_draws_the_simclr_probabilities():
    params = combine().sample(4000, generator=torch.Generator().manual_seed(0))
    for key, p in (("0.apply", 0.8), ("1.apply", 0.2), ("2.apply", 0.5)):
        assert abs(params[key].double().mean().item() - p) < 0.03, key
    assert params["2.sigma"].min() >= 0.1 and params["2.sigma"].max() <= 2.0
    assert params["0.hue"].abs().max() <= 0.2


def test_transforms_are_differentiable():
    x = pixels(2, size=32).requires_grad_(True)
    for t in (combine(), get_transform("rotate-60"), get_transform("color-jitter")):
        (grad,) = torch.autograd.grad(t(x, generator=0).sum(), x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    (grad,) = torch.autograd.grad(simclr_view(x, generator=0, size=16).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_in_model_space_transforms_pixels_not_normalised_values():
    x = pixels(2)
    model_x = IMAGENET.to_model(x)
    t = get_transform("grayscale")
    torch.testing.assert_close(
        in_model_space(t, model_x, {"apply": torch.tensor([True, True])}, 1.0, IMAGENET),
        IMAGENET.to_model(TF.rgb_to_grayscale(x, 3)),
    )


def test_simclr_view_shapes_ranges_and_seeds():
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    a = simclr_view(x, generator=torch.Generator().manual_seed(9), size=24)
    assert a.shape == (2, 3, 24, 24) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, simclr_view(x, generator=9, size=24))
    assert not torch.equal(a, simclr_view(x, generator=10, size=24))
    assert simclr_view(x[0], generator=0, size=(20, 30)).shape == (1, 3, 20, 30)
    with pytest.raises(SimexplainError, match="B×3×H×W"):
        simclr_view(torch.rand(2, 1, 8, 8))


def test_unknown_names_list_the_known_ones():
    with pytest.raises(SimexplainError, match="known: identity, combine"):
        get_transform("warp")
    assert get_transform("jitter").name == "color-jitter"


@pytest.mark.parametrize("name", ["grayscale", "hflip", "blur"])
def test_the_apply_flag_gates_each_image(name):
    x = pixels(2)
    t = get_transform(name)
    params = {**t.sample(2, generator=torch.Generator().manual_seed(0)), "apply": torch.tensor([True, False])}
    out = t.apply(x, params, 1.0)
    assert torch.equal(out[1], x[1])  # not drawn: unchanged
    assert not torch.allclose(out[0], x[0])
    torch.testing.assert_close(out[:1], t.apply(x[:1], {k: v[:1] for k, v in params.items()}, 1.0))
