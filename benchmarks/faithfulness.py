"""Ground-truth faithfulness: does a map point at the one thing two images share?

Pairs come from :func:`simexplain.data.planted_pairs`: one object planted into two different backgrounds at
random places and sizes (seeded), so the only common content is the object. For every method variant:

- pointing game: the share of images whose map maximum lies inside the object (both images of each pair);
- mass inside: the share of the map's positive mass that lies inside the object (mean over images);
- SI SD CI CD SAD CAD through :func:`simexplain.metrics.evaluate`.

Chance level for both ground-truth scores is the object's mean share of the image area (a map whose maximum
falls anywhere, or whose mass spreads evenly, scores that much); the tables state it.

Models and objects:
- ``efficientnet-lite0`` (the offline default, 224×224): the cat's head from the bundled ``chelsea.jpg`` in
  crops of ``coffee.jpg`` and ``astronaut.jpg``;
- ``face-resnet128`` (150×150, needs ``make face-model``): each of the three face crops in ``tests/data/face``
  in crops of ``coffee.jpg`` and ``chelsea.jpg`` (not the astronaut: a second face), at 50–80 % of the image
  side because the network expects the face to fill its input.

Usage:
    .venv/bin/python benchmarks/faithfulness.py            # both models, the recorded sizes
    .venv/bin/python benchmarks/faithfulness.py --quick    # smoke run: 2 pairs, 2 variants

What is cut to finish within ten minutes on the project's shared 2-core CPU (one torch thread): 6 planted
pairs of the default model and 6 of the face model (2 per face), Smooth-Grad with 8 samples, Averaged
Transforms with 8 steps, Conditional Occlusion with stride 32 (window 64; both scaled with the input size),
Pairwise Occlusion with 32 samples, and insertion/deletion curves of 9 points (HW/8 pixels per step).
Writes ``benchmarks/results/faithfulness.json`` and ``.md`` (``--quick``: ``faithfulness-quick.*``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

import simexplain
from simexplain import metrics
from simexplain.data import planted_pairs
from simexplain.explanation import upsample_maps
from simexplain.images import read_image
from simexplain.methods import registry

ROOT = Path(__file__).resolve().parent.parent
FACES = ROOT / "tests" / "data" / "face"
CAT_HEAD = (70, 20, 320, 280)  # left, top, width, height in chelsea.jpg

# The variants, at settings scaled down from the paper's so both models finish in minutes on 2 CPU cores.
VARIANTS: list[tuple[str, str, dict]] = [
    ("input-x-gradient", "input-x-gradient", {}),
    ("input-x-gradient (G)", "input-x-gradient", {"guided": True}),
    ("smooth-grad", "smooth-grad", {"samples": 8}),
    ("averaged-transforms", "averaged-transforms", {"steps": 8}),
    ("conditional-occlusion", "conditional-occlusion", {"window": "quarter", "stride": "eighth"}),
    ("pairwise-occlusion", "pairwise-occlusion", {"samples": 32}),
    ("pair-grad-cam", "pair-grad-cam", {}),
    ("interaction-cam mean", "interaction-cam", {"reduction": "mean"}),
    ("interaction-cam attn GI", "interaction-cam", {"reduction": "attn", "gradient_interaction": True}),
    ("deep-similarity", "deep-similarity", {}),
]
CURVE_POINTS = 8  # insertion/deletion steps of HW/8 pixels, 9 points (the paper: 224 pixels, 225 at 224²)


def resolved(params: dict, size: int) -> dict:
    """Occlusion's window and stride follow the input size (64 and 32 at 224)."""
    table = {"quarter": max(8, round(size * 64 / 224)), "eighth": max(4, round(size * 32 / 224))}
    return {k: table.get(v, v) if isinstance(v, str) else v for k, v in params.items()}


def pointing_and_mass(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """Per image: is the map's maximum on the object; the object's share of the positive map mass."""
    maps = upsample_maps(maps.float(), tuple(masks.shape[-2:]))
    flat, inside = maps.flatten(1), masks.flatten(1)
    hit = inside.gather(1, flat.argmax(1, keepdim=True))[:, 0].double()
    positive = flat.clamp(min=0)
    total = positive.sum(1)
    share = torch.where(total > 0, (positive * inside).sum(1) / total.clamp(min=1e-30), torch.nan)
    return hit, share.double()


def default_pairs(count: int, seed: int):
    photo = simexplain.sample_path
    cat = read_image(photo("chelsea.jpg")).crop(
        (CAT_HEAD[0], CAT_HEAD[1], CAT_HEAD[0] + CAT_HEAD[2], CAT_HEAD[1] + CAT_HEAD[3])
    )
    backgrounds = [photo("coffee.jpg"), photo("astronaut.jpg")]
    return [planted_pairs(cat, backgrounds, count, size=224, scale=(0.3, 0.6), seed=seed)]


def face_pairs(count: int, seed: int):
    photo = simexplain.sample_path
    backgrounds = [photo("coffee.jpg"), photo("chelsea.jpg")]
    faces = sorted(FACES.glob("*.png"))
    per_face = max(1, math.ceil(count / len(faces)))
    return [
        planted_pairs(face, backgrounds, per_face, size=150, scale=(0.5, 0.8), seed=seed + i)
        for i, face in enumerate(faces)
    ]


def run_model(name: str, sets, variants, batch_size: int) -> dict:
    model = simexplain.load_model(name)
    to_model = model.preprocessing.to_model
    x1 = torch.cat([to_model(s.x1) for s in sets])
    x2 = torch.cat([to_model(s.x2) for s in sets])
    mask1, mask2 = torch.cat([s.mask1 for s in sets]), torch.cat([s.mask2 for s in sets])
    size = x1.shape[-1]
    with model.explaining(), torch.inference_mode():
        base = model(x1, x2).double()
    area = float(torch.cat([mask1, mask2]).float().mean())
    rows = {}
    for label, method, params in variants:
        params = resolved(params, size)
        started = time.perf_counter()
        if "batch_size" in registry.get(method).parameters():
            params = {**params, "batch_size": batch_size}
        explanation = simexplain.explain(model, x1, x2, method, **params)
        explained = time.perf_counter() - started
        hits, shares = zip(
            pointing_and_mass(explanation.map1, mask1), pointing_and_mass(explanation.map2, mask2)
        )
        step = max(1, (x1.shape[-2] * x1.shape[-1]) // CURVE_POINTS)
        results = metrics.evaluate(model, x1, x2, explanation, "all", batch_size=batch_size, step=step)
        means = results.means()
        rows[label] = {
            "method": method,
            "params": params,
            "pointing": float(torch.cat(hits).mean()),
            "mass_inside": float(torch.cat(shares).nanmean()),
            **{k: means[k] for k in ("SI", "SD", "CI", "CD", "SAD", "CAD")},
            "SAD_undefined": results.counts.get("SAD_undefined", 0),
            "explain_s": round(explained, 2),
            "total_s": round(time.perf_counter() - started, 2),
        }
        print(
            f"  {name} {label:26s} PG {rows[label]['pointing']:.2f}  mass {rows[label]['mass_inside']:.2f}"
            f"  {rows[label]['total_s']:.1f} s",
            flush=True,
        )
    return {
        "model": name,
        "input": list(x1.shape[-2:]),
        "pairs": len(x1),
        "planted": [s.config for s in sets],
        "object_area": area,
        "score_mean": float(base.mean()),
        "score_positive": int((base > 0).sum()),
        "curve_step": max(1, (x1.shape[-2] * x1.shape[-1]) // CURVE_POINTS),
        "rows": rows,
    }


def table(result: dict) -> str:
    chance = result["object_area"]
    lines = [
        f"### {result['model']} ({result['pairs']} pairs at {result['input'][0]}×{result['input'][1]})",
        "",
        f"Chance level: {chance:.3f} for the pointing game and for the mass inside (the object's mean "
        f"share of the image). Clean score: mean {result['score_mean']:.3f}, positive in "
        f"{result['score_positive']} of {result['pairs']} pairs. Curves: {result['curve_step']} pixels "
        "per step.",
        "",
        "| variant | pointing ↑ | mass inside ↑ | SI ↑ | SD ↓ | CI ↑ | CD ↓ | SAD ↓ | CAD ↓ | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def cell(value: float | None) -> str:
        return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

    for label, row in result["rows"].items():
        values = [row["pointing"], row["mass_inside"]] + [
            row[k] for k in ("SI", "SD", "CI", "CD", "SAD", "CAD")
        ]
        lines.append(f"| {label} | " + " | ".join(cell(v) for v in values) + f" | {row['total_s']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6, help="pairs per model (default 6; faces: 2 per face)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: on a shared CPU more threads spin)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--models", default="efficientnet-lite0,face-resnet128")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 pairs, 2 variants")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    variants = [VARIANTS[0], VARIANTS[6]] if args.quick else VARIANTS
    count = 2 if args.quick else args.pairs
    started = time.perf_counter()
    results = []
    for name in args.models.split(","):
        try:
            sets = (
                face_pairs(count, args.seed) if name == "face-resnet128" else default_pairs(count, args.seed)
            )
            results.append(run_model(name, sets, variants, args.batch_size))
        except simexplain.SimexplainError as error:
            print(f"skipped {name}: {error}", file=sys.stderr)
    document = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average": list(os.getloadavg()),
        "results": results,
    }
    stem = "faithfulness-quick" if args.quick else "faithfulness"
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(document, indent=1) + "\n")
    load = ", ".join(f"{v:.1f}" for v in document["load_average"])
    heading = (
        f"# Ground-truth faithfulness (planted pairs)\n\n`{document['command']}`: {document['seconds']} s "
        f"with {document['threads']} torch thread(s), load average {load}.\n"
    )
    (out / f"{stem}.md").write_text(heading + "\n" + "\n\n".join(table(r) for r in results) + "\n")
    print(f"wrote {out / stem}.json and .md in {document['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
