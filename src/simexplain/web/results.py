"""A finished request's answer and downloads (figure, JSON, input crops), kept for the session.

The answer is the service's one JSON shape (:meth:`simexplain.service.PairReport.to_json`, with maps) plus the
web's delivery fields: the result's id and its download links. The figure is rendered on first download into a
private temporary folder made for this server (names are the result's random id and a fixed suffix, never
anything the client sent); the oldest results are dropped, files included, once more than ``keep`` are held.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from .. import service

DOWNLOADS = {
    "figure.png": "image/png",
    "figure.svg": "image/svg+xml",
    "result.json": "application/json",
    "image1.png": "image/png",
    "image2.png": "image/png",
}


class ExplainAnswer(service.AnswerJSON):
    """The answer of ``POST /api/explain``: the service's answer (:class:`simexplain.service.AnswerJSON`, maps
    included) with the result's ``id``, its ``figures`` (``png``, ``svg``, ``json`` links) and ``inputs`` (the
    two input crops' links)."""

    id: str
    figures: dict[str, str]
    inputs: list[str]


def answer(result_id: str, report: service.PairReport) -> ExplainAnswer:
    """The answer for ``report`` as result ``result_id``."""
    base = f"/api/results/{result_id}"
    document = report.to_json(maps=True)
    images = ["image1.png"] if report.x2 is None else ["image1.png", "image2.png"]  # a text: one image
    return ExplainAnswer(
        id=result_id,
        **document,
        figures={"png": f"{base}/figure.png", "svg": f"{base}/figure.svg", "json": f"{base}/result.json"},
        inputs=[f"{base}/{name}" for name in images],
    )


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
        if stored is None or name not in DOWNLOADS or (name == "image2.png" and stored.report.x2 is None):
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


__all__ = ["DOWNLOADS", "ExplainAnswer", "ResultStore", "answer"]
