"""The ``simexplain`` command line: ``explain``, ``models``, ``methods``.

Exit status: 0 on success, 2 on usage errors (argparse), 1 on any other error with one line on stderr
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import torch

from .errors import SimexplainError

DEMO_METHODS = ["input-x-gradient", "averaged-transforms", "interaction-cam", "conditional-occlusion"]
DEFAULT_METHODS = ["input-x-gradient", "interaction-cam"]


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # plain words such as mean, blur, combine


def method_params(
    methods: Sequence[str], settings: Sequence[str], seed: int | None, batch_size: int | None = None
) -> dict[str, dict]:
    """Turn ``--set KEY=VALUE`` / ``--set METHOD.KEY=VALUE``, ``--seed`` and ``--batch-size`` into per-method
    parameters (the last two go to every method that has such a parameter)."""
    from .methods import get

    params: dict[str, dict] = {name: {} for name in methods}
    known = {name: get(name).parameters() for name in methods}
    for setting in settings:
        if "=" not in setting:
            raise SimexplainError(f"--set expects KEY=VALUE or METHOD.KEY=VALUE, got {setting!r}")
        key, value = setting.split("=", 1)
        target, _, key = key.rpartition(".")
        targets = [target] if target else [name for name in methods if key in known[name]]
        if target and target not in params:
            raise SimexplainError(
                f"--set {setting}: {target!r} is not among the chosen methods {', '.join(methods)}"
            )
        if not targets or any(key not in known[name] for name in targets):
            raise SimexplainError(f"--set {setting}: no chosen method has a parameter {key!r}")
        for name in targets:
            params[name][key] = _parse_value(value)
    for key, value in (("seed", seed), ("batch_size", batch_size)):
        for name in methods:
            if value is not None and key in known[name]:
                params[name].setdefault(key, value)
    return params


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SimexplainError("--device cuda asked for, but no CUDA device is available (use --device cpu)")
    return torch.device(name)


def _demo_pair(model, seed: int):
    """The bundled cat photo and one SimCLR augmentation of it (the paper's demo setting)."""
    from .images import read_image, sample_path, to_pixels
    from .transforms import simclr_view

    path = sample_path("chelsea.jpg")
    pixels = to_pixels(read_image(path), model.preprocessing).unsqueeze(0)  # the photo is read once
    generator = torch.Generator().manual_seed(seed)
    view = simclr_view(pixels, generator=generator, size=model.preprocessing.input_size)
    x1, x2 = (model.preprocessing.to_model(p).to(model.device) for p in (pixels, view))
    return x1, x2, [str(path), f"SimCLR view of {path.name} (seed {seed})"]


def cmd_explain(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .batching import progress_bars
    from .figures.pairs import pair_figure, save_figure
    from .images import load_images
    from .methods import explain
    from .models import DEFAULT_MODEL, load_model

    if args.demo == bool(args.images):
        raise SimexplainError("give two images, or --demo for the bundled pair")
    if not args.demo and len(args.images) != 2:
        raise SimexplainError(f"explain needs exactly two images, got {len(args.images)}")
    methods = args.method or (DEMO_METHODS if args.demo else DEFAULT_METHODS)
    params = method_params(methods, args.set or [], args.seed, args.batch_size)
    device = _device(args.device)
    model = load_model(args.model or DEFAULT_MODEL, weights=args.weights).to(device)
    if args.demo:
        x1, x2, names = _demo_pair(model, args.seed if args.seed is not None else 0)
    else:
        x1, x2 = load_images(args.images[0], args.images[1], model)
        names = list(args.images)
    if model.name == DEFAULT_MODEL:
        print(
            f"model: {DEFAULT_MODEL} (embedded default, a SUPERVISED ImageNet classifier, not a contrastive model)"
        )

    explanations = []
    with progress_bars():
        for name in tqdm(methods, desc="explaining", unit="method", disable=None, file=sys.stderr):
            explanations.append(explain(model, x1, x2, name, **params[name]))
    score = explanations[0].score[0].item()
    print(f"similarity {score:.4f}  ({names[0]} vs {names[1]})")

    report: dict[str, Any] = {
        "model": model.name,
        "images": names,
        "score": score,
        "methods": {
            e.method: {"params": _jsonable(params[e.method]), "score": e.score.tolist()} for e in explanations
        },
    }
    if args.metrics:
        report["metrics"] = _metrics(model, x1, x2, explanations, args.metrics, args.batch_size)
    out = args.out or ("demo.png" if args.demo else None)
    if out:
        title = f"{model.name}: similarity {score:.3f}"
        written = save_figure(pair_figure(x1, x2, explanations, model.preprocessing, title=title), out)
        report["figures"] = written
        print("wrote " + ", ".join(written))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
        print(f"wrote {args.json}")
    return 0


def _metrics(model, x1, x2, explanations, wanted: str, batch_size: int | None) -> dict:
    from . import metrics
    from .batching import progress_bars

    options = {"batch_size": batch_size} if batch_size else {}
    with progress_bars():
        results = {e.method: metrics.evaluate(model, x1, x2, e, wanted, **options) for e in explanations}
    print(metrics.format_table(results))
    return {name: result.to_dict(curves=False) for name, result in results.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return repr(value)


def cmd_models(args: argparse.Namespace) -> int:
    from .models import available

    for entry in available().values():
        print(f"{entry.name}\n    {entry.description}")
        print(
            f"    embedding: {entry.embedding or '-'}; input: {entry.preprocessing or '-'}; CAM layer: {entry.layer or '-'}"
        )
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .methods import available as methods
    from .methods import get

    for name, description in methods().items():
        parameters = ", ".join(f"{k}={v!r}" for k, v in get(name).parameters().items())
        print(f"{name:24s} {description}\n{'':24s} ({parameters})")
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
    explain.add_argument("--out", metavar="FIG.png", help="write the figure (PNG + SVG, or SVG)")
    explain.add_argument("--json", metavar="OUT.json", help="write scores, parameters and metrics as JSON")
    explain.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    explain.add_argument("--seed", type=int, help="seed for the random methods and the demo's augmentation")
    explain.add_argument(
        "--batch-size", type=int, metavar="N", help="images per forward for batched methods and metrics"
    )
    explain.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    explain.set_defaults(run=cmd_explain)

    commands.add_parser("models", help="list the models").set_defaults(run=cmd_models)
    commands.add_parser("methods", help="list the methods and their parameters").set_defaults(run=cmd_methods)
    return parser


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
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
