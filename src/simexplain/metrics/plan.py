"""Several virtual batches embedded as one, so that every forward is a full chunk.

The metrics need the clean images, the masked images and the perturbed sequences of both images. Embedding
each group on its own leaves a part-filled chunk per group (on a CPU a forward of 1 image costs several times
the per-image time of a forward of 16). Concatenating the groups into one virtual batch per encoder keeps
every forward but the last full, and no group is materialised beyond its chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..batching import embed_lazily
from ..pair import PairModel

Maker = Callable[[slice], Tensor]


@dataclass
class Segment:
    """``total`` images of encoder ``side``, built ``make(slice)`` at a time; only segments of one ``group``
    (e.g. one image size) are chained into a batch."""

    name: str
    side: str
    total: int
    make: Maker
    group: str = ""


def embed_segments(
    model: PairModel, segments: list[Segment], batch_size: int | None = None
) -> dict[str, Tensor]:
    """Embeddings of every segment, keyed by name; one chained virtual batch per encoder (one for a shared
    model) and group.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Flatten())
        >>> x = torch.rand(3, 3, 2, 2)
        >>> segments = [Segment("p", "a", 3, lambda s: x[s]), Segment("q", "b", 1, lambda s: x[s])]
        >>> z = embed_segments(model, segments, 2)
        >>> z["p"].shape, z["q"].shape
        (torch.Size([3, 12]), torch.Size([1, 12]))
    """
    groups: dict[tuple[str, str], list[Segment]] = {}
    for segment in segments:
        key = ("a" if model.shared else segment.side, segment.group)
        groups.setdefault(key, []).append(segment)
    out: dict[str, Tensor] = {}
    for (side, _), group in groups.items():
        starts = torch.tensor([0] + [s.total for s in group]).cumsum(0).tolist()

        def make(part: slice, group: list[Segment] = group, starts: list[int] = starts) -> Tensor:
            pieces = []
            for segment, begin in zip(group, starts):
                lo, hi = max(part.start, begin), min(part.stop, begin + segment.total)
                if lo < hi:
                    pieces.append(segment.make(slice(lo - begin, hi - begin)))
            return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

        z = embed_lazily(model, make, starts[-1], side=side, batch_size=batch_size)
        for segment, begin in zip(group, starts):
            out[segment.name] = z[begin : begin + segment.total]
    return out
