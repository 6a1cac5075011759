"""One command for a machine with one CUDA GPU: engines × precisions, method families, the full table.

In under 8 minutes on one GPU it measures

- forward images per second for each engine × precision (``torch`` fp32/bf16/fp16; ``compile`` with CUDA
  graphs, fp32/bf16, while the time budget lasts; ``onnxruntime`` when it has a CUDA provider) on the default
  model, ResNet-50 and ViT-B/16 (random weights) at batch 64 and 256, with the largest relative difference
  to torch fp32;
- each built-in method's seconds per pair at batch 64, grouped by family (bundled pairs, default settings);
- the full table's pairs per hour (17 variants × SI SD CI CD SAD CAD at step 224, the evaluation driver) for
  ResNet-50 and the default model,

and writes ``benchmarks/results/gpu.md`` (and ``gpu.json``) with the device's name. ``--dry-run`` runs the
same code with tiny models and sizes on the CPU in seconds: the test suite runs it, so the script cannot rot.

Usage (after ``make test`` has built ``.venv``):
    .venv/bin/python benchmarks/gpu.py                 # on the GPU machine
    .venv/bin/python benchmarks/gpu.py --dry-run --out /tmp/gpu-dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

import simexplain
from simexplain import engines, metrics
from simexplain.studies import Evaluation, evaluate_pairs, load_pairs, pair_images, parse_variants

RESULTS = Path(__file__).resolve().parent / "results"
Builder = Callable[[str, str, str], simexplain.PairModel]  # (engine, precision, device) → model


@dataclass
class Plan:
    """What one run measures: the real sizes on a GPU, tiny ones on the CPU for ``--dry-run``."""

    device: str
    models: dict[str, Builder]
    size: int
    batches: tuple[int, ...]
    settings: list[tuple[str, str]]  # (engine, precision) rows of the forward table
    family_batch: int
    family_pairs: int
    table_pairs: int
    table_models: tuple[str, ...]
    step: int
    budget_s: float  # compile rows are skipped once this much time has passed
    calls: int = 10
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# ------------------------------------------------------------------------------------------------ models
def _wrap(network: nn.Module, name: str, layer: str, engine: str, precision: str, device: str, **options):
    return simexplain.PairModel(
        network.eval(), layer=layer, name=name, engine=engine, precision=precision, **options
    ).to(device)


def default_model(engine: str, precision: str, device: str) -> simexplain.PairModel:
    return simexplain.load_model("efficientnet-lite0", engine=engine, precision=precision).to(device)


def resnet50_model(engine: str, precision: str, device: str) -> simexplain.PairModel:
    torch.manual_seed(0)
    network = torchvision.models.resnet50(weights=None)
    network.fc = nn.Identity()
    pre = simexplain.IMAGENET
    return _wrap(network, "resnet50-random", "layer4", engine, precision, device, preprocessing=pre)


def vit_b16_model(engine: str, precision: str, device: str) -> simexplain.PairModel:
    torch.manual_seed(0)
    network = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    layout = simexplain.TokenLayout(patch_size=16, prefix_tokens=1)
    return _wrap(network, "vit-b16-random", "blocks.11", engine, precision, device, token_layout=layout)


def tiny_cnn(engine: str, precision: str, device: str) -> simexplain.PairModel:
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6),
    )  # fmt: skip
    pre = simexplain.Preprocessing(input_size=(32, 32), resize=36)
    return _wrap(network, "tiny-cnn", "3", engine, precision, device, preprocessing=pre)


def tiny_vit(engine: str, precision: str, device: str) -> simexplain.PairModel:
    torch.manual_seed(0)
    network = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=0
    )
    layout = simexplain.TokenLayout(patch_size=8, prefix_tokens=1)
    return _wrap(network, "tiny-vit", "blocks.1", engine, precision, device, token_layout=layout)


def plan(dry_run: bool) -> Plan:
    if dry_run:
        return Plan(
            device="cpu",
            models={"default": tiny_cnn, "vit-b16": tiny_vit},  # resnet50 would be the same tiny CNN
            size=32,
            batches=(4, 8),
            settings=[("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32")],
            family_batch=8,
            family_pairs=1,
            table_pairs=1,
            table_models=("default",),
            step=256,
            budget_s=60,
            calls=2,
        )
    settings = [("torch", p) for p in ("fp32", "bf16", "fp16")] + [("compile", p) for p in ("fp32", "bf16")]
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        settings.append(("onnxruntime", "fp32"))
    return Plan(
        device="cuda",
        models={"default": default_model, "resnet50": resnet50_model, "vit-b16": vit_b16_model},
        size=224,
        batches=(64, 256),
        settings=settings,
        family_batch=64,
        family_pairs=3,
        table_pairs=3,
        table_models=("resnet50", "default"),
        step=224,
        budget_s=240,
    )


# ------------------------------------------------------------------------------------------------ forward
def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def forward_rows(p: Plan) -> list[dict]:
    rows = []
    for name, build in p.models.items():
        reference = build("torch", "fp32", p.device)
        for engine, precision in p.settings:
            model = build(engine, precision, p.device)
            for batch in p.batches:
                if engine == "compile" and p.elapsed() > p.budget_s:
                    rows.append({"model": name, "engine": engine, "precision": precision, "batch": batch})
                    continue
                rows.append(_forward_cell(p, name, reference, model, batch))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _forward_cell(p: Plan, name: str, reference, model, batch: int) -> dict:
    x = torch.rand(batch, 3, p.size, p.size, device=p.device)
    with torch.inference_mode():
        started = time.perf_counter()
        z = model.embed(x)  # builds: export, compile, probe
        synchronize(p.device)
        setup = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(p.calls):
            model.embed(x)
        synchronize(p.device)
        seconds = (time.perf_counter() - started) / p.calls
        expected = reference.embed(x)
    gap = float((z.float() - expected.float()).abs().max() / expected.float().abs().max())
    return {
        "model": name,
        "engine": engines.describe(model)["encoders"]["a"]["engine"],
        "precision": model.precision,
        "batch": batch,
        "images_per_second": batch / seconds,
        "first_call_s": setup,
        "max_relative": gap,
    }


# ------------------------------------------------------------------------------------------------ families
def family_rows(p: Plan) -> list[dict]:
    model = p.models["default"]("auto", "fp32", p.device)
    specs = load_pairs("demo", limit=p.family_pairs)
    pairs = [pair_images(spec, model) for spec in specs]
    x1 = torch.cat([a for a, _ in pairs]).to(p.device)
    x2 = torch.cat([b for _, b in pairs]).to(p.device)
    rows = []
    for name in simexplain.methods.image_pair_methods():
        if ":" in name:
            continue  # captum and grad-cam methods: their libraries' own batching
        entry = simexplain.methods.get(name)
        params = {"batch_size": p.family_batch} if "batch_size" in entry.parameters() else {}
        params |= {"seed": 0} if "seed" in entry.parameters() else {}
        simexplain.explain(model, x1[:1], x2[:1], name, **params)  # warm-up (kernels, runners)
        synchronize(p.device)
        started = time.perf_counter()
        simexplain.explain(model, x1, x2, name, **params)
        synchronize(p.device)
        rows.append(
            {
                "method": name,
                "family": entry.family,
                "seconds_per_pair": (time.perf_counter() - started) / len(specs),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ table
def table_rows(p: Plan) -> list[dict]:
    specs = load_pairs("demo", limit=p.table_pairs)
    rows = []
    for name in p.table_models:
        model = p.models[name]("auto", "fp32", p.device)
        run = Evaluation(model, parse_variants("all"), metrics.resolve_metrics("all"), {"step": p.step})
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            summary = evaluate_pairs(run, specs, Path(folder) / "r.sqlite", progress=False)
            seconds = time.perf_counter() - started
        rows.append(
            {
                "model": name,
                "engine": engines.describe(model)["label"],
                "pairs": len(specs),
                "seconds": seconds,
                "pairs_per_hour": 3600 * len(specs) / seconds,
                "failed": summary.failed,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ report
def device_name(device: str) -> str:
    return (
        torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"CPU ({os.cpu_count()} cores), dry run"
    )


def markdown(result: dict) -> str:
    lines = [
        f"# simexplain on {result['device']}",
        "",
        f"`{result['command']}`, {result['date']}, {result['seconds']:.0f} s; torch {result['torch']}.",
        "",
        "## Forward passes (images per second)",
        "",
        "| model | engine | precision | batch | images/s | first call s | max relative diff vs torch fp32 |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["forward"]:
        cells = f"| {r['model']} | {r['engine']} | {r['precision']} | {r['batch']} |"
        if "images_per_second" not in r:
            lines.append(f"{cells} skipped (time budget) | | |")
            continue
        speed = f"{r['images_per_second']:.0f} | {r['first_call_s']:.1f} | {r['max_relative']:.1e} |"
        lines.append(f"{cells} {speed}")
    lines += ["", "## Methods (seconds per pair, default settings)", "", "| family | method | s/pair |"]
    lines += ["| --- | --- | ---: |"]
    by_family: dict[str, list[float]] = {}
    for r in result["families"]:
        by_family.setdefault(r["family"], []).append(r["seconds_per_pair"])
        lines.append(f"| {r['family']} | {r['method']} | {r['seconds_per_pair']:.2f} |")
    for family, values in by_family.items():
        lines.append(f"| **{family}** | mean of {len(values)} | **{statistics.mean(values):.2f}** |")
    lines += [
        "",
        "## The full table (17 variants × six metrics)",
        "",
        "| model | engine | pairs | s | pairs/hour |",
    ]
    lines += ["| --- | --- | ---: | ---: | ---: |"]
    for r in result["table"]:
        speed = f"{r['seconds']:.0f} | **{r['pairs_per_hour']:.0f}** |"
        lines.append(f"| {r['model']} | {r['engine']} | {r['pairs']} | {speed}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny models and sizes on the CPU, in seconds")
    parser.add_argument("--out", default=str(RESULTS), help="folder for gpu.md and gpu.json")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu.py: no CUDA device here; use --dry-run to check the script on a CPU", file=sys.stderr)
        return 2
    p = plan(args.dry_run)
    result = {
        "device": device_name(p.device),
        "torch": torch.__version__,
        "command": " ".join(["python", *sys.argv]),
    }
    result |= {"date": time.strftime("%Y-%m-%d %H:%M"), "dry_run": args.dry_run}
    result |= {"forward": forward_rows(p), "families": family_rows(p), "table": table_rows(p)}
    result["seconds"] = p.elapsed()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
