"""This caption or that one? The margin ``s(image, better) − s(image, worse)`` of image–text pairs, and
zero-shot classification explained as the winning prompt against the runner-up (docs/image_text.md).

The image side is the method itself on the image-pair view whose fixed partner is the two texts'
embeddings side by side and whose score is the margin (:func:`simexplain.methods.image_text.run_image_side`):
any method with an image side explains a margin. The words of each text are scored as for its own pair; the
worse text's are negated, so every word score is its share of the margin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import checks
from ..errors import SimexplainError
from ..pair import PairModel
from ..text import TokenBatch
from .common import check_pair
from .image_text import check_image_text, clean_embeddings, run_image_side
from .text_explanation import WordPart


@dataclass
class TextMarginExplanation:
    """Why ``better`` beats ``worse`` for each of ``B`` images.

    Attributes:
        map: ``B×H×W`` the margin's map over the image (``None`` for a method that scores words only).
        better, worse: the two tokenised texts (words in ``better.words``, ``worse.words``).
        word_scores_better, word_scores_worse: per pair, each word's share of the margin (the worse text's
            words negated: a word that raises its own score lowers the margin), or ``None``.
        margin, score_better, score_worse: ``[B]``.
        method, config: the method and its resolved settings.
    """

    map: Tensor | None
    better: TokenBatch
    worse: TokenBatch
    word_scores_better: list[Tensor] | None
    word_scores_worse: list[Tensor] | None
    margin: Tensor
    score_better: Tensor
    score_worse: Tensor
    method: str
    config: dict[str, Any]


def explain_text_margin(
    model: PairModel,
    images: Tensor,
    better: Sequence[str] | str,
    worse: Sequence[str] | str,
    method: str = "input-x-gradient",
    **params: Any,
) -> TextMarginExplanation:
    """Explain the margin of ``better`` over ``worse`` for each image (see the module's text); what
    ``simexplain.explain_margin(model, image, better_text, worse_text, method)`` does with texts.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> from simexplain.text import BagOfWords
        >>> tokenizer = lambda texts: {"input_ids": [[len(w) for w in t.split()] for t in texts]}
        >>> image = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
        >>> model = simexplain.PairModel.image_text(image, BagOfWords(12, 4, 4), tokenizer)
        >>> m = simexplain.explain_margin(model, torch.rand(1, 3, 4, 4), "a cat", "a red dog")
        >>> m.map.shape, [len(s) for s in m.word_scores_worse], m.better.texts
        (torch.Size([1, 4, 4]), [3], ['a cat'])
    """
    entry = check_image_text(model, method)
    settings = {**entry.parameters(), **entry.check(params)}
    images, _ = check_pair(model, images, images)
    texts = [model.text_tower.tokenize(t) for t in (better, worse)]
    if any(len(t) != len(images) for t in texts):
        raise SimexplainError(f"{len(images)} images: give as many better and worse texts")
    config_seed = None
    if "seed" in settings:
        config_seed, settings["seed"] = checks.seeds(settings["seed"], len(images))
    with model.explaining():
        (image_z, better_z, score_better), (_, worse_z, score_worse) = (
            clean_embeddings(model, images, t) for t in texts
        )
        words = [_words(model, entry, images, t, image_z, settings) for t in texts]
        image_map = _margin_map(model, entry, images, texts, (better_z, worse_z), settings, words)
    config = {k: v for k, v in settings.items() if k != "batch_size"}
    if "seed" in config:
        config["seed"] = config_seed
    merged = [None if w is None else t.merge(w.token_scores) for t, w in zip(texts, words)]
    return TextMarginExplanation(
        map=image_map,
        better=texts[0],
        worse=texts[1],
        word_scores_better=merged[0],
        word_scores_worse=None if merged[1] is None else [-s for s in merged[1]],
        margin=score_better - score_worse,
        score_better=score_better,
        score_worse=score_worse,
        method=method,
        config=config,
    )


def _words(model: PairModel, entry, images: Tensor, tokens: TokenBatch, image_z: Tensor, settings: dict):
    if entry.text.words is None:
        return None
    return entry.text.words(model, images, tokens, partner=image_z, **settings)


def _margin_map(
    model: PairModel,
    entry,
    images: Tensor,
    texts: list[TokenBatch],
    embeddings: tuple[Tensor, Tensor],
    settings: dict,
    words: list[WordPart | None],
) -> Tensor | None:
    """The method's image side against the margin; for a method without one whose text side maps the image
    (``pair-interaction``), the better pair's map minus the worse pair's."""
    if entry.text.image_side:
        size = embeddings[0].shape[1]
        partners = torch.cat(embeddings, 1).split(1)

        def margin(z_image: Tensor, partner: Tensor) -> Tensor:
            return model.similarity(z_image, partner[:, :size]) - model.similarity(z_image, partner[:, size:])

        keys = list(zip(texts[0].texts, texts[1].texts))
        return run_image_side(model, entry, images, partners, keys, settings, margin).map1
    grids = [None if w is None else w.extras.get("grid1") for w in words]
    if grids[0] is None:
        return None
    from ..explanation import upsample_maps

    return upsample_maps(grids[0] - grids[1], tuple(images.shape[-2:]))


@dataclass
class ZeroShotExplanation:
    """A zero-shot decision explained: every prompt's score, and the margin of the winning prompt over the
    runner-up (:class:`TextMarginExplanation`)."""

    prompts: list[str]
    scores: Tensor
    winner: int
    runner_up: int
    margin: TextMarginExplanation


def explain_zero_shot(
    model: PairModel, image: Tensor, prompts: Sequence[str], method: str = "input-x-gradient", **params: Any
) -> ZeroShotExplanation:
    """Score ``image`` (one image) against every prompt and explain why the winner beats the runner-up.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> from simexplain.text import BagOfWords
        >>> tokenizer = lambda texts: {"input_ids": [[len(w) for w in t.split()] for t in texts]}
        >>> image = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
        >>> model = simexplain.PairModel.image_text(image, BagOfWords(12, 4, 4), tokenizer)
        >>> z = simexplain.explain_zero_shot(model, torch.rand(1, 3, 4, 4), ["a cat", "a dog", "a bird"])
        >>> z.scores.shape, z.winner != z.runner_up, z.margin.better.texts[0] == z.prompts[z.winner]
        (torch.Size([3]), True, True)
    """
    check_image_text(model, method)
    image, _ = check_pair(model, image, image)
    if len(image) != 1:
        raise SimexplainError(f"zero-shot explains one image, got {len(image)}")
    if isinstance(prompts, str) or len(prompts) < 2:
        raise SimexplainError("zero-shot needs at least two prompts")
    tokens = model.text_tower.tokenize(prompts)
    with model.explaining(), torch.inference_mode():
        scores = model.similarity(model.embed(image, "a").expand(len(tokens), -1), model.embed(tokens, "b"))
    scores = scores.cpu().clone()
    winner, runner_up = torch.argsort(scores, descending=True, stable=True)[:2].tolist()
    margin = explain_text_margin(model, image, [prompts[winner]], [prompts[runner_up]], method, **params)
    return ZeroShotExplanation(list(prompts), scores, winner, runner_up, margin)


__all__ = ["TextMarginExplanation", "ZeroShotExplanation", "explain_text_margin", "explain_zero_shot"]
