"""The ``simexplain`` command line: ``explain``, ``retrieve``, ``evaluate``, ``dissect``, ``report``,
``sanity``, ``invert``, ``serve``, ``models``, ``methods``, ``fetch-face-model``; thin doors over
:mod:`simexplain.service`, :mod:`simexplain.retrieval`, :mod:`simexplain.studies` and :mod:`simexplain.web`.

Every command is two steps (:class:`Command`): ``check`` reads and checks every argument without touching a
model, and ``act`` does the work. :func:`main` turns an error of the check step into a usage error, in one
place. Settings (``--set``) follow the one grammar of :mod:`simexplain.service.settings`.

Exit status: 0 on success; 2 on usage errors (bad flags, unknown names, bad settings, missing output folders),
all found before any model work; 1 on any other error. Errors are one line on stderr (``--debug`` shows the
traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SimexplainError

DEMO_METHODS = ["input-x-gradient", "averaged-transforms", "interaction-cam", "conditional-occlusion"]
SANITY_METHODS = "input-x-gradient,smooth-grad,interaction-cam"
FIGURE_FORMATS = (".png", ".svg")


class UsageError(SimexplainError):
    """A bad argument found before any model work: exit status 2."""


@contextmanager
def usage_errors() -> Iterator[None]:
    """Inside: a :class:`SimexplainError` is the user's argument's fault (exit status 2)."""
    try:
        yield
    except UsageError:
        raise
    except SimexplainError as error:
        raise UsageError(str(error)) from None


@dataclass(frozen=True)
class Command:
    """A command's two steps: ``check(args)`` (no model work; what it returns goes to ``act``), ``act(args,
    checked)`` (the work; returns the exit status)."""

    check: Callable[[argparse.Namespace], Any]
    act: Callable[[argparse.Namespace, Any], int]


def _no_check(args: argparse.Namespace) -> None:
    return None


# ---------------------------------------------------------------------------------------------- shared checks
def _output_path(option: str, path: str | None, suffixes: Sequence[str]) -> str | None:
    """Refuse an output whose folder is missing or whose format is unknown, before any work is done."""
    if path is None:
        return None
    target = Path(path)
    if suffixes and target.suffix.lower() not in suffixes:
        raise SimexplainError(f"{option} {path}: use one of {', '.join(suffixes)}")
    _check_folder(option, path)
    if target.is_dir():
        raise SimexplainError(f"{option} {path}: is a folder")
    return path


def _check_folder(option: str, path: str) -> None:
    """Refuse ``path`` when the folder it would be written in does not exist."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise SimexplainError(f"{option} {path}: folder {folder} does not exist")


def _check_weights(path: str) -> None:
    if not os.path.isfile(path):
        raise SimexplainError(f"--weights {path}: no such file")


def _check_model(args: argparse.Namespace) -> None:
    """``--model`` (a known name) and ``--weights`` (an existing file), when given; the device."""
    from . import service

    if args.model is not None:
        service.check_model_name(args.model)
    if args.weights is not None:
        _check_weights(args.weights)
    args.device = str(service.check_device(args.device))


def _models_with_weights(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """Repeatable ``--model`` (default: the default model) with ``--weights``, one per model in order (the
    rest use built-in weights): each name known, none twice, each weights file present; the device."""
    from . import service
    from .models import DEFAULT_MODEL

    models = [service.check_model_name(name) for name in args.model or [DEFAULT_MODEL]]
    if len(set(models)) != len(models):
        raise SimexplainError(f"--model given twice: {', '.join(models)}")
    weights = list(args.weights or [])
    if len(weights) > len(models):
        raise SimexplainError(f"{len(weights)} --weights for {len(models)} --model (one per model, in order)")
    for path in weights:
        _check_weights(path)
    args.device = str(service.check_device(args.device))
    return list(zip(models, weights + [None] * (len(models) - len(weights))))


def _load_model(
    args: argparse.Namespace, name: str | None = None, weights: str | None = None, *, pair: str = "image"
):
    """The model a command works with, through the service's cache: ``name``/``weights`` (by default
    ``--model``/``--weights``) on ``--device``, with its text tower for ``pair="image-text"``; the one place
    the model options reach the loader."""
    from . import service

    if name is None:
        name, weights = args.model, args.weights
    return service.get_model(
        name, weights=weights, device=args.device, engine=args.engine, precision=args.precision, pair=pair
    )


def _model_label(args: argparse.Namespace) -> str:
    from .models import DEFAULT_MODEL

    return args.model or DEFAULT_MODEL


def _write_json(path: str, document: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------------- explain
@dataclass(frozen=True)
class ExplainInputs:
    """``explain``'s checked arguments."""

    request: Any  # service.Request
    out: str | None
    json: str | None
    steps_figure: str | None
    point: tuple[int, tuple[int, int]] | None
    face_boxes: list | None
    text: str | None = None


def check_explain(args: argparse.Namespace) -> ExplainInputs:
    """Every argument of ``explain`` checked without a model: images, model, request, outputs, device."""
    from . import checks, service

    if args.text is not None:
        return check_explain_text(args)
    if args.demo == bool(args.images):
        raise SimexplainError("give two images, or --demo for the bundled pair")
    if not args.demo and len(args.images) != 2:
        raise SimexplainError(f"explain needs exactly two images, got {len(args.images)}")
    if args.seed is not None:
        checks.non_negative_int("--seed", args.seed)
    if args.batch_size is not None:
        checks.positive_int("--batch-size", args.batch_size)
    point = parse_point(args.point)
    if point is not None and "pair-interaction" not in (args.method or []):
        raise SimexplainError("--point needs --method pair-interaction")
    _check_model(args)
    _check_inputs(args, point)
    methods = args.method or (DEMO_METHODS if args.demo else list(service.DEFAULT_METHODS))
    seed = 0 if args.seed is None and args.demo else args.seed  # the demo is the same figure every time
    request = service.prepare(methods, args.set or [], args.metrics, seed=seed, batch_size=args.batch_size)
    steps = _output_path("--steps-figure", args.steps_figure, FIGURE_FORMATS)
    if steps and "averaged-transforms" not in [call.name for call in request.methods]:
        raise SimexplainError(
            "--steps-figure draws Averaged Transforms' path: add --method averaged-transforms"
        )
    return ExplainInputs(
        request,
        _output_path("--out", args.out or ("demo.png" if args.demo else None), FIGURE_FORMATS),
        _output_path("--json", args.json, (".json",)),
        steps,
        point,
        _face_boxes(args),
    )


def _face_boxes(args: argparse.Namespace) -> list | None:
    """``--face-box`` once (both images) or twice (image 1, image 2), each X,Y,W,H; None without it."""
    if not args.face_box:
        return None
    from .models.face import parse_box

    if args.demo or len(args.face_box) > 2:
        raise SimexplainError(
            "--face-box: give it once (both images) or twice (image 1, image 2), with two images"
        )
    boxes = [parse_box(text) for text in args.face_box]
    return boxes * 2 if len(boxes) == 1 else boxes


def _check_inputs(args: argparse.Namespace, point: tuple[int, tuple[int, int]] | None) -> None:
    """The image files (each present, a regular file, not empty) and ``--point`` inside the model's input
    when the model states its input size before it is built; all before any model work."""
    from .images import check_image_file

    for path in args.images:
        check_image_file(path)
    if point is not None:
        check_point(point, _declared_input_size(args.model))


def _declared_input_size(name: str | None) -> tuple[int, int] | None:
    """The input size ``(H, W)`` a registered model's builder takes by default (its ``input_size``
    parameter), or ``None`` where only the built model knows it (a ``prefix:`` route, a builder without
    a fixed default)."""
    import inspect

    from .models import DEFAULT_MODEL, available

    entry = available().get(name or DEFAULT_MODEL)
    parameter = inspect.signature(entry.builder).parameters.get("input_size") if entry else None
    size = parameter.default if parameter is not None else None
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    if isinstance(size, tuple) and len(size) == 2 and all(isinstance(n, int) for n in size):
        return size
    return None


def check_point(point: tuple[int, tuple[int, int]] | None, size: Sequence[int] | None) -> None:
    """Refuse, in one line, a ``--point`` outside the model's ``H×W`` input (nothing to check without
    either).

    Example:
        >>> check_point((1, (40, 230)), (224, 224))
        Traceback (most recent call last):
        ...
        simexplain.errors.SimexplainError: --point 1:40,230 lies outside the model's 224×224 input \
(Y in 0-223, X in 0-223)
    """
    if point is None or size is None:
        return
    image, (y, x) = point
    height, width = size
    if not (y < height and x < width):
        raise SimexplainError(
            f"--point {image}:{y},{x} lies outside the model's {height}×{width} input "
            f"(Y in 0-{height - 1}, X in 0-{width - 1})"
        )


def parse_point(text: str | None) -> tuple[int, tuple[int, int]] | None:
    """``--point IMAGE:Y,X`` (``1:40,100``) as ``(image, (y, x))``; pixel coordinates at the model's input."""
    if text is None:
        return None
    image, sep, rest = text.partition(":")
    coords = rest.split(",")
    if not sep or image.strip() not in ("1", "2") or len(coords) != 2:
        raise SimexplainError(f"--point expects IMAGE:Y,X with IMAGE 1 or 2 (e.g. 1:40,100), got {text!r}")
    try:
        y, x = (int(c) for c in coords)
    except ValueError:
        raise SimexplainError(f"--point expects whole pixel coordinates, got {text!r}") from None
    if y < 0 or x < 0:
        raise SimexplainError(f"--point coordinates must be non-negative, got {text!r}")
    return int(image), (y, x)


def check_explain_text(args: argparse.Namespace) -> ExplainInputs:
    """``explain IMAGE --text TEXT --model NAME``: one image, a text, a model with a text tower (by its
    route: ``hf:`` CLIP/SigLIP, ``open_clip:``, ``python:``), methods with an image–text form."""
    from . import checks, service
    from .text import check_texts

    check_texts([args.text])
    if args.demo or len(args.images) != 1:
        raise SimexplainError("--text explains one image against the text: give exactly one image")
    for option in ("point", "steps_figure", "face_box"):
        if getattr(args, option):
            raise SimexplainError(f"--{option.replace('_', '-')} is for two images, not --text")
    if args.model is None:
        raise SimexplainError(
            "--text needs an image–text model: --model hf:ORG/CLIP-OR-SIGLIP or open_clip:ARCH/TAG"
        )
    _check_model(args)
    _check_text_model(args.model)
    if args.seed is not None:
        checks.non_negative_int("--seed", args.seed)
    methods = args.method or list(service.DEFAULT_METHODS)
    request = service.prepare(
        methods, args.set or [], args.metrics, seed=args.seed, batch_size=args.batch_size, text=True
    )
    out = _output_path("--out", args.out, FIGURE_FORMATS)
    return ExplainInputs(
        request, out, _output_path("--json", args.json, (".json",)), None, None, None, args.text
    )


def _check_text_model(name: str) -> None:
    """A model whose builder can add a text tower (it takes ``pair=``, or builds anything: ``python:``)."""
    from .models.registry import available, builder_options

    routes = available()
    route = name.split(":", 1)[0] + ":" if ":" in name else None
    entry = routes[route] if route in routes else routes[name]
    options = builder_options(entry.builder, route=route in routes)
    if options is not None and "pair" not in options and entry.name != "python:":
        raise SimexplainError(
            f"model {name!r} has no text tower; image–text models: hf: CLIP and SigLIP, open_clip:, python:"
        )


def act_explain_text(args: argparse.Namespace, inputs: ExplainInputs) -> int:
    """``explain IMAGE --text TEXT``: the image map, each word's score, the figure and the JSON."""
    from . import service
    from .batching import progress_bars

    model = _load_model(args, pair="image-text")
    with progress_bars():
        report = service.run(
            model, args.images[0], None, inputs.request, text=inputs.text, model_label=args.model
        )
    print(f"score {float(report.score[0]):.4f}  ({args.images[0]} vs {inputs.text!r})")
    for outcome in report.outcomes:
        e = outcome.explanation
        words = (
            ""
            if e.word_scores is None
            else "  " + " ".join(f"{w}:{s:+.3g}" for w, s in zip(e.words[0], e.word_scores[0].tolist()))
        )
        print(f"  {outcome.method:24s} {outcome.seconds:8.2f} s{words}")
        if outcome.metrics is not None:
            means = outcome.metrics.means()
            print("  " + " " * 24 + "  ".join(f"{k} {v:.4f}" for k, v in means.items() if k != "base"))
    document: dict[str, Any] = dict(report.to_json())
    if inputs.out:
        document["files"] = _save_figures(report, inputs.out, None)
        print("wrote " + ", ".join(document["files"]))
    if inputs.json:
        _write_json(inputs.json, document)
    return 0


def act_explain(args: argparse.Namespace, inputs: ExplainInputs) -> int:
    from . import service
    from .batching import progress_bars
    from .models import DEFAULT_MODEL

    if inputs.text is not None:
        return act_explain_text(args, inputs)
    model = _load_model(args)
    with usage_errors():  # a route's input size is known once built: still before any method work
        check_point(inputs.point, model.preprocessing.input_size)
    if model.name == DEFAULT_MODEL:
        print(
            f"model: {DEFAULT_MODEL} (embedded default, a SUPERVISED ImageNet classifier, "
            "not a contrastive model)"
        )
    image1, image2, labels = _explain_images(args, model, inputs.face_boxes)
    with progress_bars():
        report = service.run(
            model, image1, image2, inputs.request, labels=labels, model_label=_model_label(args)
        )
    print(f"similarity {float(report.score[0]):.4f}  ({labels[0]} vs {labels[1]})")
    for outcome in report.outcomes:
        print(f"  {outcome.method:24s} {outcome.seconds:8.2f} s")
    if inputs.request.metrics:
        from .metrics import format_table

        print(format_table({o.method: o.metrics for o in report.outcomes}))
    document: dict[str, Any] = dict(report.to_json())  # the service's answer, plus the files written
    if inputs.out:
        document["files"] = _save_figures(report, inputs.out, inputs.point)
        print("wrote " + ", ".join(document["files"]))
    if inputs.steps_figure:
        document["steps_figure"] = _save_steps_figure(report, inputs.steps_figure)
        print("wrote " + ", ".join(document["steps_figure"]))
    if inputs.json:
        _write_json(inputs.json, document)
    return 0


def _explain_images(args: argparse.Namespace, model, boxes: list | None) -> tuple[Any, Any, tuple[str, str]]:
    """The two images (the demo pair, the files, or face crops of them) and their labels."""
    from . import service

    if args.demo:
        return service.demo_pair(model, args.seed if args.seed is not None else 0)
    labels = (args.images[0], args.images[1])
    if not boxes:
        return args.images[0], args.images[1], labels
    from .models.face import face_crop

    crops = [face_crop(path, box, label=path) for path, box in zip(args.images, boxes)]
    return crops[0], crops[1], labels


def _save_figures(report, out: str, point: tuple[int, tuple[int, int]] | None) -> list[str]:
    """The request's figures: the pair figure at ``out``, each other one next to it as ``OUT-<name>.png``."""
    from .figures.output import save_figure

    root, ext = os.path.splitext(out)
    written = []
    for name, figure in report.figures(point=point).items():
        written += save_figure(figure, out if name == "pair" else f"{root}-{name}{ext}")
    return written


def _save_steps_figure(report, path: str) -> list[str]:
    """The dissection figure (Fig. 6) of the pair's Averaged Transforms explanation, written to ``path``."""
    from .figures.output import save_figure
    from .studies.dissection import steps_figure_of

    return save_figure(steps_figure_of(report), path)


# ---------------------------------------------------------------------------------------------- retrieve
@dataclass(frozen=True)
class RetrieveInputs:
    files: list[Path]
    top: int
    params: dict[str, Any]
    out: str | None
    json: str | None


def check_retrieve(args: argparse.Namespace) -> RetrieveInputs:
    """``retrieve``'s arguments checked without a model: query, gallery, K, method, settings, outputs."""
    from . import checks, service
    from .retrieval import gallery_files, select_gallery

    if not os.path.isfile(args.query):
        raise SimexplainError(f"query {args.query}: no such file")
    files = gallery_files(args.gallery)
    top = checks.positive_int("--top", args.top)
    select_gallery(args.query, files, top, keep_query=args.keep_query, names=("--top", "--keep-query"))
    (call,) = service.prepare([args.method], args.set or [], seed=args.seed).methods
    if args.batch_size is not None:
        checks.positive_int("--batch-size", args.batch_size)
    _check_model(args)
    _check_cache(args)
    return RetrieveInputs(
        files,
        top,
        call.params,
        _output_path("--out", args.out, FIGURE_FORMATS),
        _output_path("--json", args.json, (".json",)),
    )


def _check_cache(args: argparse.Namespace) -> None:
    """The gallery cache (``--cache``, else the default) is a folder this process can write (made here)."""
    from .cache import usable_folder
    from .retrieval import default_cache_dir

    usable_folder(args.cache or default_cache_dir(), "--cache" if args.cache else "retrieval cache")


def act_retrieve(args: argparse.Namespace, inputs: RetrieveInputs) -> int:
    from .batching import progress_bars
    from .figures.output import save_figure
    from .figures.retrieval import retrieval_figure
    from .retrieval import default_cache_dir, explain_top_k

    model = _load_model(args)
    cache = args.cache or default_cache_dir()
    options = {"cache": cache, "gallery_batch_size": args.batch_size, "keep_query": args.keep_query}
    with progress_bars():
        result = explain_top_k(
            model, args.query, inputs.files, inputs.top, args.method, **options, **inputs.params
        )
    print(f"gallery: {len(inputs.files)} images, {result.embedded} embedded now (cache {cache})")
    if result.left_out:
        names = ", ".join(inputs.files[i].name for i in result.left_out)
        print(f"left out, the query's own content (same SHA-256): {names} (--keep-query ranks it)")
    for rank, (index, score) in enumerate(zip(result.indices.tolist(), result.scores.tolist()), 1):
        print(f"  #{rank:<3d} {score:.4f}  {inputs.files[index]}")
    document = {
        "model": _model_label(args),
        "model_name": model.name,
        "query": args.query,
        **result.to_json(),
    }
    if inputs.out:
        document["files"] = save_figure(retrieval_figure(result, model.preprocessing), inputs.out)
        print("wrote " + ", ".join(document["files"]))
    if inputs.json:
        _write_json(inputs.json, document)
    return 0


# ------------------------------------------------------------------------------------------ evaluate, dissect
@dataclass(frozen=True)
class EvaluateInputs:
    specs: list
    variants: list
    metrics: list[str]
    metric_options: dict[str, Any]
    text: bool = False


def check_evaluate(args: argparse.Namespace) -> EvaluateInputs:
    """Everything ``evaluate`` and ``dissect`` need that takes no model: pairs, variants, metrics, settings,
    store folder, model, device."""
    from . import checks, service
    from .metrics import resolve_metrics
    from .studies import load_pairs
    from .studies.sources import holds_texts
    from .studies.variants import methods_of, parse_variants, with_settings

    if args.command == "evaluate" and holds_texts(args.pairs):
        return check_evaluate_text(args)
    metrics = resolve_metrics(args.metrics) if args.metrics.lower() != "none" else []
    if args.command == "dissect":
        from .studies.dissection import METHOD, dissection_variants

        settings = service.route_settings(args.set or [], [METHOD], metrics=bool(metrics))
        variants = dissection_variants(
            args.transforms, guided=args.guided, settings=dict(settings.method_items())
        )
    else:
        variants = parse_variants(args.methods)
        settings = service.route_settings(args.set or [], methods_of(variants), metrics=bool(metrics))
        variants = with_settings(variants, settings)
    if args.batch_size is not None:
        checks.positive_int("--batch-size", args.batch_size)
    _check_model(args)
    args.device = _local(args.device)  # checked first: local_device reads the name as it is
    _check_folder("--db", args.db)
    specs = load_pairs(args.pairs, seed=args.seed, limit=args.limit)
    return EvaluateInputs(specs, variants, metrics, settings.metrics)


def check_evaluate_text(args: argparse.Namespace) -> EvaluateInputs:
    """``evaluate --pairs PAIRS.csv`` with the columns ``image,text``: methods with an image–text form
    (``all``: every one), the metrics ``CI CD CAD WI WD`` (``all``, or a list), a model with a text tower."""
    from . import checks, service
    from .methods import image_text_methods
    from .methods.image_text import check_text_form
    from .metrics import IMAGE_TEXT_METRICS
    from .studies import load_pairs
    from .studies.variants import methods_of, parse_variants, with_settings

    variants = parse_variants(",".join(image_text_methods()) if args.methods == "all" else args.methods)
    for method in methods_of(variants):
        check_text_form(method)
    wanted = args.metrics.lower()
    metrics = (
        [] if wanted == "none" else list(IMAGE_TEXT_METRICS) if wanted == "all" else args.metrics.split(",")
    )
    unknown = [m for m in metrics if m not in IMAGE_TEXT_METRICS]
    if unknown:
        raise SimexplainError(
            f"unknown metric {unknown[0]!r} for image–text pairs; known: {', '.join(IMAGE_TEXT_METRICS)}"
        )
    settings = service.route_settings(args.set or [], methods_of(variants), metrics=bool(metrics))
    if args.batch_size is not None:
        checks.positive_int("--batch-size", args.batch_size)
    if args.model is None:
        raise SimexplainError(
            "image–text pairs need an image–text model: --model hf:ORG/NAME or open_clip:ARCH/TAG"
        )
    _check_model(args)
    _check_text_model(args.model)
    args.device = _local(args.device)
    _check_folder("--db", args.db)
    specs = load_pairs(args.pairs, seed=args.seed, limit=args.limit)
    return EvaluateInputs(specs, with_settings(variants, settings), metrics, settings.metrics, True)


def _study_model(args: argparse.Namespace, inputs: EvaluateInputs):
    """The model of ``evaluate``: with its text tower for image–text pairs."""
    return _load_model(args, pair="image-text" if inputs.text else "image")


def _local(device: str) -> str:
    """Under ``torchrun``, ``cuda`` means this rank's GPU."""
    from .studies import local_device

    return str(local_device(device))


def act_evaluate(args: argparse.Namespace, inputs: EvaluateInputs) -> int:
    from .batching import progress_bars
    from .studies import Evaluation, evaluate_pairs

    evaluation = Evaluation(
        _study_model(args, inputs),
        inputs.variants,
        inputs.metrics,
        inputs.metric_options,
        seed=args.seed,
        weights=args.weights,
        batch_size=args.batch_size,
        study="dissection" if args.command == "dissect" else "evaluation",
    )
    with progress_bars(False):
        summary = evaluate_pairs(
            evaluation, inputs.specs, args.db, command=" ".join(["simexplain", *sys.argv[1:]])
        )
    print(summary.line())
    for error in summary.errors[:5]:
        print(f"  failed: {error}", file=sys.stderr)
    return 1 if summary.failed else 0


# ---------------------------------------------------------------------------------------------- report
def check_report(args: argparse.Namespace) -> dict[str, float]:
    from .studies.report import parse_downstream

    return parse_downstream(args.downstream or [])


def act_report(args: argparse.Namespace, downstream: dict[str, float]) -> int:
    from .studies.report import write_report

    for path in write_report(args.stores, args.out, downstream=downstream):
        print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------------------- invert
@dataclass(frozen=True)
class InvertInputs:
    models: list[tuple[str, str | None]]
    layers: list[str] | None


def check_invert(args: argparse.Namespace) -> InvertInputs:
    """Every argument of ``invert`` checked without a model: image, models, weights, layers, out, device."""
    from . import checks

    if not os.path.isfile(args.image):
        raise SimexplainError(f"{args.image}: no such file")
    models = _models_with_weights(args)
    layers = None
    if args.layers is not None:
        layers = [name.strip() for name in args.layers.split(",")]
        if not all(layers):
            raise SimexplainError(f"--layers expects L1,L2,... (module names), got {args.layers!r}")
    checks.positive_int("--iterations", args.iterations)
    checks.non_negative_int("--seed", args.seed)
    _output_path("--out", args.out, FIGURE_FORMATS)
    return InvertInputs(models, layers)


def act_invert(args: argparse.Namespace, inputs: InvertInputs) -> int:
    from .figures.inversion import inversion_figure
    from .figures.output import save_figure
    from .images import load_image
    from .studies.inversion import default_inversion_layers, invert_features

    results, pixels = {}, None
    for name, weights in inputs.models:
        model = _load_model(args, name, weights)
        with usage_errors():  # the layers are the user's words: a wrong one is a usage error
            chosen = inputs.layers or default_inversion_layers(model)
            for layer in chosen:
                model.layer_module("a", layer)
        image = load_image(args.image, model)
        if pixels is None:
            pixels = model.preprocessing.to_pixels(image[0]).clamp(0, 1)
        result = invert_features(
            model, image, chosen, iterations=args.iterations, seed=args.seed, progress=True
        )
        results[model.name] = result
        errors = ", ".join(f"{layer} {float(error):.3f}" for layer, error in zip(chosen, result.losses[-1]))
        print(f"{model.name}: relative feature error {errors}")
    print("wrote " + ", ".join(save_figure(inversion_figure(pixels, results), args.out)))
    return 0


# ---------------------------------------------------------------------------------------------- sanity
@dataclass(frozen=True)
class SanityInputs:
    specs: list
    variants: list


def check_sanity(args: argparse.Namespace) -> SanityInputs:
    """Every argument of ``sanity`` checked without a model: variants, settings, pairs, out folder, device."""
    from . import checks
    from .studies import load_pairs
    from .studies.variants import parse_variants

    variants = parse_variants(args.methods, args.set or [])  # sanity computes no metrics
    checks.positive_int("--every", args.every)
    checks.non_negative_int("--seed", args.seed)
    _check_model(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SimexplainError(f"--out {args.out}: not a folder")
    if not out.exists():
        _check_folder("--out", args.out)
    if args.db is not None:
        _check_folder("--db", args.db)
    return SanityInputs(load_pairs(args.pairs, seed=args.seed, limit=args.limit), variants)


def act_sanity(args: argparse.Namespace, inputs: SanityInputs) -> int:
    from .studies.sanity import run_sanity, write_sanity

    model = _load_model(args)
    results = run_sanity(model, inputs.specs, inputs.variants, every=args.every, seed=args.seed)
    for label, result in results.items():
        rho = ", ".join(f"{float(value):.2f}" for value in result.mean_spearman())
        print(f"{label}: mean Spearman along the cascade {rho}")
    for path in write_sanity(results, Path(args.out)):
        print(f"wrote {path}")
    if args.db is not None:
        from .studies import Store
        from .studies.sanity import sanity_summary

        with Store(args.db) as store:
            store.record_sanity(model.name, sanity_summary(results, Path(args.out)))
        print(f"recorded in {args.db} (its report links the figures)")
    return 0


# ---------------------------------------------------------------------------------------------- serve
def check_serve(args: argparse.Namespace):
    """Every argument of ``serve`` checked before any model is loaded."""
    from . import checks
    from .web import WebSettings

    models = _models_with_weights(args)
    if not 0 < args.port < 65536:
        raise SimexplainError(f"--port {args.port}: use 1-65535")
    if not args.upload_limit > 0:
        raise SimexplainError(f"--upload-limit {args.upload_limit:g}: must be positive (megabytes)")
    return WebSettings(
        models=tuple(name for name, _ in models) if args.model or not args.text_model else (),
        weights=tuple(path for _, path in models),
        device=args.device,
        engine=args.engine,
        precision=args.precision,
        upload_limit=int(args.upload_limit * 1_000_000),
        max_pixels=checks.positive_int("--max-pixels", args.max_pixels),
        queue_size=checks.positive_int("--queue", args.queue),
        work_limits=_serve_work_limits(args),
        body_timeout=checks.positive_number("--body-timeout", args.body_timeout),
        text_models=_text_models(args),
    )


def _serve_work_limits(args: argparse.Namespace) -> dict[str, int]:
    """``--max-UNIT`` of ``serve``, one per unit of work (checks.WORK_UNITS), each checked."""
    from . import checks

    return {
        unit: checks.positive_int(f"--max-{unit}", getattr(args, _max_dest(unit)))
        for unit in checks.WORK_UNITS
    }


def _max_dest(unit: str) -> str:
    return "max_" + unit.replace("-", "_")


def _text_models(args: argparse.Namespace) -> tuple[str, ...]:
    """``serve --text-model NAME`` (repeatable): models served with their text tower, each checked."""
    from . import service

    names = tuple(dict.fromkeys(args.text_model or ()))
    for name in names:
        service.check_model_name(name)
        _check_text_model(name)
    return names


def act_serve(args: argparse.Namespace, settings) -> int:
    from .web import serve

    where = f"http://{'localhost' if args.host in ('127.0.0.1', 'localhost') else args.host}:{args.port}/"
    loading = ", ".join((*settings.models, *settings.text_models))
    print(f"simexplain serve: loading {loading} on {settings.device}", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"simexplain serve: listening on {args.host} as asked (--host): anyone who can reach this "
            "machine can upload images and use its CPU/GPU",
            flush=True,
        )
    for name, weights in zip(
        settings.models, settings.weights
    ):  # a wrong weights file: one line, not a trace
        _load_model(args, name, weights)
    for name in settings.text_models:
        _load_model(args, name, None, pair="image-text")
    print(f"simexplain serve: open {where} (Ctrl+C stops it)", flush=True)
    serve(settings, host=args.host, port=args.port)
    return 0


# ---------------------------------------------------------------------------------------------- listings
def act_models(args: argparse.Namespace, checked: None) -> int:
    from .models import available

    for entry in available().values():
        print(f"{entry.name}\n    {entry.description}")
        print(
            f"    embedding: {entry.embedding or '-'}; input: {entry.preprocessing or '-'}; "
            f"CAM layer: {entry.layer or '-'}"
        )
        if entry.families:
            print(f"    families: {', '.join(entry.families)}")
    return 0


def act_methods(args: argparse.Namespace, checked: None) -> int:
    from .methods import available, get

    listed = available()
    width = max(map(len, listed), default=0) + 2  # external names are long (captum:LayerConductance)
    for name, description in listed.items():
        parameters = ", ".join(f"{k}={v!r}" for k, v in get(name).parameters().items())
        print(f"{name:{width}s}{description}\n{'':{width}s}({parameters})")
    return 0


def act_fetch_face_model(args: argparse.Namespace, checked: None) -> int:
    from .models.face import fetch_face_model

    print(f"wrote {fetch_face_model(args.dest)} (+ the binary and LICENSE)")
    return 0


# ---------------------------------------------------------------------------------------------- the parser
class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line (the error and where the usage is), exit status 2,
    like every other refused argument; its subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (usage: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser: each command's own options, plus the shared groups (:func:`_shared_options`)."""
    shared = _shared_options()
    parser = OneLineParser(
        prog="simexplain",
        description="Explain why a two-image model finds two images similar.",
        parents=[shared["debug"]],
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, steps: Command, help: str, *groups: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, parents=[shared[g] for g in ("debug", *groups)])
        sub.set_defaults(handler=steps)
        return sub

    _add_explain(
        command("explain", Command(check_explain, act_explain), EXPLAIN_HELP, "model", "runtime", "set")
    )
    _add_retrieve(
        command("retrieve", Command(check_retrieve, act_retrieve), RETRIEVE_HELP, "model", "runtime", "set")
    )
    for name, help in (("evaluate", EVALUATE_HELP), ("dissect", DISSECT_HELP)):
        _add_study(
            command(name, Command(check_evaluate, act_evaluate), help, "model", "runtime", "set"), name
        )
    _add_report(
        command("report", Command(check_report, act_report), "tables and figures from evaluation stores")
    )
    _add_invert(command("invert", Command(check_invert, act_invert), INVERT_HELP, "models", "runtime"))
    _add_sanity(command("sanity", Command(check_sanity, act_sanity), SANITY_HELP, "model", "runtime", "set"))
    _add_serve(command("serve", Command(check_serve, act_serve), SERVE_HELP, "models", "runtime"))
    command("models", Command(_no_check, act_models), "list the models")
    fetch = command("fetch-face-model", Command(_no_check, act_fetch_face_model), FETCH_HELP)
    fetch.add_argument("--dest", metavar="DIR", help="folder (default face-api/ under the cache root)")
    command("methods", Command(_no_check, act_methods), "list the methods and their parameters")
    return parser


EXPLAIN_HELP = "explain the similarity of two images and draw a figure"
RETRIEVE_HELP = "rank a gallery folder against a query image and explain the top matches"
EVALUATE_HELP = "score method variants with the pair metrics over a data set of pairs (resumable)"
DISSECT_HELP = "Table VII: Averaged Transforms one transform at a time, over pairs (resumable)"
INVERT_HELP = "feature inversion: images that match an image's features at chosen layers"
SANITY_HELP = "sanity check: maps as the model's layers are randomised from the output end"
SERVE_HELP = "the web page and JSON API (needs the web extra)"
FETCH_HELP = "npm-pack @vladmandic/face-api; keep its face-recognition weights and licence"


def _shared_options() -> dict[str, argparse.ArgumentParser]:
    """The option groups several commands share, each defined once: ``--debug``; one model (``--model``,
    ``--weights``) or several (repeatable, one ``--weights`` per ``--model``); where and how models run
    (``--device``, ``--engine``, ``--precision``: the model options that reach the loader, see
    :func:`_load_model`); the settings (``--set``)."""
    from .engines.registry import ENGINES, PRECISIONS

    groups = {
        name: argparse.ArgumentParser(add_help=False)
        for name in ("debug", "model", "models", "runtime", "set")
    }
    # SUPPRESS: a subcommand's absent --debug leaves the top level's in place.
    groups["debug"].add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    groups["model"].add_argument(
        "--model", help="model name (default: efficientnet-lite0; see `simexplain models`)"
    )
    groups["model"].add_argument("--weights", help="checkpoint file for the model")
    groups["models"].add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help="model name, repeatable (default: efficientnet-lite0)",
    )
    groups["models"].add_argument(
        "--weights", action="append", metavar="FILE", help="checkpoint, one per --model"
    )
    groups["runtime"].add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    groups["runtime"].add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="what runs the forwards that need no gradient (default auto: docs/engine.md)",
    )
    groups["runtime"].add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="of those forwards: fp32 (default), or bf16/fp16 with the torch and compile engines",
    )
    groups["set"].add_argument(
        "--set",
        action="append",
        metavar="[METHOD.|metrics.]KEY=VALUE",
        help="a chosen method's parameter (KEY alone: each one that has it) or a metric option; repeatable",
    )
    return groups


def _add_explain(explain: argparse.ArgumentParser) -> None:
    explain.add_argument(
        "images", nargs="*", metavar="IMG", help="the two images (paths), or one with --text"
    )
    explain.add_argument(
        "--text",
        metavar="TEXT",
        help="explain ONE image against this text (an image–text model: CLIP, SigLIP)",
    )
    explain.add_argument(
        "--demo", action="store_true", help="the bundled photo and a SimCLR augmentation of it"
    )
    explain.add_argument(
        "--method", action="append", metavar="NAME", help="method, repeatable (`simexplain methods`)"
    )
    explain.add_argument("--metrics", metavar="all|SI,SD,...", help="evaluate the maps and print a table")
    explain.add_argument(
        "--point", metavar="IMAGE:Y,X", help="pair-interaction: the pixel whose match is drawn"
    )
    explain.add_argument("--out", metavar="FIG.png", help="write the figure (PNG + SVG, or SVG)")
    explain.add_argument("--json", metavar="OUT.json", help="write scores, parameters and metrics as JSON")
    explain.add_argument(
        "--steps-figure", metavar="FIG.png", help="Averaged Transforms' path above its, IxG's and SG's maps"
    )
    explain.add_argument("--seed", type=int, help="seed for the random methods and the demo's augmentation")
    explain.add_argument(
        "--batch-size", type=int, metavar="N", help="images per forward (methods and metrics)"
    )
    explain.add_argument(
        "--face-box",
        action="append",
        metavar="X,Y,W,H",
        help="crop the face first (face-resnet128 needs face crops): once for both images, or twice",
    )


def _add_retrieve(retrieve: argparse.ArgumentParser) -> None:
    retrieve.add_argument("query", metavar="QUERY", help="the query image (a path)")
    retrieve.add_argument("gallery", metavar="GALLERY", help="a folder of images")
    retrieve.add_argument("--top", type=int, default=5, metavar="K", help="matches to explain (default 5)")
    retrieve.add_argument(
        "--method",
        default="conditional-occlusion",
        metavar="NAME",
        help="method (default conditional-occlusion)",
    )
    retrieve.add_argument("--out", metavar="FIG.png", help="write the figure (PNG + SVG, or SVG)")
    retrieve.add_argument("--json", metavar="OUT.json", help="write ranks, scores and the config as JSON")
    retrieve.add_argument(
        "--cache", metavar="DIR", help="gallery embedding cache (default embeddings/ under the cache root)"
    )
    retrieve.add_argument("--batch-size", type=int, metavar="N", help="images per forward for the gallery")
    retrieve.add_argument("--seed", type=int, help="seed for a random method")
    retrieve.add_argument(
        "--keep-query",
        action="store_true",
        help="rank gallery images with the query's content too (the same SHA-256; left out by default)",
    )


def _add_study(parser: argparse.ArgumentParser, name: str) -> None:
    """The options of a run into an evaluation store (``evaluate``, ``dissect``)."""
    metrics = "all" if name == "evaluate" else "SI,SD,SAD"
    if name == "evaluate":
        parser.add_argument(
            "--methods", default="all", metavar="all|LIST", help="variants: NAME[KEY=VALUE;...],..."
        )
    else:
        parser.add_argument(
            "--transforms", default="all", metavar="all|LIST", help="default: Table VII's nine"
        )
        parser.add_argument(
            "--guided", default="both", choices=("both", "plain", "guided"), help="which rows"
        )
    parser.add_argument("--pairs", required=True, metavar="SOURCE", help="folder, CSV, DIR1:DIR2 or demo")
    parser.add_argument("--db", required=True, metavar="FILE", help="the SQLite store (created or resumed)")
    parser.add_argument(
        "--metrics", default=metrics, metavar="LIST", help=f"default {metrics} (MS on request), or none"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="the first N pairs in a stable order")
    parser.add_argument("--seed", type=int, default=0, help="run seed: pairs' views and methods' randomness")
    parser.add_argument("--batch-size", type=int, metavar="B", help="pairs per step and images per forward")


def _add_report(report: argparse.ArgumentParser) -> None:
    report.add_argument("stores", nargs="+", metavar="STORE", help="stores or shard files of `evaluate`")
    report.add_argument("--out", required=True, metavar="DIR", help="folder for pairs.csv, tables, figures")
    report.add_argument(
        "--downstream",
        action="append",
        metavar="MODEL=ACCURACY",
        help="downstream accuracy per model (Fig. 15)",
    )


def _add_invert(invert: argparse.ArgumentParser) -> None:
    invert.add_argument("image", metavar="IMAGE", help="the image (a path)")
    invert.add_argument("--layers", metavar="L1,L2,...", help="module names (default: three stages)")
    invert.add_argument("--out", required=True, metavar="FIG.png", help="the figure (PNG + SVG, or SVG)")
    invert.add_argument("--iterations", type=int, default=200, metavar="N", help="SGD steps (default 200)")
    invert.add_argument("--seed", type=int, default=0, help="seed of the start noise (default 0)")


def _add_sanity(sanity: argparse.ArgumentParser) -> None:
    sanity.add_argument("--pairs", required=True, metavar="SOURCE", help="folder, CSV, DIR1:DIR2 or demo")
    sanity.add_argument(
        "--out", required=True, metavar="DIR", help="folder for the figures (made if missing)"
    )
    sanity.add_argument("--methods", default=SANITY_METHODS, metavar="LIST", help=f"default {SANITY_METHODS}")
    sanity.add_argument("--limit", type=int, default=4, metavar="N", help="the first N pairs (default 4)")
    sanity.add_argument("--every", type=int, default=1, metavar="K", help="maps after every K-th layer")
    sanity.add_argument("--seed", type=int, default=0, help="seed of the views, the methods and the layers")
    sanity.add_argument(
        "--db", metavar="FILE", help="the model's evaluation store: its report links the figures"
    )


def _add_serve(web: argparse.ArgumentParser) -> None:
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)")
    web.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    web.add_argument(
        "--upload-limit", type=float, default=20, metavar="MB", help="request body limit (20 MB)"
    )
    web.add_argument(
        "--max-pixels", type=int, default=50_000_000, metavar="N", help="pixels per image (50 M)"
    )
    web.add_argument("--queue", type=int, default=8, metavar="N", help="explanations queued or running (8)")
    web.add_argument(
        "--body-timeout",
        type=float,
        default=30,
        metavar="S",
        help="seconds for a request body to arrive (30)",
    )
    web.add_argument(
        "--text-model",
        action="append",
        metavar="NAME",
        help="serve NAME with its text tower (CLIP, SigLIP): an image and a text; repeatable",
    )
    _add_serve_work_limits(web)


def _add_serve_work_limits(web: argparse.ArgumentParser) -> None:
    """``--max-UNIT N`` for every unit of work that a method parameter or metric option can multiply."""
    from .checks import WORK_UNITS

    for unit, (counts, default) in WORK_UNITS.items():
        web.add_argument(
            f"--max-{unit}",
            dest=_max_dest(unit),
            type=int,
            default=default,
            metavar="N",
            help=f"most {unit.replace('-', ' ')} per request ({default}): {counts}",
        )


# Options whose value is a box or a point: their value may start with a negative number.
COORDINATE_OPTIONS = ("--face-box", "--point")


def attach_coordinates(argv: Sequence[str]) -> list[str]:
    """``--face-box -100,-100,150,150`` as ``--face-box=-100,-100,150,150``: argparse takes a value that
    starts with ``-`` (and is not one plain number) for an unknown option, so a box or a point with a negative
    first number would get a usage block instead of its own one-line check.

    Example:
        >>> attach_coordinates(["explain", "--face-box", "-100,-100,150,150", "--out", "f.png"])
        ['explain', '--face-box=-100,-100,150,150', '--out', 'f.png']
    """
    argv, attached = list(argv), []
    while argv:
        word = argv.pop(0)
        if word == "--":  # the rest is positional
            return attached + [word] + argv
        if word in COORDINATE_OPTIONS and argv and re.match(r"-[0-9.]", argv[0]):
            word = f"{word}={argv.pop(0)}"
        attached.append(word)
    return attached


# ---------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(attach_coordinates(sys.argv[1:] if argv is None else argv))
    try:
        with usage_errors():  # the one place where a checked argument's error becomes a usage error
            checked = args.handler.check(args)
        return args.handler.act(args, checked)
    except KeyboardInterrupt:
        print("simexplain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: nothing left to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (keeps Python's exit flush from raising again)
        return 0
    except Exception as error:  # noqa: BLE001  (one line for the user; the traceback only on request)
        if getattr(args, "debug", False):
            traceback.print_exc()
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        prefix = "" if isinstance(error, SimexplainError) else f"{type(error).__name__}: "
        print(f"simexplain: error: {prefix}{message}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
