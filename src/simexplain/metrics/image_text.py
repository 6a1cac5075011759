"""Metrics of image–text explanations (docs/image_text.md, Metrics).

- On the image side, CI, CD and CAD conditioned on the text: the image is perturbed (its insertion and
  deletion sequences, its masked copy) and scored against the text's clean embedding. They are the pair
  metrics themselves, run by :func:`simexplain.metrics.evaluate` on the image-pair view of the model whose
  partner is the text's embedding (:func:`simexplain.methods.image_text.partnered`); their values are the
  image's direction (``CI_2``, ``CD_2``, ``CAD_2`` there).
- On the text side, a word-deletion and a word-insertion curve in the order of the word scores: the text
  with its ``k`` best-scored words left out (``WD``), or with only them (``WI``, from the text's special
  tokens alone), ``k = 0 … W``, scored against the image's clean embedding; each metric is the curve's area
  over the fraction ``k/W`` of words. Every variant of every text is embedded once, in chunks, under
  inference mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..batching import chunk_slices, resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..methods.common import check_pair
from ..methods.image_text import clean_embeddings, groups_by_text, partnered
from ..methods.text_explanation import ImageTextExplanation
from ..pair import PairModel
from ..text import TokenBatch
from .evaluate import check_options, evaluate
from .insertion_deletion import auc
from .results import MetricResults

IMAGE_METRICS = ("CI", "CD", "CAD")  # of the image, conditioned on the text
WORD_METRICS = {
    "WI": (True, "word insertion AUC: the words added best-scored first"),
    "WD": (False, "word deletion AUC: the words left out best-scored first"),
}
IMAGE_TEXT_METRICS = (*IMAGE_METRICS, *WORD_METRICS)


def resolve_image_text_metrics(metrics: str | Sequence[str], explanation: ImageTextExplanation) -> list[str]:
    """The metric names asked for: ``"all"`` is every one the explanation has maps or word scores for.

    Example:
        >>> from simexplain.text import TokenBatch
        >>> tokens = TokenBatch.from_ids([[3]], texts=["x"])
        >>> e = ImageTextExplanation(None, tokens, token_scores=torch.ones(1, 1))
        >>> resolve_image_text_metrics("all", e)
        ['WI', 'WD']
    """
    usable = [m for m in IMAGE_METRICS if explanation.map1 is not None]
    usable += [m for m in WORD_METRICS if explanation.token_scores is not None]
    names = list(usable) if metrics == "all" else [metrics] if isinstance(metrics, str) else list(metrics)
    for name in names:
        if name not in IMAGE_TEXT_METRICS:
            raise SimexplainError(
                f"unknown metric {name!r} for image–text pairs; known: {', '.join(IMAGE_TEXT_METRICS)}"
            )
        if name not in usable:
            what = "an image map" if name in IMAGE_METRICS else "word scores"
            raise SimexplainError(f"{name} needs {what}, and method {explanation.method!r} gives none")
    return names


def usable_metrics(metrics: Sequence[str], explanation: object) -> list[str]:
    """The metrics of ``metrics`` that ``explanation`` can have: all of them for two images; for an
    image–text explanation those it has maps or word scores for (``"all"`` among them: every such one).

    Example:
        >>> usable_metrics(["SD"], object())
        ['SD']
    """
    if not isinstance(explanation, ImageTextExplanation):
        return list(metrics)
    usable = resolve_image_text_metrics("all", explanation)
    return usable if "all" in metrics else [m for m in metrics if m in usable]


def evaluate_image_text(
    model: PairModel,
    images: Tensor,
    texts: Sequence[str],
    explanation: ImageTextExplanation,
    metrics: str | Sequence[str] = "all",
    *,
    batch_size: int | None = None,
    clean: tuple[Tensor, Tensor] | None = None,
    **options: int | float,
) -> MetricResults:
    """Per-pair metrics of an image–text explanation: ``CI``, ``CD``, ``CAD`` of the image map and ``WI``,
    ``WD`` of the word scores (see the module's text); ``options`` are the curves' (``step``,
    ``blur_kernel``, ``blur_sigma``), ``clean`` the pairs' embeddings when the caller has them.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> from simexplain.text import BagOfWords
        >>> tokenizer = lambda texts: {"input_ids": [[len(w) for w in t.split()] for t in texts]}
        >>> image = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
        >>> model = simexplain.PairModel.image_text(image, BagOfWords(12, 4, 4), tokenizer)
        >>> x = torch.rand(1, 3, 16, 16)
        >>> e = simexplain.explain(model, x, ["a big dog"], "input-x-gradient")
        >>> r = simexplain.metrics.evaluate(model, x, ["a big dog"], e, step=64)
        >>> sorted(r), r.curves["WD"].shape
        (['CAD', 'CD', 'CI', 'WD', 'WI', 'base'], torch.Size([1, 4]))
    """
    names = resolve_image_text_metrics(metrics, explanation)
    options = check_options(**options)
    with model.locked():
        images, _ = check_pair(model, images, images)
        tokens = model.text_tower.tokenize(texts)
        if len(tokens) != len(images) or len(explanation) != len(images):
            raise SimexplainError(
                f"{len(images)} images, {len(tokens)} texts, {len(explanation)} explanations"
            )
        with model.explaining():
            found_clean = clean_embeddings(model, images, tokens) if clean is None else _given(model, clean)
            image_z, text_z, base = found_clean
            values, curves, fractions = {"base": base.double().cpu()}, {}, {}
            if set(names) & set(IMAGE_METRICS):
                found = _image_metrics(model, images, tokens, text_z, explanation, batch_size, options)
                values.update(found[0])
                curves.update(found[1])
                fractions.update(found[2])
            if set(names) & set(WORD_METRICS):
                found = word_curves(model, image_z, tokens, explanation.word_scores, batch_size)
                values.update({name: auc_of(found[name], found["fractions"]) for name in WORD_METRICS})
                curves.update({name: found[name] for name in WORD_METRICS})
                fractions.update({name: found["fractions"] for name in WORD_METRICS})
    ordered = {n: values[n] for n in names}
    ordered["base"] = values["base"]
    return MetricResults(ordered, curves=curves, fractions=fractions, method=explanation.method)


def _given(model: PairModel, clean: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    image_z, text_z = (z.detach() for z in clean)
    with torch.no_grad():
        return image_z, text_z, model.similarity(image_z, text_z)


def _image_metrics(
    model: PairModel,
    images: Tensor,
    tokens: TokenBatch,
    text_z: Tensor,
    explanation: ImageTextExplanation,
    batch_size: int | None,
    options: dict,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """CI, CD and CAD of the image maps (the pair metrics' image direction), pairs with one text together."""
    views = explanation.image1 if explanation.image1 is not None else images
    values: dict[str, list] = {name: [None] * len(images) for name in IMAGE_METRICS}
    curves: dict[str, Tensor] = {}
    fractions: dict[str, Tensor] = {}
    for group in groups_by_text(tokens.texts):
        maps = explanation.map1[group]
        # The text's embedding is image 1 (fixed); the image, or the view its map belongs to, image 2.
        kept = PairExplanation(
            torch.zeros_like(maps), maps, method=explanation.method, extras={"image2": views[group]}
        )
        with partnered(model, text_z[group[0] : group[0] + 1]) as side:
            x = images[group]
            found = evaluate(side, x, x, kept, list(IMAGE_METRICS), batch_size=batch_size, **options)
        for name in IMAGE_METRICS:
            for row, pair in enumerate(group):
                values[name][pair] = found[f"{name}_2"][row]
        for name in ("CI", "CD"):
            curve = found.curves[f"{name}_2"]
            curves.setdefault(name, curve.new_empty(len(images), curve.shape[1]))[group] = curve
            fractions[name] = found.fractions[f"{name}_2"]
    return {name: torch.stack(v) for name, v in values.items()}, curves, fractions


def word_curves(
    model: PairModel,
    image_z: Tensor,
    tokens: TokenBatch,
    word_scores: Sequence[Tensor],
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """The word-deletion (``WD``) and word-insertion (``WI``) curves, ``B×(W+1)`` float64 (a text with fewer
    words than the longest is padded with NaN), and their x axes ``fractions`` (``k/W`` per pair), in the
    order of ``word_scores`` (highest first; ties by position)."""
    pairs, drops, points = [], [], []
    for b, scores in enumerate(word_scores):
        order = torch.argsort(scores.detach().cpu(), descending=True, stable=True).tolist()
        count = len(order)
        for kind in ("WD", "WI"):
            for k in range(count + 1):
                pairs.append(b)
                drops.append(order[:k] if kind == "WD" else order[k:])
                points.append((kind, b, k))
    variants = tokens.select(pairs).without(drops)
    index = torch.tensor(pairs, device=image_z.device)
    parts = chunk_slices(len(pairs), resolve_batch_size(batch_size, image_z.device))
    with torch.inference_mode():
        scores = [
            model.similarity(image_z[index[p]], model.embed(variants.select(range(p.start, p.stop)), "b"))
            for p in parts
        ]
    width = max(len(w) for w in tokens.words) + 1
    blank = torch.full((len(tokens), width), float("nan"), dtype=torch.float64)
    out = {name: blank.clone() for name in (*WORD_METRICS, "fractions")}
    for value, (kind, b, k) in zip(torch.cat(scores).double().cpu().tolist(), points):
        out[kind][b, k] = value
        out["fractions"][b, k] = k / max(len(tokens.words[b]), 1)
    return out


def auc_of(curves: Tensor, fractions: Tensor) -> Tensor:
    """Per-pair trapezoid areas of NaN-padded curves over their own x axes."""
    return torch.stack([auc(c[~c.isnan()][None], f[~f.isnan()])[0] for c, f in zip(curves, fractions)])


__all__ = [
    "IMAGE_METRICS",
    "IMAGE_TEXT_METRICS",
    "WORD_METRICS",
    "auc_of",
    "evaluate_image_text",
    "resolve_image_text_metrics",
    "usable_metrics",
    "word_curves",
]
