"""The ``compile`` engine: ``torch.compile`` of the encoder (with CUDA graphs on a GPU), batch axis dynamic.

Compiling happens on the first (probe) call and takes about a minute for the default model on a CPU
(benchmarks/results/engine.md). CUDA graphs reuse their output buffers, so each output is copied.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Build, Runner
from .torch_eager import build as eager


def build(request: Build) -> Runner:
    cuda = request.example.device.type == "cuda"
    compiled = torch.compile(eager(request), mode="reduce-overhead" if cuda else None)

    def run(x: Tensor) -> Tensor:
        torch._dynamo.maybe_mark_dynamic(x, 0)  # one graph for every chunk size, not one per size
        z = compiled(x)
        return z.clone() if cuda else z

    return run
