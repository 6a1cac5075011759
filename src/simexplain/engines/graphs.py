"""The ONE export function (ONNX, free batch axis) and the on-disk cache of exported graphs.

A graph is stored as ``cache_root()/engines/<key>.onnx`` with a sidecar ``<key>.json`` that records its
SHA-256; the key hashes the encoder's fingerprint, the input's shape and dtype, the runtime and its version,
and torch's version (the exporter's). Every load checks the file against its sidecar: a changed file is
exported again, never reused. An export that failed is recorded in the sidecar too, so later processes skip
it. Files are written beside their final name and renamed into place (two processes exporting at once each
leave a whole file), and the least recently used graphs are removed beyond :data:`CACHE_BYTES`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from ..cache import cache_root, file_sha256, sha256_matches
from ..errors import SimexplainError

CACHE_BYTES = 2 << 30  # graphs kept on disk, least recently used removed first


class ExportFailed(SimexplainError):
    """The encoder cannot be exported (an unsupported operator, an output that is not one tensor, ...);
    ``lasting`` when the cause is the model itself (an operator the exporter lacks), not this environment."""

    def __init__(self, message: str, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


def export_onnx(encoder: nn.Module, path: str | os.PathLike, example: Tensor) -> Path:
    """Export ``encoder`` to ONNX at ``path`` with a free batch axis, traced on ``example`` (``N×C×H×W``).

    The TorchScript exporter: quick, and it keeps the batch axis free (torch marks it deprecated; its warnings
    are silenced). The graph takes the example's ``H×W`` and dtype. The encoder is traced in its current
    modes; nothing about it changes. Raises :class:`ExportFailed` with the exporter's first line when it
    refuses.

    Example:
        >>> import os, tempfile
        >>> net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten())
        >>> path = export_onnx(net, os.path.join(tempfile.mkdtemp(), "net.onnx"), torch.rand(2, 3, 5, 5))
        >>> path.suffix, path.stat().st_size > 0
        ('.onnx', True)
    """
    path = Path(path)
    with torch.inference_mode(False), torch.no_grad(), _mha_fastpath_off():
        example = example.detach().clone()  # an ordinary tensor: the tracer refuses inference tensors
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
            try:
                torch.onnx.export(
                    encoder,
                    (example,),
                    str(path),
                    input_names=["images"],
                    output_names=["embeddings"],
                    dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
                    dynamo=False,
                )
            except Exception as error:  # the exporter raises many types; all mean "not exportable"
                path.unlink(missing_ok=True)
                lasting = isinstance(error, torch.onnx.errors.UnsupportedOperatorError)
                raise ExportFailed(f"{type(error).__name__}: {_reason(error)}", lasting) from None
    return path


@contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    """``nn.MultiheadAttention`` traced through its plain operators: without grad its fast path is one fused
    operator (``aten::_native_multi_head_attention``) that ONNX lacks, and CLIP's and open_clip's towers use
    it. The outputs are the same; the switch is global, so it is restored."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def _reason(error: Exception) -> str:
    """The exporter's reason in one line (some errors print the whole traced graph first: then the last)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    return (lines[-1] if "graph(" in lines[0] else lines[0])[:200]


# How simexplain exports (raise it when export_onnx changes what it can export or how): a graph, or a failure
# remembered in a sidecar, of an older way is not reused.
EXPORTER_REVISION = 2  # 2: nn.MultiheadAttention through its plain operators


def graph_key(fingerprint: str, example: Tensor, runtime: str, runtime_version: str) -> str:
    """The cache key of one graph: what makes two exports interchangeable."""
    facts = {
        "exporter": EXPORTER_REVISION,
        "encoder": fingerprint,
        "input": list(example.shape[1:]),
        "dtype": str(example.dtype),
        "runtime": runtime,
        "runtime_version": runtime_version,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def cached_graph(encoder: nn.Module, example: Tensor, key: str, folder: Path | None = None) -> Path:
    """The graph file of ``key``: reused when its bytes match its sidecar, exported (on ``example``) when
    missing or changed. Raises :class:`ExportFailed` for an encoder that cannot be exported (remembered in
    the sidecar when the cause is the encoder itself)."""
    folder = folder or cache_root() / "engines"
    graph, sidecar = folder / f"{key}.onnx", folder / f"{key}.json"
    recorded = _read_json(sidecar)
    if "failed" in recorded:
        raise ExportFailed(recorded["failed"])
    if sha256_matches(graph, recorded.get("sha256")):
        os.utime(graph)  # recently used: pruned last
        return graph
    folder.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".onnx")[1])
    try:
        export_onnx(encoder, staged, trace_example(example))
    except ExportFailed as error:
        staged.unlink(missing_ok=True)
        if error.lasting:
            _write_json(sidecar, {"failed": str(error), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        raise
    digest = file_sha256(staged)
    staged.chmod(0o644)  # mkstemp makes files private; a cache is as readable as any other
    os.replace(staged, graph)
    _write_json(sidecar, {"sha256": digest, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    prune(folder, keep=graph)
    return graph


def trace_example(probe: Tensor) -> Tensor:
    """What the exporter traces: seeded standard-normal images shaped like the probe, NOT the probe, so that
    a branch taken on the data (which a trace freezes) most likely differs from the probe's and the probe
    catches it."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(tuple(probe.shape), generator=generator, dtype=torch.float32)
    return noise.to(device=probe.device, dtype=probe.dtype)


def prune(folder: Path, limit: int = CACHE_BYTES, keep: Path | None = None) -> None:
    """Remove the least recently used graphs (and their sidecars) until the folder holds at most ``limit``
    bytes of graphs; ``keep`` is never removed."""
    graphs = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    total = 0
    for graph in graphs:
        total += graph.stat().st_size
        if total > limit and graph != keep:
            graph.unlink(missing_ok=True)
            graph.with_suffix(".json").unlink(missing_ok=True)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".json")
    with os.fdopen(handle, "w") as out:
        json.dump(value, out)
    os.replace(staged, path)
