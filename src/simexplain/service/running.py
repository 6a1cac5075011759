"""Running a checked request on a pair: the one loop every door uses (the command line, the web jobs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor

from ..batching import observe_chunks
from ..errors import SimexplainError
from ..images import ImageSource, load_image
from ..pair import PairModel
from .answer import MethodOutcome, PairReport
from .loading import get_model, image_label, load_pair
from .request import Request

# Told the progress in [0, 1] and, when a new stage begins, its name (else None). It may raise to cancel the
# run: it is called before the images are read, before each method, before each chunk of work and after each
# method.
Observer = Callable[[float, "str | None"], None]


def run(
    model: PairModel | str | None,
    image1: ImageSource,
    image2: ImageSource | None,
    request: Request,
    *,
    labels: tuple[str, str] | None = None,
    device: str | torch.device | None = None,
    model_label: str | None = None,
    observer: Observer | None = None,
    clean: tuple[Tensor, Tensor] | None = None,
    text: str | None = None,
) -> PairReport:
    """Explain the pair with every requested method, time each, and score each with the requested metrics.

    ``model`` is a :class:`PairModel` or a registered name (``None``: the default model), loaded through the
    cache of :func:`simexplain.service.get_model` on ``device`` (default cpu); ``model_label`` is the name the
    answer gives it (default: the name asked for, else the model's own). The clean score is computed once;
    each method then runs, followed by its metrics, holding the model's lock. ``observer`` follows the
    progress and may cancel (see :data:`Observer`); the model is left as it was either way. ``clean``: the
    pairs' embeddings ``(f_a(x1), f_b(x2))`` when the caller has them already (the evaluation driver embeds a
    step's pairs once for all its variants): the score comes from them and the metrics reuse them.

    ``text`` (with ``image2`` ``None`` and a request prepared with ``text=True``): the image against this
    text, on an image–text model (a name loads with ``pair="image-text"``); the answer carries the words and
    their scores (docs/image_text.md).
    """
    notify = observer or _unobserved
    notify(0.0, "reading the images")
    if text is not None:
        return _run_text(model, image1, text, request, notify, labels, device, model_label, clean)
    if not isinstance(model, PairModel):
        model_label = model_label or model
        model = get_model(model, device=device or "cpu")
    x1, x2 = load_pair(model, image1, image2)
    labels = labels or (image_label(image1, "image 1"), image_label(image2, "image 2"))
    with model.explaining(), torch.inference_mode():
        score = (model(x1, x2) if clean is None else model.similarity(*clean)).detach().clone()
    outcomes = [
        _method(model, x1, x2, request, index, notify, clean) for index in range(len(request.methods))
    ]
    return PairReport(model, model_label or model.name, x1, x2, labels, score, outcomes, request)


def _run_text(
    model: PairModel | str | None,
    image: ImageSource,
    text: str,
    request: Request,
    notify: Observer,
    labels: tuple[str, str] | None,
    device: str | torch.device | None,
    model_label: str | None,
    clean: tuple[Tensor, Tensor] | None,
) -> PairReport:
    """:func:`run` for an image and a text."""
    from ..methods.image_text import check_image_text

    if not request.text:
        raise SimexplainError("a text needs a request prepared for one (service.prepare(..., text=True))")
    if not isinstance(model, PairModel):
        model_label = model_label or model
        model = get_model(model, device=device or "cpu", pair="image-text")
    for call in request.methods:
        check_image_text(model, call.name)
    x1 = load_image(image, model, "image") if not isinstance(image, Tensor) else image.to(model.device)
    texts = [text] * len(x1)
    tokens = model.text_tower.tokenize(texts)
    with model.explaining(), torch.inference_mode():
        score = (model(x1, tokens) if clean is None else model.similarity(*clean)).detach().clone()
    labels = labels or (image_label(image, "image"), text)
    outcomes = [_method(model, x1, texts, request, i, notify, clean) for i in range(len(request.methods))]
    return PairReport(model, model_label or model.name, x1, None, labels, score, outcomes, request, texts)


def _method(
    model: PairModel,
    x1: Tensor,
    x2: Tensor | list[str],
    request: Request,
    index: int,
    notify: Observer,
    clean: tuple[Tensor, Tensor] | None,
) -> MethodOutcome:
    """The ``index``-th method of the request and its metrics, with the progress of their chunks."""
    from ..methods import explain
    from ..metrics import evaluate

    count = len(request.methods)
    name, params = request.methods[index]
    notify(index / count, f"{name} ({index + 1} of {count})")

    def chunk(done: int, total: int) -> None:
        notify((index + done / max(total, 1)) / count, None)

    with observe_chunks(chunk) if notify is not _unobserved else nullcontext():
        started = time.perf_counter()
        explanation = explain(model, x1, x2, name, **params)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        outcome = MethodOutcome(name, explanation, time.perf_counter() - started)
        metrics = _metrics_of(request, explanation)
        if metrics:
            options = {**request.metric_options, "batch_size": request.batch_size, "clean": clean}
            outcome.metrics = evaluate(model, x1, x2, explanation, metrics, **options)
    notify((index + 1) / count, None)
    return outcome


def _metrics_of(request: Request, explanation: object) -> list[str]:
    """The request's metrics for this explanation; for an image and a text, those its method can have."""
    from ..metrics import usable_metrics

    return usable_metrics(request.metrics, explanation)


def _unobserved(progress: float, stage: str | None) -> None:
    """The observer of a run nobody follows."""


__all__ = ["Observer", "run"]
