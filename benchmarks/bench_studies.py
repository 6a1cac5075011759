"""Seconds of the invariance studies on the embedded default model (EfficientNet-Lite0, 224×224).

- ``dissection``: ``simexplain dissect`` on one bundled pair: Table VII's nine transforms, plain and guided
  (18 Averaged Transforms runs of 10 steps), scored with SI, SD and SAD at the paper's step (225 curve
  points), through the evaluation driver into a fresh store; the seconds of the whole pair and of each
  variant's explanation as stored.
- ``inversion``: one feature inversion of three layers (the default layers, 200 SGD iterations, all layers
  optimised together as one batch).

Absolute times only: both are single runs whose cost is their pass count (the driver's own overhead is
measured in ``bench_driver.py``). Results go to ``benchmarks/results/studies.json`` and ``.md``.

Usage:
    python benchmarks/bench_studies.py [--transforms all] [--iterations 200] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from simexplain import service
from simexplain.images import load_image, sample_path
from simexplain.studies import Evaluation, Store, evaluate_pairs, load_pairs
from simexplain.studies.dissection import DISSECTION_METRICS, dissection_variants
from simexplain.studies.inversion import default_inversion_layers, invert_features

RESULTS = Path(__file__).resolve().parent / "results"


def dissection(model, transforms: str, metrics: list[str]) -> dict:
    variants = dissection_variants(transforms)
    run = Evaluation(model, variants, metrics, seed=0, study="dissection")
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "dissect.sqlite"
        started = time.perf_counter()
        summary = evaluate_pairs(run, load_pairs("demo", seed=0, limit=1), db, progress=False)
        seconds = time.perf_counter() - started
        with Store(db, readonly=True) as store:
            explained = {item.variant: item.seconds for item in store.items()}
    return {
        "variants": len(variants),
        "done": summary.done,
        "failed": summary.failed,
        "seconds_per_pair": seconds,
        "explanation_seconds": sum(explained.values()),
        "metric_and_store_seconds": seconds - sum(explained.values()),
        "per_variant": explained,
    }


def inversion(model, iterations: int) -> dict:
    image = load_image(sample_path("chelsea.jpg"), model)
    layers = default_inversion_layers(model)
    started = time.perf_counter()
    result = invert_features(model, image, layers, iterations=iterations, seed=0)
    seconds = time.perf_counter() - started
    return {
        "layers": layers,
        "iterations": iterations,
        "seconds": seconds,
        "final_relative_errors": [float(v) for v in result.losses[-1]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transforms", default="all")
    parser.add_argument("--metrics", default=",".join(DISSECTION_METRICS), help="or none: explanations only")
    parser.add_argument("--tag", default="", help="suffix of the result files (studies<tag>.json/.md)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = service.get_model(None, device=args.device)
    metrics = [] if args.metrics.lower() == "none" else args.metrics.split(",")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load = os.getloadavg()[0]
    result = {
        "model": model.name,
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "started": started,
        "load_before": load,
        "metrics": metrics,
        "dissection": dissection(model, args.transforms, metrics),
        "inversion": inversion(model, args.iterations),
        "load_after": os.getloadavg()[0],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"studies{args.tag}.json").write_text(json.dumps(result, indent=2))
    d, i = result["dissection"], result["inversion"]
    lines = [
        "# Invariance studies: seconds on the default model",
        "",
        f"{result['model']} on {result['device']} ({result['threads']} threads, torch {result['torch']}), "
        f"{started}; load average {result['load_before']:.1f} before, {result['load_after']:.1f} after.",
        "",
        "| study | what | seconds |",
        "| --- | --- | --- |",
        f"| dissection | 1 pair, {d['variants']} variants (Table VII, plain + guided), "
        f"{' '.join(metrics) or 'no metrics'} at step 224 "
        f"| **{d['seconds_per_pair']:.1f}** (explanations {d['explanation_seconds']:.1f}, "
        f"metrics + store {d['metric_and_store_seconds']:.1f}) |",
        f"| inversion | 3 layers ({', '.join(i['layers'])}), {i['iterations']} iterations, one batch "
        f"| **{i['seconds']:.1f}** |",
        "",
        "Seconds per variant's explanation (as stored):",
        "",
        *(f"- {label}: {seconds:.2f}" for label, seconds in d["per_variant"].items()),
        "",
    ]
    (RESULTS / f"studies{args.tag}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
