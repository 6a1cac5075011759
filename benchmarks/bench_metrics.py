"""Pair metrics speed: simexplain's shared, batched curves against the authors' one-image-per-forward way.

The six metrics SI SD CI CD SAD CAD on a ResNet-50 (torchvision, random weights, embedding = pooled 2048-d
features) at 224×224, for 1 pair and for 16 pairs:
- simexplain: ``simexplain.metrics.evaluate`` — curve images built from pixel ranks with masks, embedded in
  chunks of ``--batch-size`` images under inference mode; every perturbed sequence is embedded once and
  shared by the simultaneous and the conditional curves; the clean images are embedded once.
- naive (the authors' way): one image per forward with autograd on (parameters requiring grad), a cloned
  image with the next pixels written by index at every curve point, the fixed image re-embedded at every
  conditional step: ``12·n + 8`` forwards per pair for ``n`` curve points.
Both run in one process; the curve points and average drops are compared.

Cost model: the minimal work is ``4·n + 4`` images per pair (two deletion and two insertion sequences, the
clean pair, the masked pair). Efficiency = (minimal images × measured time of one image in a plain inference
forward at the same chunk size) / measured time, so 1.0 means no time lost outside the network.

The naive way is slow on a CPU (minutes per pair at step 224), so it can be timed on a subset of the curve
points (``--naive-points``, evenly spaced, always with the average drops) and on fewer pairs
(``--naive-pairs``); its total is then extrapolated linearly in forwards, and the md says so. Pairs are
independent in the naive loop, so the 16-pair naive time is 16 × the per-pair time. The naive way runs once,
on the first pairs, and every case compares its own results for those pairs with it.

Usage:
    .venv/bin/python benchmarks/bench_metrics.py              # step 224, 1 and 16 pairs (GPU or idle CPU)
    .venv/bin/python benchmarks/bench_metrics.py --step 7168 --naive-points 8   # coarser curves, shared CPU
    .venv/bin/python benchmarks/bench_metrics.py --quick      # smoke run (≈ a minute)
Writes ``benchmarks/results/metrics.json`` and ``metrics.md`` (``--quick`` writes ``metrics-quick.*``;
``--stem`` names other files).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

import simexplain
from simexplain.batching import resolve_batch_size
from simexplain.explanation import PairExplanation, normalize_maps, upsample_maps
from simexplain.metrics import METRICS, curve_fractions, curve_points, evaluate

RESULTS = Path(__file__).parent / "results"


def resnet50_encoder(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    network = torchvision.models.resnet50(weights=None)
    network.fc = nn.Identity()  # embedding = pooled 2048-d features
    return network.eval()


def make_pairs(count: int, size: int, seed: int) -> tuple[Tensor, Tensor, PairExplanation]:
    """The sample photos, each with a flipped, slightly noisy second view; smooth 7×7 maps like a CAM's."""
    names = ["chelsea.jpg", "coffee.jpg", "astronaut.jpg"]
    prep = simexplain.Preprocessing(
        input_size=(size, size), resize=size, mean=simexplain.IMAGENET.mean, std=simexplain.IMAGENET.std
    )
    photos = torch.cat([simexplain.load_image(simexplain.sample_path(n), prep) for n in names])
    x1 = photos[torch.arange(count) % len(names)]
    x2, map1, map2 = [], [], []
    for i in range(count):  # pair i is drawn from its own seed: the first pairs are the same in every case
        generator = torch.Generator().manual_seed(seed + i)
        x2.append(x1[i].flip(-1) + 0.05 * torch.randn(x1[i].shape, generator=generator))
        map1.append(torch.rand(7, 7, generator=generator))
        map2.append(torch.rand(7, 7, generator=generator))
    return (
        x1,
        torch.stack(x2),
        PairExplanation(map1=torch.stack(map1), map2=torch.stack(map2), method="random 7×7"),
    )


# ------------------------------------------------------------------------------------------ naive reference
class Naive:
    """The authors' way, one pair at a time; counts forwards."""

    def __init__(self, encoder: nn.Module, step: int, blur: tuple[int, float] = (11, 5.0)) -> None:
        self.encoder = encoder
        for param in encoder.parameters():
            param.requires_grad_(True)  # as in the authors' code: autograd graphs are built at every forward
        self.step, self.blur = step, blur
        self.forwards = 0

    def f(self, x: Tensor) -> Tensor:
        self.forwards += 1
        return self.encoder(x.unsqueeze(0))

    def cos(self, a: Tensor, b: Tensor) -> float:
        return float(F.cosine_similarity(a, b, dim=1, eps=1e-8).detach())

    def image_at(self, x: Tensor, start: Tensor, order: Tensor, k: int) -> Tensor:
        out = x.clone()
        index = order[: k * self.step]
        out.view(3, -1)[:, index] = start.reshape(3, -1)[:, index]
        return out

    def pair(self, x1: Tensor, x2: Tensor, m1: Tensor, m2: Tensor, ks: list[int]) -> dict[str, list[float]]:
        o1 = torch.argsort(m1.flatten(), descending=True, stable=True)
        o2 = torch.argsort(m2.flatten(), descending=True, stable=True)
        b1, b2 = (gaussian_blur(x.unsqueeze(0), [self.blur[0]] * 2, [self.blur[1]] * 2)[0] for x in (x1, x2))
        zero1, zero2 = torch.zeros_like(x1), torch.zeros_like(x2)
        out: dict[str, list[float]] = {k: [] for k in ("SI", "SD", "CI_1", "CI_2", "CD_1", "CD_2")}
        for k in ks:
            # deletion: pixels go to 0; insertion: the blurred image gets its pixels back
            d1, d2 = self.image_at(x1, zero1, o1, k), self.image_at(x2, zero2, o2, k)
            i1, i2 = self.image_at(b1, x1, o1, k), self.image_at(b2, x2, o2, k)
            out["SD"].append(self.cos(self.f(d1), self.f(d2)))
            out["SI"].append(self.cos(self.f(i1), self.f(i2)))
            out["CD_1"].append(self.cos(self.f(d1), self.f(x2)))  # clean image re-embedded at every step
            out["CD_2"].append(self.cos(self.f(x1), self.f(d2)))
            out["CI_1"].append(self.cos(self.f(i1), self.f(x2)))
            out["CI_2"].append(self.cos(self.f(x1), self.f(i2)))
        e1, e2 = normalize_maps(m1.unsqueeze(0))[0], normalize_maps(m2.unsqueeze(0))[0]
        base = self.cos(self.f(x1), self.f(x2))
        masked = self.cos(self.f(e1 * x1), self.f(e2 * x2))
        c1, c2 = self.cos(self.f(e1 * x1), self.f(x2)), self.cos(self.f(x1), self.f(e2 * x2))

        def drop(score: float) -> float:
            return max(0.0, base - score) / base if base > 0 else math.nan

        out["SAD"], out["CAD"] = [drop(masked)], [(drop(c1) + drop(c2)) / 2]
        return out


def forwards_naive(n: int) -> int:
    return 12 * n + 8


def minimal_images(n: int) -> int:
    return 4 * n + 4


def time_plain_forward(encoder: nn.Module, x: Tensor, batch: int, repeats: int) -> float:
    """Seconds per image of a plain inference-mode forward of ``batch`` images (median of repeats)."""
    chunk = x[torch.arange(batch) % len(x)]
    times = []
    with torch.inference_mode():
        encoder(chunk[:1])
        for _ in range(repeats):
            start = time.perf_counter()
            encoder(chunk)
            times.append((time.perf_counter() - start) / batch)
    return sorted(times)[len(times) // 2]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_naive(args: argparse.Namespace, encoder: nn.Module, device: torch.device) -> dict:
    """The naive way on the first ``--naive-pairs`` pairs (the same pairs every case starts with), timed
    once."""
    size, step = args.size, args.step
    x1, x2, explanation = make_pairs(args.naive_pairs, size, args.seed)
    x1, x2, explanation = x1.to(device), x2.to(device), explanation.to(device)
    n = curve_points(size, size, step)
    subset = n if args.naive_points is None else min(args.naive_points, n)
    ks = sorted({round(i * (n - 1) / max(1, subset - 1)) for i in range(subset)})
    naive = Naive(encoder, step)
    maps1, maps2 = (
        upsample_maps(explanation.map1, (size, size)),
        upsample_maps(explanation.map2, (size, size)),
    )
    sync(device)
    start = time.perf_counter()
    rows = [naive.pair(x1[i], x2[i], maps1[i], maps2[i], ks) for i in range(args.naive_pairs)]
    sync(device)
    seconds = time.perf_counter() - start
    for param in encoder.parameters():
        param.requires_grad_(False)
    # the same batch-1 forward without autograd, to split the naive cost into autograd and batching
    batch1 = time_plain_forward(encoder, x1[:1], 1, args.repeats + 1)
    interleaved = interleaved_costs(encoder, x1, args.batch_size, args.repeats + 1)
    return {
        "rows": rows,
        "ks": ks,
        "seconds": seconds,
        "forwards": naive.forwards,
        "pairs": args.naive_pairs,
        "batch1_inference_s": batch1,
        "interleaved": interleaved,
    }


def interleaved_costs(encoder: nn.Module, x: Tensor, batch: int, repeats: int) -> dict[str, float]:
    """Seconds per image of the three kinds of forward, taken in turns so that all see the same load
    (a shared machine's load drifts over minutes; the long runs above do not see the same load)."""
    chunk = x[torch.arange(batch) % len(x)]
    times: dict[str, list[float]] = {"autograd_batch1": [], "inference_batch1": [], "inference_chunk": []}
    for param in encoder.parameters():
        param.requires_grad_(True)
    for _ in range(repeats):
        start = time.perf_counter()
        encoder(chunk[:1])
        times["autograd_batch1"].append(time.perf_counter() - start)
        with torch.inference_mode():
            start = time.perf_counter()
            encoder(chunk[:1])
            times["inference_batch1"].append(time.perf_counter() - start)
            start = time.perf_counter()
            encoder(chunk)
            times["inference_chunk"].append((time.perf_counter() - start) / batch)
    for param in encoder.parameters():
        param.requires_grad_(False)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def run_case(
    pairs: int, args: argparse.Namespace, encoder: nn.Module, device: torch.device, naive: dict
) -> dict:
    size, step = args.size, args.step
    x1, x2, explanation = make_pairs(pairs, size, args.seed)
    x1, x2, explanation = x1.to(device), x2.to(device), explanation.to(device)
    model = simexplain.PairModel(encoder)
    n = curve_points(size, size, step)
    chunk = min(args.batch_size, minimal_images(n) * pairs)

    t_forward_before = time_plain_forward(encoder, x1, chunk, args.repeats)
    sync(device)
    start = time.perf_counter()
    ours = evaluate(model, x1, x2, explanation, METRICS, batch_size=args.batch_size, step=step)
    sync(device)
    t_ours = time.perf_counter() - start
    t_forward_after = time_plain_forward(encoder, x1, chunk, args.repeats)
    t_forward = (t_forward_before + t_forward_after) / 2

    ks, worst = naive["ks"], 0.0
    for i, row in enumerate(naive["rows"][:pairs]):
        for key in ("SI", "SD", "CI_1", "CI_2", "CD_1", "CD_2"):
            worst = max(
                worst,
                float((ours.curves[key][i, ks] - torch.tensor(row[key], dtype=torch.float64)).abs().max()),
            )
        for key in ("SAD", "CAD"):
            worst = max(worst, abs(float(ours[key][i]) - row[key][0]))
        if len(ks) == n:  # whole curves: compare the AUCs too
            fractions = curve_fractions(size, size, step)
            for key in ("SI", "SD"):
                area = float(torch.trapezoid(torch.tensor(row[key], dtype=torch.float64), fractions))
                worst = max(worst, abs(area - float(ours[key][i])))
    # extrapolate linearly in forwards: to all curve points, then to all pairs
    full_forwards = forwards_naive(n) * pairs
    t_naive = naive["seconds"] * full_forwards / naive["forwards"]
    minimal = minimal_images(n) * pairs
    return {
        "pairs": pairs,
        "curve_points": n,
        "simexplain_s": t_ours,
        "naive_s": t_naive,
        "naive_measured_s": naive["seconds"],
        "naive_measured_forwards": naive["forwards"],
        "naive_full_forwards": full_forwards,
        "naive_extrapolated": naive["forwards"] != full_forwards,
        "naive_pairs_run": naive["pairs"],
        "naive_points_run": len(ks),
        "pairs_compared": min(pairs, naive["pairs"]),
        "naive_s_per_forward": naive["seconds"] / naive["forwards"],
        "batch1_inference_s": naive["batch1_inference_s"],
        "interleaved_s_per_image": naive["interleaved"],
        "speedup": t_naive / t_ours,
        "minimal_images": minimal,
        "forward_s_per_image": t_forward,
        "forward_chunk": chunk,
        "efficiency": minimal * t_forward / t_ours,
        "max_abs_difference": worst,
        "means": {k: float(v) for k, v in ours.means().items() if k in METRICS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--step", type=int, default=224)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="images per forward (default: the library's, 8 on a CPU)"
    )
    parser.add_argument(
        "--naive-pairs", type=int, default=1, help="pairs the naive way runs (then extrapolated)"
    )
    parser.add_argument("--naive-points", type=int, default=None, help="curve points the naive way runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 and 2 pairs, 5 curve points")
    parser.add_argument("--note", default="", help="a line for the md (e.g. the machine's load)")
    parser.add_argument("--stem", default=None, help="result file names (default: metrics, or metrics-quick)")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.step, args.naive_points, args.batch_size, args.repeats = (
            [1, 2],
            args.size**2 // 4,
            3,
            16,
            1,
        )
    device = torch.device(args.device)
    args.batch_size = resolve_batch_size(args.batch_size, device)
    load_start = os.getloadavg()
    encoder = resnet50_encoder(args.seed).to(device)
    naive = run_naive(args, encoder, device)
    cases = [run_case(p, args, encoder, device, naive) for p in args.pairs]
    load_end = os.getloadavg()
    meta = {
        "model": "torchvision ResNet-50, random weights, pooled 2048-d embedding",
        "size": args.size,
        "step": args.step,
        "batch_size": args.batch_size,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "note": args.note,
        "load_average_start": list(load_start),
        "load_average_end": list(load_end),
        "command": shlex.join(["benchmarks/bench_metrics.py", *sys.argv[1:]]),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = args.stem or ("metrics-quick" if args.quick else "metrics")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "cases": cases}, indent=2) + "\n")
    print(write_markdown(meta, cases, RESULTS / f"{stem}.md"))


def write_markdown(meta: dict, cases: list[dict], path: Path) -> str:
    """The md table from the JSON data (``python -c`` can rebuild it from ``metrics.json``)."""
    lines = [
        "# Pair metrics: simexplain vs the naive one-image-per-forward way",
        "",
        (
            f"Six metrics (SI SD CI CD SAD CAD), {meta['model']}, {meta['size']}×{meta['size']}, step "
            f"{meta['step']} ({cases[0]['curve_points']} curve points), chunks of {meta['batch_size']} "
            f"images; device: {meta['device']} ({meta['cpu_count']} CPUs, {meta['torch_threads']} torch "
            f"threads), torch {meta['torch']}."
        ),
        "",
        f"Command: `{meta['command']}`",
        "",
        *(
            [
                "Load average (1/5/15 min) at the start "
                + "/".join(f"{v:.1f}" for v in meta["load_average_start"])
                + ", at the end "
                + "/".join(f"{v:.1f}" for v in meta["load_average_end"])
                + f" ({meta['cpu_count']} CPUs: above that, other jobs were waiting for the cores).",
                "",
            ]
            if "load_average_start" in meta
            else []
        ),
        (
            "| pairs | simexplain (s) | naive (s) | speed-up | min. images | s / image (plain fwd) | "
            "efficiency | max abs diff |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in cases:
        naive = f"{c['naive_s']:.1f}" + (" *" if c["naive_extrapolated"] else "")
        lines.append(
            f"| {c['pairs']} | {c['simexplain_s']:.1f} | {naive} | {c['speedup']:.2f}× | "
            f"{c['minimal_images']} | {c['forward_s_per_image']:.4f} | {c['efficiency']:.2f} | "
            f"{c['max_abs_difference']:.1e} |"
        )
    lines += [""]
    for c in cases:
        if c["naive_extrapolated"]:
            lines.append(
                f"\\* {c['pairs']} pair(s): the naive way ran {c['naive_measured_forwards']} of its "
                f"{c['naive_full_forwards']} forwards ({c['naive_pairs_run']} pair(s), "
                f"{c['naive_points_run']} of {c['curve_points']} curve points, all average-drop forwards) in "
                f"{c['naive_measured_s']:.1f} s; the total is extrapolated linearly in forwards (pairs are "
                f"independent in the naive loop). Results compared on what it ran ({c['pairs_compared']} "
                "pair(s))."
            )
    for c in cases:
        per_forward = c["naive_measured_s"] / c["naive_measured_forwards"]
        lines.append(
            f"{c['pairs']} pair(s): the speed-up is {c['naive_full_forwards'] / c['minimal_images']:.2f}× "
            "fewer images (each sequence once, no re-embedded clean image) × "
            f"{per_forward / (c['simexplain_s'] / c['minimal_images']):.2f}× less time per image (naive "
            f"{per_forward:.3f} s per batch-1 forward with autograd, simexplain "
            f"{c['simexplain_s'] / c['minimal_images']:.3f} s per image in chunks under inference mode"
            + (
                f"; a batch-1 forward under inference mode took {c['batch1_inference_s']:.3f} s)."
                if "batch1_inference_s" in c
                else ")."
            )
        )
    costs = cases[0].get("interleaved_s_per_image")
    if costs:
        ratio = cases[0]["naive_full_forwards"] / cases[0]["minimal_images"]
        expected = ratio * costs["autograd_batch1"] / costs["inference_chunk"]
        lines += [
            "",
            (
                "Per-image cost of each kind of forward, taken in turns under the same load: batch-1 with "
                f"autograd {costs['autograd_batch1']:.3f} s, batch-1 under inference mode "
                f"{costs['inference_batch1']:.3f} s, chunk of {meta['batch_size']} under inference mode "
                f"{costs['inference_chunk']:.3f} s per image. At one load the expected speed-up is "
                f"{ratio:.2f}× (images) × {costs['autograd_batch1'] / costs['inference_chunk']:.2f}× (per "
                f"image) = {expected:.1f}×; the measured ratios above differ from it as far as the load "
                "drifted between the long runs. At step 224 the image ratio is 2708 / 904 = 3.00×."
            ),
        ]
    lines += [
        "",
        (
            "An efficiency above 1 is measurement noise: the plain-forward time is measured before and after "
            "the run and averaged, and the machine's load changed in between. A random-weight ResNet-50 "
            "embeds nearly everything alike (cosines near 1), so the metric values themselves mean nothing "
            "here; only the equality and the times do."
        ),
        "",
        (
            "Naive = the authors' way: one image per forward, autograd on, the clean image re-embedded at "
            "every conditional step (12·n + 8 forwards per pair). Minimal = 4·n + 4 images per pair "
            "(simexplain embeds exactly these: each perturbed sequence once, shared by the simultaneous and "
            "conditional curves). Efficiency = minimal images × s/image of a plain inference forward at the "
            "same chunk size / measured time."
        ),
    ]
    if meta["note"]:
        lines += ["", meta["note"]]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


if __name__ == "__main__":
    main()
