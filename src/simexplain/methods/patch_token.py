"""Which region matches which word (docs/image_text.md): ``pair-interaction`` on an image–text pair.

The decomposition of image pairs (:mod:`simexplain.methods.interaction`) at the two towers' layers: every
embedding dimension ``m`` is split over the image layer's patches, ``R_m(x)[p]``, and over the text layer's
tokens, ``R_m(text)[t]`` (gradient × activation of one output), and

    I[p,t] = scale · Σ_m R_m(x)[p] · R_m(text)[t] / (‖f(x)‖·‖g(text)‖)      (scaled cosine; dot: no norms)

so ``Σ_{p,t} I`` is the scaled cosine whenever both heads after the layers are positively homogeneous. A
SigLIP bias, the class token and the special and padding tokens (their columns are zero) land in
``extras["residual"]`` (explained score − Σ I).

The gradient is linear in its seed, so ``Σ_m R_m(x)[p] · c_m`` is the gradient × activation of ``⟨f(x), c⟩``:
the text side takes one backward row per embedding dimension, the image side one per word token (``c`` =
that token's relevances), each vectorised ``batch_size`` rows at a time; the image tower, the costlier one, is
differentiated once per word token instead of once per dimension (benchmarks/results/text.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .. import checks
from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..pair import PairModel, TokenLayout, dot
from ..text import ScaledCosine, TokenBatch
from .interaction import NORM_EPS, Projections, on_grid, relevance_rows, tapped_embed
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
    rows_per_pass: int,
) -> tuple[Tensor, Tensor]:
    """One chunk of pairs: ``(I B×h×w×T, explained score [B])``. The text side's relevances take one backward
    row per embedding dimension (the text tower is the cheaper one); the image side's column of token ``t`` is
    then ONE backward row, of ``⟨f(x), R(text)[t]⟩`` (the gradient is linear in the seed), so the image tower
    is differentiated once per word token instead of once per dimension."""
    kind, scale = explained_form(model)
    words = tokens.word_mask()
    with torch.enable_grad():
        leaf1, z1 = tapped_embed(model, images, "a", layer)
        leaf2, z2 = tapped_embed(model, tokens, "b", None)
        f1, f2 = [z1, z2] if projections is None else _projected([z1, z2], projections.of(part))
        text = _text_relevances(f2, leaf2, rows_per_pass) * words.to(f2.dtype)  # E×B×T, specials zero
        sums = _image_columns(model, images, f1, leaf1, text, words, rows_per_pass)
    f1, f2 = f1.detach(), f2.detach()
    explained = (f1 * f2).sum(1)
    if kind == "cosine":
        norm = (f1.norm(dim=1) * f2.norm(dim=1)).clamp_min(NORM_EPS)
        explained = scale * explained / norm
        sums = scale * sums / norm[:, None, None, None]
    return sums.detach(), explained


def _text_relevances(f: Tensor, leaf: Tensor, rows_per_pass: int) -> Tensor:
    """``R_m(text)[t]`` for every dimension ``m``: ``E×B×T``."""
    dim, parts = f.shape[1], []
    for part in chunk_slices(dim, rows_per_pass, desc="embedding dimensions"):
        eye = torch.eye(dim, dtype=f.dtype, device=f.device)[part]
        parts.append(relevance_rows(f, leaf, eye[:, None, :].expand(-1, f.shape[0], -1)))
    return torch.cat(parts)


def _image_columns(
    model: PairModel,
    images: Tensor,
    f: Tensor,
    leaf: Tensor,
    text: Tensor,
    words: Tensor,
    rows_per_pass: int,
) -> Tensor:
    """``Σ_m R_m(x)[p] · R_m(text)[t]`` as ``B×h×w×T``: one vectorised backward row per word token."""
    columns = words.any(0).nonzero()[:, 0].tolist()  # a token that is a word in some text of the chunk
    out = None
    for part in chunk_slices(len(columns), rows_per_pass, desc="tokens"):
        index = columns[part]
        seeds = text[:, :, index].permute(2, 1, 0)  # one row per token: its relevances over the dimensions
        grid = on_grid(relevance_rows(f, leaf, seeds), model.token_layout, tuple(images.shape[-2:]))
        if out is None:
            out = grid.new_zeros(len(images), *grid.shape[-2:], text.shape[2])
        out[..., index] = grid.permute(1, 2, 3, 0)
    if out is None:  # no word at all: only special tokens
        layout = model.token_layout or TokenLayout()
        hw = layout.grid(tuple(images.shape[-2:])) if leaf.dim() == 3 else leaf.shape[-2:]
        out = f.new_zeros(len(images), *hw, text.shape[2])
    return out


def _projected(embeddings: list[Tensor], build: Callable[[int], Tensor]) -> list[Tensor]:
    """Both sides through each pair's seeded projection
    (:func:`simexplain.methods.interaction.projection_matrix`)."""
    q = build(embeddings[0].shape[1]).to(embeddings[0].device)
    return [torch.einsum("be,bek->bk", z, q.to(z.dtype)) for z in embeddings]


__all__ = ["explained_form", "patch_token_interaction"]
