"""The runtimes behind ``PairModel(engine=...)``: their names, what each honours, and what ``auto`` picks.

``auto`` (the default) picks, per device, the fastest installed runtime of ``benchmarks/results/engine.md``,
but only for an encoder big enough to earn back its export and probe (about one second): smaller encoders,
and any precision other than fp32, run in PyTorch.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version

import torch

from ..errors import SimexplainError

ENGINES = ("auto", "torch", "compile", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}

# An export plus its probe costs 0.1-0.3 s for a model of 1e5 parameters and 1-2 s for the default model
# (4.7e6); the CPU runtimes save about 25 ms per image on the default model but nothing measurable on the
# test suite's tiny encoders (benchmarks/results/engine.md). So auto exports from a million parameters up.
AUTO_MIN_PARAMETERS = 1_000_000
# Fastest first, per device type, as measured (benchmarks/results/engine.md); absent device types run torch.
AUTO_ORDER = {"cpu": ("openvino", "onnxruntime")}


@dataclass(frozen=True)
class Runtime:
    """One engine: ``module`` (in :mod:`simexplain.engines`) builds its runners; ``package`` is what must be
    installed (its version keys the graphs); ``exported`` runtimes run an ONNX graph checked by a probe."""

    name: str
    description: str
    module: str
    package: str
    install: str
    precisions: tuple[str, ...]
    devices: tuple[str, ...]
    exported: bool


RUNTIMES = {
    runtime.name: runtime
    for runtime in (
        Runtime(
            "torch",
            "eager PyTorch (autocast for bf16/fp16)",
            "torch_eager",
            "torch",
            "",
            PRECISIONS,
            (),
            False,
        ),
        Runtime(
            "compile",
            "torch.compile (CUDA graphs on a GPU; compiles for about a minute)",
            "torch_compile",
            "torch",
            "",
            PRECISIONS,
            ("cpu", "cuda"),
            False,
        ),
        Runtime(
            "onnxruntime",
            "the exported ONNX graph run by onnxruntime",
            "onnxruntime_engine",
            "onnxruntime",
            "pip install onnxruntime",
            ("fp32",),
            ("cpu", "cuda"),
            True,
        ),
        Runtime(
            "openvino",
            "the exported ONNX graph run by OpenVINO (f32 inference precision)",
            "openvino_engine",
            "openvino",
            "pip install 'simexplain[openvino]'",
            ("fp32",),
            ("cpu",),
            True,
        ),
    )
}


def check_engine(engine: object) -> str:
    """``engine`` if it is a known engine name, else one line listing them.

    Example:
        >>> check_engine("onnxruntime")
        'onnxruntime'
    """
    if engine not in ENGINES:
        raise SimexplainError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    return str(engine)


def check_precision(precision: object) -> str:
    """``precision`` if it is ``fp32``, ``bf16`` or ``fp16``, else one line."""
    if precision not in PRECISIONS:
        raise SimexplainError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    return str(precision)


def check_setting(engine: str, precision: str) -> None:
    """Refuse, in one line, an engine that is not installed or cannot honour ``precision``."""
    if engine == "auto":
        return
    runtime = RUNTIMES[engine]
    if not installed(engine):
        raise SimexplainError(f"engine {engine!r} needs the package {runtime.package}: {runtime.install}")
    if precision not in runtime.precisions:
        raise SimexplainError(
            f"engine {engine!r} runs {', '.join(runtime.precisions)} only, not {precision}; "
            "use engine='torch' or 'compile' for reduced precision"
        )


@cache
def installed(engine: str) -> bool:
    """Whether the package an engine needs can be imported."""
    try:
        return importlib.util.find_spec(RUNTIMES[engine].package) is not None
    except (ImportError, ValueError):  # a package blocked in sys.modules (as the tests of a missing extra do)
        return False


@cache
def runtime_version(engine: str) -> str:
    """The version of the package behind ``engine`` (torch's own for ``torch`` and ``compile``)."""
    try:
        return version(RUNTIMES[engine].package)
    except PackageNotFoundError:
        return "unknown"


def resolve(engine: str, precision: str, device: torch.device, parameters: int) -> str:
    """The engine that runs: ``engine`` itself, or for ``auto`` the fastest installed runtime of the device
    when the encoder has at least :data:`AUTO_MIN_PARAMETERS` parameters and the precision is fp32.

    Example:
        >>> resolve("auto", "fp32", torch.device("cpu"), 5_000)
        'torch'
        >>> resolve("auto", "bf16", torch.device("cpu"), 5_000_000)
        'torch'
    """
    if engine != "auto":
        return engine
    if precision != "fp32" or parameters < AUTO_MIN_PARAMETERS:
        return "torch"
    for name in AUTO_ORDER.get(device.type, ()):
        if installed(name):
            return name
    return "torch"
