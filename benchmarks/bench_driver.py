"""The evaluation driver against direct API calls doing the same work, and its throughput on this machine.

Two measurements, both on the embedded default model (EfficientNet-Lite0, 224×224):

- ``overhead``: the same pairs, variants and metrics (i) through ``studies.evaluate_pairs`` into a fresh
  store and (ii) by direct calls (``pair_images`` → ``explain`` → ``metrics.evaluate``, one pair at a time,
  nothing stored), run alternately in one process; the overhead is ``driver / direct − 1`` (target ≤ 5%).
- ``throughput``: ``--methods all --metrics all`` (the paper's 17 rows, six metrics at the paper's step) on
  the bundled pairs; pairs per hour and the seconds of each variant as stored.

Usage:
    python benchmarks/bench_driver.py overhead [--pairs 3] [--rounds 2]
    python benchmarks/bench_driver.py throughput [--pairs 1]
Results go to ``benchmarks/results/driver_<mode>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from recording import write_result

import simexplain
from simexplain import metrics
from simexplain.studies import Evaluation, Store, evaluate_pairs, load_pairs, pair_images, parse_variants

OVERHEAD_VARIANTS = (
    "input-x-gradient,interaction-cam[reduction=max;gradient_interaction=true],smooth-grad[samples=8]"
)
OVERHEAD_METRICS = ["SD", "CI", "SAD", "CAD"]
OVERHEAD_STEP = 1568  # 33 curve points at 224²: the same work on both sides, a shorter run


def direct(model, specs, variants, names, options, batch_size) -> float:
    """The same work by direct calls: one pair at a time, nothing stored."""
    started = time.perf_counter()
    for spec in specs:
        x1, x2 = pair_images(spec, model)
        for variant in variants:
            params = dict(variant.params)
            if "seed" in simexplain.methods.get(variant.method).parameters():
                params["seed"] = spec.seed
            e = simexplain.explain(model, x1, x2, variant.method, **params)
            metrics.evaluate(model, x1, x2, e, names, batch_size=batch_size, **options)
    return time.perf_counter() - started


def through_driver(model, specs, variants, names, options, batch_size) -> float:
    run = Evaluation(model, variants, names, options, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        evaluate_pairs(run, specs, Path(folder) / "r.sqlite", progress=False)
        return time.perf_counter() - started


def overhead(args: argparse.Namespace) -> dict:
    model = simexplain.load_model("efficientnet-lite0")
    specs = load_pairs("demo", limit=args.pairs)
    variants = parse_variants(OVERHEAD_VARIANTS)
    options = {"step": OVERHEAD_STEP}
    # batch_size 1: the driver then explains one pair per step, exactly the direct loop's batches.
    rounds = {"direct": [], "driver": []}
    direct(model, specs[:1], variants, OVERHEAD_METRICS, options, 1)  # warm-up: first calls pay one-off costs
    for _ in range(args.rounds):
        rounds["direct"].append(direct(model, specs, variants, OVERHEAD_METRICS, options, 1))
        rounds["driver"].append(through_driver(model, specs, variants, OVERHEAD_METRICS, options, 1))
    direct_s, driver_s = (statistics.median(rounds[k]) for k in ("direct", "driver"))
    return {
        "mode": "overhead",
        "pairs": len(specs),
        "variants": [v.label for v in variants],
        "metrics": OVERHEAD_METRICS,
        "step": OVERHEAD_STEP,
        "rounds_s": rounds,
        "direct_s": direct_s,
        "driver_s": driver_s,
        "overhead": driver_s / direct_s - 1,
    }


def throughput(args: argparse.Namespace) -> dict:
    model = simexplain.load_model("efficientnet-lite0")
    specs = load_pairs("demo", limit=args.pairs)
    run = Evaluation(model, parse_variants("all"), metrics.resolve_metrics("all"), batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        summary = evaluate_pairs(run, specs, Path(folder) / "r.sqlite", progress=True)
        seconds = time.perf_counter() - started
        with Store(Path(folder) / "r.sqlite", readonly=True) as store:
            per_variant = {}
            for item in store.items():
                per_variant.setdefault(item.variant, []).append(item.seconds)
    return {
        "mode": "throughput",
        "pairs": len(specs),
        "variants": len(run.variants),
        "metrics": list(run.metrics),
        "batch_size": args.batch_size,
        "seconds": seconds,
        "pairs_per_hour": 3600 * len(specs) / seconds,
        "explain_seconds_per_variant": {k: statistics.mean(v) for k, v in per_variant.items()},
        "failed": summary.failed,
    }


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cpu (no GPU lent to this session)",
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def markdown(result: dict) -> str:
    lines = [f"# Evaluation driver: {result['mode']}", "", f"Machine: {result['machine']}", ""]
    if result["mode"] == "overhead":
        lines += [
            f"{result['pairs']} bundled pairs × {len(result['variants'])} variants "
            f"({', '.join(result['variants'])}),"
            f" metrics {', '.join(result['metrics'])} at step {result['step']}, batch size 1,"
            f" after a warm-up; median of {len(result['rounds_s']['direct'])} alternating rounds.",
            "",
            "| path | seconds |",
            "| --- | ---: |",
            f"| direct calls (pair_images → explain → evaluate) | {result['direct_s']:.1f} |",
            f"| driver (evaluate_pairs into a fresh store) | {result['driver_s']:.1f} |",
            "",
            f"Driver overhead: {100 * result['overhead']:+.1f}% (target ≤ 5%).",
        ]
    else:
        lines += [
            "`--methods all --metrics all` (17 variants, six metrics at the paper's step) on "
            f"{result['pairs']} "
            f"bundled pair(s), batch size {result['batch_size'] or 'default'}: {result['seconds']:.0f} s, "
            f"**{result['pairs_per_hour']:.1f} pairs per hour** on this CPU.",
            "",
            "| variant | explanation seconds (stored) |",
            "| --- | ---: |",
        ]
        lines += [f"| {k} | {v:.2f} |" for k, v in result["explain_seconds_per_variant"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["overhead", "throughput"])
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    args.pairs = args.pairs or (3 if args.mode == "overhead" else 1)
    result = overhead(args) if args.mode == "overhead" else throughput(args)
    result["machine"] = machine()
    result["command"] = " ".join(["python", *sys.argv])
    write_result(f"driver_{args.mode}", result, markdown)


if __name__ == "__main__":
    main()
