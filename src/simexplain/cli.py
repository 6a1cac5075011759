"""The ``simexplain`` command line: ``explain``, ``retrieve``, ``evaluate``, ``dissect``, ``report``,
``sanity``, ``invert``, ``serve``, ``models``, ``methods``, ``fetch-face-model``; thin layers over
:mod:`simexplain.service`, :mod:`simexplain.retrieval`, :mod:`simexplain.studies` and :mod:`simexplain.web`.

Exit status: 0 on success; 2 on usage errors (bad flags, unknown names, bad settings, missing output folders),
all found before any model work; 1 on any other error. Errors are one line on stderr (``--debug`` shows the
traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import SimexplainError

DEMO_METHODS = ["input-x-gradient", "averaged-transforms", "interaction-cam", "conditional-occlusion"]
FIGURE_FORMATS = (".png", ".svg")


class UsageError(SimexplainError):
    """A bad argument found before any model work: exit status 2."""


def parse_settings(settings: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` / ``--set METHOD.KEY=VALUE`` as a dict of typed values (``false`` → ``False``)."""
    from .checks import parse_setting

    parsed: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise SimexplainError(f"--set expects KEY=VALUE or METHOD.KEY=VALUE, got {setting!r}")
        parsed[key.strip()] = parse_setting(value)
    return parsed


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
    """``--model`` (a known name) and ``--weights`` (an existing file), when given."""
    from . import service

    if args.model is not None:
        service.check_model_name(args.model)
    if args.weights is not None:
        _check_weights(args.weights)


def _models_with_weights(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """Repeatable ``--model`` (default: the default model) with ``--weights``, one per model in order (the
    rest use built-in weights): each name known, none twice, each weights file present."""
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
    return list(zip(models, weights + [None] * (len(models) - len(weights))))


def _split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` values as the methods' and the metrics' (``metrics.KEY``, returned without the prefix)."""
    methods = {k: v for k, v in settings.items() if not k.startswith("metrics.")}
    metrics = {k.split(".", 1)[1]: v for k, v in settings.items() if k.startswith("metrics.")}
    return methods, metrics


def _check_common(args: argparse.Namespace) -> None:
    """The options ``explain`` and ``evaluate`` share: seed, batch size, model name, weights file."""
    from . import checks

    if args.seed is not None:
        checks.non_negative_int("--seed", args.seed)
    if args.batch_size is not None:
        checks.positive_int("--batch-size", args.batch_size)
    _check_model(args)


def _checked_explain_args(args: argparse.Namespace):
    """Every argument of ``explain`` checked without a model: images, model name, plan, outputs, device."""
    from . import service

    if args.demo == bool(args.images):
        raise SimexplainError("give two images, or --demo for the bundled pair")
    if not args.demo and len(args.images) != 2:
        raise SimexplainError(f"explain needs exactly two images, got {len(args.images)}")
    _check_common(args)
    methods = args.method or (DEMO_METHODS if args.demo else list(service.DEFAULT_METHODS))
    seed = 0 if args.seed is None and args.demo else args.seed  # the demo is the same figure every time
    request = service.plan(
        methods, parse_settings(args.set or []), args.metrics, seed=seed, batch_size=args.batch_size
    )
    out = _output_path("--out", args.out or ("demo.png" if args.demo else None), FIGURE_FORMATS)
    report = _output_path("--json", args.json, (".json",))
    steps = _output_path("--steps-figure", args.steps_figure, FIGURE_FORMATS)
    if steps and "averaged-transforms" not in [name for name, _ in request.methods]:
        raise SimexplainError(
            "--steps-figure draws Averaged Transforms' path: add --method averaged-transforms"
        )
    _face_boxes(args)
    return request, out, report, steps, service.check_device(args.device)


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


def _checked_point(args: argparse.Namespace) -> tuple[int, tuple[int, int]] | None:
    """``explain --point``, parsed; it needs ``--method pair-interaction`` (usage errors exit 2)."""
    try:
        point = parse_point(args.point)
        if point is not None and "pair-interaction" not in (args.method or []):
            raise SimexplainError("--point needs --method pair-interaction")
    except SimexplainError as error:
        raise UsageError(str(error)) from None
    return point


def _save_interaction_figures(report, out: str, point: tuple[int, tuple[int, int]] | None) -> list[str]:
    """For each second-order result, the linked-patches figure next to ``out`` (``FIG-<method>.png``)."""
    from .figures.interaction import interaction_figure
    from .figures.output import save_figure

    written = []
    root, ext = os.path.splitext(out)
    for outcome in report.outcomes:
        if outcome.explanation.interaction is None:
            continue
        fig = interaction_figure(
            report.x1, report.x2, outcome.explanation, report.model.preprocessing, point=point
        )
        written += save_figure(fig, f"{root}-{outcome.method}{ext}")
    return written


def cmd_explain(args: argparse.Namespace) -> int:
    from . import service
    from .batching import progress_bars
    from .figures.pairs import save_figure
    from .models import DEFAULT_MODEL

    point = _checked_point(args)

    try:
        request, out, report_path, steps_path, device = _checked_explain_args(args)
    except SimexplainError as error:
        raise UsageError(str(error)) from None
    model = service.get_model(args.model, weights=args.weights, device=device)
    if model.name == DEFAULT_MODEL:
        print(
            f"model: {DEFAULT_MODEL} (embedded default, a SUPERVISED ImageNet classifier, "
            "not a contrastive model)"
        )
    if args.demo:
        x1, x2, labels = service.demo_pair(model, args.seed if args.seed is not None else 0)
        image1, image2 = x1, x2
    else:
        image1, image2 = args.images
        labels = (image1, image2)
        boxes = _face_boxes(args)
        if boxes:  # the face crops, read here so that errors still name the files
            from .models.face import face_crop

            image1, image2 = (face_crop(p, b, label=p) for p, b in zip(args.images, boxes))
    with progress_bars():
        report = service.run(model, image1, image2, request, labels=labels)
    score = float(report.score[0])
    print(f"similarity {score:.4f}  ({labels[0]} vs {labels[1]})")
    for outcome in report.outcomes:
        print(f"  {outcome.method:24s} {outcome.seconds:8.2f} s")
    if request.metrics:
        from .metrics import format_table

        print(format_table({o.method: o.metrics for o in report.outcomes}))
    document = report.to_json()
    if out:
        document["figures"] = save_figure(report.figure(), out)
        document["figures"] += _save_interaction_figures(report, out, point)
        print("wrote " + ", ".join(document["figures"]))
    if steps_path:
        document["steps_figure"] = _steps_figure(report, steps_path)
        print("wrote " + ", ".join(document["steps_figure"]))
    if report_path:
        with open(report_path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        print(f"wrote {report_path}")
    return 0


def _steps_figure(report, path: str) -> list[str]:
    """The dissection figure (Fig. 6) of the pair's Averaged Transforms explanation, written to ``path``."""
    from .figures.dissection import steps_figure
    from .figures.output import save_figure
    from .studies.dissection import dissection_view

    explanations = {outcome.method: outcome.explanation for outcome in report.outcomes}
    view = dissection_view(
        report.model, report.x1, report.x2, explanations["averaged-transforms"], explanations
    )
    title = f"{report.model.name}: {explanations['averaged-transforms'].config['transform']}"
    return save_figure(steps_figure(report.x1, view, report.model.preprocessing, title=title), path)


def _checked_evaluate_args(args: argparse.Namespace):
    """Everything ``evaluate`` needs that takes no model: pairs, variants, metrics, settings, store folder."""
    from . import service
    from .metrics import resolve_metrics
    from .metrics.evaluate import check_options
    from .studies import load_pairs, parse_variants

    method_settings, metric_settings = _split_settings(parse_settings(args.set or []))
    options = {
        k: v for k, v in check_options(**_known_options(metric_settings)).items() if k in metric_settings
    }
    if args.command == "dissect":
        from .studies.dissection import dissection_variants

        variants = dissection_variants(args.transforms, guided=args.guided, settings=method_settings)
    else:
        variants = parse_variants(args.methods, method_settings)
    metrics = resolve_metrics(args.metrics) if args.metrics.lower() != "none" else []
    _check_common(args)
    _check_folder("--db", args.db)
    specs = load_pairs(args.pairs, seed=args.seed, limit=args.limit)
    return specs, variants, metrics, options, service.check_device(_local(args.device))


def _known_options(settings: dict[str, Any]) -> dict[str, Any]:
    import inspect

    from .metrics.evaluate import check_options

    allowed = inspect.signature(check_options).parameters
    unknown = [key for key in settings if key not in allowed]
    if unknown:
        raise SimexplainError(
            f"--set metrics.{unknown[0]}: unknown; the metrics' settings: {', '.join(allowed)}"
        )
    return settings


def _local(device: str) -> str:
    from .studies import local_device

    return str(local_device(device))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import service
    from .batching import progress_bars
    from .studies import Evaluation, evaluate_pairs

    try:
        specs, variants, metrics, options, device = _checked_evaluate_args(args)
    except SimexplainError as error:
        raise UsageError(str(error)) from None
    model = service.get_model(args.model, weights=args.weights, device=device)
    run = Evaluation(
        model,
        variants,
        metrics,
        options,
        seed=args.seed,
        weights=args.weights,
        batch_size=args.batch_size,
        study="dissection" if args.command == "dissect" else "evaluation",
    )
    with progress_bars(False):
        summary = evaluate_pairs(run, specs, args.db, command=" ".join(["simexplain", *sys.argv[1:]]))
    print(summary.line())
    for error in summary.errors[:5]:
        print(f"  failed: {error}", file=sys.stderr)
    return 1 if summary.failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .studies.report import parse_downstream, write_report

    try:
        downstream = parse_downstream(args.downstream or [])
    except SimexplainError as error:
        raise UsageError(str(error)) from None
    for path in write_report(args.stores, args.out, downstream=downstream):
        print(f"wrote {path}")
    return 0


def _checked_invert_args(args: argparse.Namespace):
    """Every argument of ``invert`` checked without a model: image, models, weights, layers, out, device."""
    from . import checks, service

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
    out = _output_path("--out", args.out, FIGURE_FORMATS)
    return models, layers, out, service.check_device(args.device)


def cmd_invert(args: argparse.Namespace) -> int:
    from . import service
    from .figures.inversion import inversion_figure
    from .figures.output import save_figure
    from .images import load_image
    from .studies.inversion import default_inversion_layers, invert_features

    try:
        models, layers, out, device = _checked_invert_args(args)
    except SimexplainError as error:
        raise UsageError(str(error)) from None
    results, pixels = {}, None
    for name, weights in models:
        model = service.get_model(name, weights=weights, device=device)
        try:  # the layers are the user's words: a wrong one is a usage error
            chosen = layers or default_inversion_layers(model)
            for layer in chosen:
                model.layer_module("a", layer)
        except SimexplainError as error:
            raise UsageError(str(error)) from None
        image = load_image(args.image, model)
        if pixels is None:
            pixels = model.preprocessing.to_pixels(image[0]).clamp(0, 1)
        result = invert_features(
            model, image, chosen, iterations=args.iterations, seed=args.seed, progress=True
        )
        results[model.name] = result
        errors = ", ".join(f"{layer} {float(error):.3f}" for layer, error in zip(chosen, result.losses[-1]))
        print(f"{model.name}: relative feature error {errors}")
    print("wrote " + ", ".join(save_figure(inversion_figure(pixels, results), out)))
    return 0


SANITY_METHODS = "input-x-gradient,smooth-grad,interaction-cam"


def _checked_sanity_args(args: argparse.Namespace):
    """Every argument of ``sanity`` checked without a model: variants, settings, pairs, out folder, device."""
    from . import checks, service
    from .studies import load_pairs, parse_variants

    settings, metric_settings = _split_settings(parse_settings(args.set or []))
    if metric_settings:
        key = next(iter(metric_settings))
        raise SimexplainError(f"--set metrics.{key}: sanity has no metric settings (use METHOD.KEY=VALUE)")
    variants = parse_variants(args.methods, settings)
    every = checks.positive_int("--every", args.every)
    seed = checks.non_negative_int("--seed", args.seed)
    _check_model(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SimexplainError(f"--out {args.out}: not a folder")
    if not out.exists():
        _check_folder("--out", args.out)
    if args.db is not None:
        _check_folder("--db", args.db)
    specs = load_pairs(args.pairs, seed=seed, limit=args.limit)
    return specs, variants, every, seed, out, service.check_device(args.device)


def cmd_sanity(args: argparse.Namespace) -> int:
    from . import service
    from .studies.sanity import run_sanity, write_sanity

    try:
        specs, variants, every, seed, out, device = _checked_sanity_args(args)
    except SimexplainError as error:
        raise UsageError(str(error)) from None
    model = service.get_model(args.model, weights=args.weights, device=device)
    results = run_sanity(model, specs, variants, every=every, seed=seed)
    for label, result in results.items():
        rho = ", ".join(f"{float(value):.2f}" for value in result.mean_spearman())
        print(f"{label}: mean Spearman along the cascade {rho}")
    for path in write_sanity(results, out):
        print(f"wrote {path}")
    if args.db is not None:
        from .studies import Store
        from .studies.sanity import sanity_summary

        with Store(args.db) as store:
            store.record_sanity(model.name, sanity_summary(results, out))
        print(f"recorded in {args.db} (its report links the figures)")
    return 0


def _checked_retrieve_args(args: argparse.Namespace):
    """``retrieve``'s arguments checked without a model: query, gallery, K, method, settings, outputs."""
    from . import checks, service
    from .retrieval import gallery_files

    if not os.path.isfile(args.query):
        raise SimexplainError(f"query {args.query}: no such file")
    files = gallery_files(args.gallery)
    top = checks.positive_int("--top", args.top)
    if top > len(files):
        raise SimexplainError(f"--top {top} exceeds the gallery's {len(files)} images")
    request = service.plan([args.method], parse_settings(args.set or []), seed=args.seed)
    if args.batch_size is not None:
        checks.positive_int("--batch-size", args.batch_size)
    _check_model(args)
    out = _output_path("--out", args.out, FIGURE_FORMATS)
    report = _output_path("--json", args.json, (".json",))
    return files, top, request.methods[0][1], out, report, service.check_device(args.device)


def cmd_retrieve(args: argparse.Namespace) -> int:
    from . import service
    from .batching import progress_bars
    from .figures.output import save_figure
    from .figures.retrieval import retrieval_figure
    from .retrieval import default_cache_dir, explain_top_k

    try:
        files, top, params, out, report_path, device = _checked_retrieve_args(args)
    except SimexplainError as error:
        raise UsageError(str(error)) from None
    model = service.get_model(args.model, weights=args.weights, device=device)
    cache = args.cache or default_cache_dir()
    with progress_bars():
        result = explain_top_k(
            model,
            args.query,
            files,
            top,
            args.method,
            cache=cache,
            gallery_batch_size=args.batch_size,
            **params,
        )
    print(f"gallery: {len(files)} images, {result.embedded} embedded now (cache {cache})")
    for rank, (index, score) in enumerate(zip(result.indices.tolist(), result.scores.tolist()), 1):
        print(f"  #{rank:<3d} {score:.4f}  {files[index]}")
    document = {"model": model.name, "query": args.query, **result.to_json()}
    if out:
        document["figures"] = save_figure(retrieval_figure(result, model.preprocessing), out)
        print("wrote " + ", ".join(document["figures"]))
    if report_path:
        with open(report_path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        print(f"wrote {report_path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
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


def cmd_fetch_face_model(args: argparse.Namespace) -> int:
    from .models.face import fetch_face_model

    print(f"wrote {fetch_face_model(args.dest)} (+ the binary and LICENSE)")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .methods import available as methods
    from .methods import get

    listed = methods()
    width = max(map(len, listed), default=0) + 2  # external names are long (captum:LayerConductance)
    for name, description in listed.items():
        parameters = ", ".join(f"{k}={v!r}" for k, v in get(name).parameters().items())
        print(f"{name:{width}s}{description}\n{'':{width}s}({parameters})")
    return 0


def _checked_serve_args(args: argparse.Namespace):
    """Every argument of ``serve`` checked before any model is loaded."""
    from . import checks, service
    from .web import WebSettings

    models = _models_with_weights(args)
    if not 0 < args.port < 65536:
        raise SimexplainError(f"--port {args.port}: use 1-65535")
    if not args.upload_limit > 0:
        raise SimexplainError(f"--upload-limit {args.upload_limit:g}: must be positive (megabytes)")
    return WebSettings(
        models=tuple(name for name, _ in models),
        weights=tuple(path for _, path in models),
        device=str(service.check_device(args.device)),
        upload_limit=int(args.upload_limit * 1_000_000),
        max_pixels=checks.positive_int("--max-pixels", args.max_pixels),
        queue_size=checks.positive_int("--queue", args.queue),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from . import service
    from .web import serve

    try:
        settings = _checked_serve_args(args)
    except SimexplainError as error:
        raise UsageError(str(error)) from None
    where = f"http://{'localhost' if args.host in ('127.0.0.1', 'localhost') else args.host}:{args.port}/"
    print(f"simexplain serve: loading {', '.join(settings.models)} on {settings.device}", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"simexplain serve: listening on {args.host} as asked (--host): anyone who can reach this "
            "machine can upload images and use its CPU/GPU",
            flush=True,
        )
    weights = dict(zip(settings.models, settings.weights))
    for name in settings.models:  # loaded here, so a wrong weights file is one line, not a traceback
        service.get_model(name, weights=weights.get(name), device=settings.device)
    print(f"simexplain serve: open {where} (Ctrl+C stops it)", flush=True)
    serve(settings, host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simexplain", description="Explain why a two-image model finds two images similar."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser("explain", help="explain the similarity of two images and draw a figure")
    explain.add_argument("images", nargs="*", metavar="IMG", help="the two images (paths)")
    explain.add_argument(
        "--demo", action="store_true", help="the bundled photo and a SimCLR augmentation of it"
    )
    explain.add_argument(
        "--model",
        help="model name (default: efficientnet-lite0, a supervised model; see `simexplain models`)",
    )
    explain.add_argument("--weights", help="checkpoint file for the model")
    explain.add_argument(
        "--method", action="append", metavar="NAME", help="method, repeatable (see `simexplain methods`)"
    )
    explain.add_argument(
        "--set", action="append", metavar="[METHOD.]KEY=VALUE", help="method parameter, repeatable"
    )
    explain.add_argument("--metrics", metavar="all|SI,SD,...", help="evaluate the maps and print a table")
    explain.add_argument(
        "--point", metavar="IMAGE:Y,X", help="pair-interaction: the pixel whose match the extra figure shows"
    )
    explain.add_argument("--out", metavar="FIG.png", help="write the figure (PNG + SVG, or SVG)")
    explain.add_argument("--json", metavar="OUT.json", help="write scores, parameters and metrics as JSON")
    explain.add_argument(
        "--steps-figure", metavar="FIG.png", help="Averaged Transforms' path above its, IxG's and SG's maps"
    )
    explain.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    explain.add_argument("--seed", type=int, help="seed for the random methods and the demo's augmentation")
    explain.add_argument(
        "--batch-size", type=int, metavar="N", help="images per forward for batched methods and metrics"
    )
    explain.add_argument(
        "--face-box",
        action="append",
        metavar="X,Y,W,H",
        help="crop the face first (face-resnet128 needs face crops): once for both images, or twice",
    )
    explain.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    explain.set_defaults(run=cmd_explain)

    retrieve = commands.add_parser(
        "retrieve", help="rank a gallery folder against a query image and explain the top matches"
    )
    retrieve.add_argument("query", metavar="QUERY", help="the query image (a path)")
    retrieve.add_argument("gallery", metavar="GALLERY", help="a folder of images")
    retrieve.add_argument("--top", type=int, default=5, metavar="K", help="matches to explain (default 5)")
    retrieve.add_argument(
        "--method",
        default="conditional-occlusion",
        metavar="NAME",
        help="method (default conditional-occlusion)",
    )
    retrieve.add_argument("--set", action="append", metavar="KEY=VALUE", help="method parameter, repeatable")
    retrieve.add_argument("--model", help="model name (default: efficientnet-lite0)")
    retrieve.add_argument("--weights", help="checkpoint file for the model")
    retrieve.add_argument("--out", metavar="FIG.png", help="write the figure (PNG + SVG, or SVG)")
    retrieve.add_argument("--json", metavar="OUT.json", help="write ranks, scores and the config as JSON")
    retrieve.add_argument(
        "--cache", metavar="DIR", help="gallery embedding cache (default ~/.cache/simexplain)"
    )
    retrieve.add_argument("--batch-size", type=int, metavar="N", help="images per forward for the gallery")
    retrieve.add_argument("--seed", type=int, help="seed for a random method")
    retrieve.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    retrieve.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    retrieve.set_defaults(run=cmd_retrieve)

    evaluate = commands.add_parser(
        "evaluate", help="score method variants with the pair metrics over a data set of pairs (resumable)"
    )
    evaluate.add_argument(
        "--methods", default="all", metavar="all|LIST", help="variants: NAME[KEY=VALUE;...],..."
    )
    _add_run_options(evaluate, metrics="all")

    dissect = commands.add_parser(
        "dissect", help="Table VII: Averaged Transforms one transform at a time, over pairs (resumable)"
    )
    dissect.add_argument(
        "--transforms", default="all", metavar="all|LIST", help="transform names (default: Table VII's nine)"
    )
    dissect.add_argument(
        "--guided", default="both", choices=("both", "plain", "guided"), help="rows plain, guided or both"
    )
    _add_run_options(dissect, metrics="SI,SD,SAD")

    report = commands.add_parser("report", help="tables and figures from evaluation stores")
    report.add_argument("stores", nargs="+", metavar="STORE", help="stores or shard files of `evaluate`")
    report.add_argument("--out", required=True, metavar="DIR", help="folder for pairs.csv, tables, figures")
    report.add_argument(
        "--downstream",
        action="append",
        metavar="MODEL=ACCURACY",
        help="downstream accuracy per model (Fig. 15)",
    )
    report.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    report.set_defaults(run=cmd_report)

    invert = commands.add_parser(
        "invert", help="feature inversion: images that match an image's features at chosen layers"
    )
    invert.add_argument("image", metavar="IMAGE", help="the image (a path)")
    invert.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help="model name, repeatable: one row each (default: efficientnet-lite0)",
    )
    invert.add_argument("--weights", action="append", metavar="FILE", help="checkpoint, one per --model")
    invert.add_argument(
        "--layers", metavar="L1,L2,...", help="module names (default: three stages for ResNets/EfficientNets)"
    )
    invert.add_argument("--out", required=True, metavar="FIG.png", help="the figure (PNG + SVG, or SVG)")
    invert.add_argument("--iterations", type=int, default=200, metavar="N", help="SGD steps (default 200)")
    invert.add_argument("--seed", type=int, default=0, help="seed of the start noise (default 0)")
    invert.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    invert.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    invert.set_defaults(run=cmd_invert)

    sanity = commands.add_parser(
        "sanity", help="sanity check: maps as the model's layers are randomised from the output end"
    )
    sanity.add_argument("--pairs", required=True, metavar="SOURCE", help="folder, CSV, DIR1:DIR2 or demo")
    sanity.add_argument(
        "--out", required=True, metavar="DIR", help="folder for the figures (made if missing)"
    )
    sanity.add_argument("--model", help="model name (default: efficientnet-lite0)")
    sanity.add_argument("--weights", help="checkpoint file for the model")
    sanity.add_argument(
        "--methods", default=SANITY_METHODS, metavar="LIST", help=f"variants (default {SANITY_METHODS})"
    )
    sanity.add_argument("--limit", type=int, default=4, metavar="N", help="the first N pairs (default 4)")
    sanity.add_argument("--every", type=int, default=1, metavar="K", help="maps after every K-th layer")
    sanity.add_argument("--seed", type=int, default=0, help="seed of the views, the methods and the layers")
    sanity.add_argument(
        "--set", action="append", metavar="METHOD.KEY=VALUE", help="a method's setting, repeatable"
    )
    sanity.add_argument(
        "--db", metavar="FILE", help="the model's evaluation store: its report then links these figures"
    )
    sanity.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    sanity.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sanity.set_defaults(run=cmd_sanity)

    web = commands.add_parser("serve", help="the web page and JSON API (needs the web extra)")
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)")
    web.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    web.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help="model to serve, repeatable; the first is the default",
    )
    web.add_argument(
        "--weights", action="append", metavar="FILE", help="checkpoint, one per --model in order"
    )
    web.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    web.add_argument(
        "--upload-limit", type=float, default=20, metavar="MB", help="request body limit (default 20 MB)"
    )
    web.add_argument(
        "--max-pixels", type=int, default=50_000_000, metavar="N", help="pixels per image (default 50 M)"
    )
    web.add_argument("--queue", type=int, default=8, metavar="N", help="explanations queued or running (8)")
    web.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    web.set_defaults(run=cmd_serve)

    commands.add_parser("models", help="list the models").set_defaults(run=cmd_models)
    fetch = commands.add_parser(
        "fetch-face-model",
        help="npm-pack @vladmandic/face-api; keep its face-recognition weights and licence",
    )
    fetch.add_argument("--dest", metavar="DIR", help="folder (default ~/.cache/simexplain/face-api)")
    fetch.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    fetch.set_defaults(run=cmd_fetch_face_model)
    commands.add_parser("methods", help="list the methods and their parameters").set_defaults(run=cmd_methods)
    return parser


def _add_run_options(parser: argparse.ArgumentParser, metrics: str) -> None:
    """The options of a run into an evaluation store (``evaluate``, ``dissect``)."""
    parser.add_argument("--pairs", required=True, metavar="SOURCE", help="folder, CSV, DIR1:DIR2 or demo")
    parser.add_argument("--db", required=True, metavar="FILE", help="the SQLite store (created or resumed)")
    parser.add_argument("--model", help="model name (default: efficientnet-lite0)")
    parser.add_argument("--weights", help="checkpoint file for the model")
    parser.add_argument(
        "--metrics",
        default=metrics,
        metavar="LIST",
        help=f"metrics (default {metrics}; MS on request), or none",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="the first N pairs in a stable order")
    parser.add_argument("--seed", type=int, default=0, help="run seed: pairs' views and methods' randomness")
    parser.add_argument("--batch-size", type=int, metavar="B", help="pairs per step and images per forward")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:LOCAL_RANK under torchrun)")
    parser.add_argument(
        "--set", action="append", metavar="METHOD.KEY=VALUE", help="a method's setting, or metrics.step=N"
    )
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser.set_defaults(run=cmd_evaluate)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("simexplain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: nothing left to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (keeps Python's exit flush from raising again)
        return 0
    except Exception as error:  # noqa: BLE001  (one line for the user; the traceback only on request)
        if args.debug:
            traceback.print_exc()
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        prefix = "" if isinstance(error, SimexplainError) else f"{type(error).__name__}: "
        print(f"simexplain: error: {prefix}{message}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
