"""The inference engines against eager PyTorch on this CPU (docs/engine.md), in one process per mode.

Modes (each writes its section of ``benchmarks/results/engine.json``; ``engine.md`` is made from all of them):

- ``forward``: ms per image of each engine for the default model (EfficientNet-Lite0), ResNet-50 and ViT-S/16
  (random weights) at batch 1, 8 and 32 with 1 and 2 threads, engines alternating in rounds; and each
  engine's one-off cost (export + build + probe) with an empty graph cache and with the graph on disk.
- ``compile``: ``torch.compile``'s one-off compile and speed on the default model, beside torch and
  onnxruntime.
- ``threshold``: the one-off cost against the per-image saving for encoders from the test suite's size up to
  ResNet-18: where ``auto``'s parameter threshold comes from.
- ``table``: the paper's full table for one bundled pair (17 variants × SI SD CI CD SAD CAD at step 224, the
  evaluation driver exactly as ``simexplain evaluate --pairs demo --methods all --metrics all --limit 1``) per
  engine, engines alternating in one process: pairs per hour and the largest difference of any value.
- ``drift``: SI–CAD with bf16 autocast against fp32 on the default model (same maps).
- ``overhead``: the evaluation driver against direct calls (``bench_driver.py overhead``) with the default
  engine.

Usage:
    python benchmarks/bench_engine.py forward [--quick]
    python benchmarks/bench_engine.py compile
    python benchmarks/bench_engine.py threshold
    python benchmarks/bench_engine.py table [--models default,resnet50] [--engines torch,onnxruntime,openvino]
        [--variants all]
    python benchmarks/bench_engine.py drift [--pairs 2]
    python benchmarks/bench_engine.py overhead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

import simexplain
from simexplain import engines, metrics
from simexplain.studies import Evaluation, Store, evaluate_pairs, load_pairs, parse_variants

RESULTS = Path(__file__).resolve().parent / "results"
SIX = ["SI", "SD", "CI", "CD", "SAD", "CAD"]
ENGINES = [name for name in ("torch", "onnxruntime", "openvino") if engines.registry.installed(name)]


# ---- models
def default_model(engine: str = "torch") -> simexplain.PairModel:
    return simexplain.load_model("efficientnet-lite0", engine=engine)


def resnet50_model(engine: str = "torch") -> simexplain.PairModel:
    torch.manual_seed(0)
    network = torchvision.models.resnet50(weights=None)
    network.fc = nn.Identity()  # embedding = pooled 2048-d features
    return simexplain.PairModel(
        network.eval(),
        layer="layer4",
        preprocessing=simexplain.IMAGENET,
        name="resnet50-random",
        engine=engine,
    )


def vit_s16_model(engine: str = "torch") -> simexplain.PairModel:
    torch.manual_seed(0)
    network = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    layout = simexplain.TokenLayout(patch_size=16, prefix_tokens=1)
    return simexplain.PairModel(
        network.eval(), layer="blocks.11", token_layout=layout, name="vit-s16-random", engine=engine
    )


MODELS = {"default": default_model, "resnet50": resnet50_model, "vit-s16": vit_s16_model}


def twins(build, names: list[str]) -> dict[str, simexplain.PairModel]:
    """One PairModel per engine around ONE encoder (each model keeps its own runners)."""
    first = build(names[0])
    models = {names[0]: first}
    for name in names[1:]:
        models[name] = simexplain.PairModel(first.encoder, name=first.name, engine=name)
    return models


def embed_seconds(model: simexplain.PairModel, x: torch.Tensor, calls: int = 2) -> float:
    """The quickest of ``calls`` gradient-free forwards of ``x``, in seconds."""
    times = []
    with torch.inference_mode():
        for _ in range(calls):
            started = time.perf_counter()
            model.embed(x)
            times.append(time.perf_counter() - started)
    return min(times)


# ---- forward
def setup_seconds(model: simexplain.PairModel, x: torch.Tensor) -> float:
    """The first call's cost beyond a steady call: export (or graph load), build, probe."""
    with torch.inference_mode():
        started = time.perf_counter()
        model.embed(x)
        first = time.perf_counter() - started
    return first - embed_seconds(model, x)


def forward(args: argparse.Namespace) -> dict:
    batches, threads_list = ((1, 8), (1,)) if args.quick else ((1, 8, 32), (1, 2))
    rows, setups = [], {}
    for model_name in args.models.split(","):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["SIMEXPLAIN_CACHE"] = cache  # an empty graph cache: the export is counted
            torch.set_num_threads(1)
            models = twins(MODELS[model_name], args.engines.split(","))
            x8 = torch.rand(8, 3, 224, 224)
            setups[model_name] = {name: {"cold_s": setup_seconds(m, x8)} for name, m in models.items()}
            again = twins(lambda e: models["torch"], list(models))  # new runners, graphs on disk
            for name, model in again.items():
                setups[model_name][name]["graph_on_disk_s"] = setup_seconds(model, x8)
            for threads in threads_list:
                torch.set_num_threads(threads)
                for batch in batches:
                    rows.append(_forward_row(model_name, models, threads, batch, args.rounds))
                    print(json.dumps(rows[-1]), flush=True)
    torch.set_num_threads(2)
    return {"rows": rows, "setup": setups, "rounds": args.rounds}


def _forward_row(model_name: str, models: dict, threads: int, batch: int, rounds: int) -> dict:
    x = torch.rand(batch, 3, 224, 224)
    for model in models.values():
        embed_seconds(model, x, calls=1)  # build the runner of this kind (threads, batch shape) first
    times = {name: [] for name in models}
    names = list(models)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # alternate who goes first
            times[name].append(embed_seconds(models[name], x))
    ms = {name: 1000 * statistics.median(t) / batch for name, t in times.items()}
    with torch.inference_mode():
        reference = models["torch"].embed(x)
        gaps = {
            n: float((m.embed(x) - reference).abs().max() / reference.abs().max()) for n, m in models.items()
        }
    return {"model": model_name, "threads": threads, "batch": batch, "ms_per_image": ms, "max_relative": gaps}


def compile_mode(args: argparse.Namespace) -> dict:
    """``compile`` on the default model: its one-off compile and its speed beside torch and onnxruntime."""
    torch.set_num_threads(1)
    models = twins(default_model, ["torch", "onnxruntime", "compile"])
    x = torch.rand(8, 3, 224, 224)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SIMEXPLAIN_CACHE"] = cache
        setup = {name: setup_seconds(model, x) for name, model in models.items()}
    row = _forward_row("default", models, 1, 8, args.rounds)
    return {"setup_s": setup, "row": row}


# ---- threshold
class SuiteCNN(nn.Module):
    """The test suite's SmallCNN (tests/tiny.py) rebuilt: conv-relu-conv-relu, pooled, a 2-layer head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def headless(network: nn.Module, head: str) -> nn.Module:
    setattr(network, head, nn.Identity())
    return network.eval()


def encoders_by_size() -> list[tuple[str, nn.Module, int]]:
    torch.manual_seed(0)
    return [
        ("test suite SmallCNN, 32 px", SuiteCNN(), 32),
        ("test suite SmallCNN, 224 px", SuiteCNN(), 224),
        (
            "MobileNetV3-Small ×0.5",
            headless(torchvision.models.mobilenet_v3_small(width_mult=0.5), "classifier"),
            224,
        ),
        ("MobileNetV3-Small", headless(torchvision.models.mobilenet_v3_small(), "classifier"), 224),
        ("ResNet-18", headless(torchvision.models.resnet18(), "fc"), 224),
    ]


def threshold(args: argparse.Namespace) -> dict:
    rows = []
    engine = next(name for name in engines.registry.AUTO_ORDER["cpu"] if engines.registry.installed(name))
    torch.set_num_threads(1)
    for label, encoder, size in encoders_by_size():
        with tempfile.TemporaryDirectory() as cache:
            os.environ["SIMEXPLAIN_CACHE"] = cache
            eager = simexplain.PairModel(encoder, engine="torch")
            fast = simexplain.PairModel(encoder, engine=engine)
            x = torch.rand(8, 3, size, size)
            setup = setup_seconds(fast, x)
            ms = {name: 1000 * embed_seconds(m, x, 3) / 8 for name, m in (("torch", eager), (engine, fast))}
        saving = (ms["torch"] - ms[engine]) / 1000
        rows.append(
            {
                "encoder": label,
                "parameters": sum(p.numel() for p in encoder.parameters()),
                "input": size,
                "setup_s": setup,
                "ms_per_image": ms,
                "break_even_images": setup / saving if saving > 0 else None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {"engine": engine, "rows": rows, "auto_min_parameters": engines.AUTO_MIN_PARAMETERS}


# ---- table
def table(args: argparse.Namespace) -> dict:
    specs = load_pairs("demo", limit=args.pairs)
    out = {}
    for model_name in args.models.split(","):
        names = args.engines.split(",")
        runs = {name: [] for name in names}
        loads = {name: [] for name in names}
        values = {}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                before = os.getloadavg()[0]
                seconds, stored, label = _table_run(MODELS[model_name](name), specs, args.variants)
                runs[name].append(seconds)
                loads[name].append((before, os.getloadavg()[0]))
                values.setdefault(name, stored)
                print(json.dumps({"model": model_name, "engine": label, "seconds": seconds}), flush=True)
        out[model_name] = _table_summary(runs, values, len(specs))
        for name, summary in out[model_name].items():
            summary["load_1min_before_after"] = loads[name]
        out[model_name] = {
            "engines": out[model_name],
            "pairs": len(specs),
            "threads": args.threads,
            "variants": args.variants,
        }
        out[model_name] |= {
            "command": " ".join(["python", *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
    return {"models": out}


def _table_run(model: simexplain.PairModel, specs, variants: str = "all") -> tuple[float, dict, str]:
    run = Evaluation(model, parse_variants(variants), metrics.resolve_metrics("all"))
    with tempfile.TemporaryDirectory() as folder:
        os.environ["SIMEXPLAIN_CACHE"] = folder  # the export is part of the run's cost
        started = time.perf_counter()
        summary = evaluate_pairs(run, specs, Path(folder) / "r.sqlite", progress=False)
        seconds = time.perf_counter() - started
        assert summary.failed == 0, summary.errors
        with Store(Path(folder) / "r.sqlite", readonly=True) as store:
            stored = {(p, v, m): value for p, v, m, value in store.metric_rows() if m in SIX}
            label = store.items()[0].engine
    return seconds, stored, label


def _table_summary(runs: dict, values: dict, pairs: int) -> dict:
    torch_s = statistics.median(runs["torch"])
    summary = {}
    for name, seconds in runs.items():
        gap = max_relative(values[name], values["torch"])
        median = statistics.median(seconds)
        summary[name] = {
            "seconds": seconds,
            "pairs_per_hour": 3600 * pairs / median,
            "speedup": torch_s / median,
            "max_relative_difference": gap,
        }
    return summary


def max_relative(got: dict, reference: dict) -> float:
    """Largest ``|a − b| / max(|b|, 0.01)`` over the stored values (a value near 0 is a difference of nearly
    equal scores, compared at 1e-6 absolute)."""
    gaps = [
        abs(got[key] - value) / max(abs(value), 0.01)
        for key, value in reference.items()
        if value is not None and got.get(key) is not None
    ]
    return max(gaps, default=0.0)


# ---- drift
DRIFT_VARIANTS = "input-x-gradient,interaction-cam,conditional-occlusion,pairwise-occlusion"


def drift(args: argparse.Namespace) -> dict:
    model = default_model("torch")
    specs = load_pairs("demo", limit=args.pairs)
    from simexplain.studies import pair_images

    pairs = [pair_images(spec, model) for spec in specs]
    x1, x2 = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    out = {}
    for variant in parse_variants(DRIFT_VARIANTS):
        params = dict(variant.params)
        if "seed" in simexplain.methods.get(variant.method).parameters():
            params["seed"] = 0
        e = simexplain.explain(model, x1, x2, variant.method, **params)
        values = {}
        for precision in ("fp32", "bf16"):
            model.precision = precision
            started = time.perf_counter()
            values[precision] = metrics.evaluate(model, x1, x2, e, SIX)
            values[f"{precision}_s"] = time.perf_counter() - started
        model.precision = "fp32"
        out[variant.label] = {
            name: float((values["bf16"][name] - values["fp32"][name]).abs().max()) for name in SIX
        } | {"fp32_s": values["fp32_s"], "bf16_s": values["bf16_s"]}
        print(variant.label, json.dumps(out[variant.label]), flush=True)
    worst = {name: max(v[name] for v in out.values()) for name in SIX}
    return {"pairs": len(specs), "variants": out, "max_abs": worst}


# ---- overhead
def overhead(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_driver

    driver_args = argparse.Namespace(pairs=args.pairs or 3, rounds=args.rounds)
    result = bench_driver.overhead(driver_args)
    result["engine"] = engines.describe(default_model("auto"))["label"]
    return result


# ---- report
def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": "cpu (no GPU lent to this session)",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "engines": {name: engines.registry.runtime_version(name) for name in ENGINES},
    }


def _header(title: str, result: dict) -> list[str]:
    before, after = ("/".join(f"{v:.1f}" for v in result["load_average"][k]) for k in ("before", "after"))
    return [
        f"## {title}",
        "",
        f"`{result['command']}`, {result['date']}, {result['seconds']:.0f} s; load average (1/5/15 min) "
        f"{before} before, {after} after (2 cores shared with other jobs).",
        "",
    ]


def _forward_md(result: dict) -> list[str]:
    lines = _header("Forward passes: ms per image (median of alternating rounds)", result)
    names = list(result["rows"][0]["ms_per_image"])
    lines += ["| model | threads | batch | " + " | ".join(names) + " | best vs torch | max relative diff |"]
    lines += ["| --- | ---: | ---: | " + " | ".join("---:" for _ in names) + " | ---: | ---: |"]
    for row in result["rows"]:
        ms = row["ms_per_image"]
        best = min((n for n in names if n != "torch"), key=ms.get, default="torch")
        cells = " | ".join(f"{ms[n]:.1f}" for n in names)
        gap = max(v for n, v in row["max_relative"].items() if n != "torch")
        lines.append(
            f"| {row['model']} | {row['threads']} | {row['batch']} | {cells} | "
            f"{ms['torch'] / ms[best]:.2f}× ({best}) | {gap:.1e} |"
        )
    lines += ["", "One-off cost of the first forward (seconds; 1 thread, batch 8):", ""]
    lines += ["| model | " + " | ".join(f"{n}: empty cache / graph on disk" for n in names) + " |"]
    lines += ["| --- | " + " | ".join("---:" for _ in names) + " |"]
    for model, setup in result["setup"].items():
        cells = " | ".join(f"{setup[n]['cold_s']:.2f} / {setup[n]['graph_on_disk_s']:.2f}" for n in names)
        lines.append(f"| {model} | {cells} |")
    return lines + [""]


def _compile_md(result: dict) -> list[str]:
    lines = _header("torch.compile on this CPU (default model, 1 thread, batch 8)", result)
    ms, setup = result["row"]["ms_per_image"], result["setup_s"]
    lines += ["| engine | one-off s (compile / export + probe) | ms per image |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {setup[name]:.1f} | {ms[name]:.1f} |" for name in ms]
    return lines + [""]


def _threshold_md(result: dict) -> list[str]:
    lines = _header(f"When an export pays ({result['engine']}, 1 thread, batch 8)", result)
    lines += [
        "| encoder | parameters | input | one-off s | torch ms/img | engine ms/img | break-even images |"
    ]
    lines += ["| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["rows"]:
        ms = list(row["ms_per_image"].values())
        even = "never" if row["break_even_images"] is None else f"{row['break_even_images']:.0f}"
        lines.append(
            f"| {row['encoder']} | {row['parameters']:,} | {row['input']} | {row['setup_s']:.2f} | "
            f"{ms[0]:.2f} | {ms[1]:.2f} | {even} |"
        )
    lines += ["", f"`auto` exports from {result['auto_min_parameters']:,} parameters up.", ""]
    return lines


def _table_md(result: dict) -> list[str]:
    lines = [
        "## The full table for one bundled pair (17 variants × six metrics, step 224)",
        "",
        "The evaluation driver as `simexplain evaluate --pairs demo --methods all --metrics all --limit 1`, "
        "batch 8, each engine's export counted, engines alternating in one process. A model measured on "
        "fewer variants (`--variants`) names them; its pairs per hour are those of that part of the table.",
        "",
        "| model | engine | seconds per run | pairs per hour | speedup | max relative diff. | load (1 min) |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for model, entry in result["models"].items():
        variants = entry.get("variants", "all")
        model = model if variants == "all" else f"{model} ({variants})"
        for name, run in entry["engines"].items():
            seconds = ", ".join(f"{s:.0f}" for s in run["seconds"])
            load = ", ".join(f"{a:.1f}→{b:.1f}" for a, b in run["load_1min_before_after"])
            lines.append(
                f"| {model} | {name} | {seconds} | {run['pairs_per_hour']:.1f} | {run['speedup']:.2f}× | "
                f"{run['max_relative_difference']:.1e} | {load} |"
            )
    lines += ["", "Relative difference: |a − b| / max(|b|, 0.01) over every stored SI–CAD value. Runs:", ""]
    lines += [
        f"- {m}: `{e['command']}`, {e['date']}, {e['threads']} thread{'s' * (e['threads'] > 1)}"
        for m, e in result["models"].items()
    ]
    return lines + [""]


def _drift_md(result: dict) -> list[str]:
    lines = _header(
        f"bf16 against fp32 on the default model ({result['pairs']} bundled pairs, same maps)", result
    )
    lines += ["| variant | " + " | ".join(SIX) + " | fp32 s | bf16 s |"]
    lines += ["| --- | " + " | ".join("---:" for _ in SIX) + " | ---: | ---: |"]
    for label, row in result["variants"].items():
        cells = " | ".join(f"{row[n]:.1e}" for n in SIX)
        lines.append(f"| {label} | {cells} | {row['fp32_s']:.0f} | {row['bf16_s']:.0f} |")
    worst = " | ".join(f"**{result['max_abs'][n]:.1e}**" for n in SIX)
    return lines + [f"| largest absolute drift | {worst} | | |", ""]


def _overhead_md(result: dict) -> list[str]:
    lines = _header(f"Driver overhead with the engine ({result['engine']})", result)
    return lines + [
        f"{result['pairs']} bundled pairs × {len(result['variants'])} variants, metrics "
        f"{', '.join(result['metrics'])} at step {result['step']}, batch size 1: direct calls "
        f"{result['direct_s']:.1f} s, driver {result['driver_s']:.1f} s: "
        f"**{100 * result['overhead']:+.1f}%** (target ≤ 5%).",
        "",
    ]


def markdown(everything: dict) -> str:
    machine = next(iter(everything.values()))["machine"]
    lines = ["# Inference engines on this CPU", "", f"Machine: {machine}", ""]
    for mode in ("table", "forward", "compile", "threshold", "drift", "overhead"):
        if mode in everything:
            lines += globals()[f"_{mode}_md"](everything[mode])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["forward", "compile", "threshold", "table", "drift", "overhead"])
    parser.add_argument("--models", default=None)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--variants", default="all", help="table: the variants (all: the 17 rows)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (table, drift, overhead)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (not written to the results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # 1 by default: 2 threads on 2 shared cores stall on other jobs' load
    defaults = {"forward": ("default,resnet50,vit-s16", 3), "table": ("default,resnet50", 1)}
    args.models = args.models or defaults.get(args.mode, ("default", 1))[0]
    args.rounds = args.rounds or defaults.get(args.mode, ("", 2))[1]
    args.pairs = args.pairs or (2 if args.mode == "drift" else 1 if args.mode == "table" else None)
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = globals()["compile_mode" if args.mode == "compile" else args.mode](args)
    result |= {
        "seconds": time.perf_counter() - started,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.quick:
        print(json.dumps(result, indent=2))
        return
    path = RESULTS / "engine.json"
    everything = json.loads(path.read_text()) if path.is_file() else {}
    if args.mode == "table" and "table" in everything:  # one entry per model: a later run adds its models
        result["models"] = everything["table"]["models"] | result["models"]
    everything[args.mode] = result
    path.write_text(json.dumps(everything, indent=2) + "\n")
    (RESULTS / "engine.md").write_text(markdown(everything))
    print(markdown({args.mode: result}))


if __name__ == "__main__":
    main()
