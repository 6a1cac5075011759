"""Conditional and Pairwise Occlusion: simexplain vs the authors' scheme and a one-image-per-forward loop.

Three implementations of the same definition run side by side in one process, on one ResNet-50 (torchvision,
random weights, pooled 2048-d embedding) and one 224×224 pair, and their maps are checked to be equal:

- simexplain: ``simexplain.explain(...)``, chunks of ``--batch-size`` images, inference mode, clean
  embeddings once.
- (a) the authors' scheme: every occluded copy materialised up front, forwards of 32 images under ``no_grad``,
  the clean embeddings computed with autograd on (parameters requiring grad, as the authors left them).
- (b) one occluded image per forward; in Conditional Occlusion the clean partner is re-embedded for every
  window. Pairwise Occlusion has no clean partner: there (b) embeds each perturbed image in its own forward.
  On a CPU (b) is timed on an evenly spaced subset of windows/samples and extrapolated (stated in the
  results).

The baselines compute their own window offsets and draw their own rectangles (RandomErasing's rule written
out, from the library's per-pair draws: a CPU generator seeded with the pair's seed, image 1's rectangles
first), and the results say whether they equal the library's ``extras``.

Reported per method: seconds per pair, peak memory (resident set size above the level just before the run,
sampled every millisecond from /proc/self/statm, with glibc told to return large blocks at once; Linux only),
and efficiency = (minimal number of image forwards × time of one single-image forward) / measured time.

Usage:
    .venv/bin/python benchmarks/bench_occlusion.py          # full: 64/8 windows (441 per image), 100 samples
    .venv/bin/python benchmarks/bench_occlusion.py --quick  # stride 32 (36 windows), 20 samples
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

import simexplain
from simexplain.methods.occlusion import spans, windows_to_pixels

RESULTS = Path(__file__).parent / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------- measurement
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def configure_malloc() -> None:
    """Fixed 1 MiB mmap threshold: large tensors are mapped and unmapped, so RSS falls when they are freed."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD (setting it also disables glibc's dynamic threshold)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Peak resident set size above the level at entry, sampled by a thread every millisecond."""

    def __enter__(self) -> PeakRSS:  # noqa: PYI034
        gc.collect()
        libc = _libc()
        if libc is not None:
            libc.malloc_trim(0)
        self.base = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def one_forward_seconds(net: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median time of one forward of the batch ``x`` (a single image: the unit of the efficiency)."""
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_units(
    net: torch.nn.Module, x: torch.Tensor, batch_size: int, repeats: int
) -> tuple[float, float]:
    """(time of a single-image forward, per-image time of a forward of ``batch_size`` images), medians."""
    batch = x.expand(batch_size, -1, -1, -1).contiguous()
    return one_forward_seconds(net, x, repeats), one_forward_seconds(net, batch, repeats) / batch_size


def rows_for(
    minimal: int, units: list[tuple[float, float]], runs: dict[str, tuple[tuple[float, float], float]]
) -> dict:
    """Seconds, peak memory and both efficiencies of every implementation (units averaged over
    before/after)."""
    single = statistics.mean(u[0] for u in units)
    batched = statistics.mean(u[1] for u in units)
    out: dict = {"one_forward_s": single, "per_image_forward_at_batch_size_s": batched}
    for name, ((seconds, cpu), mib) in runs.items():
        out[name] = {
            "s_per_pair": seconds,
            "cpu_s_per_pair": cpu,
            "peak_mib": mib,
            "efficiency": minimal * single / seconds,
            "efficiency_at_batch_size": minimal * batched / seconds,
        }
    return out


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


# ---------------------------------------------------------------------------------------------- baselines
def naive_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one axis: every ``stride`` while the window fits, plus one flush with the far
    border when the stride does not reach it (checked against the library's ``extras["row_starts1"]``)."""
    starts = list(range(0, size - window + 1, stride))
    return starts if starts[-1] + window == size else [*starts, size - window]


def _windows(size: int, window: int, stride: int) -> list[tuple[int, int]]:
    starts = naive_starts(size, window, stride)
    return [(r, c) for r in starts for c in starts]


def _with_grad_params(net: torch.nn.Module) -> list[torch.nn.Parameter]:
    params = list(net.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def conditional_authors(net, x1, x2, window, stride, batch=32):
    """(a): all occluded copies of both images up front, forwards of 32, clean embeddings with autograd on."""
    params = _with_grad_params(net)
    try:
        z1, z2 = net(x1), net(x2)  # autograd on: the graph of both clean forwards stays alive
        score = cos(z1, z2)
        copies1, copies2 = [], []
        for r, c in _windows(x1.shape[-1], window, stride):
            a, b = x1.clone(), x2.clone()
            a[:, :, r : r + window, c : c + window] = 0
            b[:, :, r : r + window, c : c + window] = 0
            copies1.append(a)
            copies2.append(b)
        copies1, copies2 = torch.cat(copies1), torch.cat(copies2)
        s1, s2 = [], []
        for start in range(0, len(copies1), batch):
            with torch.no_grad():
                s1.append(cos(net(copies1[start : start + batch]), z2))
                s2.append(cos(z1, net(copies2[start : start + batch])))
        d1, d2 = (score - torch.cat(s1)).detach(), (score - torch.cat(s2)).detach()
    finally:
        for p in params:
            p.requires_grad_(False)
    return d1, d2


def conditional_one_by_one(net, x1, x2, window, stride, subset):
    """(b): one occluded image per forward, the clean partner re-embedded each time; windows ``subset``
    only."""
    windows = _windows(x1.shape[-1], window, stride)
    drops = {1: [], 2: []}
    with torch.no_grad():
        score = cos(net(x1), net(x2))
        for k in subset:
            r, c = windows[k]
            a = x1.clone()
            a[:, :, r : r + window, c : c + window] = 0
            drops[1].append(score - cos(net(a), net(x2)))
            b = x2.clone()
            b[:, :, r : r + window, c : c + window] = 0
            drops[2].append(score - cos(net(x1), net(b)))
    return torch.cat(drops[1]), torch.cat(drops[2])


def naive_rectangles(
    seed: int, samples: int, size: int, scale=(0.1, 0.3), ratio=(1.0, 1.5), tries: int = 10
) -> tuple[list[list[int]], list[list[int]]]:
    """One pair's erased rectangles ``(top, left, height, width)`` for image 1 then image 2, RandomErasing's
    rule written out one rectangle at a time. The draws are the library's, in its order: one CPU generator
    seeded with the pair's seed; per image, ``2×N×tries`` float64 uniforms (area, log-aspect) then ``2×N``
    (corner)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        u = torch.rand(2, samples, tries, generator=generator, dtype=torch.float64).tolist()
        corner = torch.rand(2, samples, generator=generator, dtype=torch.float64).tolist()
        boxes = []
        for n in range(samples):
            h = w = 0  # no try fits: an empty rectangle
            for t in range(tries):
                area = size * size * (scale[0] + (scale[1] - scale[0]) * u[0][n][t])
                aspect = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1][n][t])
                th, tw = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
                if th < size and tw < size:
                    h, w = th, tw
                    break
            top = min(math.floor(corner[0][n] * (size - h + 1)), size - h)
            left = min(math.floor(corner[1][n] * (size - w + 1)), size - w)
            boxes.append([top, left, h, w])
        out.append(boxes)
    return out[0], out[1]


def _erase(x: torch.Tensor, rect: list[int]) -> torch.Tensor:
    t, left, h, w = rect
    y = x.clone()
    y[:, :, t : t + h, left : left + w] = 0
    return y


def _pairwise_maps(drops, norm1, norm2, rects1, rects2, size):
    """Credit accumulated one rectangle at a time (the baselines' way), from the kept rectangles."""
    weights = torch.softmax(drops, 0)
    maps = torch.zeros(2, size, size)
    for n in range(len(drops)):
        side, (t, left, h, w) = (0, rects1[n]) if norm1[n] < norm2[n] else (1, rects2[n])
        maps[side, t : t + h, left : left + w] += weights[n]
    return maps / (maps.amax((1, 2), keepdim=True) + 1e-9)


def pairwise_authors(net, x1, x2, rects1, rects2, batch=32):
    """(a): all perturbed pairs up front, forwards of 32 per image, clean embeddings with autograd on."""
    params = _with_grad_params(net)
    try:
        z1, z2 = net(x1), net(x2)
        score = cos(z1, z2).detach()
        p1 = torch.cat([_erase(x1, r) for r in rects1])
        p2 = torch.cat([_erase(x2, r) for r in rects2])
        sims, n1, n2 = [], [], []
        for start in range(0, len(p1), batch):
            with torch.no_grad():
                a, b = net(p1[start : start + batch]), net(p2[start : start + batch])
                sims.append(cos(a, b))
                n1.append(a.norm(dim=-1))
                n2.append(b.norm(dim=-1))
    finally:
        for p in params:
            p.requires_grad_(False)
    drops = score - torch.cat(sims)
    return _pairwise_maps(drops, torch.cat(n1), torch.cat(n2), rects1, rects2, x1.shape[-1]), drops


def pairwise_one_by_one(net, x1, x2, rects1, rects2, subset):
    """(b): each perturbed image in its own forward; samples ``subset`` only."""
    drops = []
    with torch.no_grad():
        score = cos(net(x1), net(x2))
        for n in subset:
            drops.append(score - cos(net(_erase(x1, rects1[n])), net(_erase(x2, rects2[n]))))
    return torch.cat(drops)


# ---------------------------------------------------------------------------------------------- runs
def timed(fn):
    """Output, wall seconds, process CPU seconds (all threads; less sensitive to other jobs) and peak MiB."""
    with PeakRSS() as memory:
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return out, (seconds, cpu), memory.mib


def evenly(total: int, count: int) -> list[int]:
    count = min(total, count)
    return sorted({round(i * (total - 1) / max(1, count - 1)) for i in range(count)})


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    net.fc = torch.nn.Identity()  # embedding = pooled 2048-d features
    net.eval().requires_grad_(False)
    model = simexplain.PairModel(net, preprocessing=simexplain.IMAGENET, name="resnet50-random")
    x1, x2 = simexplain.load_images(
        simexplain.sample_path("chelsea.jpg"), simexplain.sample_path("coffee.jpg"), model
    )
    one = x1[:1]
    one_forward_seconds(net, one, 2)  # warm-up
    results: dict = {
        "settings": {
            "model": "torchvision resnet50, random weights (seed 0), pooled 2048-d embedding",
            "size": 224,
            "batch_size": args.batch_size,
            "window": args.window,
            "stride": args.stride,
            "samples": args.samples,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or "cpu",
            "load_average_start": os.getloadavg()[0],
            "memory": "peak RSS above the pre-run level, polled every 1 ms (/proc/self/statm), glibc mmap "
            "threshold fixed at 1 MiB and malloc_trim before each run",
        }
    }

    # ---------------- conditional occlusion
    positions = len(_windows(224, args.window, args.stride))
    minimal = 2 + 2 * positions
    before = forward_units(net, one, args.batch_size, args.repeats)
    ours, t_ours, m_ours = timed(
        lambda: simexplain.explain(
            model,
            x1,
            x2,
            "conditional-occlusion",
            window=args.window,
            stride=args.stride,
            batch_size=args.batch_size,
        )
    )
    (a1, a2), t_a, m_a = timed(lambda: conditional_authors(net, x1, x2, args.window, args.stride))
    subset = evenly(positions, args.b_windows)
    (b1, b2), t_b_sub, m_b = timed(
        lambda: conditional_one_by_one(net, x1, x2, args.window, args.stride, subset)
    )
    after = forward_units(net, one, args.batch_size, args.repeats)
    # (b) = 2 clean forwards + 4 forwards per window position; extrapolate its per-window cost to all windows.
    t_b = tuple(t * (2 + 4 * positions) / (2 + 4 * len(subset)) for t in t_b_sub)
    starts = naive_starts(224, args.window, args.stride)
    windows_equal = all(
        ours.extras[key][0].tolist() == starts for key in ("row_starts1", "col_starts1", "row_starts2")
    )
    rows = spans(torch.tensor(starts), args.window, 224)
    grid_a = torch.stack([a1, a2]).view(2, *ours.grid1.shape[-2:])
    pixels_a = windows_to_pixels(grid_a, rows, rows)
    ours_grid = torch.cat([ours.grid1, ours.grid2]).flatten(1)
    results["conditional"] = {
        "minimal_forwards": minimal,
        "windows_per_image": positions,
        "b_windows_timed": len(subset),
        "b_measured_s_on_subset": t_b_sub,
        **rows_for(
            minimal,
            [before, after],
            {"simexplain": (t_ours, m_ours), "authors_a": (t_a, m_a), "one_by_one_b": (t_b, m_b)},
        ),
        "window_starts_equal": windows_equal,
        "max_abs_drop": float(ours_grid.abs().max()),
        "max_rel_diff_vs_a_pixels": max(
            max_rel_diff(ours.map1[0], pixels_a[0]), max_rel_diff(ours.map2[0], pixels_a[1])
        ),
        "max_rel_diff_vs_b_grid": max_rel_diff(torch.stack([b1, b2]), ours_grid[:, subset]),
    }
    print(json.dumps(results["conditional"], indent=1), flush=True)

    # ---------------- pairwise occlusion
    minimal = 2 + 2 * args.samples
    before = forward_units(net, one, args.batch_size, args.repeats)
    pw, t_ours, m_ours = timed(
        lambda: simexplain.explain(
            model, x1, x2, "pairwise-occlusion", samples=args.samples, seed=0, batch_size=args.batch_size
        )
    )
    # The baselines draw their own rectangles (the library's per-pair draws, written out) and check them.
    rects1, rects2 = naive_rectangles(0, args.samples, 224, pw.config["scale"], pw.config["ratio"])
    drops = pw.extras["drops"][0]
    (maps_a, drops_a), t_a, m_a = timed(lambda: pairwise_authors(net, x1, x2, rects1, rects2))
    subset = evenly(args.samples, args.b_samples)
    drops_b, t_b_sub, m_b = timed(lambda: pairwise_one_by_one(net, x1, x2, rects1, rects2, subset))
    after = forward_units(net, one, args.batch_size, args.repeats)
    t_b = tuple(t * (2 + 2 * args.samples) / (2 + 2 * len(subset)) for t in t_b_sub)
    results["pairwise"] = {
        "minimal_forwards": minimal,
        "b_samples_timed": len(subset),
        "b_measured_s_on_subset": t_b_sub,
        **rows_for(
            minimal,
            [before, after],
            {"simexplain": (t_ours, m_ours), "authors_a": (t_a, m_a), "one_by_one_b": (t_b, m_b)},
        ),
        "rectangles_equal": pw.extras["rectangles1"][0].tolist() == rects1
        and pw.extras["rectangles2"][0].tolist() == rects2,
        "max_abs_drop": float(drops.abs().max()),
        "max_rel_diff_vs_a_maps": max(
            max_rel_diff(pw.map1[0], maps_a[0]), max_rel_diff(pw.map2[0], maps_a[1])
        ),
        "max_rel_diff_vs_a_drops": max_rel_diff(drops, drops_a),
        "max_rel_diff_vs_b_drops": max_rel_diff(drops_b, drops[subset]),
    }
    print(json.dumps(results["pairwise"], indent=1), flush=True)
    results["settings"]["load_average_end"] = os.getloadavg()[0]
    return results


def interleaved(args: argparse.Namespace) -> str:
    """Conditional Occlusion, simexplain and (a) alternating ``--rounds`` times in one process (load drifts
    on a shared machine; alternating exposes both to the same conditions). Returns a Markdown section."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    net.fc = torch.nn.Identity()
    net.eval().requires_grad_(False)
    model = simexplain.PairModel(net, preprocessing=simexplain.IMAGENET)
    x1, x2 = simexplain.load_images(
        simexplain.sample_path("chelsea.jpg"), simexplain.sample_path("coffee.jpg"), model
    )
    lines = [
        f"## Interleaved check: Conditional Occlusion 64/{args.stride}, {args.rounds} alternating rounds",
        "",
        "| round | simexplain batch | simexplain s | simexplain MiB | (a) s | (a) MiB | (a) / simexplain "
        "time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for batch_size in args.interleave:
        for r in range(args.rounds):
            _, (t_ours, _), m_ours = timed(
                lambda size=batch_size: simexplain.explain(
                    model,
                    x1,
                    x2,
                    "conditional-occlusion",
                    window=args.window,
                    stride=args.stride,
                    batch_size=size,
                )
            )
            _, (t_a, _), m_a = timed(lambda: conditional_authors(net, x1, x2, args.window, args.stride))
            lines.append(
                f"| {r + 1} | {batch_size} | {t_ours:.1f} | {m_ours:.0f} | {t_a:.1f} | {m_a:.0f} | "
                f"{t_a / t_ours:.2f}× |"
            )
            print(lines[-1], flush=True)
    return "\n".join([*lines, ""])


def markdown(results: dict, command: str) -> str:
    s = results["settings"]
    lines = [
        "# Occlusion benchmark",
        "",
        f"Command: `{command}`",
        "",
        (
            f"Model: {s['model']}; one 224×224 pair (chelsea / coffee); simexplain batch_size "
            f"{s['batch_size']}; torch {s['torch']}, {s['threads']} threads. **Shared 2-core CPU** (other "
            f"jobs ran at the same time; load average {s['load_average_start']:.1f} at start, "
            f"{s['load_average_end']:.1f} at end): absolute times are noisy, the ratios were measured side "
            "by side in one process."
        ),
        "",
        f"Peak memory: {s['memory']}.",
        "",
    ]
    for key, title in (
        ("conditional", f"Conditional Occlusion (window {s['window']}, stride {s['stride']})"),
        ("pairwise", f"Pairwise Occlusion ({s['samples']} samples)"),
    ):
        r = results[key]
        subset = r.get("b_windows_timed", r.get("b_samples_timed"))
        unit = "windows per image" if key == "conditional" else "samples"
        lines += [
            f"## {title}",
            "",
            (
                f"Minimal forwards: {r['minimal_forwards']} images; one single-image forward: "
                f"{r['one_forward_s']:.3f} s; per image in a forward of {s['batch_size']}: "
                f"{r['per_image_forward_at_batch_size_s']:.3f} s (medians, measured before and after the "
                f"three runs). (b) timed on {subset} {unit} and extrapolated linearly."
            ),
            "",
            (
                "Efficiency = minimal forwards × time of one single-image forward / measured time (the "
                "issue's definition); the next column uses the per-image time of a forward of "
                f"{s['batch_size']} images as the unit instead, i.e. how much of the run is model compute at "
                "that batch size."
            ),
            "",
            (
                "| implementation | s / pair | CPU s / pair | peak MiB | efficiency | efficiency (batched "
                "unit) | time vs simexplain | CPU time vs simexplain | simexplain's memory share |"
            ),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        ours = r["simexplain"]
        for name, label in (
            ("simexplain", "simexplain"),
            ("authors_a", "(a) authors' scheme"),
            ("one_by_one_b", "(b) one image per forward"),
        ):
            row = r[name]
            lines.append(
                f"| {label} | {row['s_per_pair']:.1f} | {row['cpu_s_per_pair']:.1f} | {row['peak_mib']:.0f} "
                f"| {row['efficiency']:.2f} | {row['efficiency_at_batch_size']:.2f} | "
                f"{row['s_per_pair'] / ours['s_per_pair']:.2f}× | "
                f"{row['cpu_s_per_pair'] / ours['cpu_s_per_pair']:.2f}× | "
                f"{ours['peak_mib'] / max(row['peak_mib'], 1e-9):.2f} |"
            )
        diffs = {k: v for k, v in r.items() if k.startswith("max_rel_diff")}
        same = {k: v for k, v in r.items() if k.endswith("_equal")}
        lines += [
            "",
            "Equal maps: "
            + ", ".join(f"{k} = {v:.1e}" for k, v in diffs.items())
            + f" (largest drop {r['max_abs_drop']:.1e}; float32, different batch compositions); "
            + ", ".join(f"{k}: {'yes' if v else '**NO**'}" for k, v in same.items())
            + " (the baselines' own windows / rectangles against the library's extras).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stride 32 and 20 samples")
    parser.add_argument("--batch-size", type=int, default=8, help="simexplain images per forward")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--b-windows", type=int, default=None, help="windows per image timed for (b)")
    parser.add_argument("--b-samples", type=int, default=None, help="samples timed for (b)")
    parser.add_argument(
        "--interleave",
        type=int,
        nargs="+",
        default=None,
        metavar="BATCH",
        help="only alternate simexplain (at these batch sizes) and (a) on Conditional Occlusion",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds for --interleave")
    parser.add_argument(
        "--repeats", type=int, default=3, help="single-image forwards per timing of one forward"
    )
    args = parser.parse_args()
    args.stride = args.stride or (32 if args.quick else 8)
    args.samples = args.samples or (20 if args.quick else 100)
    args.b_windows = args.b_windows or (12 if args.quick else 16)
    args.b_samples = args.b_samples or 10
    configure_malloc()
    if args.interleave:
        load_start = os.getloadavg()[0]
        section = interleaved(args)
        load = f"Load average (1 min): {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end."
        command = (
            f"python benchmarks/bench_occlusion.py --quick --interleave {' '.join(map(str, args.interleave))}"
        )
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "occlusion_interleaved.md").write_text(
            f"Command: `{command} --rounds {args.rounds}`\n\n{load}\n\n{section}"
        )
        print(section)
        return
    results = run(args)
    RESULTS.mkdir(exist_ok=True)
    name = "occlusion_quick" if args.quick else "occlusion"
    command = "python benchmarks/bench_occlusion.py" + (" --quick" if args.quick else "")
    extra = [f"--{k.replace('_', '-')} {v}" for k, v in (("batch_size", args.batch_size),) if v != 8]
    command += "".join(" " + e for e in extra)
    results["command"] = command
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1))
    (RESULTS / f"{name}.md").write_text(markdown(results, command))
    print(markdown(results, command))


if __name__ == "__main__":
    main()
