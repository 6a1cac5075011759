"""Which region matches which word (docs/image_text.md): ``pair-interaction`` on an image–text pair.

The decomposition of image pairs (:mod:`simexplain.methods.interaction`) at the two towers' layers: every
embedding dimension ``m`` is split over the image layer's patches, ``R_m(x)[p]``, and over the text layer's
tokens, ``R_m(text)[t]`` (gradient × activation of one output), and

    I[p,t] = scale · Σ_m R_m(x)[p] · R_m(text)[t] / (‖f(x)‖·‖g(text)‖)      (scaled cosine; dot: no norms)

so ``Σ_{p,t} I`` is the scaled cosine whenever both heads after the layers are positively homogeneous. A
SigLIP bias, the class token and the special and padding tokens (their columns are zero) land in
``extras["residual"]`` (explained score − Σ I).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .. import checks
from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..pair import PairModel, dot
from ..text import ScaledCosine, TokenBatch
from .interaction import NORM_EPS, Projections, on_grid, relevance_products, tapped_embed
from .text_explanation import WordPart


def explained_form(model: PairModel) -> tuple[str, Tensor | float]:
    """What the matrix decomposes: ``("dot", 1)`` for a dot product, else the cosine and its scale (the
    model's logit scale for a :class:`~simexplain.text.ScaledCosine`, 1 otherwise)."""
    if model.similarity is dot:
        return "dot", 1.0
    if isinstance(model.similarity, ScaledCosine):
        return "cosine", model.similarity.scale
    return "cosine", 1.0


def patch_token_interaction(
    model: PairModel,
    images: Tensor,
    tokens: TokenBatch,
    *,
    partner: Tensor,
    layer: str | None,
    projection: int | None,
    seed: list[int] | None,
    batch_size: int | None = None,
) -> WordPart:
    """``I`` (``B×h×w×T``) at the image tower's ``layer`` and the text tower's layer, with its column sums as
    token scores and its row sums as the image's grid (``grid1``)."""
    if model.text_tower.layer is None:
        raise SimexplainError(
            f"model {model.name!r}: the text tower names no layer for pair-interaction (text_layer=)"
        )
    model.layer_module("a", layer)
    batch_size = resolve_batch_size(batch_size, images.device)
    projections = None if projection is None else Projections(projection, checks.seeds(seed, len(images))[1])
    parts = [
        _chunk(
            model,
            images[part],
            tokens.select(range(part.start, part.stop)),
            layer,
            projections,
            part,
            batch_size,
        )
        for part in chunk_slices(len(images), batch_size)
    ]
    interaction = torch.cat([p[0] for p in parts])
    explained = torch.cat([p[1] for p in parts])
    residual = explained - interaction.flatten(1).sum(1)
    extras = {
        "interaction": interaction,
        "explained_score": explained,
        "residual": residual,
        "grid1": interaction.sum(-1),
    }
    return WordPart(interaction.sum((1, 2)), extras)


def _chunk(
    model: PairModel,
    images: Tensor,
    tokens: TokenBatch,
    layer: str | None,
    projections: Projections | None,
    part: slice,
    dims_per_pass: int,
) -> tuple[Tensor, Tensor]:
    """One chunk of pairs: ``(I B×h×w×T, explained score [B])``."""
    hw = tuple(images.shape[-2:])
    kind, scale = explained_form(model)
    grid: list[tuple[int, int]] = []
    words = tokens.word_mask()

    def arrange(r: list[Tensor]) -> tuple[Tensor, Tensor]:
        patches = on_grid(r[0], model.token_layout, hw)
        grid[:] = [tuple(patches.shape[-2:])]
        return patches.flatten(2), r[1] * words.to(r[1].dtype)  # special and padding tokens: zero columns

    with torch.enable_grad():
        leaf1, z1 = tapped_embed(model, images, "a", layer)
        leaf2, z2 = tapped_embed(model, tokens, "b", None)
        projected = [z1, z2] if projections is None else _projected([z1, z2], projections.of(part))
        sums = relevance_products(projected, [leaf1, leaf2], arrange, dims_per_pass)
    f1, f2 = (p.detach() for p in projected)
    explained = (f1 * f2).sum(1)
    if kind == "cosine":
        norm = (f1.norm(dim=1) * f2.norm(dim=1)).clamp_min(NORM_EPS)
        explained = scale * explained / norm
        sums = scale * sums / norm[:, None, None]
    return sums.detach().view(len(images), *grid[0], -1), explained


def _projected(embeddings: list[Tensor], build: Callable[[int], Tensor]) -> list[Tensor]:
    """Both sides through each pair's seeded projection
    (:func:`simexplain.methods.interaction.projection_matrix`)."""
    q = build(embeddings[0].shape[1]).to(embeddings[0].device)
    return [torch.einsum("be,bek->bk", z, q.to(z.dtype)) for z in embeddings]


__all__ = ["explained_form", "patch_token_interaction"]
