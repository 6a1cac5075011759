"""Black-box pieces: functions without gradients (numpy or torch) as a PairModel's encoder or similarity.

A score function ``fn(images1, images2) -> scores`` has no embeddings, yet the occlusion methods and the
metrics embed clean images once and score embeddings with ``model.similarity``. :class:`ImagesAsEmbedding`
makes the image itself the "embedding" (its height and width in the first two entries, so images of any size
unpack), and :class:`ScoreFunction` unpacks both and calls ``fn``: every method and metric that needs only
forwards runs unchanged, and ``fn`` sees exactly the pairs that are scored.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .errors import SimexplainError

SIZE_ENTRIES = 2  # height and width lead each packed image


def as_scores(value: object, what: str, like: Tensor) -> Tensor:
    """A function's output (numpy, torch or a list) as a float tensor on ``like``'s device, or one line."""
    try:
        out = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value)
    except (TypeError, ValueError, RuntimeError):
        raise SimexplainError(f"the {what} returned {type(value).__name__}, not numbers") from None
    return out.detach().to(
        device=like.device, dtype=like.dtype if like.is_floating_point() else torch.float32
    )


def _chunks(count: int, size: int | None) -> list[slice]:
    step = count if not size else size
    return [slice(start, min(start + step, count)) for start in range(0, count, max(1, step))]


class ImagesAsEmbedding(nn.Module):
    """``N×3×H×W`` images → ``N×(2 + 3·H·W)``: the height, the width, then the pixels."""

    def forward(self, x: Tensor) -> Tensor:
        size = x.new_tensor([x.shape[-2], x.shape[-1]]).expand(x.shape[0], SIZE_ENTRIES)
        return torch.cat([size, x.flatten(1)], 1)


def unpack_images(z: Tensor) -> Tensor:
    """The images packed by :class:`ImagesAsEmbedding` (rows of one call share one size)."""
    height, width = (int(v) for v in z[0, :SIZE_ENTRIES].tolist())
    return z[:, SIZE_ENTRIES:].reshape(z.shape[0], -1, height, width)


class ScoreFunction:
    """The similarity of a score-function model: unpack both images, call ``fn`` without gradients."""

    def __init__(self, fn: Callable, batch_size: int | None = None) -> None:
        if not callable(fn):
            raise SimexplainError(f"the score function must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.batch_size = batch_size

    def __call__(self, z1: Tensor, z2: Tensor) -> Tensor:
        z1, z2 = torch.broadcast_tensors(z1, z2)
        lead = z1.shape[:-1]
        z1, z2 = z1.reshape(-1, z1.shape[-1]), z2.reshape(-1, z2.shape[-1])
        images1, images2 = unpack_images(z1), unpack_images(z2)
        parts = []
        with torch.no_grad():
            for part in _chunks(len(z1), self.batch_size):
                count = part.stop - part.start
                scores = as_scores(self.fn(images1[part], images2[part]), "score function", z1)
                if scores.numel() != count:
                    raise SimexplainError(
                        f"the score function returned {scores.numel()} scores for {count} pairs; it must "
                        "return one score per pair"
                    )
                parts.append(scores.reshape(count))
        return torch.cat(parts).reshape(lead)


class FunctionEncoder(nn.Module):
    """An embedding function ``fn(images) -> N×D`` (numpy or torch, no gradients) as an encoder module."""

    def __init__(self, fn: Callable, batch_size: int | None = None) -> None:
        super().__init__()
        if not callable(fn):
            raise SimexplainError(f"the embedding function must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.batch_size = batch_size

    def forward(self, x: Tensor) -> Tensor:
        parts = []
        with torch.no_grad():
            for part in _chunks(len(x), self.batch_size):
                z = as_scores(self.fn(x[part]), "embedding function", x)
                parts.append(z.reshape(part.stop - part.start, -1))
        return torch.cat(parts)
