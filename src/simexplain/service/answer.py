"""What a request found, and its ONE JSON shape.

:class:`PairReport` holds the tensors (images, explanations, metrics) of a finished request;
:meth:`PairReport.to_json` writes the answer every door hands out: ``simexplain explain --json`` and the web
API (``POST /api/explain``, whose pydantic schema is generated from :class:`AnswerJSON`), each adding only its
own delivery fields (written files; result links). A score is a number for one pair and a list for a batch;
non-finite numbers become ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import NotRequired, TypedDict  # pydantic reads these on Python < 3.12

from ..engines import describe
from ..explanation import PairExplanation
from ..methods.text_explanation import ImageTextExplanation
from ..pair import PairModel
from .request import Request

MAX_GRID = 224  # a map's side in the JSON; larger native grids are average-pooled
MAX_INTERACTION = 2**16  # values of a second-order map in the JSON (a 14×14 ViT: 38,416); larger stay out

Score = float | list[float] | None
Grid = list[list[float]]


class ExplanationJSON(TypedDict):
    """One method's answer: its resolved config (reruns it), score, seconds and metrics; with ``maps=True``
    the first pair's maps on the method's native grid (at most 224×224) and, for a second-order method, its
    ``I[y1][x1][y2][x2]`` (at most 65,536 values). For an image and a text: the text's ``words`` and their
    ``word_scores`` (``None`` for a method that maps the image only) and, with ``maps=True``, ``map1`` and
    the patches × tokens ``interaction_words`` ``I[y][x][token]`` of ``pair-interaction`` with the word of
    each token (``token_words``, ``None`` for special and padding tokens)."""

    method: str
    config: dict[str, Any]
    score: Score
    seconds: float
    metrics: dict[str, Any] | None
    map1: NotRequired[Grid]
    map2: NotRequired[Grid]
    interaction: NotRequired[list[list[Grid]]]
    words: NotRequired[list[str]]
    word_scores: NotRequired[list[float] | None]
    interaction_words: NotRequired[list[Grid]]
    token_words: NotRequired[list[int | None]]


class AnswerJSON(TypedDict):
    """A request's answer: the model as asked for (``model``) and its own name, the images' labels (one for
    an image and a ``text``), the clean score, the device, the batch size, what ran the gradient-free forwards
    (``engine``: :func:`simexplain.engines.describe`) and every method's answer."""

    model: str
    model_name: str
    images: list[str]
    score: Score
    device: str
    batch_size: int | None
    engine: dict[str, Any]
    explanations: list[ExplanationJSON]
    text: NotRequired[str]


@dataclass
class MethodOutcome:
    """One method's result on the pair: the explanation, its resolved config, seconds and metrics."""

    method: str
    explanation: PairExplanation | ImageTextExplanation
    seconds: float
    metrics: Any = None  # simexplain.metrics.MetricResults when metrics were asked for

    @property
    def config(self) -> dict[str, Any]:
        return self.explanation.config

    def to_json(self, *, maps: bool = False) -> ExplanationJSON:
        """The method's part of the answer (see :class:`ExplanationJSON`)."""
        answer: ExplanationJSON = {
            "method": self.method,
            "config": json_safe(self.config),
            "score": _score(self.explanation.score),
            "seconds": self.seconds,
            "metrics": None if self.metrics is None else json_safe(self.metrics.to_dict(curves=False)),
        }
        if isinstance(self.explanation, ImageTextExplanation):
            answer.update(_text_part(self.explanation, maps))
        elif maps:
            answer["map1"] = native_grid(self.explanation, 1)
            answer["map2"] = native_grid(self.explanation, 2)
            interaction = interaction_grid(self.explanation)
            if interaction is not None:
                answer["interaction"] = interaction
        return answer


@dataclass
class PairReport:
    """What :func:`simexplain.service.run` found for one batch of pairs (usually one pair).

    Attributes:
        model: the model that ran; ``model_label`` the name it was asked for (a registered name or route).
        x1, x2: the model-input images; ``labels`` their names (paths, upload names).
        score: the clean score of each pair; ``outcomes`` every method's result; ``request`` what was asked.
        texts: for an image and a text, the text of each pair (``x2`` is then ``None``).
    """

    model: PairModel
    model_label: str
    x1: Tensor
    x2: Tensor | None
    labels: tuple[str, str]
    score: Tensor
    outcomes: list[MethodOutcome]
    request: Request
    texts: list[str] | None = None

    def to_json(self, *, maps: bool = False) -> AnswerJSON:
        """The answer as plain JSON data (see :class:`AnswerJSON`); ``maps`` adds each method's maps."""
        answer: AnswerJSON = {
            "model": self.model_label,
            "model_name": self.model.name,
            "images": list(self.labels) if self.texts is None else [self.labels[0]],
            "score": _score(self.score),
            "device": str(self.x1.device),
            "batch_size": self.request.batch_size,
            "engine": describe(self.model),
            "explanations": [outcome.to_json(maps=maps) for outcome in self.outcomes],
        }
        if self.texts is not None:
            answer["text"] = self.texts[0]
        return answer

    def figure(self, *, index: int = 0, title: str | None = None):
        """The pair figure (a matplotlib ``Figure``; render it with ``figures.output.render_figure``)."""
        from ..figures.pairs import pair_figure

        explanations = [outcome.explanation for outcome in self.outcomes]
        if title is None:
            title = f"{self.model.name}: similarity {float(self.score[index]):.3f}"
        if self.texts is not None:
            from ..figures.text import image_text_figure

            return image_text_figure(
                self.x1, explanations, self.model.preprocessing, index=index, title=title
            )
        return pair_figure(self.x1, self.x2, explanations, self.model.preprocessing, index=index, title=title)

    def figures(self, *, point: tuple[int, tuple[int, int]] | None = None) -> dict[str, Any]:
        """Every figure of the request by name: ``"pair"`` (:meth:`figure`), then for each second-order
        method its linked-patches figure under the method's name (``point``: the pixel ``(image, (y, x))``
        whose match it shows)."""
        from ..figures.interaction import interaction_figure

        found = {"pair": self.figure()}
        if self.texts is not None:  # the pair figure draws the regions' links to their words
            return found
        for outcome in self.outcomes:
            if outcome.explanation.interaction is not None:
                found[outcome.method] = interaction_figure(
                    self.x1, self.x2, outcome.explanation, self.model.preprocessing, point=point
                )
        return found


def _text_part(e: ImageTextExplanation, maps: bool) -> dict[str, Any]:
    """The first pair's words and word scores; with ``maps``, its image map and patches × tokens matrix."""
    scores = e.word_scores
    part: dict[str, Any] = {
        "words": list(e.words[0]),
        "word_scores": None if scores is None else json_safe([float(f"{v:.5g}") for v in scores[0].tolist()]),
    }
    if maps and e.map1 is not None:
        part["map1"] = native_grid(e, 1)
    interaction = e.interaction
    if maps and interaction is not None and interaction[0].numel() <= MAX_INTERACTION:
        values = torch.nan_to_num(interaction[0].detach().float().cpu(), nan=0.0, posinf=0.0, neginf=0.0)
        part["interaction_words"] = [
            [[float(f"{v:.4g}") for v in cell] for cell in row] for row in values.tolist()
        ]
        part["token_words"] = list(e.tokens.word_ids[0])
    return part


def _score(score: Tensor | None) -> Score:
    """One pair: a number; a batch: a list (non-finite → ``None``)."""
    if score is None:
        return None
    values = json_safe(score.double().tolist())
    return values[0] if len(values) == 1 else values


def native_grid(explanation: PairExplanation, side: int) -> Grid:
    """The first pair's map on the method's native grid (at most 224×224), rounded, non-finite → 0."""
    grid = getattr(explanation, f"grid{side}")
    grid = getattr(explanation, f"map{side}") if grid is None else grid
    values = grid[0].detach().float().cpu()
    if values.dim() != 2:
        values = values.reshape(values.shape[-2], values.shape[-1])
    height, width = values.shape
    if max(height, width) > MAX_GRID:
        size = (min(height, MAX_GRID), min(width, MAX_GRID))
        values = F.adaptive_avg_pool2d(values[None, None], size)[0, 0]
    values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return [[float(f"{v:.5g}") for v in row] for row in values.tolist()]


def interaction_grid(explanation: PairExplanation) -> list | None:
    """The first pair's second-order map ``I[y1][x1][y2][x2]`` of a ``pair-interaction`` explanation, rounded,
    or ``None`` (another method, or a grid too large to send)."""
    interaction = explanation.interaction
    if interaction is None or interaction[0].numel() > MAX_INTERACTION:
        return None
    values = torch.nan_to_num(interaction[0].detach().float().cpu(), nan=0.0, posinf=0.0, neginf=0.0)
    return [[[[float(f"{v:.4g}") for v in row] for row in cell] for cell in line] for line in values.tolist()]


def json_safe(value: Any) -> Any:
    """Plain JSON: NaN/∞ → ``None``, tuples → lists, anything else unknown → its text.

    Example:
        >>> json_safe({"a": (1, float("nan")), "b": torch.tensor(2.5)})
        {'a': [1, None], 'b': 2.5}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Tensor) and value.numel() == 1:
        return json_safe(value.item())
    return str(value)


__all__ = [
    "AnswerJSON",
    "ExplanationJSON",
    "MethodOutcome",
    "PairReport",
    "interaction_grid",
    "json_safe",
    "native_grid",
]
