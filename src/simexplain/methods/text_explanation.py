"""ImageTextExplanation: the image maps, the token and word scores and the patch–token matrix of ``B``
image–text pairs (docs/image_text.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..checks import pick_seeds
from ..errors import SimexplainError
from ..explanation import upsample_maps
from ..text import TokenBatch


class WordPart(NamedTuple):
    """What a method computes on the text side: ``B×T`` token scores (padding and special tokens zero) and
    the tensors it keeps (each with a leading batch dimension)."""

    token_scores: Tensor
    extras: dict[str, Tensor]


@dataclass
class ImageTextExplanation:
    """The explanation of ``B`` image–text pairs by one method.

    Example:
        >>> import torch
        >>> from simexplain.text import TokenBatch
        >>> words = {"word_ids": [[0, 1, 1]], "words": [["a", "cat"]]}
        >>> tokens = TokenBatch.from_ids([[4, 5, 6]], texts=["a cat"], **words)
        >>> scores = torch.tensor([[0.5, 1.0, 2.0]])
        >>> e = ImageTextExplanation(torch.zeros(1, 8, 8), tokens, token_scores=scores)
        >>> e.words, [s.tolist() for s in e.word_scores]
        ([['a', 'cat']], [[0.5, 3.0]])

    Attributes:
        map1: ``B×H×W`` maps over the images (``None`` for a method that scores words only).
        tokens: the tokenised texts (:class:`~simexplain.text.TokenBatch`: ids, words, texts).
        token_scores: ``B×T`` per-token scores, zero for padding and special tokens (``None`` for a method
            that maps the image only).
        grid1: the method's native grid over the image, when it has one.
        score: ``[B]`` the model's own scores of the pairs.
        method, config: the method and every setting it used (``explain(model, images, texts, e.method,
            **e.config)`` reproduces ``e``).
        extras: tensors kept (``interaction`` ``B×h×w×T`` for ``pair-interaction``, ``image1`` the view the
            maps belong to for Averaged Transforms, ...).
    """

    map1: Tensor | None
    tokens: TokenBatch
    token_scores: Tensor | None = None
    grid1: Tensor | None = None
    score: Tensor | None = None
    method: str = "custom"
    config: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def texts(self) -> list[str]:
        return self.tokens.texts

    @property
    def words(self) -> list[list[str]]:
        """Per pair, the words of its text."""
        return self.tokens.words

    @property
    def word_scores(self) -> list[Tensor] | None:
        """Per pair, one score per word (the sum of its tokens' scores), or ``None``."""
        return None if self.token_scores is None else self.tokens.merge(self.token_scores)

    @property
    def image1(self) -> Tensor | None:
        """The model-input image the maps belong to when it is not the input (Averaged Transforms' view)."""
        return self.extras.get("image1")

    @property
    def interaction(self) -> Tensor | None:
        """``B×h×w×T``: how much each patch and each token add to the score together
        (``pair-interaction``)."""
        return self.extras.get("interaction")

    def match(self, point: tuple[int, int] | None = None, *, word: str | int | None = None) -> Tensor | list:
        """``match(word=W)``: the ``B×H×W`` map over each image for the word ``W`` (its text, or its index in
        every pair; a pair without it gets zeros); ``match((y, x))``: per pair, the word scores of the patch
        holding pixel ``(y, x)``. Needs an explanation with an :attr:`interaction`.

        Example:
            >>> import torch
            >>> from simexplain.text import TokenBatch
            >>> tokens = TokenBatch.from_ids([[4, 5]], texts=["a cat"], words=[["a", "cat"]])
            >>> grid = torch.zeros(1, 2, 2, 2)
            >>> grid[0, 1, 1, 1] = 1.0  # the lower-right patch matches "cat"
            >>> e = ImageTextExplanation(torch.zeros(1, 4, 4), tokens, extras={"interaction": grid})
            >>> e.match(word="cat")[0, 3, 3].item(), e.match((3, 3))[0].tolist()
            (1.0, [0.0, 1.0])
        """
        interaction = self.interaction
        if interaction is None:
            raise SimexplainError(
                f"method {self.method!r} keeps no interaction; use pair-interaction for match()"
            )
        if (point is None) == (word is None):
            raise SimexplainError("match() takes a point (y, x) or word=, one of them")
        size = self._image_size()
        if word is not None:
            columns = interaction.new_zeros(interaction.shape[:3])
            found = False
            for b in range(len(self)):
                index = self._word_index(b, word)
                if index is not None:
                    found = True
                    tokens = [t for t, w in enumerate(self.tokens.word_ids[b]) if w == index]
                    columns[b] = interaction[b][..., tokens].sum(-1)
            if not found:
                raise SimexplainError(f"no text holds the word {word!r}; words: {', '.join(self.words[0])}")
            return upsample_maps(columns, size)
        y, x = _pixel(point, size)
        row = interaction[:, y * interaction.shape[1] // size[0], x * interaction.shape[2] // size[1]]
        return self.tokens.merge(row)

    def _image_size(self) -> tuple[int, int]:
        if self.map1 is None:
            raise SimexplainError(f"method {self.method!r} made no image map")
        return tuple(self.map1.shape[-2:])

    def _word_index(self, b: int, word: str | int) -> int | None:
        words = self.words[b]
        if isinstance(word, int) and not isinstance(word, bool):
            return word if 0 <= word < len(words) else None
        lowered = [w.lower() for w in words]
        return lowered.index(str(word).lower()) if str(word).lower() in lowered else None

    def __getitem__(self, index: int | slice) -> ImageTextExplanation:
        """The explanation of pair ``index`` (a slice keeps several)."""
        if isinstance(index, bool) or not isinstance(index, int | slice):
            raise TypeError(f"pairs are indexed by an int or a slice, not {type(index).__name__}")
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"pair {index} out of range for {len(self)} pairs")
            index = slice(index % len(self), index % len(self) + 1)
        rows = list(range(len(self)))[index]

        def take(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[index]

        config = dict(self.config)
        if isinstance(config.get("seed"), list):
            config["seed"] = pick_seeds(config["seed"], index)
        return replace(
            self,
            map1=take(self.map1),
            tokens=self.tokens.select(rows),
            token_scores=take(self.token_scores),
            grid1=take(self.grid1),
            score=take(self.score),
            config=config,
            extras={name: t[index] for name, t in self.extras.items()},
        )

    def cpu(self) -> ImageTextExplanation:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.cpu()

        return replace(
            self,
            map1=move(self.map1),
            tokens=self.tokens.to("cpu"),
            token_scores=move(self.token_scores),
            grid1=move(self.grid1),
            score=move(self.score),
            extras={name: t.cpu() for name, t in self.extras.items()},
        )


def _pixel(point: Any, size: tuple[int, int]) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in point)
    except (TypeError, ValueError):
        raise SimexplainError(f"point must be (y, x) pixel coordinates, got {point!r}") from None
    if not (0 <= y < size[0] and 0 <= x < size[1]):
        raise SimexplainError(f"point {(y, x)} lies outside the image ({size[0]}×{size[1]} pixels)")
    return y, x


def token_scores_or_zero(scores: Tensor, tokens: TokenBatch) -> Tensor:
    """``scores`` with padding and special tokens set to zero."""
    return torch.where(tokens.word_mask(), scores, torch.zeros_like(scores))


__all__ = ["ImageTextExplanation", "WordPart", "token_scores_or_zero"]
