"""The ``openvino`` engine: the exported graph compiled by OpenVINO for the CPU.

The inference precision is pinned to f32: left to itself OpenVINO runs bf16 on CPUs that have it, which moved
the default model's embeddings by 0.4 (a silent difference the probe would refuse).
"""

from __future__ import annotations

import threading
from functools import cache

import numpy as np
import torch
from torch import Tensor

from .base import Build, EngineUnavailable, Runner
from .graphs import cached_graph


@cache
def _core():  # noqa: ANN202 - one OpenVINO core per process
    import openvino

    return openvino.Core()


def build(request: Build) -> Runner:
    if request.example.device.type != "cpu":
        raise EngineUnavailable(f"OpenVINO runs on the CPU here, not on {request.example.device.type}")
    path = cached_graph(request.encoder, request.example, request.key)
    settings = {
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": request.threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    infer = _core().compile_model(str(path), "CPU", settings).create_infer_request()
    lock = threading.Lock()  # one infer request: one call at a time

    def run(x: Tensor) -> Tensor:
        images = np.ascontiguousarray(x.detach().to("cpu").numpy())
        with lock:
            out = infer.infer({0: images})[0]  # a copy: the request reuses its buffers
        return torch.from_numpy(out).to(x.device)

    return run
