"""The ``torch`` engine: the encoder itself, under autocast for bf16/fp16 (fp32 outputs)."""

from __future__ import annotations

from torch import Tensor

from .base import Build, Runner, autocast, full_precision


def build(request: Build) -> Runner:
    encoder, precision = request.encoder, request.precision

    def run(x: Tensor) -> Tensor:
        with autocast(x.device, precision):
            return full_precision(encoder(x))

    return run
