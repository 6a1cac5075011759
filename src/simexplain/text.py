"""Texts on side 2 of a pair: the tokenised batch and its words, the text tower a :class:`PairModel` holds,
and the similarities of image–text models (docs/image_text.md).

An image–text pair model is an ordinary :class:`~simexplain.pair.PairModel` whose ``encoder_b`` is a
:class:`TextTower`: the model's own tokenizer and text encoder. :meth:`TextTower.tokenize` turns ``B`` strings
into a :class:`TokenBatch` (ids, attention mask, the word of each token, the words' text), refusing an empty
text or one beyond the tokenizer's context in one line; the tower maps a batch to ``B×D`` embeddings. Token
scores merge into word scores by summing each word's tokens (:meth:`TokenBatch.merge`); padding and special
tokens belong to no word.

The tokenizer contract (for your own towers): ``tokenizer(list_of_str)`` returns a mapping with
``input_ids`` and ``attention_mask`` (``B×T``) and, optionally, per pair the word index of each token
(``word_ids``, ``None`` for special and padding tokens: the convention of the Hugging Face fast tokenizers,
whose ``word_ids(i)`` and ``offset_mapping`` are read when present). Without ``word_ids``, every attended
token is a word.

This module sits below :mod:`simexplain.pair` and knows nothing of pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import SimexplainError


# ---------------------------------------------------------------------------------------------- the batch
@dataclass
class TokenBatch:
    """``B`` tokenised texts.

    Example:
        >>> tokens = TokenBatch.from_ids([[5, 7, 7, 2]], texts=["a cat"], word_ids=[[0, 1, 1, None]])
        >>> tokens.words, tokens.merge(torch.tensor([[1.0, 2.0, 3.0, 9.0]]))[0].tolist()
        ([['#0', '#1']], [1.0, 5.0])

    Attributes:
        input_ids, attention_mask: ``B×T`` (long); padding has mask 0.
        word_ids: per pair, the word index of each token (``None``: special or padding token).
        words: per pair, the text of each word.
        texts: the strings.
        pad_id: the id that fills a shortened text (:meth:`without`).
    """

    input_ids: Tensor
    attention_mask: Tensor
    word_ids: list[list[int | None]]
    words: list[list[str]]
    texts: list[str]
    pad_id: int = 0

    @classmethod
    def from_ids(
        cls,
        ids: Sequence[Sequence[int]] | Tensor,
        *,
        texts: Sequence[str],
        attention_mask: Sequence[Sequence[int]] | Tensor | None = None,
        word_ids: Sequence[Sequence[int | None]] | None = None,
        words: Sequence[Sequence[str]] | None = None,
        pad_id: int = 0,
    ) -> TokenBatch:
        """A batch from plain ids (mask: all ones; each attended token its own word unless ``word_ids``)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask).long()
        if word_ids is None:
            word_ids = [[_own_word(row, t) for t in range(ids.shape[1])] for row in mask.tolist()]
        word_ids = [[None if w is None else int(w) for w in row] for row in word_ids]
        if words is None:
            words = [[f"#{w}" for w in range(_word_count(row))] for row in word_ids]
        return cls(ids, mask, word_ids, [list(w) for w in words], list(texts), pad_id)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def length(self) -> int:
        """Tokens per text, padding included (``T``)."""
        return self.input_ids.shape[1]

    def to(self, device: torch.device | str) -> TokenBatch:
        return replace(
            self, input_ids=self.input_ids.to(device), attention_mask=self.attention_mask.to(device)
        )

    def select(self, index: Sequence[int]) -> TokenBatch:
        """The texts ``index`` (repeats allowed), in that order."""
        rows = torch.as_tensor(list(index), dtype=torch.long, device=self.input_ids.device)
        pick = list(index)
        return replace(
            self,
            input_ids=self.input_ids[rows],
            attention_mask=self.attention_mask[rows],
            word_ids=[self.word_ids[i] for i in pick],
            words=[self.words[i] for i in pick],
            texts=[self.texts[i] for i in pick],
        )

    def word_mask(self) -> Tensor:
        """``B×T`` bool: the tokens that belong to a word (not special, not padding)."""
        rows = [[w is not None for w in row] for row in self.word_ids]
        return torch.tensor(rows, dtype=torch.bool, device=self.input_ids.device)

    def merge(self, token_scores: Tensor) -> list[Tensor]:
        """Per pair, one score per word: the sum of its tokens' scores (``B×T`` → ``B`` tensors)."""
        merged = []
        for b, row in enumerate(self.word_ids):
            index = torch.tensor([-1 if w is None else w for w in row], device=token_scores.device)
            scores = token_scores.new_zeros(len(self.words[b]))
            keep = index >= 0
            merged.append(scores.index_add(0, index[keep], token_scores[b][keep]))
        return merged

    def spread(self, word_scores: Sequence[Tensor]) -> Tensor:
        """``B×T`` token scores from per-word scores: each word's score split equally over its tokens (so
        :meth:`merge` gives the word scores back); special and padding tokens get zero."""
        out = torch.zeros(self.input_ids.shape, dtype=word_scores[0].dtype, device=word_scores[0].device)
        for b, row in enumerate(self.word_ids):
            counts = torch.bincount(
                torch.tensor([w for w in row if w is not None], dtype=torch.long),
                minlength=len(self.words[b]),
            ).to(out.device)
            for t, w in enumerate(row):
                if w is not None:
                    out[b, t] = word_scores[b][w] / counts[w]
        return out

    def without(self, drop: Sequence[Sequence[int]]) -> TokenBatch:
        """The same texts with the tokens of the words ``drop[b]`` (word indices) removed and the rest shifted
        left, padded with :attr:`pad_id` to the same length. Special tokens stay; an index that names no word
        of the text removes nothing.

        Example:
            >>> tokens = TokenBatch.from_ids([[9, 5, 6, 2]], texts=["x"], word_ids=[[None, 0, 1, None]])
            >>> tokens.without([[0]]).input_ids.tolist(), tokens.without([[0]]).word_ids
            ([[9, 6, 2, 0]], [[None, 1, None, None]])
        """
        if len(drop) != len(self):
            raise SimexplainError(f"{len(drop)} word lists for {len(self)} texts")
        ids = torch.full_like(self.input_ids, self.pad_id)
        mask = torch.zeros_like(self.attention_mask)
        word_ids = []
        for b, row in enumerate(self.word_ids):
            gone = set(drop[b])
            keep = [t for t, w in enumerate(row) if w is None or w not in gone]
            index = torch.tensor(keep, dtype=torch.long, device=ids.device)
            ids[b, : len(keep)] = self.input_ids[b, index]
            mask[b, : len(keep)] = self.attention_mask[b, index]
            word_ids.append([row[t] for t in keep] + [None] * (len(row) - len(keep)))
        return replace(self, input_ids=ids, attention_mask=mask, word_ids=word_ids)


def _own_word(mask_row: list[int], t: int) -> int | None:
    return sum(mask_row[:t]) if mask_row[t] else None


def _word_count(row: Sequence[int | None]) -> int:
    return max((w for w in row if w is not None), default=-1) + 1


# ---------------------------------------------------------------------------------------------- tokenizing
def tokenize(
    tokenizer: Callable[[list[str]], Any], texts: Sequence[str] | str, context_length: int | None = None
) -> TokenBatch:
    """``texts`` through ``tokenizer`` (the contract above) as a :class:`TokenBatch`; an empty text or one
    longer than ``context_length`` tokens is refused in one line before any model work.

    Example:
        >>> def tokenizer(texts):  # one id per word, 1 = start, 2 = end, 0 = padding
        ...     rows = [[1] + [3 + len(w) for w in t.split()] + [2] for t in texts]
        ...     width = max(map(len, rows))
        ...     return {"input_ids": [r + [0] * (width - len(r)) for r in rows],
        ...             "attention_mask": [[1] * len(r) + [0] * (width - len(r)) for r in rows]}
        >>> tokenize(tokenizer, ["a cat", "dogs"]).input_ids.tolist()
        [[1, 4, 6, 2], [1, 7, 2, 0]]
        >>> tokenize(tokenizer, ["a cat on a sofa"], context_length=4)
        Traceback (most recent call last):
        ...
        simexplain.errors.SimexplainError: text 1 has 7 tokens; the tokenizer's context holds 4
    """
    texts = check_texts(texts)
    encoded = tokenizer(texts)
    if not isinstance(encoded, Mapping) and not hasattr(encoded, "keys"):
        raise SimexplainError(
            f"the tokenizer returned {type(encoded).__name__}; it must return a mapping with input_ids and "
            "attention_mask"
        )
    if "input_ids" not in encoded:
        raise SimexplainError("the tokenizer's answer has no input_ids")
    ids = torch.as_tensor(encoded["input_ids"], dtype=torch.long)
    if ids.dim() != 2 or ids.shape[0] != len(texts):
        raise SimexplainError(
            f"the tokenizer gave input_ids of shape {tuple(ids.shape)} for {len(texts)} texts"
        )
    mask = encoded["attention_mask"] if "attention_mask" in encoded else None
    mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).long()
    lengths = mask.sum(1).tolist()
    for number, count in enumerate(lengths, start=1):
        if context_length is not None and count > context_length:
            raise SimexplainError(
                f"text {number} has {count} tokens; the tokenizer's context holds {context_length}"
            )
    word_ids = _word_ids(encoded, mask)
    words = _word_texts(tokenizer, encoded, texts, ids, word_ids)
    return TokenBatch(ids, mask, word_ids, words, texts, _pad_id(tokenizer, ids, mask))


def check_texts(texts: Sequence[str] | str) -> list[str]:
    """One string or a sequence of strings, none empty; one line otherwise."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or not texts:
        raise SimexplainError("texts must be a string or a non-empty list of strings")
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            raise SimexplainError(f"text {number} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise SimexplainError(f"text {number} is empty")
    return list(texts)


def _word_ids(encoded: Any, mask: Tensor) -> list[list[int | None]]:
    """The tokenizer's ``word_ids`` (a method, as a fast tokenizer's, or a list per text), else one word per
    attended token."""
    given = getattr(encoded, "word_ids", None)
    rows: list = []
    if callable(given):
        rows = [given(b) for b in range(mask.shape[0])]
    elif "word_ids" in encoded:
        rows = list(encoded["word_ids"])
    else:
        rows = [[_own_word(row, t) for t in range(mask.shape[1])] for row in mask.tolist()]
    if len(rows) != mask.shape[0] or any(len(row) != mask.shape[1] for row in rows):
        raise SimexplainError("the tokenizer's word_ids must give one entry per token of every text")
    # Padding is never a word, whatever the tokenizer says; word indices count from 0 per text.
    out = []
    for row, attended in zip(rows, mask.tolist()):
        seen: dict[int, int] = {}
        out.append(
            [
                None if w is None or not a else seen.setdefault(int(w), len(seen))
                for w, a in zip(row, attended)
            ]
        )
    return out


def _word_texts(
    tokenizer: Any, encoded: Any, texts: list[str], ids: Tensor, word_ids: list[list[int | None]]
) -> list[list[str]]:
    """Each word's text: its characters (``offset_mapping``), its tokens decoded, or ``#k``."""
    offsets = encoded["offset_mapping"] if "offset_mapping" in encoded else None
    decode = getattr(tokenizer, "decode", None)
    out = []
    for b, row in enumerate(word_ids):
        tokens: dict[int, list[int]] = {}
        for t, w in enumerate(row):
            if w is not None:
                tokens.setdefault(w, []).append(t)
        words = []
        for w in range(len(tokens)):
            if offsets is not None:
                spans = [tuple(int(v) for v in offsets[b][t]) for t in tokens[w]]
                words.append(texts[b][min(s for s, _ in spans) : max(e for _, e in spans)].strip())
            elif callable(decode):
                words.append(str(decode([int(ids[b, t]) for t in tokens[w]])).strip())
            else:
                words.append(f"#{w}")
        out.append([word or f"#{w}" for w, word in enumerate(words)])
    return out


def _pad_id(tokenizer: Any, ids: Tensor, mask: Tensor) -> int:
    """The id of padding: as seen in the batch, else the tokenizer's ``pad_token_id``, else 0."""
    padded = ids[mask == 0]
    if len(padded):
        return int(padded[0])
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if isinstance(pad, int) else 0


# ---------------------------------------------------------------------------------------------- the tower
class TextTower(nn.Module):
    """A text encoder and its tokenizer as side 2 of a pair: ``tokens → B×D`` embeddings.

    Example:
        >>> tokenizer = lambda texts: {"input_ids": [[1, 2]] * len(texts)}
        >>> tower = TextTower(BagOfWords(10, 4, 4), tokenizer, layer="embedding")
        >>> tower(tower.tokenize(["a b", "c d"])).shape, tower.token_embedding_name
        (torch.Size([2, 4]), 'encoder.embedding')

    Args:
        encoder: ``encoder(input_ids, attention_mask) -> B×D``.
        tokenizer: ``tokenizer(list_of_str)`` → a mapping (the module's contract).
        context_length: the most tokens a text may have (``None``: the tokenizer's ``model_max_length``
            when it states one).
        token_embedding: the module (a name in ``encoder``) whose output is the token embeddings; default:
            the first ``nn.Embedding``.
        layer: the module (a name in ``encoder``) the word Interaction-CAM and ``pair-interaction`` tap, with
            a ``B×T×D`` output (tokens × features).
        pass_mask: ``False`` for encoders that ignore the mask (SigLIP attends to its padding).
    """

    # The text tower never runs on an image engine: it takes token ids (PairModel.embed reads this).
    engine_routed = False

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer: Callable[[list[str]], Any],
        *,
        context_length: int | None = None,
        token_embedding: str | None = None,
        layer: str | None = None,
        pass_mask: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module) or not callable(tokenizer):
            raise SimexplainError("a text tower needs an nn.Module text encoder and a callable tokenizer")
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        stated = getattr(tokenizer, "model_max_length", None)
        if context_length is None and isinstance(stated, int) and stated < 1_000_000:
            context_length = stated
        self.context_length = context_length
        self.token_embedding_name = "encoder." + (token_embedding or _first_embedding(encoder))
        self.layer = None if layer is None else "encoder." + layer
        self.pass_mask = pass_mask
        self.get_submodule(self.token_embedding_name)  # a wrong name fails here, in one line
        if self.layer is not None:
            self.get_submodule(self.layer)

    def get_submodule(self, target: str) -> nn.Module:
        try:
            return super().get_submodule(target)
        except AttributeError:
            raise SimexplainError(f"the text tower has no module {target!r}") from None

    def tokenize(self, texts: Sequence[str] | str) -> TokenBatch:
        """``texts`` as a :class:`TokenBatch` on the tower's device (see :func:`tokenize`)."""
        device = next((t.device for t in self.encoder.parameters()), torch.device("cpu"))
        return tokenize(self.tokenizer, texts, self.context_length).to(device)

    def forward(self, tokens: TokenBatch) -> Tensor:
        if not isinstance(tokens, TokenBatch):
            raise SimexplainError(f"a text tower embeds a TokenBatch, not a {type(tokens).__name__}")
        mask = tokens.attention_mask if self.pass_mask else None
        return self.encoder(tokens.input_ids, mask)

    def extra_repr(self) -> str:
        return f"context_length={self.context_length}, token_embedding={self.token_embedding_name!r}"


def _first_embedding(encoder: nn.Module) -> str:
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Embedding):
            return name
    raise SimexplainError("the text encoder has no nn.Embedding: name its token embedding (token_embedding=)")


class BagOfWords(nn.Module):
    """``g = P · Σ_t mask_t · E[ids_t]``: the smallest text tower, linear in its token embeddings
    (``embedding``) and bias-free, so its word scores have closed forms (the examples and the analytic tests
    use it).

    Example:
        >>> tower = BagOfWords(vocab_size=8, width=4, dim=3)
        >>> tower(torch.tensor([[1, 2, 0]]), torch.tensor([[1, 1, 0]])).shape
        torch.Size([1, 3])
    """

    def __init__(self, vocab_size: int, width: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, width)
        self.projection = nn.Linear(width, dim, bias=False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.projection((self.embedding(input_ids) * attention_mask[..., None]).sum(1))


# ---------------------------------------------------------------------------------------------- similarities
class ScaledCosine(nn.Module):
    """``scale · cos(z1, z2) + bias``: CLIP's logit (``bias`` ``None``) and SigLIP's sigmoid logit.

    Example:
        >>> ScaledCosine(10.0, bias=-1.0)(torch.ones(1, 2), torch.tensor([[1.0, -1.0]])).tolist()
        [-1.0]
    """

    def __init__(self, scale: float | Tensor = 1.0, bias: float | Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer(
            "scale", torch.as_tensor(scale, dtype=torch.float32).detach().clone().reshape(())
        )
        bias = (
            None if bias is None else torch.as_tensor(bias, dtype=torch.float32).detach().clone().reshape(())
        )
        self.register_buffer("bias", bias)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        cos = F.cosine_similarity(z1.flatten(1), z2.flatten(1), dim=1, eps=1e-8)
        out = self.scale.to(cos.dtype) * cos
        return out if self.bias is None else out + self.bias.to(cos.dtype)

    def extra_repr(self) -> str:
        bias = "" if self.bias is None else f", bias={float(self.bias):.4g}"
        return f"scale={float(self.scale):.4g}{bias}"


# ---------------------------------------------------------------------------------------------- a fixed side
class FixedEmbedding(nn.Module):
    """A tower that returns one given embedding for every image it sees: the partner of an image-side
    explanation of an image–text pair (the text's embedding, or two of them for a margin).

    Its input stays in the graph with a zero gradient, so a method that differentiates both sides runs
    unchanged. Its one layer is its output, a feature grid with no channels, whatever the name asked for: an
    embedding has no activation at the image tower's layer.

    Example:
        >>> tower = FixedEmbedding()
        >>> tower.embedding = torch.ones(1, 3)
        >>> layer = tower.get_submodule("any.name")
        >>> tower(torch.rand(2, 3, 4, 4)).tolist(), tuple(layer(torch.zeros(2, 0, 1, 1)).shape)
        ([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], (2, 0, 1, 1))
    """

    engine_routed = False  # a lookup, not a network: never exported

    def __init__(self) -> None:
        super().__init__()
        self.output = nn.Identity()
        self.embedding: Tensor | None = None

    def get_submodule(self, target: str) -> nn.Module:
        return self.output

    def forward(self, x: Tensor) -> Tensor:
        if self.embedding is None:
            raise SimexplainError("the fixed partner embedding was not set")
        anchor = x.flatten(1)[:, :1] * 0  # B×1, zero, in the graph of x
        grid = self.output(anchor[:, :0, None, None])  # B×0×1×1: the layer without channels
        return self.embedding.expand(len(x), -1) + anchor + grid.sum((1, 2, 3))[:, None]


__all__ = [
    "BagOfWords",
    "FixedEmbedding",
    "ScaledCosine",
    "TextTower",
    "TokenBatch",
    "check_texts",
    "tokenize",
]
