"""Inference engines: the runtime of every forward pass that needs no gradient (docs/engine.md).

``PairModel(encoder, engine="auto", precision="fp32")`` (or ``load_model(name, engine=..., precision=...)``)
chooses how the model's gradient-free forwards run: ``torch`` (eager), ``compile`` (``torch.compile``),
``onnxruntime`` or ``openvino`` (the encoder exported to ONNX once, cached on disk, checked against PyTorch on
a probe), or ``auto``: the fastest installed runtime for the device when the encoder is big enough to earn its
export back. :meth:`PairModel.embed <simexplain.pair.PairModel.embed>` is the one routing point: it uses the
engine only under :func:`torch.inference_mode` and never while a layer is tapped; gradients always flow
through PyTorch.

Example:
    >>> import torch, simexplain
    >>> from torch import nn
    >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(12, 4)), name="tiny")
    >>> describe(model)["encoders"]["a"]["engine"]  # auto: too small to export
    'torch'
    >>> model.engine = "onnxruntime"
    >>> with torch.inference_mode():
    ...     z = model.embed(torch.rand(3, 3, 2, 2))
    >>> describe(model)["encoders"]["a"]["engine"], z.shape
    ('onnxruntime', torch.Size([3, 4]))
"""

from __future__ import annotations

from typing import Any

from .base import EngineUnavailable
from .fingerprint import fingerprint
from .graphs import ExportFailed, export_onnx
from .registry import (
    AUTO_MIN_PARAMETERS,
    ENGINES,
    PRECISIONS,
    RUNTIMES,
    check_engine,
    check_precision,
    runtime_version,
)
from .state import EngineState, EngineWarning


def describe(model: Any) -> dict[str, Any]:
    """What runs a :class:`~simexplain.pair.PairModel`'s gradient-free forwards, as JSON-ready data.

    ``engine`` and ``precision`` are the model's settings; ``encoders`` gives, per side (``"a"``, plus ``"b"``
    for an asymmetric model), the engine that runs (``auto`` resolved; ``torch`` after a fallback), its
    package's version and the fallback lines, if any; ``label`` is one short string of it all.
    """
    state: EngineState = model._engines
    sides = ("a",) if model.shared else ("a", "b")
    encoders = {}
    for side in sides:
        if not model.differentiable:
            encoders[side] = {"engine": "own runtime (black box)", "version": None, "fallbacks": []}
            continue
        engine = state.engine_for(side, model.encoder_for(side), model.device)
        fallbacks = state.fallbacks(side)
        used = "torch" if fallbacks and engine != "torch" else engine
        encoders[side] = {"engine": used, "version": runtime_version(used), "fallbacks": fallbacks}
    names = [encoders[side]["engine"] for side in sides]
    label = names[0] if len(set(names)) == 1 else " + ".join(f"{s}: {n}" for s, n in zip(sides, names))
    return {
        "engine": state.engine,
        "precision": state.precision,
        "encoders": encoders,
        "label": f"{label} ({state.precision})",
    }


__all__ = [
    "AUTO_MIN_PARAMETERS",
    "ENGINES",
    "PRECISIONS",
    "RUNTIMES",
    "EngineState",
    "EngineUnavailable",
    "EngineWarning",
    "ExportFailed",
    "check_engine",
    "check_precision",
    "describe",
    "export_onnx",
    "fingerprint",
]
