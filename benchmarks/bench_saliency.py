"""Smooth-Grad and Averaged Transforms: simexplain against the authors' one-pair-at-a-time loop.

Both implementations of the same definition run side by side in one process, on one ResNet-50 (torchvision,
random weights, pooled 2048-d embedding, ImageNet normalisation) and one 224×224 pair made the paper's way (a
sample image and one SimCLR augmentation of it), with the same seeded noise and transform, and their maps are
compared (max abs difference reported). The naive loops draw their noise and transform settings the library's
way (a CPU generator per pair seeded with the pair's seed, float32 draws in a fixed order, then moved to the
device), so both see the same noise on any device.

- simexplain: ``simexplain.explain(...)``: parameters frozen (no parameter gradients), noise samples and path
  steps batched in chunks of ``--batch-size`` images; Averaged Transforms embeds and differentiates image 1
  ONCE.
- naive (the authors' way): one pair per forward and backward with ``.backward()``, parameters requiring grad
  (their gradients are computed and accumulated), and in Averaged Transforms the clean image 1 re-embedded and
  differentiated at every path step.

Reported per method: seconds, speed-up, and efficiency = (minimal passes × time of one pass) / measured time,
where one pass = one forward + input-gradient backward of ONE image with frozen parameters (timed separately,
median of several) and the minimal passes are 2·samples for Smooth-Grad and steps + 1 for Averaged Transforms.

Usage:
    .venv/bin/python benchmarks/bench_saliency.py            # full: 50 samples, 10 steps
    .venv/bin/python benchmarks/bench_saliency.py --quick    # smoke run: 6 samples, 3 steps
    ``--batch-size N``: simexplain's images per forward (default: the library's, 8 on a CPU, 64 on a GPU).
Results: benchmarks/results/saliency.json and saliency.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torchvision

import simexplain
from simexplain.batching import resolve_batch_size
from simexplain.methods.common import saliency_map
from simexplain.transforms import get_transform, in_model_space, simclr_view

RESULTS = Path(__file__).parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, clock=time.perf_counter):
    sync(device)
    start = clock()
    out = fn()
    sync(device)
    return out, clock() - start


def cpu_clock() -> float:
    """CPU seconds of this process (all threads): unlike wall time, barely inflated by other jobs' load."""
    return time.process_time()


def build(device: torch.device) -> tuple[simexplain.PairModel, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    net.fc = torch.nn.Identity()
    model = simexplain.PairModel(net.to(device), preprocessing=simexplain.IMAGENET, name="resnet50-random")
    pixels = simexplain.IMAGENET.to_pixels(
        simexplain.load_image(simexplain.sample_path("chelsea.jpg"), model)
    )
    view = simclr_view(pixels, generator=torch.Generator().manual_seed(1), size=224)
    return (
        model,
        model.preprocessing.to_model(pixels).to(device),
        model.preprocessing.to_model(view).to(device),
    )


def one_pass_seconds(
    model: simexplain.PairModel, x: torch.Tensor, repeats: int, batch: int = 1, clock=time.perf_counter
) -> float:
    """Median time per image of one forward + input-gradient backward of ``batch`` copies, parameters
    frozen."""
    times = []
    with model.explaining():
        for _ in range(repeats + 1):
            images = x.detach().expand(batch, -1, -1, -1).clone().requires_grad_(True)

            def run(images=images):
                return torch.autograd.grad(model.embed(images).sum(), images)

            times.append(timed(run, x.device, clock)[1] / batch)
    return statistics.median(times[1:])  # the first call warms up


# ------------------------------------------------------------------------------------------------ naive loops
@contextmanager
def parameters_requiring_grad(model):
    """As the authors left their models: parameter gradients computed at every backward; restored
    afterwards."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
            p.grad = None


def naive_smooth_grad(model, x1, x2, samples: int, seed: int):
    """One pair (``x1``, ``x2`` are ``1×3×H×W``). The noise is drawn as the library draws a pair's: from a CPU
    generator seeded with the pair's seed, in float32, one shared tensor per sample in sample order, then
    moved to the image's device and dtype, so the maps can be compared on any device."""
    with parameters_requiring_grad(model):
        generator = torch.Generator().manual_seed(seed)
        flat = x1.flatten(1)
        sigma = 0.15 / (flat.amax() - flat.amin())
        g1, g2 = torch.zeros_like(x1), torch.zeros_like(x2)
        for _ in range(samples):
            eps = torch.randn(x1.shape[1:], generator=generator, dtype=torch.float32).to(x1.device, x1.dtype)
            a = (x1 + sigma * eps).requires_grad_(True)
            b = (x2 + sigma * eps).requires_grad_(True)
            score = model.similarity(model.embed(a), model.embed(b))
            score.sum().backward()
            g1 += a.grad
            g2 += b.grad
            model.zero_grad()
        return saliency_map(x1, g1 / samples), saliency_map(x2, g2 / samples)


def naive_averaged_transforms(model, x1, x2, steps: int, seed: int):
    """One pair; the transform settings are drawn as the library draws a pair's (first, from a CPU generator
    seeded with the pair's seed, then moved to the device)."""
    with parameters_requiring_grad(model):
        generator = torch.Generator().manual_seed(seed)
        transform = get_transform("combine")
        settings = {k: v.to(x1.device) for k, v in transform.sample(1, generator=generator).items()}
        with torch.no_grad():
            target = in_model_space(transform, x2, settings, 1.0, model.preprocessing)
        g1, g2 = torch.zeros_like(x1), torch.zeros_like(x2)
        for k in range(1, steps + 1):
            fraction = torch.tensor(k / steps, dtype=x2.dtype, device=x2.device)  # λ_k = 1 − k/K
            a = x1.clone().requires_grad_(True)  # the clean image, re-embedded at every step
            m = (
                (target if k == steps else (1 - fraction) * x2 + fraction * target)
                .clone()
                .requires_grad_(True)
            )
            score = model.similarity(model.embed(a), model.embed(m))
            score.sum().backward()
            g1 += a.grad
            g2 += m.grad
            model.zero_grad()
        return saliency_map(x1, g1 / steps), saliency_map(target, g2 / steps)


# ------------------------------------------------------------------------------------------------ main
def compare(name, model, x1, ours_fn, naive_fn, passes, repeats, batch_size):
    clock = time.perf_counter if x1.device.type == "cuda" else cpu_clock
    # Time the passes just before and just after the runs and average them.
    single = [one_pass_seconds(model, x1, repeats, 1, clock)]
    batched = [one_pass_seconds(model, x1, repeats, batch_size, clock)]
    load = [os.getloadavg()[0]]
    wall_start = time.perf_counter()
    naive, naive_s = timed(naive_fn, x1.device, clock)
    naive_wall = time.perf_counter() - wall_start
    ours, ours_s = timed(ours_fn, x1.device, clock)
    ours_wall = time.perf_counter() - wall_start - naive_wall
    load.append(os.getloadavg()[0])
    single.append(one_pass_seconds(model, x1, repeats, 1, clock))
    batched.append(one_pass_seconds(model, x1, repeats, batch_size, clock))
    single_s, batched_s = statistics.mean(single), statistics.mean(batched)
    diff = max((ours.map1 - naive[0]).abs().max().item(), (ours.map2 - naive[1]).abs().max().item())
    scale = max(naive[0].abs().max().item(), naive[1].abs().max().item())
    row = {
        "method": name,
        "clock": "wall" if clock is time.perf_counter else "process CPU time",
        "naive_s": naive_s,
        "simexplain_s": ours_s,
        "speedup": naive_s / ours_s,
        "naive_wall_s": naive_wall,
        "simexplain_wall_s": ours_wall,
        "wall_speedup": naive_wall / ours_wall,
        "minimal_passes": passes,
        "one_pass_s": single_s,
        "one_pass_in_batch_s": batched_s,
        "efficiency": passes * batched_s / ours_s,
        "efficiency_vs_single_image_pass": passes * single_s / ours_s,
        "naive_efficiency": passes * single_s / naive_s,
        "max_abs_diff": diff,
        "max_abs_map": scale,
        "relative_diff": diff / scale,
        "load_average_before_after": load,
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 samples, 3 steps")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward for simexplain (default: the library's)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    samples = args.samples or (6 if args.quick else 50)
    steps = args.steps or (3 if args.quick else 10)
    device = torch.device(args.device)
    args.batch_size = resolve_batch_size(args.batch_size, device)
    load_start = os.getloadavg()
    model, x1, x2 = build(device)
    repeats = 3
    rows = [
        compare(
            "smooth-grad",
            model,
            x1,
            lambda: simexplain.explain(
                model, x1, x2, "smooth-grad", samples=samples, seed=0, batch_size=args.batch_size
            ),
            lambda: naive_smooth_grad(model, x1, x2, samples, seed=0),
            2 * samples,
            repeats,
            args.batch_size,
        ),
        compare(
            "averaged-transforms",
            model,
            x1,
            lambda: simexplain.explain(
                model, x1, x2, "averaged-transforms", steps=steps, seed=0, batch_size=args.batch_size
            ),
            lambda: naive_averaged_transforms(model, x1, x2, steps, seed=0),
            steps + 1,
            repeats,
            args.batch_size,
        ),
    ]
    load_end = os.getloadavg()
    info = {
        "command": shlex.join(["benchmarks/bench_saliency.py", *sys.argv[1:]]),
        "samples": samples,
        "steps": steps,
        "batch_size": args.batch_size,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": "torchvision resnet50, random weights",
        "input": "224×224, chelsea.jpg and one SimCLR view of it",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_start": list(load_start),
        "load_average_end": list(load_end),
        "note": "CPU timings on a 2-core machine shared with other jobs: absolute times are noisy, "
        "ratios are side by side",
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS / f"saliency{suffix}.json").write_text(json.dumps({"info": info, "results": rows}, indent=2))
    lines = [
        "# Saliency benchmark (Smooth-Grad, Averaged Transforms)",
        "",
        (
            f"`.venv/bin/python {info['command']}` — {info['date']}, {info['device']} ({info['threads']} "
            f"threads), torch {info['torch']}, {info['model']}, {info['input']}; simexplain batch size "
            f"{args.batch_size}."
        ),
        "",
        (
            f"Note: {info['note']}. Load average (1/5/15 min) at start "
            f"{'/'.join(f'{v:.1f}' for v in load_start)}, at end {'/'.join(f'{v:.1f}' for v in load_end)}."
        ),
        "",
        (
            "| method | naive (s) | simexplain (s) | speed-up | wall-clock speed-up | minimal passes | one "
            "pass: alone / in a batch (s) | efficiency (batched pass) | efficiency (single pass) | naive "
            "efficiency | max abs diff (max map) | load |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['naive_s']:.2f} | {r['simexplain_s']:.2f} | {r['speedup']:.2f}× | "
            f"{r['wall_speedup']:.2f}× | {r['minimal_passes']} | {r['one_pass_s']:.3f} / "
            f"{r['one_pass_in_batch_s']:.3f} | {r['efficiency']:.2f} | "
            f"{r['efficiency_vs_single_image_pass']:.2f} | {r['naive_efficiency']:.2f} | "
            f"{r['max_abs_diff']:.1e} ({r['max_abs_map']:.1e}) | {r['load_average_before_after'][0]:.1f} → "
            f"{r['load_average_before_after'][1]:.1f} |"
        )
    lines += [
        "",
        f"Times are {rows[0]['clock']} seconds (on a CPU: CPU seconds of this process, all threads, which "
        "other",
        "jobs' load inflates far less than wall time; the wall-clock speed-up is shown too).",
        f"Smooth-Grad: {samples} samples; Averaged Transforms: {steps} steps, blend mode, `combine` "
        "transform.",
        "One pass = forward + input-gradient backward of one 224² image with frozen parameters, timed alone "
        "(batch 1)",
        f"and per image inside a batch of {args.batch_size} (the batch simexplain uses), before and after "
        "the runs.",
        (
            f"Here an image cost {min(r['one_pass_s'] / r['one_pass_in_batch_s'] for r in rows):.1f}–"
            f"{max(r['one_pass_s'] / r['one_pass_in_batch_s'] for r in rows):.1f}× as much alone as inside a "
            "batch; the"
        ),
        "single-pass efficiency exceeds the batched-pass one by that factor (batching's share of the "
        "speed-up), and the",
        "batched-pass efficiency says how close simexplain is to the minimal work. The naive loop runs one "
        "image per",
        "forward, so its efficiency uses the single pass. Load = 1-minute load average of the machine.",
    ]
    (RESULTS / f"saliency{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
