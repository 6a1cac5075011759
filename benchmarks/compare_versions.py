"""Library speed before and after a change: the same calls on two source trees, in alternating processes.

Every other benchmark compares simexplain with a naive loop; this one compares simexplain with itself. Each
round runs one fresh process per source tree (``PYTHONPATH`` puts that tree's ``src`` first), old then new,
and each process times the same calls once, in process CPU seconds with ONE torch thread by default (on a
shared CPU, CPU time barely moves with other jobs' load, while wall time and multi-threaded CPU time do).
Alternating exposes both trees to the same load drift. Each call also reports a checksum of its maps, so the
table says whether both trees did the same work.

Calls (ResNet-50, torchvision, random weights, pooled 2048-d embedding, one 224×224 pair, batch 8 unless
said): Smooth-Grad (16 samples), Averaged Transforms (10 steps), Conditional Occlusion (64/32, 74 forwards),
Pairwise Occlusion (40 samples), Interaction-CAM on 8 pairs (one forward of all 16 images, and the library's
default chunks where the tree has them), the six pair metrics on one pair (step 12544, chunks of 16); with
``--requests``, also a whole service request (three methods and the six metrics) and retrieval's top 4 of an
8-image gallery with four methods. Each call reports a SHA-256 of its results' bytes too: "bit-identical".

Usage:
    mkdir -p /tmp/before && git archive <commit> src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/compare_versions.py /tmp/before/src src --rounds 2
Writes ``benchmarks/results/compare_versions.json`` and ``.md`` (``--stem`` names other files).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shlex
import statistics
import sys
import time

from recording import run_in_tree, write_result


# ------------------------------------------------------------------------------------------ child process
def _cases(simexplain, torch, model, x1, x2, requests=False):
    """(name, call) pairs; each call returns the maps to checksum."""
    from simexplain.methods.cam import interaction_cam
    from simexplain.metrics import METRICS, evaluate

    generator = torch.Generator().manual_seed(0)
    cam1 = torch.randn(8, 3, 224, 224, generator=generator)
    cam2 = cam1.flip(-1) + 0.5 * torch.randn(8, 3, 224, 224, generator=generator)
    cam_model = simexplain.PairModel(model.encoder, layer="layer4")
    maps = simexplain.PairExplanation(
        map1=torch.rand(1, 7, 7, generator=generator), map2=torch.rand(1, 7, 7, generator=generator)
    )
    chunked = "batch_size" in inspect.signature(interaction_cam).parameters

    def explain(method, target=model, a=x1, b=x2, **settings):
        e = simexplain.explain(target, a, b, method, **settings)
        return [e.map1, e.map2]

    def metrics():
        result = evaluate(model, x1, x2, maps, METRICS, batch_size=16, step=12544)
        return [torch.as_tensor(float(result[name][0])) for name in METRICS]

    cases = [
        ("smooth-grad, 16 samples", lambda: explain("smooth-grad", samples=16, seed=0, batch_size=8)),
        (
            "averaged-transforms, 10 steps",
            lambda: explain("averaged-transforms", steps=10, seed=0, batch_size=8),
        ),
        (
            "conditional-occlusion 64/32",
            lambda: explain("conditional-occlusion", window=64, stride=32, batch_size=8),
        ),
        (
            "pairwise-occlusion, 40 samples",
            lambda: explain("pairwise-occlusion", samples=40, seed=0, batch_size=8),
        ),
        # A tree without CAM chunking embeds all 16 images in one forward: compare like with like.
        (
            "interaction-cam, 8 pairs, one forward of 16 images",
            lambda: explain(
                "interaction-cam", cam_model, cam1, cam2, **({"batch_size": 16} if chunked else {})
            ),
        ),
        ("six metrics, 1 pair, step 12544", metrics),
    ]
    if requests:
        cases += _request_cases(simexplain, torch, model, cam_model, x1, x2)
    if chunked:
        cases.insert(
            5,
            (
                "interaction-cam, 8 pairs, the default chunks",
                lambda: explain("interaction-cam", cam_model, cam1, cam2),
            ),
        )
    return cases


def _request_cases(simexplain, torch, model, cam_model, x1, x2):
    """A whole service request and retrieval's top K: the layers above the methods (``--requests``)."""
    from simexplain import service
    from simexplain.retrieval import explain_top_k

    prepare = getattr(service, "prepare", None) or service.plan  # renamed by issue 21
    methods = ["input-x-gradient", "interaction-cam", "conditional-occlusion"]
    settings = {"window": 64, "stride": 32, "metrics.step": 12544}
    if prepare is getattr(service, "plan", None):
        settings.pop("metrics.step")
        request = prepare(methods, settings, "all", batch_size=16, metric_options={"step": 12544})
    else:
        request = prepare(methods, settings, "all", batch_size=16)

    def whole_request():
        report = service.run(cam_model, x1, x2, request)
        values = [report.score]
        for outcome in report.outcomes:
            values += [outcome.explanation.map1, outcome.explanation.map2]
            values += [outcome.metrics[name] for name in request.metrics]
        return values

    generator = torch.Generator().manual_seed(1)
    gallery = torch.randn(8, 3, 224, 224, generator=generator)
    gallery[5] = x1[0].flip(-1)

    def top(method, **settings):
        result = explain_top_k(cam_model, x1, gallery, 4, method, **settings)
        return [result.scores, result.explanation.map1, result.explanation.map2]

    return [
        ("service request: 3 methods + six metrics", whole_request),
        (
            "retrieval top 4: conditional-occlusion 64/32",
            lambda: top("conditional-occlusion", window=64, stride=32),
        ),
        ("retrieval top 4: interaction-cam", lambda: top("interaction-cam")),
        ("retrieval top 4: input-x-gradient", lambda: top("input-x-gradient")),
        ("retrieval top 4: smooth-grad, 8 samples", lambda: top("smooth-grad", samples=8, seed=0)),
    ]


def child(threads: int, only: str | None, requests: bool = False) -> None:
    """Time every call (whose name contains ``only``) once in this process and print one JSON line."""
    import torch
    import torchvision

    import simexplain

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    net.fc = torch.nn.Identity()
    model = simexplain.PairModel(net.eval(), preprocessing=simexplain.IMAGENET)
    x1, x2 = simexplain.load_images(
        simexplain.sample_path("chelsea.jpg"), simexplain.sample_path("coffee.jpg"), model
    )
    simexplain.explain(model, x1, x2, "input-x-gradient")  # warm-up
    out = {"simexplain": simexplain.__file__, "cases": {}}
    for name, call in _cases(simexplain, torch, model, x1, x2, requests):
        if only is not None and only not in name:
            continue
        start = time.process_time()
        maps = call()
        seconds = time.process_time() - start
        checksum = sum(float(m.double().abs().sum()) for m in maps)
        digest = hashlib.sha256(b"".join(m.detach().cpu().contiguous().numpy().tobytes() for m in maps))
        out["cases"][name] = {"cpu_s": seconds, "checksum": checksum, "digest": digest.hexdigest()}
    print(json.dumps(out))


# ------------------------------------------------------------------------------------------ parent process
def run_tree(src: str, threads: int, only: str | None, requests: bool = False) -> dict:
    args = ["--threads", str(threads)] + ([] if only is None else ["--only", only])
    args += ["--requests"] if requests else []
    return run_in_tree(__file__, src, args, env={"OMP_NUM_THREADS": str(threads)})


def markdown(result: dict) -> str:
    old, new = result["trees"]
    lines = [
        "# Library speed before and after: the same calls on two source trees",
        "",
        f"Command: `{result['command']}`",
        "",
        (
            f"Before: `{old}`; after: `{new}`. {result['rounds']} rounds, each one fresh process per tree "
            f"(before, then after), {result['threads']} torch thread(s), process CPU seconds (median over "
            "rounds; every round in the JSON). Load average (1/5/15 min) "
            + "/".join(f"{v:.1f}" for v in result["load_average_start"])
            + " at the start, "
            + "/".join(f"{v:.1f}" for v in result["load_average_end"])
            + f" at the end ({os.cpu_count()} CPUs)."
        ),
        "",
        "| call | before (CPU s) | after (CPU s) | after / before | same maps | bit-identical |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for name, row in result["cases"].items():
        before = "—" if row["before_s"] is None else f"{row['before_s']:.2f}"
        ratio = "—" if row["before_s"] is None else f"{row['after_s'] / row['before_s']:.2f}"
        same = "—" if row["same_maps"] is None else ("yes" if row["same_maps"] else "**no**")
        bits = "—" if row.get("same_bits") is None else ("yes" if row["same_bits"] else "no")
        lines.append(f"| {name} | {before} | {row['after_s']:.2f} | {ratio} | {same} | {bits} |")
    lines += [
        "",
        "Same maps: the checksums (sum of |map| over both maps) agree to 1e-6 relative. Bit-identical: the "
        "SHA-256 of every result's bytes agree. A dash: the call does not exist in the 'before' tree.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", nargs="?", help="the 'before' tree's src folder")
    parser.add_argument("after", nargs="?", help="the 'after' tree's src folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stem", default="compare_versions")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: CPU time steady under load)"
    )
    parser.add_argument("--only", default=None, help="only the calls whose name contains this text")
    parser.add_argument("--requests", action="store_true", help="also a service request and retrieval calls")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.threads, args.only, args.requests)
        return
    if not (args.before and args.after):
        parser.error("give the two src folders: BEFORE AFTER")
    load_start = os.getloadavg()
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(args.rounds):
        for key, src in (("before", args.before), ("after", args.after)):
            runs[key].append(run_tree(src, args.threads, args.only, args.requests))
            print(f"round {r + 1} {key}: {json.dumps(runs[key][-1]['cases'])}", flush=True)
    cases = {}
    for name in runs["after"][0]["cases"]:
        after = [run["cases"][name] for run in runs["after"]]
        before = [run["cases"].get(name) for run in runs["before"]]
        known = before[0] is not None
        cases[name] = {
            "before_s": statistics.median(b["cpu_s"] for b in before) if known else None,
            "after_s": statistics.median(a["cpu_s"] for a in after),
            "same_maps": (
                abs(before[0]["checksum"] - after[0]["checksum"]) <= 1e-6 * abs(after[0]["checksum"])
                if known
                else None
            ),
            "same_bits": before[0].get("digest") == after[0]["digest"] if known else None,
            "before_rounds": [b["cpu_s"] for b in before] if known else None,
            "after_rounds": [a["cpu_s"] for a in after],
        }
    result = {
        "command": shlex.join(["benchmarks/compare_versions.py", *sys.argv[1:]]),
        "trees": [args.before, args.after],
        "simexplain_files": [runs["before"][0]["simexplain"], runs["after"][0]["simexplain"]],
        "rounds": args.rounds,
        "threads": args.threads,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_start": list(load_start),
        "load_average_end": list(os.getloadavg()),
        "cases": cases,
    }
    write_result(args.stem, result, markdown)


if __name__ == "__main__":
    main()
