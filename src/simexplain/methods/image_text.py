"""Explaining image–text pairs (docs/image_text.md): the image maps, the word scores and which region matches
which word, for ``B`` images and ``B`` texts.

Every method's image–text form is registered here, with the method (:func:`register_text`):

- **The image side** reuses the method itself, unchanged. The one seam is the partner: the method runs on an
  image-pair view of the model (:func:`image_side_model`) whose image 2 is the image, through the image tower,
  and whose image 1 is a :class:`~simexplain.text.FixedEmbedding` that returns the text's embedding, with the
  model's own similarity (image first). Whatever a method does to image 1 (noise, windows, its own
  differentiation) cannot move that embedding, so the map of image 2 is the method's definition with the text
  embedding as the partner, and Averaged Transforms walks its path on the image. Pairs that share a text run
  in one call; each distinct text is one call (a fixed embedding is one row).
- **The text side** runs with the image's clean embedding as the fixed partner
  (:mod:`simexplain.methods.words`); ``pair-interaction`` decomposes both sides at once
  (:mod:`simexplain.methods.patch_token`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from .. import checks
from ..errors import SimexplainError
from ..explanation import PairExplanation, upsample_maps
from ..pair import PairModel
from ..text import FixedEmbedding, TokenBatch
from .common import check_pair
from .patch_token import patch_token_interaction
from .registry import Method, available, get, register, register_text
from .text_explanation import ImageTextExplanation, WordPart
from .words import (
    OcclusionMode,
    words_input_x_gradient,
    words_integrated_gradients,
    words_interaction_cam,
    words_occlusion,
)

_IMAGE_SIDES: weakref.WeakKeyDictionary[PairModel, PairModel] = weakref.WeakKeyDictionary()


def image_text_methods() -> list[str]:
    """The methods that run on image–text pairs (those with a registered text form).

    Example:
        >>> image_text_methods()[:3]
        ['input-x-gradient', 'smooth-grad', 'averaged-transforms']
    """
    return [name for name in available() if get(name).text is not None]


def check_image_text(model: PairModel, method: str) -> Method:
    """The method, if ``model`` has a text tower and the method a text form; one line otherwise."""
    if model.text_tower is None:
        raise SimexplainError(
            f"model {model.name!r} has no text tower: load an image–text model (load_model(NAME, "
            "pair='image-text') or PairModel.image_text(...)) to explain an image and a text"
        )
    entry = check_text_form(method)
    entry.check_model(model)
    return entry


def check_text_form(method: str) -> Method:
    """The method, if it registered a text form (needs no model); one line otherwise."""
    entry = get(method)
    if entry.text is None:
        raise SimexplainError(
            f"method {method!r} has no image–text form; on image–text pairs: "
            f"{', '.join(image_text_methods())}"
        )
    return entry


def explain_image_text(
    model: PairModel, images: Tensor, texts: Sequence[str] | str, method: str = "input-x-gradient", **params
) -> ImageTextExplanation:
    """Explain the scores of the pairs ``(images[i], texts[i])`` with ``method``: the image map (``map1``),
    the token and word scores (``token_scores``, ``words``, ``word_scores``) and, for ``pair-interaction``,
    the patches × tokens matrix (``interaction``, ``match``). ``explain(model, images, texts, ...)`` comes
    here when ``model`` has a text tower.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> from simexplain.text import BagOfWords
        >>> tokenizer = lambda texts: {"input_ids": [[len(w) for w in t.split()] for t in texts]}
        >>> image = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
        >>> model = simexplain.PairModel.image_text(image, BagOfWords(12, 4, 4), tokenizer)
        >>> e = simexplain.explain(model, torch.rand(1, 3, 4, 4), ["a dog"], "input-x-gradient")
        >>> e.map1.shape, e.words, len(e.word_scores[0])
        (torch.Size([1, 4, 4]), [['#0', '#1']], 2)
    """
    entry = check_image_text(model, method)
    settings = {**entry.parameters(), **entry.check(params)}
    images, _ = check_pair(model, images, images)
    tokens = model.text_tower.tokenize(texts)
    if len(tokens) != len(images):
        raise SimexplainError(f"{len(images)} images and {len(tokens)} texts; give one text per image")
    config_seed = None
    if "seed" in settings:
        config_seed, settings["seed"] = checks.seeds(settings["seed"], len(images))
    with model.explaining():
        image_z, text_z, score = clean_embeddings(model, images, tokens)
        image = _image_maps(model, entry, images, tokens, text_z, settings) if entry.text.image_side else None
        words = (
            entry.text.words(model, images, tokens, partner=image_z, **settings) if entry.text.words else None
        )
    return _assembled(entry, settings, config_seed, tokens, score, image, words, tuple(images.shape[-2:]))


def clean_embeddings(model: PairModel, images: Tensor, tokens: TokenBatch) -> tuple[Tensor, Tensor, Tensor]:
    """``(f(images), g(texts), scores)`` computed once, under inference mode, as ordinary tensors."""
    with torch.inference_mode():
        image_z, text_z = model.embed(images, "a"), model.embed(tokens, "b")
        score = model.similarity(image_z, text_z)
    with torch.inference_mode(False):
        return image_z.clone(), text_z.clone(), score.clone()


def _assembled(
    entry: Method,
    settings: dict[str, Any],
    config_seed: Any,
    tokens: TokenBatch,
    score: Tensor,
    image: PairExplanation | None,
    words: WordPart | None,
    image_size: tuple[int, int],
) -> ImageTextExplanation:
    """One explanation from the image side's and the text side's parts (``image_size``: where a grid of the
    text side's is upsampled to)."""
    config = (
        dict(image.config) if image is not None else {k: v for k, v in settings.items() if k != "batch_size"}
    )
    if "seed" in config:
        config["seed"] = config_seed
    extras = dict(image.extras) if image is not None else {}
    extras.update({} if words is None else words.extras)
    grid = image.grid1 if image is not None else extras.pop("grid1", None)
    map1 = image.map1 if image is not None else None
    if grid is not None and map1 is None:
        map1 = upsample_maps(grid, image_size)
    return ImageTextExplanation(
        map1=map1,
        tokens=tokens,
        token_scores=None if words is None else words.token_scores,
        grid1=grid,
        score=image.score if image is not None else score,
        method=entry.name,
        config=config,
        extras=extras,
    )


# ------------------------------------------------------------------------------------------- the image side
def image_side_model(model: PairModel) -> PairModel:
    """The image-pair view of an image–text ``model`` (built once per model, engine settings kept in step):
    image 1 a :class:`~simexplain.text.FixedEmbedding`, image 2 the image tower with the model's layer, token
    layout and preprocessing; set its partner with :func:`partnered`."""
    side = _IMAGE_SIDES.get(model)
    if side is None:
        side = PairModel(
            FixedEmbedding(),
            encoder_b=model.encoder,
            layer=model.layer,
            layer_b=model.layer,
            preprocessing=model.preprocessing,
            token_layout=model.token_layout,
            name=model.name,
            engine=model.engine,
            precision=model.precision,
        )
        _IMAGE_SIDES[model] = side
    if (side.engine, side.precision) != (model.engine, model.precision):
        side.engine, side.precision = model.engine, model.precision
    return side


@contextmanager
def partnered(model: PairModel, partner: Tensor, similarity: Callable | None = None) -> Iterator[PairModel]:
    """:func:`image_side_model` with image 1's embedding set to ``partner`` (``1×E``) and the score
    ``similarity(z_image, partner)`` (default: the model's own), for the duration of the block."""
    side = image_side_model(model)
    score = similarity or model.similarity
    with model.locked():
        side.encoder.embedding = partner.detach()
        side.similarity = lambda z_partner, z_image: score(z_image, z_partner)
        try:
            yield side
        finally:
            side.encoder.embedding = None


def groups_by_text(texts: Sequence[Any]) -> list[list[int]]:
    """The indices of equal texts, in order of first appearance."""
    groups: dict[Any, list[int]] = {}
    for index, text in enumerate(texts):
        groups.setdefault(text, []).append(index)
    return list(groups.values())


def run_image_side(
    model: PairModel,
    entry: Method,
    images: Tensor,
    partners: Sequence[Tensor],
    keys: Sequence[Any],
    settings: dict[str, Any],
    similarity: Callable | None = None,
) -> PairExplanation:
    """The method on the image of each pair against its partner embedding (``partners[i]``, ``1×E``), pairs
    with equal ``keys`` in one call; per-pair seeds (a list in ``settings["seed"]``) go with their pairs. The
    result's ``map1``/``grid1``/``extras`` are the image's (the method's image 2)."""
    params = {k: v for k, v in settings.items() if k in entry.parameters()}
    pieces: list[tuple[list[int], PairExplanation]] = []
    for group in groups_by_text(keys):
        own = dict(params)
        if isinstance(params.get("seed"), list):
            own["seed"] = [params["seed"][i] for i in group]
        x = images[group]
        with partnered(model, partners[group[0]], similarity) as side, side.explaining():
            pieces.append((group, entry.fn(side, x, x, **own)))
    return _scattered(pieces, len(images))


def _image_maps(
    model: PairModel, entry: Method, images: Tensor, tokens: TokenBatch, text_z: Tensor, settings: dict
) -> PairExplanation:
    return run_image_side(model, entry, images, text_z.split(1), tokens.texts, settings)


def _scattered(pieces: list[tuple[list[int], PairExplanation]], count: int) -> PairExplanation:
    """The groups' explanations of image 2 back in pair order, as image 1 of one explanation."""

    def gather(get: Callable[[PairExplanation], Tensor | None]) -> Tensor | None:
        first = get(pieces[0][1])
        if first is None:
            return None
        out = first.new_empty(count, *first.shape[1:])
        for group, e in pieces:
            out[group] = get(e)
        return out

    first = pieces[0][1]
    # A method names what belongs to image k with the suffix k: image 2's become the image's, image 1's (the
    # fixed partner's) are dropped.
    names = [n[:-1] + "1" for n in first.extras if n.endswith("2")]
    names += [n for n in first.extras if not n.endswith(("1", "2"))]
    extras = {
        n: gather(lambda e, n=n: e.extras[n[:-1] + "2"] if n.endswith("1") else e.extras[n]) for n in names
    }
    map1 = gather(lambda e: e.map2)
    return PairExplanation(
        map1=map1,
        map2=map1,
        score=gather(lambda e: e.score),
        grid1=gather(lambda e: e.grid2),
        method=first.method,
        config=first.config,
        extras=extras,
    )


# ---------------------------------------------------------------------------------------------- the forms
@register(
    "integrated-gradients",
    "saliency",
    "Integrated Gradients on the token embeddings: each word's share of an image–text score (image–text)",
    needs=("gradients", "text"),
)
def integrated_gradients(
    model: PairModel,
    images: Tensor,
    texts: Sequence[str],
    *,
    steps: checks.Count = 20,
    batch_size: checks.BatchSize = None,
) -> ImageTextExplanation:
    """Integrated Gradients of the score on the text's token embeddings, from zero embeddings, ``steps``
    midpoints (docs/image_text.md, Word scores); word scores only."""
    return explain_image_text(
        model, images, texts, "integrated-gradients", steps=steps, batch_size=batch_size
    )


@register(
    "word-occlusion",
    "perturbation",
    "score drop when a word is left out of the text (or the score of that word alone) (image–text)",
    needs=("text",),
)
def word_occlusion(
    model: PairModel,
    images: Tensor,
    texts: Sequence[str],
    *,
    mode: OcclusionMode = "leave-out",
    batch_size: checks.BatchSize = None,
) -> ImageTextExplanation:
    """Word occlusion (docs/image_text.md, Word scores): ``mode="leave-out"`` scores each word by the drop
    when its tokens are removed, ``"only"`` by the score of the text reduced to it."""
    return explain_image_text(model, images, texts, "word-occlusion", mode=mode, batch_size=batch_size)


register_text("input-x-gradient", image_side=True, words=words_input_x_gradient)
register_text("smooth-grad", image_side=True)
register_text("averaged-transforms", image_side=True)
register_text("conditional-occlusion", image_side=True)
register_text("pair-grad-cam", image_side=True)
register_text("interaction-cam", image_side=True, words=words_interaction_cam)
register_text("integrated-gradients", image_side=False, words=words_integrated_gradients)
register_text("word-occlusion", image_side=False, words=words_occlusion)
register_text("pair-interaction", image_side=False, words=patch_token_interaction)

__all__ = [
    "check_image_text",
    "check_text_form",
    "clean_embeddings",
    "explain_image_text",
    "groups_by_text",
    "image_side_model",
    "image_text_methods",
    "integrated_gradients",
    "partnered",
    "run_image_side",
    "word_occlusion",
]
