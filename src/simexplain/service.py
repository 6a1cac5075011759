"""The service layer: explain a pair of images end to end, for the command line and the web page.

Two steps keep a typo from costing a run:

1. :func:`plan` checks everything that needs no model — method names, their parameters, metric names,
   seeds and batch size — and returns a :class:`Plan` (plain data).
2. :func:`run` takes a model (a :class:`PairModel` or a registered name, loaded once and cached by
   :func:`get_model`), two images (paths, encoded bytes, PIL images, arrays or model-input tensors) and the
   plan, and returns a :class:`PairReport`: every method's explanation, resolved config, seconds and metrics.

Example:
    >>> import simexplain
    >>> from simexplain import service
    >>> p = service.plan(["input-x-gradient"], metrics="SAD")
    >>> report = service.run("efficientnet-lite0", simexplain.sample_path("chelsea.jpg"),
    ...                      simexplain.sample_path("coffee.jpg"), p)
    >>> [o.method for o in report.outcomes], sorted(report.to_json()["explanations"][0])
    (['input-x-gradient'], ['config', 'method', 'metrics', 'score', 'seconds'])
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from . import checks
from .errors import SimexplainError
from .explanation import PairExplanation
from .images import ImageSource, load_image
from .pair import PairModel

DEFAULT_METHODS = ("input-x-gradient", "interaction-cam")


# ---------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Plan:
    """A checked request: methods with their parameters, metrics and metric options; no model needed.

    Attributes:
        methods: ``(name, params)`` in the order asked for.
        metrics: resolved metric names (empty: no metrics).
        batch_size: images per forward for methods and metrics (``None``: the device's default).
        metric_options: the metrics' own settings (e.g. ``step``), never mixed with a method's.
    """

    methods: tuple[tuple[str, dict[str, Any]], ...]
    metrics: tuple[str, ...] = ()
    batch_size: int | None = None
    metric_options: dict[str, Any] = field(default_factory=dict)


def plan(
    methods: str | Sequence[str] = DEFAULT_METHODS,
    params: Mapping[str, Any] | None = None,
    metrics: str | Sequence[str] | None = None,
    *,
    seed: int | None = None,
    batch_size: int | None = None,
    metric_options: Mapping[str, Any] | None = None,
) -> Plan:
    """Check a request without touching a model.

    Args:
        methods: method names, a list or one comma-separated string.
        params: ``"METHOD.KEY"`` → value for one method, or ``"KEY"`` → value for every chosen method that has
            such a parameter. Text values (from a command line or a form) are parsed with
            :func:`simexplain.checks.parse_setting`, so ``"false"`` is ``False``.
        metrics: metric names or ``"all"``; ``None``/empty for none.
        seed: given to every chosen method that takes a seed (unless ``params`` sets it).
        batch_size: images per forward, for the methods that take it and the metrics.
        metric_options: the metrics' own settings, e.g. ``{"step": 224}``.

    Example:
        >>> plan("smooth-grad", {"samples": "20", "guided": "false"}, seed=3).methods
        (('smooth-grad', {'samples': 20, 'guided': False, 'seed': 3}),)
    """
    from .methods import get
    from .metrics import resolve_metrics
    from .metrics.evaluate import check_options

    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else [str(m) for m in methods]
    names = [n for n in names if n]
    if not names:
        raise SimexplainError("no method chosen")
    if len(set(names)) != len(names):
        raise SimexplainError(f"a method is chosen twice: {', '.join(names)}")
    entries = {name: get(name) for name in names}
    known = {name: entry.parameters() for name, entry in entries.items()}
    chosen: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in (params or {}).items():
        target, _, parameter = str(key).rpartition(".")
        if target and target not in chosen:
            raise SimexplainError(
                f"setting {key!r}: {target!r} is not among the chosen methods {', '.join(names)}"
            )
        targets = [target] if target else [n for n in names if parameter in known[n]]
        if not targets:
            raise SimexplainError(f"setting {key!r}: no chosen method has a parameter {parameter!r}")
        value = checks.parse_setting(value) if isinstance(value, str) else value
        for name in targets:
            chosen[name][parameter] = value
    if batch_size is not None:
        batch_size = checks.positive_int("batch size", batch_size)
    for key, value in (("seed", seed), ("batch_size", batch_size)):
        for name in names:
            if value is not None and key in known[name]:
                chosen[name].setdefault(key, value)
    for name, entry in entries.items():
        chosen[name] = entry.check(chosen[name])  # values too, before any model work
    wanted = tuple(resolve_metrics(metrics)) if metrics else ()
    options = dict(metric_options or {})
    allowed = inspect.signature(check_options).parameters
    unknown = [key for key in options if key not in allowed]
    if unknown:
        raise SimexplainError(f"unknown metric setting {', '.join(unknown)}; known: {', '.join(allowed)}")
    options = {k: v for k, v in check_options(**options).items() if k in options}
    return Plan(
        methods=tuple((name, chosen[name]) for name in names),
        metrics=wanted,
        batch_size=batch_size,
        metric_options=options,
    )


# ---------------------------------------------------------------------------------------------- models
_MODELS: dict[tuple, PairModel] = {}
_MODELS_LOCK = threading.Lock()


def check_model_name(name: str) -> str:
    """A registered model name (or a ``prefix:NAME`` route such as ``timm:resnet50``), else one line."""
    from .models import available

    names = available()
    if name in names or (":" in name and name.split(":", 1)[0] + ":" in names):
        return name
    raise SimexplainError(f"unknown model {name!r}; known: {', '.join(sorted(names))}")


def get_model(
    name: str | None = None, *, weights: str | None = None, device: str | torch.device = "cpu"
) -> PairModel:
    """A registered model on ``device``, loaded once per (name, weights, device) and shared by every caller.

    Sharing is safe: a :class:`PairModel` serialises its callers (one explanation at a time per model).
    """
    from .models import DEFAULT_MODEL, load_model

    name = check_model_name(name or DEFAULT_MODEL)
    device = torch.device(device)
    key = (name, None if weights is None else str(weights), str(device))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(name, weights=weights).to(device)
        return _MODELS[key]


def check_device(name: str) -> torch.device:
    """A torch device that exists here; one line otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SimexplainError(f"unknown device {name!r} (use cpu or cuda[:N])") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SimexplainError(f"device {name!r} asked for, but no CUDA device is available (use cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SimexplainError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    return device


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class MethodOutcome:
    """One method's result on the pair: the explanation, its resolved config, seconds and metrics."""

    method: str
    explanation: PairExplanation
    seconds: float
    metrics: Any = None  # simexplain.metrics.MetricResults when metrics were asked for

    @property
    def config(self) -> dict[str, Any]:
        return self.explanation.config

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: method, config, per-pair scores, seconds and the metrics' means and values."""
        score = self.explanation.score
        return {
            "method": self.method,
            "config": self.config,
            "score": None if score is None else score.double().tolist(),
            "seconds": self.seconds,
            "metrics": None if self.metrics is None else self.metrics.to_dict(curves=False),
        }


@dataclass
class PairReport:
    """What :func:`run` found for one batch of pairs (usually one pair)."""

    model: PairModel
    x1: Tensor
    x2: Tensor
    labels: tuple[str, str]
    score: Tensor
    outcomes: list[MethodOutcome]
    plan: Plan

    def to_json(self) -> dict[str, Any]:
        """The model, the images, the clean score(s) and every method's outcome, as plain JSON data."""
        scores = self.score.double().tolist()
        return {
            "model": self.model.name,
            "images": list(self.labels),
            "score": scores[0] if len(scores) == 1 else scores,
            "batch_size": self.plan.batch_size,
            "device": str(self.x1.device),
            "explanations": [outcome.to_json() for outcome in self.outcomes],
        }

    def figure(self, *, index: int = 0, title: str | None = None):
        """The pair figure (a matplotlib ``Figure``; render it with ``figures.render_figure``)."""
        from .figures.pairs import pair_figure

        explanations = [outcome.explanation for outcome in self.outcomes]
        if title is None:
            title = f"{self.model.name}: similarity {float(self.score[index]):.3f}"
        return pair_figure(self.x1, self.x2, explanations, self.model.preprocessing, index=index, title=title)


def load_pair(model: PairModel, image1: ImageSource, image2: ImageSource) -> tuple[Tensor, Tensor]:
    """Both images as model-input batches: tensors ``B×3×H×W`` are taken as they are (model-input space);
    paths, bytes, PIL images and arrays are read, resized and scaled for the model."""
    return _one(model, image1, "image 1"), _one(model, image2, "image 2")


def _one(model: PairModel, source: ImageSource, label: str) -> Tensor:
    if isinstance(source, Tensor) and source.dim() == 4:
        return source.to(model.device)
    return load_image(source, model, label)


def _label(source: ImageSource, fallback: str) -> str:
    if isinstance(source, str):
        return source
    if hasattr(source, "__fspath__"):
        return str(source.__fspath__())
    return fallback


def run(
    model: PairModel | str | None,
    image1: ImageSource,
    image2: ImageSource,
    request: Plan,
    *,
    labels: tuple[str, str] | None = None,
    device: str | torch.device | None = None,
) -> PairReport:
    """Explain the pair with every planned method, time each, and score each with the planned metrics.

    ``model`` is a :class:`PairModel` or a registered name (``None``: the default model), loaded through the
    cache of :func:`get_model` on ``device`` (default cpu). Each method holds the model's lock while it runs.
    """
    from .methods import explain

    if not isinstance(model, PairModel):
        model = get_model(model, device=device or "cpu")
    x1, x2 = load_pair(model, image1, image2)
    labels = labels or (_label(image1, "image 1"), _label(image2, "image 2"))
    with model.explaining(), torch.inference_mode():
        score = model(x1, x2).detach().clone()
    outcomes = []
    for name, params in request.methods:
        started = time.perf_counter()
        explanation = explain(model, x1, x2, name, **params)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        outcomes.append(MethodOutcome(name, explanation, time.perf_counter() - started))
    if request.metrics:
        from .metrics import evaluate

        for outcome in outcomes:
            outcome.metrics = evaluate(
                model,
                x1,
                x2,
                outcome.explanation,
                list(request.metrics),
                batch_size=request.batch_size,
                **request.metric_options,
            )
    return PairReport(model, x1, x2, labels, score, outcomes, request)


def demo_pair(model: PairModel, seed: int = 0) -> tuple[Tensor, Tensor, tuple[str, str]]:
    """The bundled cat photo and one seeded SimCLR augmentation of it (the paper's demo setting)."""
    from .images import sample_path, view_pair

    seed = checks.non_negative_int("seed", seed)
    path = sample_path("chelsea.jpg")
    x1, x2 = view_pair(path, model, seed)
    return x1, x2, (str(path), f"SimCLR view of {path.name} (seed {seed})")


__all__ = [
    "DEFAULT_METHODS",
    "MethodOutcome",
    "PairReport",
    "Plan",
    "check_device",
    "check_model_name",
    "demo_pair",
    "get_model",
    "load_pair",
    "plan",
    "run",
]
