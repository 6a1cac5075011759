"""Bit-identical results before and after a change: every method, metric and wrapper on two source trees.

``compare_versions.py`` times a few calls on ResNet-50 and checks their maps to 1e-6; this script checks that
a refactoring changed no bit. Each tree runs in its own process (``PYTHONPATH`` puts its ``src`` first) and
computes, on small random CNNs (a shared encoder and an asymmetric pair, images of 32×32 and 24×28 pixels, 2
pairs), every registered method with small settings and fixed seeds (both execution strategies of Averaged
Transforms, guided and noisy variants, both credits of Pairwise Occlusion), the metrics of two explanations
(maximum sensitivity included, with and without the caller's clean embeddings), a sanity-check cascade and
maximum sensitivity on its own. Every result is reduced to a SHA-256 of its tensors' bytes (maps, grids,
scores, extras, metric values, curves) and its config; a method that fails is compared by its error line.

Usage:
    mkdir -p /tmp/before && git archive <commit> src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/compare_bits.py /tmp/before/src src
Writes ``benchmarks/results/compare_bits.json`` and ``.md`` (``--stem`` names other files).
"""

from __future__ import annotations

import argparse
import hashlib
import json

from recording import run_in_tree, write_result

# Small settings by parameter name, so that every method runs in seconds on a CPU.
SMALL = {
    "samples": 4,
    "steps": 3,
    "window": 8,
    "stride": 4,
    "patch": 8,
    "n_steps": 5,
    "nt_samples": 3,
    "n_samples": 4,
    "seed": 0,
}


# ------------------------------------------------------------------------------------------ child process
def _digest(*tensors, config=None) -> str:
    import torch

    digest = hashlib.sha256()
    for t in tensors:
        if t is None:
            digest.update(b"none")
            continue
        t = t.detach().cpu().contiguous()
        digest.update(str((tuple(t.shape), t.dtype)).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _explanation_digest(e) -> str:
    extras = [e.extras[k] for k in sorted(e.extras)]
    return _digest(e.map1, e.map2, e.grid1, e.grid2, e.score, *extras, config=e.config)


def _models(simexplain, torch):
    from torch import nn

    def cnn(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
        )

    shared = simexplain.PairModel(cnn(0), layer="3", name="shared")
    asymmetric = simexplain.PairModel(cnn(1), encoder_b=cnn(2), layer="3", name="asymmetric")
    generator = torch.Generator().manual_seed(0)
    x1, x2 = torch.rand(2, 2, 3, 32, 32, generator=generator)
    y2 = torch.rand(2, 3, 24, 28, generator=generator)
    return shared, asymmetric, (x1, x2), (x1, y2)


def _method_cases(simexplain, model, pair, tag):
    cases = {}
    # The methods of two images (a tree with image–text pairs also lists methods that need a text tower).
    listed = getattr(simexplain.methods, "image_pair_methods", lambda: list(simexplain.methods.available()))
    for name in listed():
        params = simexplain.methods.get(name).parameters()
        settings = {k: v for k, v in SMALL.items() if k in params}
        if name == "smooth-grad" and pair[0].shape != pair[1].shape:
            settings["shared_noise"] = False
        cases[f"{tag} {name}"] = (name, settings)
    for extra, settings in {
        "averaged-transforms one forward": {"steps": 3, "seed": 1, "batch_size": 64},
        "averaged-transforms chunks of 3": {"steps": 3, "seed": 1, "batch_size": 3},
        "averaged-transforms (N)(G)": {"steps": 3, "seed": [1, 2], "noise": True, "guided": True},
        "averaged-transforms strength": {"transform": "rotate-30", "mode": "strength", "steps": 3, "seed": 0},
        "smooth-grad (G) per-pair seeds": {
            "samples": 3,
            "seed": [4, 5],
            "guided": True,
            "shared_noise": False,
        },
        "pairwise-occlusion regression": {"samples": 12, "seed": 3, "credit": "regression"},
        "conditional-occlusion grid": {"window": 8, "stride": 4, "output": "grid", "fill": "blur"},
        "pair-interaction projection": {"projection": 3, "seed": [0, 1]},
    }.items():
        cases[f"{tag} {extra}"] = (extra.split()[0], settings)
    return cases


def child() -> None:
    """Every case on this process's tree; prints one JSON line ``case → digest``."""
    import torch

    import simexplain
    from simexplain import metrics

    torch.set_num_threads(1)
    shared, asymmetric, same_size, other_size = _models(simexplain, torch)
    out: dict[str, str] = {"simexplain": simexplain.__file__}
    kept = {}
    for model, pair, tag in ((shared, same_size, "shared"), (asymmetric, other_size, "asymmetric")):
        for case, (name, settings) in _method_cases(simexplain, model, pair, tag).items():
            try:
                e = simexplain.explain(model, *pair, name, **settings)
                out[case] = _explanation_digest(e)
                kept[case] = e
            except Exception as error:  # compared by its message: both trees must fail alike
                out[case] = f"error: {type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    every = ["SI", "SD", "CI", "CD", "SAD", "CAD", "MS"]
    conditional = ["CI", "CD", "CAD", "MS"]  # images of two sizes
    for case, model, pair, names in (
        ("shared input-x-gradient", shared, same_size, every),
        ("shared averaged-transforms one forward", shared, same_size, every),
        ("asymmetric conditional-occlusion", asymmetric, other_size, conditional),
    ):
        for clean in (False, True):
            given = model.embed_pair(*pair) if clean else None
            results = metrics.evaluate(model, *pair, kept[case], names, step=64, clean=given)
            tensors = [results[k] for k in results] + [results.curves[k] for k in sorted(results.curves)]
            label = f"metrics of {case}{' (clean given)' if clean else ''}"
            out[label] = _digest(*tensors, config=results.counts)
    r = metrics.sanity_check(
        shared, *same_size, "smooth-grad", method_params={"samples": 3, "seed": 0}, every=2
    )
    out["sanity check smooth-grad"] = _digest(
        r.maps1, r.maps2, r.spearman1, r.spearman2, r.ssim1, r.ssim2, r.scores, config=r.layers
    )
    ms = metrics.max_sensitivity(shared, *same_size, "input-x-gradient", samples=3, seed=0)
    out["max sensitivity input-x-gradient"] = _digest(ms)
    print(json.dumps(out))


# ------------------------------------------------------------------------------------------ parent process
def run_tree(src: str) -> dict:
    return run_in_tree(__file__, src, env={"OMP_NUM_THREADS": "1"})


def markdown(result: dict) -> str:
    cases = result["cases"]
    same = sum(1 for row in cases.values() if row["same"])
    lines = [
        "# Bit-identical results before and after: every method, metric and wrapper on two source trees",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Before: `{result['trees'][0]}`; after: `{result['trees'][1]}`. **{same} of {len(cases)} results "
        "have the same SHA-256** (tensor bytes and config; failures compared by their error line).",
        "",
        "| result | same bits | digest (after, first 16) |",
        "| --- | --- | --- |",
    ]
    for name, row in cases.items():
        digest = row["after"] if row["after"].startswith("error") else row["after"][:16]
        lines.append(f"| {name} | {'yes' if row['same'] else '**no**'} | {digest} |")
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", nargs="?", help="the 'before' tree's src folder")
    parser.add_argument("after", nargs="?", help="the 'after' tree's src folder")
    parser.add_argument("--stem", default="compare_bits")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    if not (args.before and args.after):
        parser.error("give the two src folders: BEFORE AFTER")
    before, after = run_tree(args.before), run_tree(args.after)
    cases = {
        name: {"before": before.get(name), "after": digest, "same": before.get(name) == digest}
        for name, digest in after.items()
        if name != "simexplain"
    }
    result = {
        "command": " ".join(["python", "benchmarks/compare_bits.py", args.before, args.after]),
        "trees": [before["simexplain"], after["simexplain"]],
        "cases": cases,
    }
    write_result(args.stem, result, markdown)


if __name__ == "__main__":
    main()
