"""A model's engine setting and its routes: built lazily, checked once, rebuilt when the weights change.

One :class:`EngineState` lives on each :class:`~simexplain.pair.PairModel` (never copied or pickled with it).
A runner is built per (encoder, input shape, dtype, device, CPU threads) the first time a gradient-free
forward of that kind arrives, under the model's lock. Every new graph is compared once per process with
PyTorch on a probe (the first images of the real chunk, at most 2): beyond the precision's tolerance it is
refused with ONE warning line and PyTorch runs instead; so does an encoder that cannot be exported or a
runtime that cannot run on the device.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from . import torch_eager
from .base import Build, Runner, autocast
from .fingerprint import fingerprint, parameter_count, plain_forward, signature
from .graphs import graph_key
from .registry import RUNTIMES, check_engine, check_precision, check_setting, resolve, runtime_version

PROBE_IMAGES = 2
# Largest accepted max|engine − torch| / max|torch| on the probe, per precision (reduced precisions compare
# with PyTorch under the same autocast, whose own rounding differs from a compiled kernel's).
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 3e-3}


class EngineWarning(UserWarning):
    """An engine was refused or could not be built; PyTorch runs instead (one line says why)."""


@dataclass
class Route:
    """How one kind of input runs: the engine's runner, or ``None`` (the encoder itself) after a fallback."""

    weights: tuple  # the encoder's tensor signature when built
    engine: str
    run: Runner | None
    fallback: str = ""


# graph key → None once verified in this process, or the line that refused it (warned once per process)
_VERDICTS: dict[str, str | None] = {}


@dataclass
class EngineState:
    """``engine`` and ``precision`` of one model (checked when set) and the routes built for it."""

    engine: str = "auto"
    precision: str = "fp32"
    built: dict[tuple, Route] = field(default_factory=dict)
    resolved: dict[tuple, str] = field(default_factory=dict)
    pinned: dict[str, tuple] | None = None  # a copy's weights when copied (see pin)
    fingerprints: dict[tuple, str] = field(default_factory=dict)  # weights' signature → fingerprint

    def __post_init__(self) -> None:
        self.configure(self.engine, self.precision)

    def configure(self, engine: str, precision: str) -> None:
        """Set both (refused in one line when the engine is unknown, missing or cannot honour the precision)
        and forget every runner."""
        engine, precision = check_engine(engine), check_precision(precision)
        check_setting(engine, precision)
        self.engine, self.precision = engine, precision
        self.built.clear()
        self.resolved.clear()
        self.fingerprints.clear()

    def pin(self, encoders: dict[str, nn.Module]) -> None:
        """Mark the model a copy (deep copy, unpickled): its engine runs only while each encoder keeps the
        weights it has now. The sanity cascade randomises a copy layer by layer; exporting every step (1-2 s
        for the default model) costs more than the gradient methods' forwards of a step (docs/engine.md)."""
        self.pinned = {side: signature(encoder) for side, encoder in encoders.items()}

    def engine_for(self, side: str, encoder: nn.Module, device: torch.device) -> str:
        """The engine that runs ``encoder`` on ``device`` (``auto`` resolved by the encoder's size)."""
        key = (side, id(encoder), device.type)
        if key not in self.resolved:
            self.resolved[key] = resolve(self.engine, self.precision, device, parameter_count(encoder))
        return self.resolved[key]

    def embed(
        self, name: str, side: str, encoder: nn.Module, x: Tensor, lock: threading.RLock
    ) -> Tensor | None:
        """Embeddings of ``x`` by the engine, or ``None`` when PyTorch itself runs (the plain engine, a hooked
        or training encoder, a refused graph). Call it only where no gradient can flow."""
        engine = self.engine_for(side, encoder, x.device)
        if (engine == "torch" and self.precision == "fp32") or not plain_forward(encoder):
            return None
        key = (side, tuple(x.shape[1:]), x.dtype, x.device, torch.get_num_threads())
        weights = signature(encoder)
        route = self.built.get(key)
        if route is None or route.weights != weights:
            with lock:
                route = self.built.get(key)
                if route is None or route.weights != weights:
                    route = self.built[key] = self._route_for(name, side, engine, encoder, x, weights)
        return None if route.run is None else route.run(x)

    def _route_for(
        self, name: str, side: str, engine: str, encoder: nn.Module, x: Tensor, weights: tuple
    ) -> Route:
        if self.pinned is not None and self.pinned.get(side, weights) != weights:
            eager = _build(name, "torch", self.precision, encoder, x, weights, "")
            return replace(eager, fallback="a copy whose weights changed: PyTorch (not exported again)")
        if engine != "torch" and weights not in self.fingerprints:  # hashed once per weights, not per size
            self.fingerprints[weights] = fingerprint(encoder)
        return _build(name, engine, self.precision, encoder, x, weights, self.fingerprints.get(weights, ""))

    def fallbacks(self, side: str) -> list[str]:
        """The lines that sent ``side``'s forwards back to PyTorch."""
        return [r.fallback for key, r in self.built.items() if key[0] == side and r.fallback]


def _build(
    name: str, engine: str, precision: str, encoder: nn.Module, x: Tensor, weights: tuple, encoder_id: str
) -> Route:
    """The route of one kind of input (``encoder_id``: the encoder's fingerprint), or PyTorch with the reason
    (warned once per process and graph)."""
    probe = x[:PROBE_IMAGES]
    request = Build(encoder, probe, "", precision, torch.get_num_threads())
    eager = None if precision == "fp32" else torch_eager.build(request)  # what runs after a fallback
    if engine == "torch":
        return Route(weights, engine, eager)
    runtime = RUNTIMES[engine]
    if runtime.devices and x.device.type not in runtime.devices:
        key = f"{engine} on {x.device.type}"
        return _fallback(name, engine, f"does not run on {x.device.type}", key, weights, eager)
    key = graph_key(encoder_id, probe, f"{engine}/{precision}", runtime_version(engine))
    if _VERDICTS.get(key):  # refused before in this process: already said, say nothing again
        return Route(weights, "torch", eager, _VERDICTS[key])
    try:
        run = importlib.import_module(f"{__package__}.{runtime.module}").build(replace(request, key=key))
        difference = 0.0 if key in _VERDICTS else _difference(encoder, run, probe, precision)
    except Exception as error:  # an exporter, runtime or compiler refusing: all mean "not this engine"
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return _fallback(name, engine, f"failed: {reason}", key, weights, eager)
    if not difference <= TOLERANCE[precision]:  # NaN is refused too
        why = f"differs from PyTorch by {difference:.1e} relative (limit {TOLERANCE[precision]:.0e})"
        return _fallback(name, engine, why, key, weights, eager)
    _VERDICTS[key] = None
    return Route(weights, engine, run)


def _difference(encoder: nn.Module, run: Runner, probe: Tensor, precision: str) -> float:
    """``max|run − torch| / max|torch|`` on the probe (the absolute difference when torch's output is 0)."""
    with autocast(probe.device, precision):
        reference = encoder(probe)
    got = run(probe)
    if not isinstance(reference, Tensor) or not isinstance(got, Tensor) or got.shape != reference.shape:
        return float("inf")
    reference, got = reference.double(), got.double()
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    difference = float((got - reference).abs().max()) if reference.numel() else 0.0
    return difference / scale if scale > 0 else difference


def _fallback(name: str, engine: str, why: str, key: str, weights: tuple, eager: Runner | None) -> Route:
    line = f"model {name!r}: engine {engine} {why}; running PyTorch instead"
    if not _VERDICTS.get(key):
        _VERDICTS[key] = line
        warnings.warn(line, EngineWarning, stacklevel=2)
    return Route(weights, "torch", eager, line)
