"""The text towers of CLIP and SigLIP (``hf:``) and of open_clip models:
``load_model(NAME, pair="image-text")`` (docs/image_text.md).

Each tower keeps the model's own tokenizer and similarity: CLIP's ``logit_scale · cos`` and SigLIP's sigmoid
logit ``logit_scale · cos + logit_bias``; texts are padded as the model was trained (CLIP: to the longest
text, the mask passed; SigLIP: to its full context, which it attends to; open_clip: to its context length).
The word Interaction-CAM and ``pair-interaction`` tap the text block before the last: the last block's output
reaches the score only through the one token the tower pools.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...errors import SimexplainError
from ...pair import PairModel
from .files import hub_file, require

PAIRS = ("image", "image-text")  # what load_model(..., pair=) builds
# A repository's tokenizer files (each fetched if present; a fast tokenizer needs only tokenizer.json).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "spiece.model",
)


class HubTextEncoder(nn.Module):
    """A transformers text tower as ``(input_ids, attention_mask) → B×D``: its pooled output, through the
    projection when the model has one (CLIP's ``get_text_features``)."""

    def __init__(self, text_model: nn.Module, projection: nn.Module | None = None) -> None:
        super().__init__()
        self.text_model, self.projection = text_model, projection

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return pooled if self.projection is None else self.projection(pooled)


class HubTokenizer:
    """A Hugging Face tokenizer called as the text tower needs it: tensors, offsets (for the words' text),
    no silent truncation (a text beyond the context is refused), padded as the model was trained."""

    def __init__(self, tokenizer: Any, padding: str | bool, max_length: int | None) -> None:
        self.tokenizer, self.padding, self.max_length = tokenizer, padding, max_length
        self.pad_token_id = tokenizer.pad_token_id

    def __call__(self, texts: list[str]) -> Any:
        return self.tokenizer(
            texts,
            padding=self.padding,
            max_length=self.max_length if self.padding == "max_length" else None,
            truncation=False,
            return_tensors="pt",
            return_offsets_mapping=True,
            return_attention_mask=True,
        )


def hf_image_text(image: PairModel, checkpoint: Any, layer: str | None = None) -> PairModel:
    """The image model ``image`` of a CLIP or SigLIP checkpoint with the checkpoint's text tower."""
    source, whole = checkpoint.source, checkpoint.model
    if not hasattr(whole, "text_model"):
        raise SimexplainError(
            f"{source.what} ({source.family.title}) has no text tower; pair='image-text' needs a full CLIP "
            "or SigLIP repository"
        )
    siglip = source.family.class_tokens == 0
    config = whole.config.text_config
    context = int(config.max_position_embeddings)
    encoder = HubTextEncoder(whole.text_model, getattr(whole, "text_projection", None))
    blocks = len(whole.text_model.encoder.layers)
    tokenizer = HubTokenizer(_hf_tokenizer(source), "max_length" if siglip else "longest", context)
    bias = getattr(whole, "logit_bias", None)
    return _paired(
        image,
        encoder,
        tokenizer,
        logit_scale=whole.logit_scale.detach().exp(),
        logit_bias=None if bias is None else bias.detach(),
        context_length=context,
        text_layer=layer or f"text_model.encoder.layers.{max(blocks - 2, 0)}",
        pass_mask=not siglip,  # SigLIP attends to its padding, as trained
    )


def _hf_tokenizer(source: Any) -> Any:
    transformers = require("transformers", source.what)
    found = [
        hub_file(source.what, source.ref.repo, n, source.commit, required=False) for n in TOKENIZER_FILES
    ]
    if not any(found):
        raise SimexplainError(f"{source.what}: the repository has no tokenizer files")
    try:
        return transformers.AutoTokenizer.from_pretrained(
            next(f for f in found if f).parent, trust_remote_code=False
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise SimexplainError(f"{source.what}: cannot load its tokenizer ({reason})") from None


class OpenClipTextEncoder(nn.Module):
    """An open_clip model's ``encode_text`` as ``(input_ids, attention_mask) → B×D`` (the mask is implied by
    the ids: open_clip pools the end-of-text token)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        return self.model.encode_text(input_ids)


class OpenClipTokenizer:
    """open_clip's BPE tokenizer with words: a word's tokens end at the one marked ``</w>``; padded with 0
    to the context length; a text beyond the context is refused (open_clip's own call would cut it)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.context_length = int(tokenizer.context_length)
        self.pad_token_id = 0

    def __call__(self, texts: list[str]) -> dict[str, Any]:
        start, end = self.tokenizer.sot_token_id, self.tokenizer.eot_token_id
        rows = [[start, *self.tokenizer.encode(t), end] for t in texts]
        width = max(self.context_length, max(map(len, rows)))
        word_ids = [[None, *self._words(row[1:-1]), None] for row in rows]
        return {
            "input_ids": torch.tensor([r + [0] * (width - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
            "word_ids": [w + [None] * (width - len(w)) for w in word_ids],
        }

    def _words(self, ids: list[int]) -> list[int]:
        words, current = [], 0
        for token in ids:
            words.append(current)
            current += self.tokenizer.decoder[token].endswith("</w>")
        return words

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def open_clip_image_text(
    image: PairModel, model: nn.Module, arch: str, layer: str | None = None
) -> PairModel:
    """The image model ``image`` of an open_clip checkpoint with its text tower and tokenizer."""
    open_clip = require("open_clip", image.name)
    if not hasattr(model, "encode_text"):
        raise SimexplainError(f"{image.name}: the open_clip model has no text tower")
    tokenizer = open_clip.get_tokenizer(arch)
    if not hasattr(tokenizer, "sot_token_id"):  # a Hugging Face tokenizer (SigLIP, ...)
        inner = tokenizer.tokenizer
        tokenizer = HubTokenizer(inner, "max_length", int(tokenizer.context_length))
    else:
        tokenizer = OpenClipTokenizer(tokenizer)
    blocks = getattr(getattr(model, "transformer", None), "resblocks", None)
    default = f"model.transformer.resblocks.{max(len(blocks) - 2, 0)}" if blocks is not None else None
    bias = getattr(model, "logit_bias", None)
    return _paired(
        image,
        OpenClipTextEncoder(model),
        tokenizer,
        logit_scale=model.logit_scale.detach().exp(),
        logit_bias=None if bias is None else bias.detach(),
        context_length=int(getattr(model, "context_length", 0) or 0) or None,
        text_layer=layer or default,
        pass_mask=False,
    )


def _paired(image: PairModel, encoder: nn.Module, tokenizer: Any, **text: Any) -> PairModel:
    """``image`` (its tower, layer, layout, preprocessing, name) with a text tower on side 2."""
    model = PairModel.image_text(
        image.encoder,
        encoder,
        tokenizer,
        layer=image.layer,
        preprocessing=image.preprocessing,
        token_layout=image.token_layout,
        name=image.name,
        description=image.description + "; with its text tower (pair='image-text')",
        **text,
    )
    model.provenance = getattr(image, "provenance", None)
    return model


def check_pair_kind(what: str, pair: str) -> bool:
    """``True`` for ``pair="image-text"``, ``False`` for ``"image"``; one line otherwise."""
    if pair not in PAIRS:
        raise SimexplainError(f"{what}: pair must be one of {', '.join(PAIRS)}, got {pair!r}")
    return pair == "image-text"


__all__ = [
    "PAIRS",
    "HubTextEncoder",
    "HubTokenizer",
    "OpenClipTokenizer",
    "check_pair_kind",
    "hf_image_text",
    "open_clip_image_text",
]
