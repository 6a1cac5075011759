"""Saliency family (docs/methods.md, Saliency): maps ``max_c |x ⊙ G|`` from input gradients of the
pair score.

Input×Gradient, Smooth-Grad and Averaged Transforms, each with a guided "(G)" variant (``guided=True``, see
:mod:`simexplain.methods.guided`). Noise samples and path steps go on the batch dimension in chunks of at most
``batch_size`` images per forward; one backward of the summed scores gives every sample's gradient (the scores
of different samples are independent) and parameters are frozen, so no parameter gradient is ever computed.

Randomness: ``seed`` is an int (every pair), one int per pair, or ``None`` (one int drawn from torch's
global RNG and recorded in ``config``). Pair ``i`` draws everything from its own CPU generator seeded with
its seed, in a fixed order, and the draws are then moved to the model's device and dtype: a pair's map depends
only on its two images, the settings and its seed, never on ``batch_size``, the other pairs or its position in
the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from .. import checks
from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..pair import PairModel
from ..preprocessing import Preprocessing
from ..transforms import Transform, get_transform, in_model_space
from .common import saliency_map, scores_and_input_gradients
from .guided import GuidedBackprop, guided_backprop
from .registry import register, register_margin, register_one_to_many

PAPER_NOISE_LEVEL = 0.15
MODES = ("blend", "strength")


@contextmanager
def _guidance(model: PairModel, guided: bool) -> Iterator[GuidedBackprop | None]:
    if guided:
        with guided_backprop(model) as guide:
            yield guide
    else:
        yield None


def noise_scale(x1: Tensor, sigma: float | None) -> Tensor:
    """Per-pair noise σ ``[B]``: ``sigma`` itself, or the paper's default ``0.15 / (max(x1) − min(x1))``.

    The default is what the authors' code used (about 0.15 on [0, 1] inputs, about 0.033 on
    ImageNet-normalised ones); the conventional SmoothGrad scale would be ``0.15 · (max − min)``: pass it as
    ``sigma`` to get it. A constant image 1 gets σ = 0 rather than an infinite one.

    Example:
        >>> x = torch.zeros(2, 3, 4, 4)
        >>> x[:, 0, 0, 0] = torch.tensor([0.5, 1.0])  # spans 0.5 and 1
        >>> noise_scale(x, None), noise_scale(x, 0.1)
        (tensor([0.3000, 0.1500]), tensor([0.1000, 0.1000]))
    """
    if sigma is None:
        flat = x1.flatten(1)
        span = flat.amax(1) - flat.amin(1)
        return torch.where(
            span > 0, PAPER_NOISE_LEVEL / span.clamp_min(torch.finfo(span.dtype).tiny), torch.zeros_like(span)
        )
    sigma = checks.non_negative_number("sigma", sigma)
    return torch.full((x1.shape[0],), sigma, dtype=x1.dtype, device=x1.device)


def _gaussian(shape: torch.Size, generator: torch.Generator) -> Tensor:
    """Standard normal noise from a pair's CPU generator, drawn in float32 whatever the model's dtype, so the
    noise of a pair is the same on every device and dtype (the caller moves it)."""
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def _on(tensors: Sequence[Tensor], like: Tensor) -> Tensor:
    """CPU draws stacked and moved to ``like``'s device and dtype."""
    return torch.stack(list(tensors)).to(device=like.device, dtype=like.dtype)


def _add_per_pair(total: Tensor, part: slice, per_pair: int, values: Tensor) -> None:
    """Add the rows of ``values`` (items ``part`` of a pair-major list, ``per_pair`` items per pair) to their
    pairs' rows of ``total``. Summed run by run, in item order: unlike ``index_add_`` (atomics on CUDA), the
    result is the same on every run."""
    for pair in range(part.start // per_pair, (part.stop - 1) // per_pair + 1):
        start = max(part.start, pair * per_pair) - part.start
        stop = min(part.stop, (pair + 1) * per_pair) - part.start
        total[pair] += values[start:stop].sum(0)


def _item_pairs(part: slice, per_pair: int, device: torch.device) -> tuple[list[int], Tensor]:
    """The pair of each item in ``part``, as a list (for the CPU generators) and as an index on ``device``."""
    pairs = [item // per_pair for item in range(part.start, part.stop)]
    return pairs, torch.tensor(pairs, device=device)


@register("input-x-gradient", "saliency", "Input×Gradient of the pair score (baseline)")
def input_x_gradient(
    model: PairModel, x1: Tensor, x2: Tensor, *, guided: checks.Flag = False
) -> PairExplanation:
    """``S_k = max_c |x_k ⊙ ∂s/∂x_k|`` for both images from one forward and one backward of all pairs
    (docs/methods.md, Input×Gradient).

    Args:
        guided: guided backprop, the "(G)" variant (``True``/``False`` or the words true/false/yes/no/1/0).

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> encoder = nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.ReLU(), nn.Linear(8, 4))
        >>> model = simexplain.PairModel(encoder)
        >>> e = simexplain.explain(model, torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), guided=True)
        >>> e.map1.shape, e.config
        (torch.Size([2, 4, 4]), {'guided': True})
    """
    with _guidance(model, guided):
        scores, g1, g2 = scores_and_input_gradients(model, x1, x2)
    return _input_x_gradient_explanation(x1, x2, scores, g1, g2, guided)


def _input_x_gradient_explanation(
    x1: Tensor, x2: Tensor, scores: Tensor, g1: Tensor, g2: Tensor, guided: bool
) -> PairExplanation:
    """The Input×Gradient explanation of the pairs from their scores and input gradients."""
    return PairExplanation(
        map1=saliency_map(x1, g1),
        map2=saliency_map(x2, g2),
        score=scores,
        method="input-x-gradient",
        config={"guided": guided},
    )


def _image1_gradients(model: PairModel, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Scores of the ``K`` pairs ``(x1, x2[k])`` for ONE image 1 with ``∂s_k/∂x1`` (``K×3×H×W``) and
    ``∂s_k/∂x2[k]``: image 1 is embedded once, its ``K`` gradients come from one backward vectorised over the
    scores."""
    image1, images2 = x1.detach().requires_grad_(True), x2.detach().requires_grad_(True)
    with torch.enable_grad():
        z1 = model.embed(image1, "a")
        scores = model.similarity(z1.expand(len(images2), -1), model.embed(images2, "b"))
        (g2,) = torch.autograd.grad(scores.sum(), images2, retain_graph=True)
        eye = torch.eye(len(scores), dtype=scores.dtype, device=scores.device)
        (g1,) = torch.autograd.grad(scores, image1, eye, is_grads_batched=True)
    return scores.detach(), g1[:, 0], g2


@register_one_to_many("input-x-gradient")
def _input_x_gradient_one_to_many(
    model: PairModel, x1: Tensor, x2: Tensor, *, embeddings: object, guided: bool
) -> PairExplanation:
    """Input×Gradient of ``K`` pairs sharing image 1, embedding it once (:func:`_image1_gradients`)."""
    with _guidance(model, guided):
        scores, g1, g2 = _image1_gradients(model, x1, x2)
    return _input_x_gradient_explanation(x1, x2, scores, g1, g2, guided)


@register_margin("input-x-gradient")
def _input_x_gradient_margin(
    model: PairModel, q: Tensor, b: Tensor, w: Tensor, *, guided: bool
) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
    """``max_c |x ⊙ ∂margin/∂x|`` on the query, the better and the worse image, margin
    ``s(q, b) − s(q, w)``: one forward of the query, one of ``[b; w]``."""
    if guided:
        raise SimexplainError("explain_margin does not take guided=True")
    q, b, w = (x.detach().requires_grad_(True) for x in (q, b, w))
    with torch.enable_grad():
        zq = model.embed(q, "a")
        scores = model.similarity(torch.cat([zq, zq]), model.embed(torch.cat([b, w]), "b"))
        margin = scores[: len(q)] - scores[len(q) :]
        gq, gb, gw = torch.autograd.grad(margin.sum(), (q, b, w))
    return (saliency_map(q, gq), saliency_map(b, gb), saliency_map(w, gw)), scores.detach()


@register(
    "smooth-grad", "saliency", "Smooth-Grad: gradients averaged over noisy copies of the pair (baseline)"
)
def smooth_grad(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    samples: checks.Samples = 50,
    sigma: Annotated["float | None", checks.optional(checks.non_negative_number)] = None,
    shared_noise: checks.Flag = True,
    guided: checks.Flag = False,
    seed: checks.SeedSetting = None,
    batch_size: checks.BatchSize = None,
) -> PairExplanation:
    """Smooth-Grad of the pair score: ``G_k = mean_n ∂s(x1 + ε1_n, x2 + ε2_n)/∂x_k``, map
    ``max_c |x_k ⊙ G_k|`` (docs/methods.md, Smooth-Grad).

    Args:
        samples: noisy copies per pair (paper: 50).
        sigma: absolute noise σ in model-input units; ``None`` = the paper's ``0.15 / (max(x1) − min(x1))``,
            computed per pair.
        shared_noise: add the same noise to both images (the paper; needs images of one size) or independent
            noise.
        guided: guided backprop, the "(G)" variant.
        seed: an int (every pair), one int per pair, or ``None`` (drawn from torch's global RNG and recorded
            in ``config``). Pair ``i``'s generator draws, sample by sample, the noise of image 1 then
            (independent noise only) of image 2.
        batch_size: images per forward (``batch_size // 2`` noisy pairs per chunk); ``None`` = 8 on a CPU, 64
            on a GPU. The maps do not depend on it.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(48, 4)))
        >>> x = torch.rand(1, 3, 4, 4)
        >>> e = simexplain.explain(model, x, x.flip(-1), "smooth-grad", samples=8, seed=0)
        >>> e.map1.shape, e.config["seed"], e.config["samples"]
        (torch.Size([1, 4, 4]), 0, 8)
    """
    batch_size = resolve_batch_size(batch_size, x1.device)
    if shared_noise and x1.shape[1:] != x2.shape[1:]:
        sizes = f"{x1.shape[-2]}×{x1.shape[-1]} and {x2.shape[-2]}×{x2.shape[-1]}"
        raise SimexplainError(
            f"shared_noise=True adds one noise tensor to both images, but they differ in size ({sizes}); "
            "use shared_noise=False"
        )
    config_seed, pair_seeds = checks.seeds(seed, x1.shape[0])
    generators = checks.generators(pair_seeds)
    scale = noise_scale(x1, sigma).view(-1, 1, 1, 1)
    with _guidance(model, guided) as guide:
        grad1, grad2 = _noisy_gradients(
            model, guide, (x1, x2), scale, generators, samples, shared_noise, batch_size
        )
    with torch.no_grad():
        clean = model(x1, x2)
    return PairExplanation(
        map1=saliency_map(x1, grad1 / samples),
        map2=saliency_map(x2, grad2 / samples),
        score=clean,
        method="smooth-grad",
        config={
            "samples": samples,
            "sigma": sigma,
            "shared_noise": shared_noise,
            "guided": guided,
            "seed": config_seed,
        },
    )


def _noisy_gradients(
    model: PairModel,
    guide: GuidedBackprop | None,
    pair: tuple[Tensor, Tensor],
    scale: Tensor,
    generators: list[torch.Generator],
    samples: int,
    shared_noise: bool,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """The gradients of both images summed over ``samples`` noisy copies of each pair. Items are (pair,
    sample) in pair-major order; a chunk holds ``batch_size // 2`` noisy pairs (2 images each)."""
    x1, x2 = pair
    grad1, grad2 = torch.zeros_like(x1), torch.zeros_like(x2)
    for part in chunk_slices(x1.shape[0] * samples, max(1, batch_size // 2)):
        pairs, index = _item_pairs(part, samples, x1.device)
        eps1, eps2 = [], []
        for i in pairs:  # each pair's draws in sample order, from its own generator
            eps1.append(_gaussian(x1.shape[1:], generators[i]))
            eps2.append(eps1[-1] if shared_noise else _gaussian(x2.shape[1:], generators[i]))
        noisy1 = (x1[index] + scale[index] * _on(eps1, x1)).requires_grad_(True)
        noisy2 = (x2[index] + scale[index] * _on(eps2, x2)).requires_grad_(True)
        with torch.enable_grad():
            scores = model(noisy1, noisy2)
            if guide is not None:
                guide.check()
            g1, g2 = torch.autograd.grad(scores.sum(), (noisy1, noisy2))
        _add_per_pair(grad1, part, samples, g1)
        _add_per_pair(grad2, part, samples, g2)
    return grad1, grad2


@register_one_to_many("smooth-grad")
def _smooth_grad_one_to_many(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    embeddings: tuple[Tensor, Tensor] | None,
    samples: int,
    sigma: float | None,
    shared_noise: bool,
    guided: bool,
    seed: int | list[int] | None,
    batch_size: int | None,
) -> PairExplanation | None:
    """Smooth-Grad of ``K`` pairs sharing image 1 and one seed: every pair then draws the same noise, so each
    noisy copy of image 1 is embedded once and differentiated for the ``K`` pairs in one vectorised backward.
    ``None`` (nothing to share) for one seed per pair, or images of two sizes with ``shared_noise``."""
    count = x2.shape[0]
    if (shared_noise and x1.shape[1:] != x2.shape[1:]) or (isinstance(seed, list) and len(set(seed)) > 1):
        return None
    config_seed, pair_seeds = checks.seeds(seed, count)
    generator = checks.generators(pair_seeds[:1])[0]  # every pair's generator: one seed, the same draws
    scale, size = noise_scale(x1, sigma).view(1, 1, 1, 1), resolve_batch_size(batch_size, x1.device)
    grad1, grad2 = x1.new_zeros(count, *x1.shape[1:]), torch.zeros_like(x2)
    with _guidance(model, guided) as guide:
        for _ in range(samples):  # a pair's draws in sample order: image 1's noise, then image 2's
            noise1 = _on([_gaussian(x1.shape[1:], generator)], x1)
            noise2 = noise1 if shared_noise else _on([_gaussian(x2.shape[1:], generator)], x2)
            noisy1 = (x1 + scale * noise1).requires_grad_(True)
            with torch.enable_grad():
                z1 = model.embed(noisy1, "a")
                if guide is not None:
                    guide.check()
                grad_z1 = _partner_gradients(model, z1.detach(), x2 + scale * noise2, grad2, size)
                (g1,) = torch.autograd.grad(z1, noisy1, grad_z1.unsqueeze(1), is_grads_batched=True)
            grad1 += g1[:, 0]
    with torch.no_grad():
        z1, z2 = embeddings if embeddings is not None else (model.embed(x1, "a"), model.embed(x2, "b"))
        score = model.similarity(z1.expand(count, -1), z2)
    config = {"samples": samples, "sigma": sigma, "shared_noise": shared_noise, "guided": guided}
    return PairExplanation(
        map1=saliency_map(x1.expand_as(grad1), grad1 / samples),
        map2=saliency_map(x2, grad2 / samples),
        score=score,
        method="smooth-grad",
        config={**config, "seed": config_seed},
    )


def _partner_gradients(model: PairModel, z1: Tensor, noisy2: Tensor, grad2: Tensor, size: int) -> Tensor:
    """For one embedded image 1 (``1×E``, detached) and ``K`` partner images: adds ``∂s_k/∂x2[k]`` to
    ``grad2`` and returns ``∂s_k/∂z1`` (``K×E``), ``size`` partners per forward."""
    grad_z1 = []
    for part in chunk_slices(noisy2.shape[0], size):
        images2 = noisy2[part].detach().requires_grad_(True)
        leaf = z1.expand(part.stop - part.start, -1).clone().requires_grad_(True)
        scores = model.similarity(leaf, model.embed(images2, "b"))
        gz, g2 = torch.autograd.grad(scores.sum(), (leaf, images2))
        grad2[part] += g2
        grad_z1.append(gz)
    return torch.cat(grad_z1)


class _CallableTransform(Transform):
    """A user's ``pixels -> pixels`` function as a transform, at full strength only (blend mode: it has no
    strength, which :func:`_resolve_transform` checks before any forward)."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", "callable")

    def apply(self, pixels: Tensor, params: dict, strength: float | Tensor = 1.0) -> Tensor:
        return self.fn(pixels)


def _resolve_transform(transform: str | Transform | Callable[[Tensor], Tensor], mode: str) -> Transform:
    """The transform object; its type was checked by the registry (:func:`_transform_setting`)."""
    if isinstance(transform, str | Transform):
        return get_transform(transform)
    wrapped = _CallableTransform(transform)
    if mode != "blend":
        raise SimexplainError(
            f"transform {wrapped.name!r} is a plain callable without a strength; use mode='blend' or a "
            "simexplain.transforms.Transform"
        )
    return wrapped


def _noise_setting(name: str, noise: Any) -> bool | float:
    """``noise`` as ``True``/``False`` (also from the words true/false/yes/no) or a non-negative σ."""
    if isinstance(noise, bool | str):
        try:
            return checks.boolean(name, noise)
        except SimexplainError:
            pass
    elif isinstance(noise, int | float) and noise >= 0:
        return checks.non_negative_number(name, noise)
    raise SimexplainError(
        f"{name} must be true, false or a non-negative σ (model-input units), got {noise!r}"
    )


def _transform_setting(name: str, transform: Any) -> str | Transform | Callable[[Tensor], Tensor]:
    """A transform name known to :func:`simexplain.transforms.get_transform`, a Transform or a callable."""
    if isinstance(transform, str):
        get_transform(transform)  # an unknown name fails here, with the list of known ones
        return transform
    if isinstance(transform, Transform) or callable(transform):
        return transform
    raise SimexplainError(f"{name} must be a name, a Transform or a callable, got {type(transform).__name__}")


def _pair_settings(
    t: Transform, generators: list[torch.Generator], device: torch.device
) -> dict[str, Tensor]:
    """Each pair's random transform settings drawn from its own generator, then joined along the batch."""
    drawn = [t.sample(1, generator=g) for g in generators]
    return {name: torch.cat([d[name] for d in drawn]).to(device) for name in drawn[0]}


def _path_points(
    t: Transform, x2: Tensor, target: Tensor | None, settings: dict[str, Tensor], fraction: Tensor, pre
) -> Tensor:
    """Path points ``m`` at ``fraction = k/K`` (``N×1×1×1``) of the images ``x2`` (one row per item): blended
    towards ``target = T(x2)`` (blend mode), or the transform at that strength (``target`` ``None``)."""
    if target is not None:
        m = (1 - fraction) * x2 + fraction * target
        return torch.where(fraction == 1, target, m)  # m_K is exactly T(x2)
    return in_model_space(t, x2, settings, fraction.view(-1), pre)


def transform_path(
    model: PairModel,
    x2: Tensor,
    *,
    transform: str | Transform = "combine",
    steps: int = 10,
    mode: str = "blend",
    seed: int | Sequence[int] | None = None,
) -> Tensor:
    """The path Averaged Transforms walks for image 2: ``B×(K+1)×C×H×W``, ``x2`` then ``m_1 … m_K``
    (model-input space), drawn from the same per-pair seeds as the method, so ``transform_path(model, x2,
    **e.config)[:, -1]`` is ``e.image2`` for an explanation ``e`` without noise (the (N) variant's noise is
    not drawn here).

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)))
        >>> transform_path(model, torch.rand(2, 3, 8, 8), transform="hflip", steps=4).shape
        torch.Size([2, 5, 3, 8, 8])
    """
    steps = checks.positive_int("steps", steps)
    mode = checks.choice("mode", mode, MODES)
    t = _resolve_transform(_transform_setting("transform", transform), mode)
    batch = x2.shape[0]
    _, pair_seeds = checks.seeds(seed, batch)
    settings = _pair_settings(t, checks.generators(pair_seeds), x2.device)
    pre = model.preprocessing
    with torch.no_grad():
        target = in_model_space(t, x2, settings, 1.0, pre) if mode == "blend" else None
        points = [x2]
        for k in range(1, steps + 1):
            fraction = torch.full((batch, 1, 1, 1), k / steps, device=x2.device, dtype=x2.dtype)
            points.append(_path_points(t, x2, target, settings, fraction, pre))
    return torch.stack(points, 1)


@register(
    "averaged-transforms",
    "saliency",
    "Averaged Transforms: gradients averaged along a path from image 2 to its transformation (proposed)",
)
def averaged_transforms(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    transform: Annotated["str | Transform | Callable[[Tensor], Tensor]", _transform_setting] = "combine",
    steps: checks.Steps = 10,
    mode: Annotated[str, checks.one_of(MODES)] = "blend",
    noise: Annotated["bool | float", _noise_setting] = False,
    guided: checks.Flag = False,
    seed: checks.SeedSetting = None,
    batch_size: checks.BatchSize = None,
) -> PairExplanation:
    """Averaged Transforms: image 2 moves towards ``T(x2)`` in ``steps`` steps; gradients averaged over the
    path (docs/methods.md, Averaged Transforms).

    ``s_k = sim(f(x1), f(m_k))``, ``G1 = mean_k ∂s_k/∂x1``, ``G2 = mean_k ∂s_k/∂m_k``;
    ``S1 = max_c |x1 ⊙ G1|`` and ``S2 = max_c |m_K ⊙ G2|``: the second map belongs to the fully transformed
    view ``m_K``, kept as ``extras["image2"]`` (``e.image2``, model-input space), and ``score`` is ``s_K``,
    the score of the pair the maps describe.

    Args:
        transform: a name from :func:`simexplain.transforms.available_transforms` (default ``"combine"``, the
            SimCLR colour pipeline), a :class:`~simexplain.transforms.Transform`, or a callable on [0, 1]
            pixels ``B×3×H×W`` (blend mode only). Pixel-space transforms run in [0, 1] space. ``config``
            records the transform's name: a user's Transform or callable cannot be rebuilt from the JSON
            alone (pass the object again).
        steps: path length ``K`` (paper: 10).
        mode: ``"blend"`` (the authors' implementation: ``m_k = λ_k·x2 + (1 − λ_k)·T(x2)``,
            ``λ_k = 1 − k/K``) or ``"strength"`` (``m_k = T_{k/K}(x2)``: the transform at strength ``k/K``,
            e.g. rotation by ``k/K·θ``).
        noise: the "(N)" variant: each intermediate ``m_k`` (``k < K``) gets its own Gaussian noise; ``True``
            uses the paper's σ (as Smooth-Grad's default), a number is an absolute σ; the words true/false
            are accepted.
        guided: guided backprop, the "(G)" variant (combinable with ``noise``).
        seed: an int (every pair), one int per pair, or ``None`` (drawn and recorded in ``config``). Pair
            ``i``'s generator first draws its transform settings (once: every step uses them), then the noise
            of its intermediate steps in step order.
        batch_size: path images per forward; ``None`` = 8 on a CPU, 64 on a GPU. The maps do not depend on it.

    Cost: image 1 is embedded ONCE and differentiated ONCE: its gradient is the Jacobian-transpose of ``f`` at
    ``x1`` applied to the mean of the per-step embedding gradients; the path costs ``K`` image forwards and
    backwards, batched. With a shared encoder, images of one size and ``B·(K + 1) ≤ batch_size``, image 1
    rides in the same forward as the path and one backward gives everything.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)))
        >>> x = torch.rand(1, 3, 16, 16)
        >>> e = simexplain.explain(model, x, x, "averaged-transforms", transform="rotate-90", mode="strength")
        >>> e.image2.shape, e.config["transform"]
        (torch.Size([1, 3, 16, 16]), 'rotate-90')
    """
    batch_size = resolve_batch_size(batch_size, x1.device)
    t = _resolve_transform(transform, mode)
    batch = x1.shape[0]
    config_seed, pair_seeds = checks.seeds(seed, batch)
    config = {
        "transform": t.name,
        "steps": steps,
        "mode": mode,
        "noise": noise,
        "guided": guided,
        "seed": config_seed,
    }
    path = _Path.drawn(model, t, x1, x2, steps, mode, noise, checks.generators(pair_seeds))
    with _guidance(model, guided) as guide, torch.enable_grad():
        if model.shared and x1.shape[1:] == x2.shape[1:] and batch * (steps + 1) <= batch_size:
            return _path_in_one_forward(model, guide, x1, path, config)
        return _path_in_chunks(model, guide, x1, path, batch_size, config)


@dataclass
class _Path:
    """Averaged Transforms' walk of image 2: each pair's transform settings (and, in blend mode, its target
    ``T(x2)``), drawn once, and the (N) variant's noise σ per pair (``None``: no noise)."""

    t: Transform
    x2: Tensor
    steps: int
    settings: dict[str, Tensor]
    target: Tensor | None
    sigma: Tensor | None
    generators: list[torch.Generator]
    pre: Preprocessing | None

    @classmethod
    def drawn(
        cls,
        model: PairModel,
        t: Transform,
        x1: Tensor,
        x2: Tensor,
        steps: int,
        mode: str,
        noise: bool | float,
        generators: list[torch.Generator],
    ) -> _Path:
        """Each pair's generator first draws its transform settings (every step uses them)."""
        pre = model.preprocessing
        settings = _pair_settings(t, generators, x2.device)
        sigma = None if noise is False else noise_scale(x1, None if noise is True else noise)
        with torch.no_grad():
            target = in_model_space(t, x2, settings, 1.0, pre) if mode == "blend" else None
        return cls(t, x2, steps, settings, target, sigma, generators, pre)

    def points(self, part: slice) -> Tensor:
        """Path points ``m_k`` of the items ``part`` (pair-major ``(pair, k)``), noised for ``k < K`` in the
        (N) variant: built without a graph, returned as a leaf that requires its gradient."""
        x2, steps = self.x2, self.steps
        pairs, pair = _item_pairs(part, steps, x2.device)
        ks = [item % steps + 1 for item in range(part.start, part.stop)]
        fraction = (torch.tensor(ks, device=x2.device, dtype=x2.dtype) / steps).view(-1, 1, 1, 1)
        own = {n: v[pair] for n, v in self.settings.items()}
        target = None if self.target is None else self.target[pair]
        with torch.no_grad():
            m = _path_points(self.t, x2[pair], target, own, fraction, self.pre)
            if self.sigma is not None:
                # Each pair's generator, after its settings: one noise tensor per intermediate step, in order.
                eps = [
                    _gaussian(x2.shape[1:], self.generators[i]) if k < steps else torch.zeros(x2.shape[1:])
                    for i, k in zip(pairs, ks, strict=True)
                ]
                m = m + self.sigma[pair].view(-1, 1, 1, 1) * _on(eps, x2)
        return m.requires_grad_(True)


def _path_in_one_forward(
    model: PairModel, guide: GuidedBackprop | None, x1: Tensor, path: _Path, config: dict[str, Any]
) -> PairExplanation:
    """Everything in one forward ``[x1; m_1..m_K]`` of a shared encoder: ONE backward of the summed ``s_k``
    gives both gradients, autograd adding the K embedding gradients of ``z1`` (an expand: a deterministic
    sum) before differentiating ``f`` once."""
    batch, steps = x1.shape[0], path.steps
    image1 = x1.detach().requires_grad_(True)
    everything = slice(0, batch * steps)
    m = path.points(everything)
    z = model.embed(torch.cat([image1, m]), "a")
    if guide is not None:
        guide.check()
    z1 = z[:batch].unsqueeze(1).expand(batch, steps, z.shape[1]).reshape(batch * steps, -1)
    s = model.similarity(z1, z[batch:])
    grad1, grad_m = torch.autograd.grad(s.sum(), (image1, m))
    grad2 = torch.zeros_like(path.x2)
    _add_per_pair(grad2, everything, steps, grad_m)

    def last_steps(values: Tensor) -> Tensor:
        """The rows of step ``K`` of each pair, from values over all ``B·K`` items."""
        return values.view(batch, steps, *values.shape[1:])[:, -1]

    return _at_explanation(
        x1, grad1 / steps, last_steps(m.detach()), grad2 / steps, last_steps(s.detach()), config
    )


def _path_in_chunks(
    model: PairModel,
    guide: GuidedBackprop | None,
    x1: Tensor,
    path: _Path,
    batch_size: int,
    config: dict[str, Any],
) -> PairExplanation:
    """Image 1 embedded once, the path in chunks of ``batch_size`` images: the graph is cut at ``z1`` (the
    path only needs ``∂s_k/∂z1``, summed here) and ``x1`` is differentiated once at the end."""
    batch, steps, x2 = x1.shape[0], path.steps, path.x2
    image1 = x1.detach().requires_grad_(True)
    z1 = model.embed(image1, "a")
    if guide is not None:
        guide.check()
    z1_cut = z1.detach()
    grad_z1, grad2 = torch.zeros_like(z1), torch.zeros_like(x2)
    final, scores = torch.empty_like(x2), torch.empty(batch, dtype=x1.dtype, device=x1.device)
    for part in chunk_slices(batch * steps, batch_size):
        _, pair = _item_pairs(part, steps, x1.device)
        m = path.points(part)
        z1_items = z1_cut[pair].requires_grad_(True)
        s = model.similarity(z1_items, model.embed(m, "b"))
        gz, gm = torch.autograd.grad(s.sum(), (z1_items, m))
        _add_per_pair(grad_z1, part, steps, gz)
        _add_per_pair(grad2, part, steps, gm)
        # The chunk's items at step K (item % steps == steps − 1): the pairs the maps describe.
        ends = range((steps - 1 - part.start) % steps, part.stop - part.start, steps)  # may be empty
        last = torch.tensor(list(ends), dtype=torch.long, device=x1.device)
        final[pair[last]], scores[pair[last]] = m.detach()[last], s.detach()[last]
    (grad1,) = torch.autograd.grad(z1, image1, grad_outputs=grad_z1 / steps)
    return _at_explanation(x1, grad1, final, grad2 / steps, scores, config)


def _at_explanation(
    x1: Tensor, grad1: Tensor, final: Tensor, grad2: Tensor, scores: Tensor, config: dict[str, Any]
) -> PairExplanation:
    return PairExplanation(
        map1=saliency_map(x1, grad1),
        map2=saliency_map(final, grad2),
        score=scores,
        method="averaged-transforms",
        config=config,
        extras={"image2": final},
    )
