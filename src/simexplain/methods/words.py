"""Word scores of image–text pairs (docs/image_text.md, Word scores): what each token of the text adds to the
score ``s = sim(f(image), g(text))``, with the image's clean embedding as the fixed partner.

- Input×Gradient and Integrated Gradients on the token embeddings ``E`` (the output of the text tower's token
  embedding module, before position embeddings are added): ``Σ_e E[t,e] · ∂s/∂E[t,e]``, signed, so the
  token scores of a linear text tower add up to the score; Integrated Gradients averages the gradient over
  ``α·E``, ``α`` at the midpoints of ``steps`` equal intervals of [0, 1] (baseline: zero embeddings);
- ``word-occlusion``: the score drop when a word's tokens are left out (``mode="leave-out"``), or the score of
  the text reduced to that word (``mode="only"``);
- Interaction-CAM at the text tower's layer (tokens × features), the rule of :mod:`simexplain.methods.cam`
  with the tokens as positions.

Texts go through the text tower in chunks of ``batch_size``; padding and special tokens score zero.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from .. import checks
from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..pair import PairModel, forward_hook
from ..text import TokenBatch
from .cam import interaction_cam_maps
from .text_explanation import WordPart, token_scores_or_zero

OCCLUSION_MODES = ("leave-out", "only")


class _EmbeddingTap:
    """A forward hook that makes the token embeddings a leaf of the graph, scaled per text by ``alpha``."""

    def __init__(self) -> None:
        self.alpha: Tensor | None = None
        self.clean: Tensor | None = None
        self.leaf: Tensor | None = None

    def hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor) or output.dim() != 3:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise SimexplainError(f"the token embedding returned {shape}, not B×T×D embeddings")
        self.clean = output.detach()
        scaled = self.clean if self.alpha is None else self.clean * self.alpha.view(-1, 1, 1).to(output.dtype)
        self.leaf = scaled.clone().requires_grad_(True)
        return self.leaf.clone()  # the leaf keeps its value if the network writes into its output in place


def _text_scores(model: PairModel, partner: Tensor, tokens: TokenBatch) -> Tensor:
    """The model's scores of (fixed image embeddings, texts), image first."""
    return model.similarity(partner, model.embed(tokens, "b"))


def _embedding_gradients(
    model: PairModel, partner: Tensor, tokens: TokenBatch, alpha: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``(E, ∂s/∂(α·E))`` of one chunk of texts: one forward and one backward of the summed scores."""
    tap = _EmbeddingTap()
    tap.alpha = alpha
    module = model.text_tower.get_submodule(model.text_tower.token_embedding_name)
    with model.tapped(), forward_hook(module, tap.hook), torch.enable_grad():
        scores = _text_scores(model, partner, tokens)
        (grad,) = torch.autograd.grad(scores.sum(), tap.leaf)
    return tap.clean, grad


def words_input_x_gradient(
    model: PairModel,
    images: Tensor,
    tokens: TokenBatch,
    *,
    partner: Tensor,
    batch_size: int | None = None,
    **_,
) -> WordPart:
    """Input×Gradient on the token embeddings: ``Σ_e E[t,e] · ∂s/∂E[t,e]`` per token."""
    scores = torch.zeros(tokens.input_ids.shape, dtype=partner.dtype, device=partner.device)
    for part in chunk_slices(len(tokens), resolve_batch_size(batch_size, partner.device)):
        rows = list(range(part.start, part.stop))
        clean, grad = _embedding_gradients(model, partner[part], tokens.select(rows), None)
        scores[part] = (clean * grad).sum(-1).to(scores.dtype)
    return WordPart(token_scores_or_zero(scores, tokens), {})


def words_integrated_gradients(
    model: PairModel,
    images: Tensor,
    tokens: TokenBatch,
    *,
    partner: Tensor,
    steps: int,
    batch_size: int | None = None,
) -> WordPart:
    """Integrated Gradients on the token embeddings from the zero embedding: ``E · mean_k ∂s/∂(α_k E)``,
    ``α_k = (k + ½)/steps``; items ``(text, k)`` in text-major order, ``batch_size`` per forward."""
    clean_rows: dict[int, Tensor] = {}
    sums: dict[int, Tensor] = {}
    for part in chunk_slices(len(tokens) * steps, resolve_batch_size(batch_size, partner.device)):
        items = range(part.start, part.stop)
        texts = [i // steps for i in items]
        alpha = torch.tensor([(i % steps + 0.5) / steps for i in items], device=partner.device)
        index = torch.tensor(texts, device=partner.device)
        clean, grad = _embedding_gradients(model, partner[index], tokens.select(texts), alpha)
        for row, text in enumerate(texts):  # summed in item order: the same on every run and batch size
            clean_rows.setdefault(text, clean[row])
            sums[text] = grad[row] if text not in sums else sums[text] + grad[row]
    total = torch.stack([(clean_rows[b] * sums[b] / steps).sum(-1) for b in range(len(tokens))])
    return WordPart(token_scores_or_zero(total.to(partner.dtype), tokens), {})


def words_occlusion(
    model: PairModel,
    images: Tensor,
    tokens: TokenBatch,
    *,
    partner: Tensor,
    mode: str,
    batch_size: int | None = None,
) -> WordPart:
    """Per word: ``s − s(text without it)`` (``leave-out``) or ``s(text with only it)`` (``only``); every
    variant of every text embedded once, in chunks, under inference mode."""
    pairs, drops = [], []
    for b, words in enumerate(tokens.words):
        for w in range(len(words)):
            pairs.append(b)
            drops.append([w] if mode == "leave-out" else [v for v in range(len(words)) if v != w])
    variants = tokens.select(pairs).without(drops)
    index = torch.tensor(pairs, device=partner.device)
    with torch.inference_mode():
        base = _text_scores(model, partner, tokens)
        scores = torch.cat(
            [
                _text_scores(model, partner[index[part]], variants.select(range(part.start, part.stop)))
                for part in chunk_slices(len(pairs), resolve_batch_size(batch_size, partner.device))
            ]
        )
        values = base[index] - scores if mode == "leave-out" else scores
    with torch.inference_mode(False):
        values = values.clone()
    per_text = list(values.split([len(w) for w in tokens.words]))
    return WordPart(tokens.spread(per_text), {})


def words_interaction_cam(
    model: PairModel,
    images: Tensor,
    tokens: TokenBatch,
    *,
    partner: Tensor,
    reduction: str,
    batch_size: int | None = None,
    **_,
) -> WordPart:
    """Interaction-CAM at the text tower's layer: ``M[t] = Σ_d A[d,t] · J[d] · relu(G[d,t])`` with
    ``J = r(A)`` over the text's attended tokens (the partner is an embedding, without an activation at this
    layer: :func:`simexplain.methods.cam.joint_activation`)."""
    name = model.text_tower.layer
    if name is None:
        raise SimexplainError(
            f"model {model.name!r}: the text tower names no layer for Interaction-CAM (text_layer=)"
        )
    scores = torch.zeros(tokens.input_ids.shape, dtype=partner.dtype, device=partner.device)
    empty = partner.new_zeros(1, 0, 1, 1)
    for part in chunk_slices(len(tokens), resolve_batch_size(batch_size, partner.device)):
        chunk = tokens.select(range(part.start, part.stop))
        acts, grads = _layer_gradients(model, partner[part], chunk, name)
        for row in range(len(chunk)):
            kept = chunk.attention_mask[row].nonzero()[:, 0]  # the text's own tokens, not the padding
            a, g = (t[row, kept].T[None, :, None, :] for t in (acts, grads))  # 1×D×1×n: tokens as positions
            _, grid = interaction_cam_maps(empty, a, empty, g, reduction=reduction)
            scores[part.start + row, kept] = grid[0, 0].to(scores.dtype)
    return WordPart(token_scores_or_zero(scores, tokens), {})


def _layer_gradients(
    model: PairModel, partner: Tensor, tokens: TokenBatch, name: str
) -> tuple[Tensor, Tensor]:
    """Activations ``B×T×D`` of the text tower's module ``name`` and the score's gradient there."""
    captured: list[Tensor] = []

    def capture(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor) or output.dim() != 3:
            raise SimexplainError(f"text layer {name!r} must return B×T×D tokens × features")
        if captured:
            raise SimexplainError(f"text layer {name!r} runs more than once per forward; tap another layer")
        captured.append(output.detach().requires_grad_(True))
        return captured[0].clone()

    with model.tapped(), forward_hook(model.text_tower.get_submodule(name), capture), torch.enable_grad():
        scores = _text_scores(model, partner, tokens)
        (grad,) = torch.autograd.grad(scores.sum(), captured[0])
    return captured[0].detach(), grad


OcclusionMode = Annotated[str, checks.one_of(OCCLUSION_MODES)]

__all__ = [
    "OCCLUSION_MODES",
    "words_input_x_gradient",
    "words_integrated_gradients",
    "words_interaction_cam",
    "words_occlusion",
]
