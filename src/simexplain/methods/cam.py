"""Activation family (docs/methods.md, Activation): Pair Grad-CAM, Interaction-CAM and Deep Similarity.

All three share one step, :meth:`PairModel.activations_and_gradients`: tap the model's CAM layer for both
images (a shared encoder sees the pair as ONE batch), differentiate the model's own score once per chunk of
pairs. Each method is then a short function of the activations ``A`` and gradients ``G`` (``B×D×h×w``), kept
public so the rules can be reused on activations from elsewhere. Maps come back at the feature grid
(``grid1``/``grid2``) and bilinearly upsampled to the input size (``map1``/``map2``).

Example:
    >>> import torch, simexplain
    >>> from torch import nn
    >>> conv = nn.Conv2d(3, 4, 3, stride=2)
    >>> encoder = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> model = simexplain.PairModel(encoder, layer="1")
    >>> e = simexplain.explain(model, torch.rand(2, 3, 17, 17), torch.rand(2, 3, 17, 17), "interaction-cam")
    >>> tuple(e.grid1.shape), tuple(e.map1.shape)
    ((2, 8, 8), (2, 17, 17))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from torch import Tensor

from .. import checks
from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation, upsample_maps
from ..pair import PairModel
from .registry import register, register_margin, register_one_to_many

REDUCTIONS = ("mean", "max", "attn")

# A rule maps (A1, A2, G1, G2), each B×D×h×w, to the two B×h×w grids.
CamRule = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


# ---------------------------------------------------------------------------------------------- the rules
def weighted_activation(a: Tensor, g: Tensor, channel_weights: Tensor | None = None) -> Tensor:
    """``M[p] = Σ_d A[d,p] · w[d] · relu(G[d,p])`` (paper Eq. 1 / Eq. 2): ``B×D×h×w`` → ``B×h×w``.

    Example:
        >>> import torch
        >>> weighted_activation(torch.ones(1, 2, 3, 3), -torch.ones(1, 2, 3, 3)).abs().sum().item()
        0.0

    ``channel_weights`` (``B×D`` or ``B×D×h×w``) defaults to ones. Element-wise (HiResCAM-like), no final
    ReLU. A side without channels (a fixed embedding: an image–text pair's partner) maps to zeros.
    """
    if a.shape[1] == 0:
        return a.new_zeros(a.shape[0], *a.shape[2:])
    g = g.clamp_min(0)
    if channel_weights is not None:
        g = g * (channel_weights if channel_weights.dim() == 4 else channel_weights[:, :, None, None])
    return (a * g).sum(1)


def reduce_activation(a: Tensor, reduction: str) -> Tensor:
    """Pool ``B×D×h×w`` activations to ``B×D`` with ``mean``, ``max`` or ``attn`` (docs/methods.md,
    Interaction-CAM).

    ``attn``: the mean-pooled vector is the query, the ``h·w`` feature vectors are keys and values,
    ``a = softmax_p(q·A[:,p])`` without ``1/√D`` scaling (the authors' choice), result ``Σ_p a_p A[:,p]``.

    Example:
        >>> import torch
        >>> reduce_activation(torch.arange(4.0).view(1, 1, 2, 2), "max").item()
        3.0
    """
    flat = a.flatten(2)
    if reduction == "mean":
        return flat.mean(2)
    if reduction == "max":
        return flat.amax(2)
    if reduction == "attn":
        query = flat.mean(2)
        weights = torch.softmax(torch.einsum("bd,bdp->bp", query, flat), dim=1)
        return torch.einsum("bp,bdp->bd", weights, flat)
    raise SimexplainError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")


def joint_activation(a1: Tensor, a2: Tensor, reduction: str) -> Tensor:
    """``J = r(A1) ⊙ r(A2)`` (``B×D``), the channel weights Interaction-CAM shares between both images.

    Interaction-CAM looks this function up at call time, so a test can replace it (e.g. by ones). A side
    without channels (a fixed embedding, the partner of one side of an image–text pair, has no activation at
    the layer) contributes no factor: ``J = r(A)`` of the other side.

    Example:
        >>> import torch
        >>> joint_activation(torch.ones(1, 3, 2, 2), 2 * torch.ones(1, 3, 2, 2), "mean").tolist()
        [[2.0, 2.0, 2.0]]
        >>> joint_activation(torch.ones(1, 0, 1, 1), 2 * torch.ones(1, 3, 2, 2), "mean").tolist()
        [[2.0, 2.0, 2.0]]
    """
    if a1.shape[1] == 0 or a2.shape[1] == 0:
        return reduce_activation(a2 if a1.shape[1] == 0 else a1, reduction)
    if a1.shape[1] != a2.shape[1]:
        raise SimexplainError(
            "Interaction-CAM needs the same number of channels on both sides, "
            f"got {a1.shape[1]} and {a2.shape[1]}"
        )
    return reduce_activation(a1, reduction) * reduce_activation(a2, reduction)


def gradient_interaction_weights(g1: Tensor, g2: Tensor) -> tuple[Tensor, Tensor]:
    """``C = Σ_p G1[:,p] G2[:,p]ᵀ``; ``g1[d] = max_e C[d,e]``, ``g2[e] = max_d C[d,e]`` (``B×D`` each).

    Positions are matched one to one, so both grids must have the same ``h×w``.

    Example:
        >>> import torch
        >>> g1, g2 = gradient_interaction_weights(torch.ones(1, 2, 1, 1), torch.ones(1, 2, 1, 1))
        >>> g1.tolist(), g2.tolist()
        ([[1.0, 1.0]], [[1.0, 1.0]])
    """
    if g1.shape[1] == 0 or g2.shape[1] == 0:
        raise SimexplainError(
            "gradient interaction pairs both sides' gradients at one layer, and a fixed embedding (the text "
            "of an image–text pair) has none there; use gradient_interaction=False"
        )
    if g1.shape[2:] != g2.shape[2:]:
        raise SimexplainError(
            f"gradient interaction pairs the same positions of both feature grids, which differ here "
            f"({g1.shape[2]}×{g1.shape[3]} and {g2.shape[2]}×{g2.shape[3]}); use gradient_interaction=False, "
            f"or inputs/layers with equal grids"
        )
    if g1.shape[1] != g2.shape[1]:
        raise SimexplainError(
            f"gradient interaction needs equal channels, got {g1.shape[1]} and {g2.shape[1]}"
        )
    # B×D×D: one batched matrix product, no loop over pairs.
    c = torch.bmm(g1.flatten(2), g2.flatten(2).transpose(1, 2))
    return c.amax(2), c.amax(1)


def pair_grad_cam_maps(a1: Tensor, a2: Tensor, g1: Tensor, g2: Tensor) -> tuple[Tensor, Tensor]:
    """Pair Grad-CAM grids ``M_k = Σ_d A_k ⊙ relu(G_k)`` (docs/methods.md, Pair Grad-CAM).

    Example:
        >>> import torch
        >>> a = torch.ones(1, 2, 3, 3)
        >>> pair_grad_cam_maps(a, a, a, -a)[0][0, 0, 0].item()
        2.0
    """
    return weighted_activation(a1, g1), weighted_activation(a2, g2)


def interaction_cam_maps(
    a1: Tensor,
    a2: Tensor,
    g1: Tensor,
    g2: Tensor,
    *,
    reduction: str = "mean",
    gradient_interaction: bool = False,
) -> tuple[Tensor, Tensor]:
    """Interaction-CAM grids ``M_k = Σ_d A_k · J · relu(G_k)``, ``G_k`` replaced by ``g_k`` with GI
    (docs/methods.md, Interaction-CAM).

    Example:
        >>> import torch
        >>> a = torch.ones(1, 2, 3, 3)
        >>> interaction_cam_maps(a, 2 * a, a, a, reduction="max")[1][0, 0, 0].item()
        8.0
    """
    joint = joint_activation(a1, a2, reduction)
    if gradient_interaction:
        g1, g2 = (g[:, :, None, None] for g in gradient_interaction_weights(g1, g2))
    return weighted_activation(a1, g1, joint), weighted_activation(a2, g2, joint)


def deep_similarity_maps(a1: Tensor, a2: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """Deep Similarity grids (Stylianou et al. 2019) whose sums are ``cos(ā1, ā2)`` (docs/methods.md, Deep
    Similarity).

    ``M_1[p] = <A_1[:,p], ā_2> / (h·w·||ā_1||·||ā_2||)`` and symmetrically; ``ā_k`` is the mean-pooled
    feature. Grids of different sizes are fine (each side divides by its own ``h·w``).

    Example:
        >>> import torch
        >>> a = torch.rand(1, 4, 3, 3)
        >>> round(deep_similarity_maps(a, a)[0].sum().item(), 5)
        1.0
    """
    if a1.shape[1] != a2.shape[1]:
        raise SimexplainError(
            f"Deep Similarity needs equal channels on both sides, got {a1.shape[1]} and {a2.shape[1]}"
        )
    pooled1, pooled2 = a1.mean((2, 3)), a2.mean((2, 3))
    # Same eps convention as the cosine score: the norm product is clamped, never a division by zero.
    norm = (pooled1.norm(dim=1) * pooled2.norm(dim=1)).clamp_min(eps)[:, None, None]
    m1 = torch.einsum("bdhw,bd->bhw", a1, pooled2) / (a1.shape[2] * a1.shape[3] * norm)
    m2 = torch.einsum("bdhw,bd->bhw", a2, pooled1) / (a2.shape[2] * a2.shape[3] * norm)
    return m1, m2


# ---------------------------------------------------------------------------------------------- the template
def _check_layer(model: PairModel, x1: Tensor, x2: Tensor, layer: str | None) -> None:
    """Refuse ``layer`` (``None`` = the model's own; its type was checked by the registry's ``LayerName``)
    before any forward if it names no module."""
    model.layer_module("a", layer)
    if not model.shared or x1.shape[1:] != x2.shape[1:]:
        model.layer_module("b", layer)  # side b is tapped on its own only then


def _explain_with(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    layer: str | None,
    rule: CamRule,
    method: str,
    config: dict,
    batch_size: int | None,
    gradients: bool = True,
) -> PairExplanation:
    """The shared machinery of the three methods: the layer checked, then per chunk of pairs one tapped
    forward + backward and a rule on (A, G); grids kept, maps upsampled. ``batch_size`` bounds the images per
    forward (``None``: the device's default). ONE image 1 with several images 2 (a retrieval query and its
    matches, reached through the one-to-many hook) goes to :func:`_explain_one_query`."""
    _check_layer(model, x1, x2, layer)
    if x1.shape[0] == 1 < x2.shape[0]:
        options = {"layer": layer, "rule": rule, "method": method, "config": config, "gradients": gradients}
        return _explain_one_query(model, x1, x2, batch_size=batch_size, **options)
    batch_size = resolve_batch_size(batch_size, x1.device)
    # A shared encoder puts both images of a pair in one forward (when they have one size).
    one_forward = model.shared and x1.shape[1:] == x2.shape[1:]
    pairs_per_chunk = max(1, batch_size // 2) if one_forward else batch_size
    scores, grids1, grids2 = [], [], []
    for part in chunk_slices(x1.shape[0], pairs_per_chunk):
        score, a1, a2, g1, g2 = model.activations_and_gradients(
            x1[part], x2[part], layer, gradients=gradients
        )
        grid1, grid2 = rule(a1, a2, g1, g2)
        scores.append(score)
        grids1.append(grid1)
        grids2.append(grid2)
    return PairExplanation.from_grids(
        torch.cat(grids1),
        torch.cat(grids2),
        x1.shape[-2:],
        x2.shape[-2:],
        score=torch.cat(scores),
        method=method,
        config=config,
    )


@register(
    "pair-grad-cam",
    "activation",
    "Pair Grad-CAM: Σ_d A ⊙ relu(∂s/∂A) at a feature layer (baseline)",
)
def pair_grad_cam(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    layer: checks.LayerName = None,
    batch_size: checks.BatchSize = None,
) -> PairExplanation:
    """Pair Grad-CAM (paper Eq. 1), element-wise gradient weighting (docs/methods.md, Pair Grad-CAM).

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = simexplain.PairModel(net, layer="1")
        >>> x1, x2 = torch.rand(1, 3, 9, 9), torch.rand(1, 3, 9, 9)
        >>> simexplain.explain(model, x1, x2, "pair-grad-cam").grid1.shape
        torch.Size([1, 7, 7])

    Args:
        layer: module name to tap (default ``None``: the model's ``layer`` / ``layer_b``).
        batch_size: images per forward (a shared encoder takes ``batch_size // 2`` pairs); ``None`` = 8 on a
            CPU, 64 on a GPU. Maps do not depend on it.
    """
    config = {"layer": layer}
    return _explain_with(
        model,
        x1,
        x2,
        layer=layer,
        rule=pair_grad_cam_maps,
        method="pair-grad-cam",
        config=config,
        batch_size=batch_size,
    )


@register(
    "interaction-cam",
    "activation",
    "Interaction-CAM: Pair Grad-CAM weighted by the joint activation r(A1)⊙r(A2), "
    "optional gradient interaction (proposed)",
)
def interaction_cam(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    reduction: Annotated[str, checks.one_of(REDUCTIONS)] = "mean",
    gradient_interaction: checks.Flag = False,
    layer: checks.LayerName = None,
    batch_size: checks.BatchSize = None,
) -> PairExplanation:
    """Interaction-CAM (paper Eq. 2): the paper's six variants are ``reduction`` × ``gradient_interaction``
    (docs/methods.md, Interaction-CAM).

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = simexplain.PairModel(net, layer="1")
        >>> x = torch.rand(2, 3, 9, 9)
        >>> options = {"reduction": "attn", "gradient_interaction": True}
        >>> e = simexplain.explain(model, x, x.flip(-1), "interaction-cam", **options)
        >>> e.map1.shape, e.config
        (torch.Size([2, 9, 9]), {'reduction': 'attn', 'gradient_interaction': True, 'layer': None})

    Args:
        reduction: how each activation is pooled into the joint vector: ``"mean"``, ``"max"`` or ``"attn"``.
        gradient_interaction: replace each gradient by the row/column max of the pair's gradient interaction
            matrix (needs equal feature grids on both sides). The words ``"true"``/``"false"`` are accepted.
        layer: module name to tap (default ``None``: the model's ``layer`` / ``layer_b``).
        batch_size: images per forward, as in :func:`pair_grad_cam`.
    """
    # The settings were checked by the registry's wrapper (the annotations); the layer needs the model.

    def rule(a1: Tensor, a2: Tensor, g1: Tensor, g2: Tensor) -> tuple[Tensor, Tensor]:
        return interaction_cam_maps(
            a1, a2, g1, g2, reduction=reduction, gradient_interaction=gradient_interaction
        )

    config = {"reduction": reduction, "gradient_interaction": gradient_interaction, "layer": layer}
    return _explain_with(
        model, x1, x2, layer=layer, rule=rule, method="interaction-cam", config=config, batch_size=batch_size
    )


@register(
    "deep-similarity",
    "activation",
    "Deep Similarity (Stylianou et al.): per-position share of the cosine of pooled layer features",
)
def deep_similarity(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    layer: checks.LayerName = None,
    batch_size: checks.BatchSize = None,
) -> PairExplanation:
    """Deep Similarity maps at ``layer``: ``grid1.sum() == grid2.sum() == cos(ā1, ā2)`` per pair
    (docs/methods.md, Deep Similarity).

    It explains the cosine of the mean-pooled features of the tapped layer, not the head's output; ``score``
    is still the model's score, like every method's.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = simexplain.PairModel(net, layer="1")
        >>> x = torch.rand(1, 3, 9, 9)
        >>> round(simexplain.explain(model, x, x, "deep-similarity").grid1.sum().item(), 4)
        1.0

    Args:
        layer: module name to tap (default ``None``: the model's ``layer`` / ``layer_b``).
        batch_size: images per forward, as in :func:`pair_grad_cam`.
    """

    def rule(a1: Tensor, a2: Tensor, g1: None, g2: None) -> tuple[Tensor, Tensor]:
        return deep_similarity_maps(a1, a2)

    # Activations only: no backward.
    config = {"layer": layer}
    return _explain_with(
        model,
        x1,
        x2,
        layer=layer,
        rule=rule,
        method="deep-similarity",
        config=config,
        batch_size=batch_size,
        gradients=False,
    )


# ---------------------------------------------------------------------------------------------- one query
def _explain_one_query(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    layer: str | None,
    rule: CamRule,
    method: str,
    config: dict,
    batch_size: int | None,
    gradients: bool,
) -> PairExplanation:
    """The template for ONE image 1 (``1×3×H×W``) and ``K`` images 2: image 1 is tapped by one forward, and
    its gradients for the ``K`` scores of a chunk come from one backward vectorised over them. Equals the
    ``K`` pairs ``(x1, x2[k])`` explained one by one."""
    from .interaction import tapped_embed  # here: importing it first would list pair-interaction first

    batch_size = resolve_batch_size(batch_size, x1.device)
    hw1, hw2 = tuple(x1.shape[-2:]), tuple(x2.shape[-2:])
    scores, grids1, grids2 = [], [], []
    with torch.enable_grad() if gradients else torch.no_grad():
        leaf1, z1 = tapped_embed(model, x1, "a", layer)
        a1 = model.as_grid(leaf1.detach(), hw1)
        for part in chunk_slices(x2.shape[0], batch_size):
            leaf2, z2 = tapped_embed(model, x2[part], "b", layer)
            count = part.stop - part.start
            score = model.similarity(z1.expand(count, -1), z2)
            g1 = g2 = None
            if gradients:
                (g2,) = torch.autograd.grad(score.sum(), leaf2, retain_graph=True)
                eye = torch.eye(count, dtype=score.dtype, device=score.device)
                (g1,) = torch.autograd.grad(score, leaf1, eye, retain_graph=True, is_grads_batched=True)
                g1, g2 = model.as_grid(g1[:, 0], hw1), model.as_grid(g2, hw2)
            a2 = model.as_grid(leaf2.detach(), hw2)
            grid1, grid2 = rule(a1.expand(count, *a1.shape[1:]), a2, g1, g2)
            scores.append(score.detach())
            grids1.append(grid1.detach())
            grids2.append(grid2.detach())
    return PairExplanation.from_grids(
        torch.cat(grids1), torch.cat(grids2), hw1, hw2, score=torch.cat(scores), method=method, config=config
    )


def _tap_image1_once(method: Callable[..., PairExplanation]) -> Callable[..., PairExplanation]:
    """A CAM's one-to-many hook: the method itself, whose template taps a single image 1 once
    (:func:`_explain_one_query`); the clean embeddings are not needed (the taps are forwards of their own)."""

    def one_to_many(
        model: PairModel, x1: Tensor, x2: Tensor, *, embeddings: object, **settings
    ) -> PairExplanation:
        return method(model, x1, x2, **settings)

    return one_to_many


for _name, _method in (
    ("pair-grad-cam", pair_grad_cam),
    ("interaction-cam", interaction_cam),
    ("deep-similarity", deep_similarity),
):
    register_one_to_many(_name)(_tap_image1_once(_method))


@register_margin("pair-grad-cam")
def _pair_grad_cam_margin(
    model: PairModel, q: Tensor, b: Tensor, w: Tensor, *, layer: str | None, batch_size: int | None
) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
    """``Σ_d A ⊙ relu(∂margin/∂A)`` at the layer; for the query ``∂margin/∂A = G(q,b) − G(q,w)``: one tapped
    forward and backward of the pairs ``[(q, b); (q, w)]``."""
    half = len(q)
    scores, a1, a2, g1, g2 = model.activations_and_gradients(torch.cat([q, q]), torch.cat([b, w]), layer)
    grid_q = weighted_activation(a1[:half], g1[:half] - g1[half:])
    grid_b = weighted_activation(a2[:half], g2[:half])
    grid_w = weighted_activation(a2[half:], -g2[half:])
    maps = (
        upsample_maps(grid_q, tuple(q.shape[-2:])),
        upsample_maps(grid_b, tuple(b.shape[-2:])),
        upsample_maps(grid_w, tuple(w.shape[-2:])),
    )
    return maps, scores
