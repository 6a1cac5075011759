"""Saliency family (SPEC §1): maps ``max_c |x ⊙ G|`` from input gradients of the pair score.

Input×Gradient, Smooth-Grad and Averaged Transforms, each with a guided "(G)" variant (``guided=True``, see
:mod:`simexplain.methods.guided`). Noise samples and path steps go on the batch dimension in chunks of at most
``batch_size`` images per forward; one backward of the summed scores gives every sample's gradient (the scores
of different samples are independent) and parameters are frozen, so no parameter gradient is ever computed.

Randomness: ``seed`` is an int, a ``torch.Generator`` or ``None`` (torch's global RNG). Noise is drawn one
``3×H×W`` tensor at a time in a fixed order (pair by pair, sample by sample), so the maps do not depend on
``batch_size``, and explaining pairs one by one while passing the same generator along gives the batched maps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..pair import PairModel
from ..transforms import Seed, Transform, get_transform, in_model_space, make_generator
from .common import saliency_map, scores_and_input_gradients
from .guided import GuidedBackprop, guided_backprop
from .registry import register

PAPER_NOISE_LEVEL = 0.15


@contextmanager
def _guidance(model: PairModel, guided: bool) -> Iterator[GuidedBackprop | None]:
    if guided:
        with guided_backprop(model) as guide:
            yield guide
    else:
        yield None


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SimexplainError(f"{name} must be a positive integer, got {value!r}")
    return value


def noise_scale(x1: Tensor, sigma: float | None) -> Tensor:
    """Per-pair noise σ ``[B]``: ``sigma`` itself, or the paper's default ``0.15 / (max(x1) − min(x1))``.

    The default is what the authors' code used (about 0.15 on [0, 1] inputs, about 0.033 on ImageNet-normalised
    ones); the conventional SmoothGrad scale would be ``0.15 · (max − min)``: pass it as ``sigma`` to get it.
    A constant image 1 gets σ = 0 rather than an infinite one.
    """
    if sigma is None:
        flat = x1.flatten(1)
        span = flat.amax(1) - flat.amin(1)
        return torch.where(
            span > 0, PAPER_NOISE_LEVEL / span.clamp_min(torch.finfo(span.dtype).tiny), torch.zeros_like(span)
        )
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or sigma < 0:
        raise SimexplainError(
            f"sigma must be a non-negative number (model-input units) or None, got {sigma!r}"
        )
    return torch.full((x1.shape[0],), float(sigma), dtype=x1.dtype, device=x1.device)


def _gaussian(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """One standard normal tensor shaped like ``like[0]``, drawn where the generator lives."""
    where = generator.device if generator is not None else like.device
    return torch.randn(like.shape[1:], generator=generator, device=where, dtype=like.dtype).to(like.device)


@register("input-x-gradient", "saliency", "Input×Gradient of the pair score (baseline; SPEC 1.1)")
def input_x_gradient(model: PairModel, x1: Tensor, x2: Tensor, *, guided: bool = False) -> PairExplanation:
    """``S_k = max_c |x_k ⊙ ∂s/∂x_k|`` for both images from one forward and one backward of all pairs.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.ReLU(), nn.Linear(8, 4)))
        >>> e = simexplain.explain(model, torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), guided=True)
        >>> e.map1.shape
        torch.Size([2, 4, 4])
    """
    with _guidance(model, guided):
        scores, g1, g2 = scores_and_input_gradients(model, x1, x2)
    return PairExplanation(
        map1=saliency_map(x1, g1),
        map2=saliency_map(x2, g2),
        score=scores,
        method="input-x-gradient",
        params={"guided": guided},
    )


@register(
    "smooth-grad",
    "saliency",
    "Smooth-Grad: gradients averaged over noisy copies of the pair (baseline; SPEC 1.2)",
)
def smooth_grad(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    samples: int = 50,
    sigma: float | None = None,
    shared_noise: bool = True,
    guided: bool = False,
    seed: Seed = None,
    batch_size: int | None = None,
) -> PairExplanation:
    """Smooth-Grad of the pair score: ``G_k = mean_n ∂s(x1 + ε1_n, x2 + ε2_n)/∂x_k``, map ``max_c |x_k ⊙ G_k|``.

    Args:
        samples: noisy copies per pair (paper: 50).
        sigma: absolute noise σ in model-input units; ``None`` = the paper's ``0.15 / (max(x1) − min(x1))``.
        shared_noise: add the same noise to both images (the paper) or independent noise.
        guided: guided backprop, the "(G)" variant.
        seed: int, ``torch.Generator`` or ``None`` (global RNG).
        batch_size: images per forward (``batch_size // 2`` noisy pairs per chunk); ``None`` = 8 on a CPU, 64
            on a GPU.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(48, 4)))
        >>> x = torch.rand(1, 3, 4, 4)
        >>> e = simexplain.explain(model, x, x.flip(-1), "smooth-grad", samples=8, seed=0)
        >>> e.map1.shape
        torch.Size([1, 4, 4])
    """
    _check_positive("samples", samples)
    batch_size = resolve_batch_size(batch_size, x1.device)
    generator = make_generator(seed, x1.device)
    scale = noise_scale(x1, sigma).view(-1, 1, 1, 1)
    grad1, grad2 = torch.zeros_like(x1), torch.zeros_like(x2)
    with _guidance(model, guided) as guide:
        # Items are (pair, sample) in pair-major order; a chunk holds batch_size // 2 noisy pairs (2 images each).
        for part in chunk_slices(x1.shape[0] * samples, max(1, batch_size // 2)):
            pair = torch.arange(part.start, part.stop, device=x1.device) // samples
            eps1, eps2 = [], []
            for _ in range(part.stop - part.start):
                eps1.append(_gaussian(x1, generator))
                eps2.append(eps1[-1] if shared_noise else _gaussian(x2, generator))
            noisy1 = (x1[pair] + scale[pair] * torch.stack(eps1)).requires_grad_(True)
            noisy2 = (x2[pair] + scale[pair] * torch.stack(eps2)).requires_grad_(True)
            with torch.enable_grad():
                scores = model(noisy1, noisy2)
                if guide is not None:
                    guide.check()
                g1, g2 = torch.autograd.grad(scores.sum(), (noisy1, noisy2))
            grad1.index_add_(0, pair, g1)
            grad2.index_add_(0, pair, g2)
    with torch.no_grad():
        clean = model(x1, x2)
    return PairExplanation(
        map1=saliency_map(x1, grad1 / samples),
        map2=saliency_map(x2, grad2 / samples),
        score=clean,
        method="smooth-grad",
        params={
            "samples": samples,
            "sigma": sigma,
            "shared_noise": shared_noise,
            "guided": guided,
            "seed": seed if isinstance(seed, int) else None,
        },
    )


class _CallableTransform(Transform):
    """A user's ``pixels -> pixels`` function as a transform (blend mode only: it has no strength)."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", "callable")

    def apply(self, pixels: Tensor, params: dict, strength: float | Tensor = 1.0) -> Tensor:
        if not (isinstance(strength, int | float) and strength == 1.0):
            raise SimexplainError(
                f"transform {self.name!r} is a plain callable without a strength; use mode='blend' or a "
                "simexplain.transforms.Transform"
            )
        return self.fn(pixels)


def _resolve_transform(transform: str | Transform | Callable[[Tensor], Tensor]) -> Transform:
    if isinstance(transform, str | Transform):
        return get_transform(transform)
    if callable(transform):
        return _CallableTransform(transform)
    raise SimexplainError(
        f"transform must be a name, a Transform or a callable, got {type(transform).__name__}"
    )


def _path_noise(x1: Tensor, noise: bool | float) -> Tensor | None:
    if noise is False or noise is None:
        return None
    if noise is not True and (not isinstance(noise, int | float) or noise < 0):
        raise SimexplainError(
            f"noise must be True, False or a non-negative σ (model-input units), got {noise!r}"
        )
    return noise_scale(x1, None if noise is True else float(noise))


@register(
    "averaged-transforms",
    "saliency",
    "Averaged Transforms: gradients averaged along a path from image 2 to its transformation (proposed; SPEC 1.4)",
)
def averaged_transforms(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    transform: str | Transform | Callable[[Tensor], Tensor] = "combine",
    steps: int = 10,
    mode: str = "blend",
    noise: bool | float = False,
    guided: bool = False,
    seed: Seed = None,
    batch_size: int | None = None,
) -> PairExplanation:
    """Averaged Transforms: image 2 moves towards ``T(x2)`` in ``steps`` steps; gradients averaged over the path.

    ``s_k = sim(f(x1), f(m_k))``, ``G1 = mean_k ∂s_k/∂x1``, ``G2 = mean_k ∂s_k/∂m_k``; ``S1 = max_c |x1 ⊙ G1|`` and
    ``S2 = max_c |m_K ⊙ G2|``: the second map belongs to the fully transformed view ``m_K``, returned as
    ``image2`` (model-input space), and ``score`` is ``s_K``, the score of the pair the maps describe.

    Args:
        transform: a name from :func:`simexplain.transforms.available_transforms` (default ``"combine"``, the
            SimCLR colour pipeline), a :class:`~simexplain.transforms.Transform`, or a callable on [0, 1]
            pixels ``B×3×H×W`` (blend mode only). Pixel-space transforms run in [0, 1] space.
        steps: path length ``K`` (paper: 10).
        mode: ``"blend"`` (the authors' implementation: ``m_k = λ_k·x2 + (1 − λ_k)·T(x2)``, ``λ_k = 1 − k/K``) or
            ``"strength"`` (``m_k = T_{k/K}(x2)``: the transform at strength ``k/K``, e.g. rotation by ``k/K·θ``).
        noise: the "(N)" variant: each intermediate ``m_k`` (``k < K``) gets its own Gaussian noise; ``True`` uses
            the paper's σ (as Smooth-Grad's default), a number is an absolute σ.
        guided: guided backprop, the "(G)" variant (combinable with ``noise``).
        seed: int, ``torch.Generator`` or ``None``. The generator first draws the transform's random settings for
            all pairs (once: every step uses them), then the noise, pair by pair and step by step.
        batch_size: path images per forward; ``None`` = 8 on a CPU, 64 on a GPU.

    Cost: image 1 is embedded ONCE and differentiated ONCE: its gradient is the Jacobian-transpose of ``f`` at
    ``x1`` applied to the mean of the per-step embedding gradients; the path costs ``K`` image forwards and
    backwards, batched. With a shared encoder and ``B·(K + 1) ≤ batch_size``, image 1 rides in the same forward
    as the path and one backward gives everything.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)))
        >>> x = torch.rand(1, 3, 16, 16)
        >>> e = simexplain.explain(model, x, x, "averaged-transforms", transform="rotate-90", mode="strength")
        >>> e.image2.shape
        torch.Size([1, 3, 16, 16])
    """
    _check_positive("steps", steps)
    batch_size = resolve_batch_size(batch_size, x1.device)
    if mode not in ("blend", "strength"):
        raise SimexplainError(f"mode must be 'blend' or 'strength', got {mode!r}")
    t = _resolve_transform(transform)
    generator = make_generator(seed, x1.device)
    pre = model.preprocessing
    batch = x1.shape[0]
    params = t.sample(batch, generator=generator, device=x1.device)
    sigma = _path_noise(x1, noise)
    with torch.no_grad():
        target = in_model_space(t, x2, params, 1.0, pre) if mode == "blend" else None

    def path(pair: Tensor, k: Tensor) -> Tensor:
        """Path points ``m_k`` of the items ``(pair, k)``, noised for ``k < K`` in the (N) variant."""
        fraction = (k.to(x2.dtype) / steps).view(-1, 1, 1, 1)
        if target is not None:
            m = (1 - fraction) * x2[pair] + fraction * target[pair]
            m = torch.where(fraction == 1, target[pair], m)  # m_K is exactly T(x2)
        else:
            m = in_model_space(t, x2[pair], {n: v[pair] for n, v in params.items()}, fraction.view(-1), pre)
        if sigma is not None:
            eps = torch.stack([_gaussian(x2, generator) for _ in range(len(pair))])
            m = m + (k < steps).to(m.dtype).view(-1, 1, 1, 1) * sigma[pair].view(-1, 1, 1, 1) * eps
        return m

    grad2 = torch.zeros_like(x2)
    final = torch.empty_like(x2)
    scores = torch.empty(batch, dtype=x1.dtype, device=x1.device)

    def record(pair: Tensor, k: Tensor, s: Tensor, m: Tensor, grad_m: Tensor) -> None:
        """Add the path gradients of items ``(pair, k)``; keep the score and image of each pair's last step."""
        grad2.index_add_(0, pair, grad_m)
        last = k == steps
        scores[pair[last]] = s.detach()[last].to(scores.dtype)
        final[pair[last]] = m.detach()[last]

    with _guidance(model, guided) as guide, torch.enable_grad():
        image1 = x1.detach().requires_grad_(True)
        if model.shared and batch * (steps + 1) <= batch_size:
            # Everything fits one forward [x1; m_1..m_K]: ONE backward of the summed s_k gives both gradients,
            # autograd adding the K embedding gradients of z1 before differentiating f once.
            items = torch.arange(batch * steps, device=x1.device)
            pair, k = items // steps, items % steps + 1
            with torch.no_grad():
                m = path(pair, k)
            m.requires_grad_(True)
            z = model.embed(torch.cat([image1, m]), "a")
            if guide is not None:
                guide.check()
            s = model.similarity(z[:batch][pair], z[batch:])
            grad1, grad_m = torch.autograd.grad(s.sum(), (image1, m))
            record(pair, k, s, m, grad_m)
            return _at_explanation(
                x1, grad1 / steps, final, grad2 / steps, scores, t, steps, mode, noise, guided, seed
            )
        z1 = model.embed(image1, "a")
        if guide is not None:
            guide.check()
        # Cut the graph at the embedding: the path only needs ∂s_k/∂z1, summed here, and x1 is differentiated once.
        z1_cut = z1.detach().requires_grad_(True)
        grad_z1 = torch.zeros_like(z1)
        for part in chunk_slices(batch * steps, batch_size):
            items = torch.arange(part.start, part.stop, device=x1.device)
            pair, k = items // steps, items % steps + 1
            with torch.no_grad():
                m = path(pair, k)
            m.requires_grad_(True)
            s = model.similarity(z1_cut[pair], model.embed(m, "b"))
            gz, gm = torch.autograd.grad(s.sum(), (z1_cut, m))
            grad_z1 += gz
            record(pair, k, s, m, gm)
        (grad1,) = torch.autograd.grad(z1, image1, grad_outputs=grad_z1 / steps)
    return _at_explanation(x1, grad1, final, grad2 / steps, scores, t, steps, mode, noise, guided, seed)


def _at_explanation(
    x1: Tensor,
    grad1: Tensor,
    final: Tensor,
    grad2: Tensor,
    scores: Tensor,
    t: Transform,
    steps: int,
    mode: str,
    noise: bool | float,
    guided: bool,
    seed: Seed,
) -> PairExplanation:
    return PairExplanation(
        map1=saliency_map(x1, grad1),
        map2=saliency_map(final, grad2),
        score=scores,
        method="averaged-transforms",
        params={
            "transform": t.name,
            "steps": steps,
            "mode": mode,
            "noise": noise,
            "guided": guided,
            "seed": seed if isinstance(seed, int) else None,
        },
        image2=final,
    )
