"""Second-order maps (docs/second_order.md): which part of image 2 matches which part of image 1.

``pair-interaction`` taps a feature layer for both images and decomposes every embedding dimension ``m``
over the layer's positions, ``R_m(x)[p] = Σ_d A[d,p] · ∂f_m/∂A[d,p]`` (gradient × activation of one
output). The interaction of position ``p`` of image 1 with position ``q`` of image 2 is then

    I[p,q] = Σ_m R_m(x1)[p] · R_m(x2)[q] / (‖f1‖·‖f2‖)      (cosine; no division for dot)

so ``Σ_{p,q} I`` is the score whenever the head after the layer is positively homogeneous (bias-free linear,
ReLU, pooling): then ``Σ_p R_m = f_m``. Otherwise the result reports the gap as ``extras["residual"]``.

The ``E`` backward passes (one per embedding dimension) are vectorised: one ``autograd.grad`` with
``is_grads_batched`` differentiates ``batch_size`` dimensions at once, for every pair of the forward's chunk.
``projection=k`` replaces the embedding by a seeded random projection ``f·Q`` (``Q``: ``E×k``, orthonormal
columns scaled by ``√(E/k)``, so inner products are kept on average and exactly when ``k = E``); the result
then explains the score of the projected embeddings, recorded as ``extras["explained_score"]``.

Example:
    >>> import torch, simexplain
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> model = simexplain.PairModel(net, layer="1")
    >>> x1, x2 = torch.rand(1, 3, 6, 6), torch.rand(1, 3, 6, 6)
    >>> e = simexplain.explain(model, x1, x2, "pair-interaction")
    >>> tuple(e.interaction.shape), abs(e.interaction.sum().item() - e.score.item()) < 1e-5
    ((1, 4, 4, 4, 4), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import torch
from torch import Tensor, nn

from .. import checks
from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..pair import PairModel, TokenLayout, dot
from .registry import register

NORM_EPS = 1e-8  # the cosine's clamp on the norm product


def projection_matrix(dim: int, k: int, seed: int) -> Tensor:
    """A seeded ``dim×k`` projection with orthonormal columns scaled by ``√(dim/k)`` (float64, CPU).

    ``E[Q Qᵀ] = I`` for such a random ``Q``, so projected inner products are unbiased; with ``k = dim`` the
    matrix is orthogonal and keeps every inner product and norm exactly.

    Example:
        >>> q = projection_matrix(6, 6, seed=0)
        >>> torch.allclose(q.T @ q, torch.eye(6, dtype=q.dtype))
        True
    """
    if k > dim:
        raise SimexplainError(f"projection={k} exceeds the embedding's {dim} dimensions; use at most {dim}")
    gaussian = torch.randn(dim, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    # The sign fix makes Q uniformly distributed among matrices with orthonormal columns.
    q = q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)
    return q * math.sqrt(dim / k)


def pair_similarity_kind(model: PairModel) -> str:
    """``"dot"`` for a dot-product model, else ``"cosine"``: a cosine model's own score, and for any other
    similarity (a distance-based match score, say) the cosine of the embeddings, the bilinear score nearest to
    it; ``extras["explained_score"]`` then says what was decomposed."""
    return "dot" if model.similarity is dot else "cosine"


def interaction_from_relevances(r1: Tensor, r2: Tensor) -> Tensor:
    """``I[b,p,q] = Σ_m R1[m,b,p] · R2[m,b,q]`` for relevances ``M×B×P1`` and ``M×B×P2`` (no normalisation).

    Example:
        >>> r = torch.ones(3, 1, 2)
        >>> interaction_from_relevances(r, r)[0].tolist()
        [[3.0, 3.0], [3.0, 3.0]]
    """
    return torch.einsum("mbp,mbq->bpq", r1, r2)


# ---------------------------------------------------------------------------------------------- the tap
class _Tap:
    """Forward hooks that make each tapped layer output a leaf of the graph, removed on exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.captured: list[Tensor] = []

    def hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor):
            raise SimexplainError(f"layer {self.name!r} returns {type(output).__name__}, not a tensor")
        if self.captured:
            raise SimexplainError(f"layer {self.name!r} runs more than once per forward; tap another layer")
        leaf = output.detach().requires_grad_(True)
        self.captured.append(leaf)
        return leaf.clone()  # the leaf keeps its value if the network writes into its output in place


def tapped_embed(model: PairModel, x: Tensor, side: str, layer: str | None) -> tuple[Tensor, Tensor]:
    """``(activation leaf, embedding)`` of ``x`` through the encoder of ``side``, a graph between them."""
    tap = _Tap(model.layer_name(side, layer))
    handle = model.layer_module(side, layer).register_forward_hook(tap.hook)
    try:
        z = model.embed(x, side)
    finally:
        handle.remove()
    if not tap.captured:
        raise SimexplainError(f"layer {tap.name!r} did not run in the forward pass; tap another layer")
    return tap.captured[0], z


def _relevance(a: Tensor, g: Tensor) -> Tensor:
    """``Σ_d A ⊙ G`` over the feature axis: ``M×B×D×h×w`` → ``M×B×h×w``, tokens ``M×B×N×D`` → ``M×B×N``."""
    return (a * g).sum(2) if g.dim() == 5 else (a * g).sum(-1)


def on_grid(r: Tensor, layout: TokenLayout | None, input_hw: tuple[int, int]) -> Tensor:
    """Relevances on the patch grid, flattened: ``M×B×h×w`` stays, ``M×B×N`` tokens lose their prefix."""
    if r.dim() == 4:
        return r
    m, b, n = r.shape
    grid = (layout or TokenLayout()).to_grid(r.reshape(m * b, n, 1), input_hw)
    return grid.view(m, b, *grid.shape[-2:])


def _batched_vjp(outputs: list[Tensor], leaves: list[Tensor], seeds: list[Tensor]) -> tuple[Tensor, ...]:
    """``∂(seed · output)/∂leaf`` for every row of the seeds (``M×rows×k``), vectorised over ``M``."""
    try:
        return torch.autograd.grad(outputs, leaves, seeds, retain_graph=True, is_grads_batched=True)
    except RuntimeError:
        # An operation without a vmap rule: the same vector-Jacobian products one dimension at a time.
        rows = [
            torch.autograd.grad(outputs, leaves, [s[i] for s in seeds], retain_graph=True)
            for i in range(seeds[0].shape[0])
        ]
        return tuple(torch.stack(parts) for parts in zip(*rows))


def relevance_rows(output: Tensor, leaf: Tensor, seeds: Tensor) -> Tensor:
    """Gradient × activation at ``leaf`` of ``seed · output`` for every row of ``seeds`` (``M×B×E``), the
    backward vectorised over the rows: ``M×B×…`` (summed over the leaf's feature axis)."""
    (grad,) = _batched_vjp([output], [leaf], [seeds])
    return _relevance(leaf.detach(), grad)


def relevance_products(
    projected: list[Tensor],
    leaves: list[Tensor],
    arrange: Callable[[list[Tensor]], tuple[Tensor, Tensor]],
    dims_per_pass: int,
) -> Tensor:
    """``Σ_m R_m(side 1)[p] · R_m(side 2)[q]`` (``B×P1×P2``, no normalisation) over the dimensions ``m`` of
    the (projected) embeddings ``projected``, each ``R_m`` the gradient × activation of ``f_m`` at the tapped
    ``leaves``; the backward rows are vectorised ``dims_per_pass`` at a time. ``arrange`` turns the relevances
    of the leaves (``M×B×…`` each) into the two sides' ``M×B×P`` rows."""
    dim = projected[0].shape[1]
    sums = None
    for part in chunk_slices(dim, dims_per_pass, desc="embedding dimensions"):
        count = part.stop - part.start
        eye = torch.zeros(count, dim, dtype=projected[0].dtype, device=projected[0].device)
        eye[torch.arange(count), torch.arange(part.start, part.stop)] = 1
        seeds = [eye[:, None, :].expand(count, p.shape[0], dim) for p in projected]
        grads = _batched_vjp(projected, leaves, seeds)
        r1, r2 = arrange([_relevance(a.detach(), g) for a, g in zip(leaves, grads)])
        part_sum = interaction_from_relevances(r1, r2)
        sums = part_sum if sums is None else sums + part_sum
    return sums


def _chunk_interaction(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    layer: str | None,
    projections: Callable[[int], Tensor] | None,
    kind: str,
    dims_per_pass: int,
) -> tuple[Tensor, Tensor, Tensor, tuple[int, int], tuple[int, int]]:
    """One chunk of pairs: ``(score, explained score, I (B×P1×P2), grid 1 size, grid 2 size)``;
    ``projections(E)`` gives the chunk's pairs their ``E×k`` matrices once ``E`` is known."""
    batch = x1.shape[0]
    with torch.enable_grad():
        if model.shared and x1.shape[1:] == x2.shape[1:]:
            # One forward of [x1; x2]: the hooked layer runs once and no branch is lost.
            leaf, z = tapped_embed(model, torch.cat([x1, x2]), "a", layer)
            leaves, embeddings = [leaf], [z]
        else:
            (leaf1, z1), (leaf2, z2) = (
                tapped_embed(model, x1, "a", layer),
                tapped_embed(model, x2, "b", layer),
            )
            leaves, embeddings = [leaf1, leaf2], [z1, z2]
        z_all = torch.cat(embeddings)
        score = model.similarity(z_all[:batch], z_all[batch:]).detach()
        if projections is not None:
            # Each pair has its own projection (its seed); both images of a pair share it.
            q = projections(z_all.shape[1]).to(z_all.device)
            rows_q = [torch.cat([q, q])] if len(embeddings) == 1 else [q, q]
            projected = [torch.einsum("be,bek->bk", z, p.to(z.dtype)) for z, p in zip(embeddings, rows_q)]
        else:
            projected = embeddings
        f = torch.cat([p.detach() for p in projected])
        f1, f2 = f[:batch], f[batch:]
        hw1, hw2 = tuple(x1.shape[-2:]), tuple(x2.shape[-2:])
        grids: list[tuple[int, int]] = []

        def arrange(r: list[Tensor]) -> tuple[Tensor, Tensor]:
            r1, r2 = (r[0][:, :batch], r[0][:, batch:]) if len(r) == 1 else r
            r1, r2 = on_grid(r1, model.token_layout, hw1), on_grid(r2, model.token_layout, hw2)
            grids[:] = [tuple(r1.shape[-2:]), tuple(r2.shape[-2:])]
            return r1.flatten(2), r2.flatten(2)

        sums = relevance_products(projected, leaves, arrange, dims_per_pass)
        grid1, grid2 = grids
    explained = (f1 * f2).sum(1)
    if kind == "cosine":
        norm = (f1.norm(dim=1) * f2.norm(dim=1)).clamp_min(NORM_EPS)
        explained = explained / norm
        sums = sums / norm[:, None, None]
    return score, explained, sums.detach(), grid1, grid2


# ---------------------------------------------------------------------------------------------- the method
def _projection_setting(name: str, value: object) -> int | None:
    return None if value is None else checks.positive_int(name, value)


Projection = Annotated["int | None", _projection_setting, checks.Work("dimensions")]


class Projections:
    """The pairs' seeded projections to ``size`` dimensions: one matrix per distinct seed, built once the
    embedding size is known."""

    def __init__(self, size: int, pair_seeds: list[int]) -> None:
        self.size, self.pair_seeds = size, pair_seeds
        self.matrices: dict[int, Tensor] = {}

    def of(self, part: slice) -> Callable[[int], Tensor]:
        """``build(E)``: the ``B×E×size`` matrices of the pairs ``part``."""

        def build(dim: int) -> Tensor:
            for s in self.pair_seeds[part]:
                if s not in self.matrices:
                    self.matrices[s] = projection_matrix(dim, self.size, s)
            return torch.stack([self.matrices[s] for s in self.pair_seeds[part]])

        return build


@register(
    "pair-interaction",
    "activation",
    "Pair interaction: which position of image 1 matches which of image 2, Σ_m R_m(x1)[p]·R_m(x2)[q] at a "
    "feature layer (second-order)",
)
def pair_interaction(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    layer: checks.LayerName = None,
    projection: Projection = None,
    seed: checks.SeedSetting = None,
    batch_size: checks.BatchSize = None,
) -> PairExplanation:
    """Pair interaction at ``layer``: ``I[p,q]`` between every position of image 1 and of image 2, its row and
    column sums as ``map1``/``map2`` (docs/second_order.md).

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = simexplain.PairModel(net, layer="1")
        >>> x = torch.rand(2, 3, 10, 10)
        >>> e = simexplain.explain(model, x, x.flip(-1), "pair-interaction", projection=4, seed=0)
        >>> tuple(e.interaction.shape), e.config, tuple(e.match((0, 9), image=1).shape)
        ((2, 8, 8, 8, 8), {'layer': None, 'projection': 4, 'seed': 0}, (2, 10, 10))

    Args:
        layer: module name to tap (default ``None``: the model's ``layer`` / ``layer_b``); a CNN layer
            (``B×D×h×w``) or a transformer block (``B×N×D``, laid out by the model's ``TokenLayout``).
        projection: ``None`` (every embedding dimension) or ``k``: explain the score of the seeded random
            projection ``f·Q`` (see :func:`projection_matrix`), ``k`` backward rows instead of ``E``.
        seed: the projection's seed: an int (every pair), one per pair, or ``None`` (one is drawn and
            recorded). Without a projection it is unused and recorded as given.
        batch_size: images per forward (a shared encoder takes ``batch_size // 2`` pairs) and embedding
            dimensions per vectorised backward; ``None`` = 8 on a CPU, 64 on a GPU. Results do not depend on
            it.

    ``extras``: ``interaction`` (``B×h1×w1×h2×w2``), ``explained_score`` (``[B]``, the cosine or dot of the
    (projected) embeddings that ``I`` decomposes; the cosine for a model whose similarity is neither) and
    ``residual`` (``[B]``, ``explained_score − Σ I``: zero up to rounding for a positively homogeneous head; a
    transformer's prefix tokens also land here). ``score`` is the model's own score. Use
    :meth:`PairExplanation.match` for one point's map on the other image.
    """
    kind = pair_similarity_kind(model)
    model.layer_module("a", layer)
    if not model.shared:
        model.layer_module("b", layer)
    batch_size = resolve_batch_size(batch_size, x1.device)
    projections = None
    if projection is not None:
        seed, pair_seeds = checks.seeds(seed, x1.shape[0])
        projections = Projections(projection, pair_seeds)
    one_forward = model.shared and x1.shape[1:] == x2.shape[1:]
    pairs_per_chunk = max(1, batch_size // 2) if one_forward else batch_size
    scores, explained, interactions = [], [], []
    for part in chunk_slices(x1.shape[0], pairs_per_chunk):
        projected = None if projections is None else projections.of(part)
        score, target, sums, grid1, grid2 = _chunk_interaction(
            model, x1[part], x2[part], layer, projected, kind, batch_size
        )
        scores.append(score)
        explained.append(target)
        interactions.append(sums)
    interaction = torch.cat(interactions).view(x1.shape[0], *grid1, *grid2)
    explained_score = torch.cat(explained)
    residual = explained_score - interaction.flatten(1).sum(1)
    return PairExplanation.from_grids(
        interaction.sum((3, 4)),
        interaction.sum((1, 2)),
        x1.shape[-2:],
        x2.shape[-2:],
        score=torch.cat(scores),
        method="pair-interaction",
        config={"layer": layer, "projection": projection, "seed": seed},
        extras={"interaction": interaction, "explained_score": explained_score, "residual": residual},
    )
