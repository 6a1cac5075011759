"""Differentiable, seeded image transforms with an explicit strength (docs/methods.md, Transforms).

Every transform works on ``B×3×H×W`` tensors of [0, 1] pixels, on any device, and is built from
differentiable tensor operations, so it can act inside a batch (Averaged Transforms) and be reused by the
studies (augmentation dissection, pair making). A transform separates its randomness from its application:

- ``sample(batch, generator=...)`` draws the random settings of ``batch`` images once (a dict of tensors
  with a leading batch dimension);
- ``apply(pixels, params, strength)`` applies them at a strength in [0, 1] (a float or one value per image):
  0 is the identity, 1 the drawn transform, values in between interpolate the transform's own setting
  (rotation angle, jitter factors, blur σ, ...);
- ``transform(pixels, generator=..., strength=1.0)`` does both.

Model-input tensors go through :func:`in_model_space`, which undoes the model's normalisation, transforms in
[0, 1] space and normalises again.

Example:
    >>> import torch
    >>> from simexplain.transforms import get_transform, simclr_view
    >>> x = torch.rand(2, 3, 32, 32)
    >>> get_transform("rotate-90")(x).shape
    torch.Size([2, 3, 32, 32])
    >>> simclr_view(x, generator=torch.Generator().manual_seed(0), size=24).shape
    torch.Size([2, 3, 24, 24])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import SimexplainError
from .preprocessing import Preprocessing

Params = dict[str, Tensor]
Strength = float | Tensor
Seed = int | torch.Generator | None

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # the luma weights of torchvision's rgb_to_grayscale


def make_generator(seed: Seed, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A ``torch.Generator`` from an int seed (on ``device``); a generator is returned as is.

    ``None`` returns ``None``: draws then use torch's global RNG, so ``torch.manual_seed`` still controls
    them.
    """
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SimexplainError(f"seed must be an int, a torch.Generator or None, got {type(seed).__name__}")
    return torch.Generator(device=device).manual_seed(seed)


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    # Draw where the generator lives (a CPU generator cannot fill a CUDA tensor), then move.
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    return low + (high - low) * _rand((n,), generator, device)


def _bernoulli(n: int, p: float, generator: torch.Generator | None, device: torch.device) -> Tensor:
    return _rand((n,), generator, device) < p


def _per_image(value: Strength, x: Tensor) -> Tensor:
    """A strength (float or ``[B]``) as a ``B×1×1×1`` tensor for broadcasting."""
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if value.dim() == 0:
        value = value.expand(x.shape[0])
    if value.shape != (x.shape[0],):
        raise SimexplainError(
            f"strength must be a float or one value per image ({x.shape[0]}), got {tuple(value.shape)}"
        )
    return value.view(-1, 1, 1, 1)


def _gated(apply: Tensor, strength: Strength, x: Tensor) -> Tensor:
    """The per-image strength ``[B]``, 0 for the images whose ``apply`` flag is false."""
    s = _per_image(strength, x).view(-1)
    return torch.where(apply, s, torch.zeros_like(s))


def _where(flag: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(flag.view(-1, 1, 1, 1), a, b)


# ------------------------------------------------------------------------------------------------- primitives
def grayscale(pixels: Tensor) -> Tensor:
    """Luma replicated on 3 channels."""
    w = torch.tensor(_GRAY_WEIGHTS, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels * w).sum(1, keepdim=True).expand_as(pixels)


def adjust_brightness(pixels: Tensor, factor: Tensor) -> Tensor:
    """``clamp(x·f)`` with one factor per image."""
    return (pixels * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(pixels: Tensor, factor: Tensor) -> Tensor:
    """Blend with the mean grey level of each image (torchvision's definition)."""
    mean = grayscale(pixels)[:, :1].mean((-2, -1), keepdim=True)
    f = factor.view(-1, 1, 1, 1)
    return (f * pixels + (1 - f) * mean).clamp(0, 1)


def adjust_saturation(pixels: Tensor, factor: Tensor) -> Tensor:
    """Blend with the grayscale image."""
    f = factor.view(-1, 1, 1, 1)
    return (f * pixels + (1 - f) * grayscale(pixels)).clamp(0, 1)


def adjust_hue(pixels: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue by ``shift`` turns (in [-0.5, 0.5]) per image; differentiable almost everywhere."""
    r, g, b = pixels.unbind(1)
    high, _ = pixels.max(1)
    low, _ = pixels.min(1)
    span = high - low
    safe = torch.where(span > 0, span, torch.ones_like(span))
    sat = torch.where(
        high > 0, span / torch.where(high > 0, high, torch.ones_like(high)), torch.zeros_like(high)
    )
    # Hue in sixths of a turn, by which channel is the maximum (ties resolved r, then g, then b).
    hue_r = ((g - b) / safe) % 6
    hue_g = (b - r) / safe + 2
    hue_b = (r - g) / safe + 4
    hue = torch.where(high == r, hue_r, torch.where(high == g, hue_g, hue_b))
    hue = torch.where(span > 0, hue / 6, torch.zeros_like(hue))
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    # HSV → RGB with the smooth "k" formulation: channel n = v − v·s·clamp(min(k, 4 − k), 0, 1).
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + hue * 6) % 6
        out.append(high - high * sat * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(out, 1)


def gaussian_blur(pixels: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with one σ per image (σ ≤ 0 leaves the image unchanged); reflect padding.

    On images smaller than the kernel, the kernel is cut to the largest one reflect padding allows.
    """
    b, c, h, w = pixels.shape
    radius = min(kernel_size // 2, min(h, w) - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=pixels.dtype, device=pixels.device)
    sigma = sigma.to(pixels.dtype).view(-1, 1)
    safe = sigma.clamp_min(1e-6)
    kernel = torch.exp(-0.5 * (offsets / safe) ** 2)
    delta = (offsets == 0).to(pixels.dtype).expand_as(kernel)
    kernel = torch.where(sigma > 0, kernel / kernel.sum(1, keepdim=True), delta)
    kernel = kernel.repeat_interleave(c, 0)  # (B·C)×K, one kernel per channel of each image
    flat = pixels.reshape(1, b * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(b * c, 1, 1, -1), groups=b * c)
    flat = F.conv2d(flat, kernel.view(b * c, 1, -1, 1), groups=b * c)
    return flat.view(b, c, h, w)


def rotate(pixels: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image by its angle (counter-clockwise, degrees) about the centre; corners filled with 0."""
    theta = torch.deg2rad(degrees.to(pixels.dtype))
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    h, w = pixels.shape[-2:]
    # affine_grid works in normalised coordinates; correct the aspect ratio so non-square images rotate
    # rigidly.
    matrix = torch.stack(
        [torch.stack([cos, -sin * h / w, zero], -1), torch.stack([sin * w / h, cos, zero], -1)], 1
    )
    grid = F.affine_grid(matrix, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def solarize(pixels: Tensor, threshold: Tensor) -> Tensor:
    """Invert the pixels at or above ``threshold`` (one per image)."""
    return torch.where(pixels >= threshold.view(-1, 1, 1, 1), 1 - pixels, pixels)


def _blend(pixels: Tensor, target: Tensor, strength: Strength) -> Tensor:
    s = _per_image(strength, pixels)
    return (1 - s) * pixels + s * target


# ------------------------------------------------------------------------------------------------- transforms
class Transform:
    """A seeded transform with a strength in [0, 1] (0 = identity, 1 = the drawn transform).

    Subclasses implement :meth:`sample` (random settings, one row per image) and :meth:`apply`.

    Example:
        >>> import torch
        >>> t = ColorJitter(0.8, 0.8, 0.8, 0.4)
        >>> x = torch.rand(1, 3, 8, 8)
        >>> params = t.sample(1, generator=torch.Generator().manual_seed(0))
        >>> torch.equal(t.apply(x, params, 0.0), x)
        True
    """

    name = "transform"

    def sample(
        self, batch: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> Params:
        """Random settings of ``batch`` images (none for deterministic transforms)."""
        return {}

    def apply(self, pixels: Tensor, params: Mapping[str, Tensor], strength: Strength = 1.0) -> Tensor:
        raise SimexplainError(f"transform {self.name!r} does not define apply()")

    def __call__(self, pixels: Tensor, *, generator: Seed = None, strength: Strength = 1.0) -> Tensor:
        """Draw settings for every image and apply them at ``strength``."""
        generator = make_generator(generator, pixels.device)
        return self.apply(
            pixels, self.sample(pixels.shape[0], generator=generator, device=pixels.device), strength
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Identity(Transform):
    """Leaves images unchanged (tests and baselines)."""

    name = "identity"

    def apply(self, pixels: Tensor, params: Mapping[str, Tensor], strength: Strength = 1.0) -> Tensor:
        return pixels


class ColorJitter(Transform):
    """torchvision-style colour jitter: brightness, contrast, saturation factors ``U(1 − a, 1 + a)`` and a hue
    shift ``U(−h, h)``, applied in a random order per image, with probability ``p``.

    Strength ``s`` moves each factor from 1 towards its drawn value (``1 + s·(f − 1)``) and the hue shift
    from 0.
    """

    def __init__(
        self,
        brightness: float = 0.8,
        contrast: float = 0.8,
        saturation: float = 0.8,
        hue: float = 0.4,
        p: float = 1.0,
    ) -> None:
        if not 0 <= hue <= 0.5:
            raise SimexplainError(f"hue must lie in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue, self.p = (
            brightness,
            contrast,
            saturation,
            hue,
            p,
        )
        self.name = "color-jitter"

    def sample(
        self, batch: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> Params:
        device = torch.device(device)

        def factor(amount: float) -> Tensor:
            return _uniform(batch, max(0.0, 1 - amount), 1 + amount, generator, device)

        return {
            "apply": _bernoulli(batch, self.p, generator, device),
            "order": _rand((batch, 4), generator, device).argsort(1),
            "brightness": factor(self.brightness),
            "contrast": factor(self.contrast),
            "saturation": factor(self.saturation),
            "hue": _uniform(batch, -self.hue, self.hue, generator, device),
        }

    def apply(self, pixels: Tensor, params: Mapping[str, Tensor], strength: Strength = 1.0) -> Tensor:
        s = _per_image(strength, pixels).view(-1)
        ops = (
            lambda x: adjust_brightness(x, 1 + s * (params["brightness"] - 1)),
            lambda x: adjust_contrast(x, 1 + s * (params["contrast"] - 1)),
            lambda x: adjust_saturation(x, 1 + s * (params["saturation"] - 1)),
            lambda x: adjust_hue(x, s * params["hue"]),
        )
        out = pixels
        for position in range(4):
            step = params["order"][:, position]
            # Each image runs its own op at this position; the others pass through unchanged. No `.any()` test
            # to skip an op nobody chose: it would cost a device-to-host sync per op and position.
            for index, op in enumerate(ops):
                out = _where(step == index, op(out), out)
        # Keep strength 0 the exact identity even where clamping would change out-of-range inputs.
        return _where(params["apply"] & (s > 0), out, pixels)


class GaussianBlur(Transform):
    """Gaussian blur, kernel ``kernel_size``, σ fixed or ``U(sigma_range)``, with probability ``p``.

    Strength ``s`` scales σ (``s = 0`` is the identity).
    """

    def __init__(
        self, kernel_size: int = 11, sigma: float | tuple[float, float] = 5.0, p: float = 1.0
    ) -> None:
        if kernel_size % 2 != 1 or kernel_size < 1:
            raise SimexplainError(f"kernel_size must be an odd positive integer, got {kernel_size}")
        self.kernel_size, self.p = kernel_size, p
        self.sigma_range = (sigma, sigma) if isinstance(sigma, int | float) else tuple(sigma)
        self.name = "blur"

    def sample(
        self, batch: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> Params:
        device = torch.device(device)
        return {
            "apply": _bernoulli(batch, self.p, generator, device),
            "sigma": _uniform(batch, *self.sigma_range, generator, device),
        }

    def apply(self, pixels: Tensor, params: Mapping[str, Tensor], strength: Strength = 1.0) -> Tensor:
        sigma = _gated(params["apply"], strength, pixels) * params["sigma"].to(pixels.dtype)
        if not (sigma > 0).any():
            return pixels
        return gaussian_blur(pixels, sigma, self.kernel_size)


class Grayscale(Transform):
    """3-channel grayscale with probability ``p``; strength blends towards it."""

    def __init__(self, p: float = 1.0) -> None:
        self.p = p
        self.name = "grayscale"

    def sample(
        self, batch: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> Params:
        return {"apply": _bernoulli(batch, self.p, generator, torch.device(device))}

    def apply(self, pixels: Tensor, params: Mapping[str, Tensor], strength: Strength = 1.0) -> Tensor:
        return _blend(pixels, grayscale(pixels), _gated(params["apply"], strength, pixels))


class Solarize(Transform):
    """Invert pixels at or above ``threshold`` (0.5 of the [0, 1] range); strength moves the threshold from
    above 1 (nothing inverted) down to ``threshold``."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.name = "solarize"

    def apply(self, pixels: Tensor, params: Mapping[str, Tensor], strength: Strength = 1.0) -> Tensor:
        s = _per_image(strength, pixels).view(-1)
        level = 1 - (1 - self.threshold) * s
        return _where(s > 0, solarize(pixels, level), pixels)


class Rotation(Transform):
    """Rotation by ``degrees`` (counter-clockwise); strength ``s`` rotates by ``s·degrees``."""

    def __init__(self, degrees: float) -> None:
        self.degrees = float(degrees)
        self.name = f"rotate-{degrees:g}"

    def apply(self, pixels: Tensor, params: Mapping[str, Tensor], strength: Strength = 1.0) -> Tensor:
        angle = _per_image(strength, pixels).view(-1) * self.degrees
        return _where(angle != 0, rotate(pixels, angle), pixels)


class HorizontalFlip(Transform):
    """Mirror left–right with probability ``p``. A flip has no intermediate geometric setting, so a
    strength in between blends the image with its mirror."""

    def __init__(self, p: float = 1.0) -> None:
        self.p = p
        self.name = "hflip"

    def sample(
        self, batch: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> Params:
        return {"apply": _bernoulli(batch, self.p, generator, torch.device(device))}

    def apply(self, pixels: Tensor, params: Mapping[str, Tensor], strength: Strength = 1.0) -> Tensor:
        return _blend(pixels, pixels.flip(-1), _gated(params["apply"], strength, pixels))


class Compose(Transform):
    """Transforms applied in sequence, all at the same strength; settings drawn in order."""

    def __init__(self, *transforms: Transform, name: str = "compose") -> None:
        self.transforms = transforms
        self.name = name

    def sample(
        self, batch: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> Params:
        params: Params = {}
        for i, t in enumerate(self.transforms):
            params.update(
                {f"{i}.{k}": v for k, v in t.sample(batch, generator=generator, device=device).items()}
            )
        return params

    def apply(self, pixels: Tensor, params: Mapping[str, Tensor], strength: Strength = 1.0) -> Tensor:
        for i, t in enumerate(self.transforms):
            own = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"{i}.")}
            pixels = t.apply(pixels, own, strength)
        return pixels


def combine() -> Compose:
    """The SimCLR colour pipeline without crop: jitter 0.8/0.8/0.8/0.2 (p 0.8), grayscale (p 0.2),
    blur kernel 21 σ ~ U(0.1, 2) (p 0.5)."""
    return Compose(
        ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8),
        Grayscale(p=0.2),
        GaussianBlur(21, (0.1, 2.0), p=0.5),
        name="combine",
    )


# --------------------------------------------------------------------------------------------------- registry
_TRANSFORMS: dict[str, Callable[[], Transform]] = {
    "identity": Identity,
    "combine": combine,
    "color-jitter": lambda: ColorJitter(0.8, 0.8, 0.8, 0.4),
    "blur": lambda: GaussianBlur(11, 5.0),
    "grayscale": Grayscale,
    "solarize": Solarize,
    "rotate-30": lambda: Rotation(30),
    "rotate-60": lambda: Rotation(60),
    "rotate-90": lambda: Rotation(90),
    "rotate-180": lambda: Rotation(180),
    "hflip": HorizontalFlip,
}
_ALIASES = {
    "jitter": "color-jitter",
    "colour-jitter": "color-jitter",
    "solarise": "solarize",
    "gray": "grayscale",
    "greyscale": "grayscale",
    "flip": "hflip",
}


def available_transforms() -> list[str]:
    """The names :func:`get_transform` knows (the single-transform study of Table VII plus ``combine``)."""
    return list(_TRANSFORMS)


def get_transform(name: str | Transform) -> Transform:
    """A fresh transform by name (a :class:`Transform` is returned as is).

    Example:
        >>> get_transform("solarise").name
        'solarize'
    """
    if isinstance(name, Transform):
        return name
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in _TRANSFORMS:
        raise SimexplainError(f"unknown transform {name!r}; known: {', '.join(_TRANSFORMS)}")
    return _TRANSFORMS[key]()


def in_model_space(
    transform: Transform,
    x: Tensor,
    params: Mapping[str, Tensor],
    strength: Strength,
    preprocessing: Preprocessing,
) -> Tensor:
    """Apply a pixel-space transform to model-input tensors: undo the normalisation, transform, redo it."""
    return preprocessing.to_model(transform.apply(preprocessing.to_pixels(x), params, strength))


# ------------------------------------------------------------------------------------------------ SimCLR view
def _crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop sampling (10 tries, then a centre crop of clamped aspect ratio)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2, generator=generator, device=generator.device if generator else "cpu").tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            corner = torch.rand(
                2, generator=generator, device=generator.device if generator else "cpu"
            ).tolist()
            top = min(int(corner[0] * (height - h + 1)), height - h)
            left = min(int(corner[1] * (width - w + 1)), width - w)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    pixels: Tensor,
    size: int | tuple[int, int],
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: Seed = None,
) -> Tensor:
    """A random crop per image (area fraction ``scale``, aspect ``ratio``) resized to ``size``
    (antialiased)."""
    generator = make_generator(generator, "cpu")
    size = (size, size) if isinstance(size, int) else tuple(size)
    crops = []
    for image in pixels:
        top, left, h, w = _crop_box(image.shape[-2], image.shape[-1], scale, ratio, generator)
        patch = image[None, :, top : top + h, left : left + w]
        crops.append(F.interpolate(patch, size=size, mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(crops)


def simclr_view(pixels: Tensor, *, generator: Seed = None, size: int | tuple[int, int] = 224) -> Tensor:
    """One SimCLR augmentation of each image (the paper's evaluation pairs; docs/methods.md, Transforms).

    RandomResizedCrop to ``size`` with scale (0.08, 1), horizontal flip (p 0.5), colour jitter 0.8/0.8/0.8/0.2
    (p 0.8), grayscale (p 0.2), Gaussian blur kernel 21 with σ ~ U(0.1, 2) (p 0.5). Takes and returns [0, 1]
    pixels ``B×3×H×W``; differentiable; the same generator state gives the same views.

    Example:
        >>> import torch
        >>> x = torch.rand(1, 3, 64, 64)
        >>> a = simclr_view(x, generator=torch.Generator().manual_seed(3), size=32)
        >>> torch.equal(a, simclr_view(x, generator=torch.Generator().manual_seed(3), size=32))
        True
    """
    if pixels.dim() == 3:
        pixels = pixels.unsqueeze(0)
    if pixels.dim() != 4 or pixels.shape[1] != 3:
        raise SimexplainError(f"simclr_view needs B×3×H×W pixels, got shape {tuple(pixels.shape)}")
    generator = make_generator(generator, "cpu")
    view = random_resized_crop(pixels, size, generator=generator)
    colour = Compose(
        HorizontalFlip(p=0.5),
        ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8),
        Grayscale(p=0.2),
        GaussianBlur(21, (0.1, 2.0), p=0.5),
        name="simclr",
    )
    return colour.apply(view, colour.sample(view.shape[0], generator=generator, device=view.device), 1.0)


__all__ = [
    "ColorJitter",
    "Compose",
    "GaussianBlur",
    "Grayscale",
    "HorizontalFlip",
    "Identity",
    "Rotation",
    "Solarize",
    "Transform",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "available_transforms",
    "combine",
    "gaussian_blur",
    "get_transform",
    "grayscale",
    "in_model_space",
    "make_generator",
    "random_resized_crop",
    "rotate",
    "simclr_view",
    "solarize",
]
