"""Running a checked request as a job, and keeping its results (answer, figure, crops) for the session.

The figure is rendered on first download into a private temporary folder made for this server (names are the
result's random id and a fixed suffix, never anything the client sent); the oldest results are dropped, files
included, once more than ``keep`` are held.
"""

from __future__ import annotations

import dataclasses
import io
import math
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import service
from ..batching import observe_chunks
from ..pair import PairModel
from .jobs import Job
from .requests import ExplainRequest

MAX_GRID = 224
DOWNLOADS = {
    "figure.png": "image/png",
    "figure.svg": "image/svg+xml",
    "result.json": "application/json",
    "image1.png": "image/png",
    "image2.png": "image/png",
}


def explain_job(job: Job, model: PairModel, request: ExplainRequest) -> service.PairReport:
    """``service.run`` one method at a time on images read once, reporting progress and honouring cancel."""
    job.report(0.0, "reading the images")
    x1, x2 = service.load_pair(model, request.image1, request.image2)
    methods = request.plan.methods
    outcomes, report = [], None
    for index, method in enumerate(methods):
        job.report(index / len(methods), f"{method[0]} ({index + 1} of {len(methods)})")

        def step(done: int, total: int, index: int = index) -> None:
            job.report((index + done / max(total, 1)) / len(methods))

        one = dataclasses.replace(request.plan, methods=(method,))
        with observe_chunks(step):
            report = service.run(model, x1, x2, one, labels=request.labels)
        outcomes += report.outcomes
        job.check()
    return dataclasses.replace(report, outcomes=outcomes, plan=request.plan)


def native_grid(explanation, side: int) -> list[list[float]]:
    """The first pair's map on the method's native grid (at most 224×224), rounded, non-finite → 0."""
    grid = getattr(explanation, f"grid{side}")
    grid = getattr(explanation, f"map{side}") if grid is None else grid
    values = grid[0].detach().float().cpu()
    if values.dim() != 2:
        values = values.reshape(values.shape[-2], values.shape[-1])
    height, width = values.shape
    if max(height, width) > MAX_GRID:
        size = (min(height, MAX_GRID), min(width, MAX_GRID))
        values = F.adaptive_avg_pool2d(values[None, None], size)[0, 0]
    values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return [[float(f"{v:.5g}") for v in row] for row in values.tolist()]


MAX_INTERACTION = 2**16  # values of I sent to the page (16×16 grids, a 14×14 ViT: 38,416); larger stay out


def interaction_grid(explanation) -> list | None:
    """The first pair's second-order map ``I[y1][x1][y2][x2]`` of a ``pair-interaction`` explanation, rounded,
    or ``None`` (another method, or a grid too large to send)."""
    interaction = explanation.interaction
    if interaction is None or interaction[0].numel() > MAX_INTERACTION:
        return None
    values = torch.nan_to_num(interaction[0].detach().float().cpu(), nan=0.0, posinf=0.0, neginf=0.0)
    return [[[[float(f"{v:.4g}") for v in row] for row in cell] for cell in line] for line in values.tolist()]


def answer(result_id: str, served_name: str, report: service.PairReport) -> dict[str, Any]:
    """The JSON answer of ``POST /api/explain``: scores, per-method config, seconds, maps and links."""
    document = report.to_json()
    explanations = []
    for outcome, entry in zip(report.outcomes, document["explanations"]):
        score = entry["score"]
        entry["score"] = score[0] if isinstance(score, list) else score
        entry["map1"] = native_grid(outcome.explanation, 1)
        entry["map2"] = native_grid(outcome.explanation, 2)
        interaction = interaction_grid(outcome.explanation)
        if interaction is not None:
            entry["interaction"] = interaction
        explanations.append(entry)
    base = f"/api/results/{result_id}"
    return json_safe(
        {
            "id": result_id,
            "model": served_name,
            "model_name": report.model.name,
            "score": float(report.score[0]),
            "images": list(report.labels),
            "device": document["device"],
            "explanations": explanations,
            "figures": {
                "png": f"{base}/figure.png",
                "svg": f"{base}/figure.svg",
                "json": f"{base}/result.json",
            },
            "inputs": [f"{base}/image1.png", f"{base}/image2.png"],
        }
    )


def json_safe(value: Any) -> Any:
    """Plain JSON: NaN/∞ → ``None``, tuples → lists, anything else unknown → its text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return json_safe(value.item())
    return str(value)


@dataclasses.dataclass
class StoredResult:
    id: str
    report: service.PairReport
    answer: bytes  # the JSON answer, encoded once
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class ResultStore:
    """The last ``keep`` results, their downloads rendered once into a private temporary folder."""

    def __init__(self, keep: int = 32) -> None:
        self.keep = keep
        self.folder = Path(tempfile.mkdtemp(prefix="simexplain-web-"))
        self._results: OrderedDict[str, StoredResult] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, result_id: str, report: service.PairReport, document: bytes) -> None:
        with self._lock:
            self._results[result_id] = StoredResult(result_id, report, document)
            while len(self._results) > self.keep:
                old, _ = self._results.popitem(last=False)
                for name in DOWNLOADS:
                    (self.folder / f"{old}.{name}").unlink(missing_ok=True)

    def get(self, result_id: str) -> StoredResult | None:
        with self._lock:
            return self._results.get(result_id)

    def download(self, result_id: str, name: str) -> tuple[bytes, str] | None:
        """The bytes and media type of one download, or ``None`` for an unknown result or name."""
        stored = self.get(result_id)
        if stored is None or name not in DOWNLOADS:
            return None
        path = self.folder / f"{stored.id}.{name}"  # our id and a fixed name: never the client's text
        with stored.lock:
            if not path.exists():
                path.write_bytes(_render(stored, name))
        return path.read_bytes(), DOWNLOADS[name]

    def close(self) -> None:
        with self._lock:
            self._results.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def _render(stored: StoredResult, name: str) -> bytes:
    from ..figures.output import render_figure

    report = stored.report
    if name == "result.json":
        return stored.answer
    if name.startswith("figure."):
        return render_figure(report.figure(), name.split(".")[1], dpi=110)
    x = report.x1 if name == "image1.png" else report.x2
    return png(report.model.preprocessing.to_pixels(x[0].detach().float().cpu()).clamp(0, 1))


def png(pixels: torch.Tensor) -> bytes:
    """A ``3×H×W`` image in [0, 1] as PNG bytes."""
    from PIL import Image

    array = (pixels.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = ["DOWNLOADS", "ResultStore", "answer", "explain_job", "json_safe", "native_grid"]
