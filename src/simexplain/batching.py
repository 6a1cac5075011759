"""Chunked forwards: many perturbed images embedded in bounded batches, never all materialised at once.

One helper serves occlusion, pairwise occlusion, insertion/deletion curves, Smooth-Grad samples, Averaged
Transforms steps and sensitivity: every chunked loop goes through :func:`chunk_slices`, so bounded memory and
the optional progress bar live in one place.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

from .errors import SimexplainError
from .pair import PairModel

# Images per forward when the caller gives none. On the 2-core CPU we measured, a ResNet-50 image at 224² cost
# 0.05-0.07 s in batches of 1-8 and 0.08-0.09 s in batches of 16-32 (caches), so the CPU default is small;
# a GPU wants large batches to fill it.
CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 64


def default_batch_size(device: torch.device | str) -> int:
    """Images per forward for ``device`` when the caller gives none: 8 on a CPU, 64 on an accelerator."""
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else GPU_BATCH_SIZE


def resolve_batch_size(batch_size: int | None, device: torch.device | str) -> int:
    """``batch_size`` checked (a positive integer), or the device's default when it is ``None``."""
    if batch_size is None:
        return default_batch_size(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SimexplainError(
            f"batch_size must be a positive integer (images per forward), got {batch_size!r}"
        )
    return batch_size


# Off by default: a library should not print; the command line turns bars on for its long runs.
_PROGRESS: ContextVar[bool] = ContextVar("simexplain_progress", default=False)


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[None]:
    """Show a progress bar (on stderr, terminals only) for every chunked loop run inside the context.

    Example:
        >>> with progress_bars():
        ...     [part.stop for part in chunk_slices(5, 2)]
        [2, 4, 5]
    """
    token = _PROGRESS.set(enabled)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


# A callback ``(done, total)`` told before each chunk (the web page's progress bar); it may raise to cancel.
_OBSERVER: ContextVar[Callable[[int, int], None] | None] = ContextVar("simexplain_chunks", default=None)


@contextmanager
def observe_chunks(callback: Callable[[int, int], None]) -> Iterator[None]:
    """Call ``callback(done, total)`` before each chunk of every chunked loop run inside the context (and
    ``(total, total)`` after the last); an exception it raises stops the loop: how a run is cancelled.

    Example:
        >>> seen = []
        >>> with observe_chunks(lambda done, total: seen.append((done, total))):
        ...     parts = list(chunk_slices(5, 2))
        >>> seen
        [(0, 5), (2, 5), (4, 5), (5, 5)]
    """
    token = _OBSERVER.set(callback)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


def chunk_slices(total: int, size: int, desc: str = "batches") -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``."""
    size = max(1, int(size))
    starts = range(0, total, size)
    observer = _OBSERVER.get()
    if _PROGRESS.get() and len(starts) > 1:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch", leave=False, disable=None, file=sys.stderr)
    for start in starts:
        if observer is not None:
            observer(start, total)
        yield slice(start, min(start + size, total))
    if observer is not None:
        observer(total, total)


def embed_lazily(
    model: PairModel,
    make: Callable[[slice], Tensor],
    total: int,
    *,
    side: str = "a",
    batch_size: int | None = None,
) -> Tensor:
    """Embeddings of ``total`` images built chunk by chunk by ``make(slice)``, under inference mode."""
    size = resolve_batch_size(batch_size, model.device)
    with torch.inference_mode():
        return torch.cat([model.embed(make(part), side) for part in chunk_slices(total, size)])
