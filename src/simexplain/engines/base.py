"""What every runtime module receives and returns: a :class:`Build` request in, a runner out."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import SimexplainError
from .registry import AUTOCAST

Runner = Callable[[Tensor], Tensor]  # images B×C×H×W → embeddings B×D, on the images' device


class EngineUnavailable(SimexplainError):
    """The runtime cannot run here (another device, a missing provider)."""


@dataclass(frozen=True)
class Build:
    """One runner to build: the encoder, the probe images (at most 2, the input's shape, dtype and device),
    the graph's cache key (exported runtimes), the precision and the CPU threads to use."""

    encoder: nn.Module
    example: Tensor
    key: str
    precision: str
    threads: int


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """``torch.autocast`` to the precision's dtype on ``device``; nothing for fp32."""
    dtype = AUTOCAST.get(precision)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def full_precision(z: Tensor) -> Tensor:
    """Embeddings computed in a reduced precision, as float32 (the engines' outputs are fp32)."""
    return z.float() if z.dtype in (torch.bfloat16, torch.float16) else z
