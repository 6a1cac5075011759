"""The ``onnxruntime`` engine: the exported graph in an onnxruntime session (CPU, or CUDA with
onnxruntime-gpu)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import Build, EngineUnavailable, Runner
from .graphs import cached_graph


def build(request: Build) -> Runner:
    import onnxruntime

    device = request.example.device
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise EngineUnavailable("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        providers.insert(0, "CUDAExecutionProvider")
    path = cached_graph(request.encoder, request.example, request.key)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = request.threads
    options.inter_op_num_threads = 1
    # Idle threads would otherwise spin for a while after each run, slowing the PyTorch work in between.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        images = np.ascontiguousarray(x.detach().to("cpu").numpy())
        return torch.from_numpy(session.run(None, {name: images})[0]).to(x.device)

    return run
