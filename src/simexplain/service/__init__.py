"""The service layer: one request (methods, settings, metrics) on a pair of images, end to end. The command
line and the web page are thin doors over it; the studies use its settings grammar.

Two steps keep a typo from costing a run:

1. :func:`prepare` checks everything that needs no model — method names, the settings (one grammar for every
   door: :mod:`simexplain.service.settings`), metric names, seed and batch size — and returns a
   :class:`Request` (plain data).
2. :func:`run` takes a model (a :class:`PairModel` or a registered name, loaded once and cached by
   :func:`get_model`), two images (paths, encoded bytes, PIL images, arrays or model-input tensors) and the
   request, and returns a :class:`PairReport`: every method's explanation, resolved config, seconds and
   metrics, with one JSON shape for the answer (:meth:`PairReport.to_json`). An observer follows the progress
   and may cancel.

Example:
    >>> import simexplain
    >>> from simexplain import service
    >>> request = service.prepare(["input-x-gradient"], metrics="SAD")
    >>> report = service.run("efficientnet-lite0", simexplain.sample_path("chelsea.jpg"),
    ...                      simexplain.sample_path("coffee.jpg"), request)
    >>> [o.method for o in report.outcomes], sorted(report.to_json()["explanations"][0])
    (['input-x-gradient'], ['config', 'method', 'metrics', 'score', 'seconds'])
"""

from .answer import AnswerJSON, ExplanationJSON, MethodOutcome, PairReport, json_safe
from .loading import check_device, check_model_name, demo_pair, get_model, image_label, load_pair
from .request import DEFAULT_METHODS, MethodCall, Request, prepare
from .running import Observer, run
from .settings import Settings, parse_settings, route_settings

__all__ = [
    "DEFAULT_METHODS",
    "AnswerJSON",
    "ExplanationJSON",
    "MethodCall",
    "MethodOutcome",
    "Observer",
    "PairReport",
    "Request",
    "Settings",
    "check_device",
    "check_model_name",
    "demo_pair",
    "get_model",
    "image_label",
    "json_safe",
    "load_pair",
    "parse_settings",
    "prepare",
    "route_settings",
    "run",
]
