"""Byte-identical reports before and after a change: the same stores reported by two source trees.

The 'before' tree writes fixed evaluation stores once (three models with every metric, maximum sensitivity,
failed and undefined values, a sanity study's record, and a dissection run), then each tree, in its own
process (``PYTHONPATH`` puts its ``src`` first), writes ``simexplain report`` of them with a downstream
correlation, and every file (``pairs.csv``, ``tables.md/.csv/.tex``, ``dissection.*``, ``correlation.csv``,
the PNG and SVG figures) is compared byte for byte. SVG ids and dates are fixed (``svg.hashsalt``,
``SOURCE_DATE_EPOCH``) so that a tree reproduces its own bytes.

Usage:
    mkdir -p /tmp/before && git archive <commit> src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/compare_report.py /tmp/before/src src
Writes ``benchmarks/results/compare_report.json`` and ``.md`` (``--stem`` names other files).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

from recording import run_in_tree, write_result

METRICS = ("SI", "SD", "CI", "CD", "SAD", "CAD", "MS")
VARIANTS = [
    ("conditional-occlusion", "conditional-occlusion", {}, "Conditional Occlusion"),
    ("interaction-cam[reduction=max]", "interaction-cam", {"reduction": "max"}, "Int-CAM max"),
    ("input-x-gradient", "input-x-gradient", {}, "Input×Gradient"),
    ("smooth-grad[samples=5]", "smooth-grad", {"samples": 5}, "Smooth_Grad 5 & 50%"),
    ("captum:Saliency", "captum:Saliency", {}, "captum Saliency"),
]
MODELS = ("simclr", "dino", "barlow")
STORES = [f"{m}.sqlite" for m in MODELS] + ["dissect.sqlite"]


# ------------------------------------------------------------------------------------------ child process
def _store(path: Path, model: str, fingerprint: str, variants, metrics, pairs, rng, study=None) -> None:
    from simexplain.studies.store import Item, Pair, Store

    items, rows = [], []
    for p in pairs:
        for label, *_ in variants:
            if label.startswith("captum") and p == "p03":  # a failed explanation
                items.append(Item(p, label, None, {}, "cpu", 4, "captum failed here"))
                continue
            items.append(Item(p, label, float(rng.uniform(0.001, 3)), {}, "cpu", 4))
            for m in metrics:
                if m == "MS" and not label.startswith(("input", "smooth")):
                    continue
                rows.append(
                    (p, label, m, None if m == "SAD" and rng.uniform() < 0.1 else float(rng.uniform()))
                )
    settings = {"variants": [v[0] for v in variants], "metrics": list(metrics), "seed": 0}
    with Store(path) as store:
        store.check_run(
            {"model": model, "weights_sha256": None, "fingerprint": fingerprint},
            {"settings": settings, **({"study": study} if study else {})},
        )
        store.set_variants(variants)
        store.write([Pair(p, f"{p}.jpg", None, 1) for p in pairs], items, rows, [])


def build_stores(folder: Path) -> None:
    """The fixed stores (seeded values), written with this process's tree."""
    import numpy as np

    from simexplain.studies.store import Store

    rng = np.random.default_rng(7)
    for k, model in enumerate(MODELS):
        pairs = [f"p{i:02d}" for i in range(12 + k)]
        _store(folder / f"{model}.sqlite", model, f"f{k}", VARIANTS, METRICS, pairs, rng)
    figure = folder / "sanity_ixg.png"
    figure.write_bytes(b"png")
    study = {"figure": str(figure), "pairs": 3, "spearman": [1.0, 0.4, 0.1], "randomised": [0, 1, 5]}
    with Store(folder / "simclr.sqlite") as store:
        store.record_sanity("simclr", {"input-x-gradient": {**study, "spearman_figure": str(figure)}})
    dissection = [
        (f"averaged-transforms[transform={t}{';guided=true' if g else ''}]", "averaged-transforms")
        + ({"transform": t, **({"guided": True} if g else {})}, t + (" (G)" if g else ""))
        for t in ("rotate-90", "hflip", "blur")
        for g in (False, True)
    ]
    pairs = [f"q{i}" for i in range(9)]
    _store(
        folder / "dissect.sqlite", "simclr", "d", dissection, ("SI", "SD", "SAD"), pairs, rng, "dissection"
    )


def child(stores: Path, out: Path) -> None:
    """Write the report of the stores (building them first when the folder is empty); print the digests."""
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "fixed"
    import simexplain
    from simexplain.studies.report import write_report

    if not (stores / STORES[0]).is_file():
        build_stores(stores)
    accuracy = {"simclr": 0.69, "dino": 75.3, "barlow": 0.71}
    notes: list[str] = []
    paths = [stores / name for name in STORES]
    written = write_report(paths, out, downstream=accuracy, bootstrap=300, seed=3, log=notes.append)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in written}
    print(json.dumps({"simexplain": simexplain.__file__, "files": digests, "notes": notes}))


# ------------------------------------------------------------------------------------------ parent process
def run_tree(src: str, stores: Path, out: Path) -> dict:
    return run_in_tree(
        __file__, src, [str(stores), str(out)], env={"SOURCE_DATE_EPOCH": "0"}, cwd=stores.parent
    )


def markdown(result: dict) -> str:
    files = result["files"]
    same = sum(1 for row in files.values() if row["same"])
    lines = [
        "# Byte-identical reports before and after: the same stores reported by two source trees",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Before: `{result['trees'][0]}`; after: `{result['trees'][1]}`. **{same} of {len(files)} files are "
        f"byte-identical**; notes logged: {'the same' if result['same_notes'] else '**different**'}.",
        "",
        "| file | same bytes | SHA-256 (after, first 16) |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {n} | {'yes' if r['same'] else '**no**'} | {r['after'][:16]} |" for n, r in files.items()]
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", nargs="?", help="the 'before' tree's src folder")
    parser.add_argument("after", nargs="?", help="the 'after' tree's src folder")
    parser.add_argument("--stem", default="compare_report")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if not (args.before and args.after):
        parser.error("give the two src folders: BEFORE AFTER")
    with tempfile.TemporaryDirectory() as work:
        stores = Path(work) / "stores"
        stores.mkdir()
        before = run_tree(args.before, stores, Path(work) / "before")
        after = run_tree(args.after, stores, Path(work) / "after")
    files = {
        name: {
            "before": before["files"].get(name),
            "after": digest,
            "same": before["files"].get(name) == digest,
        }
        for name, digest in after["files"].items()
    }
    files.update(
        {
            n: {"before": d, "after": "missing", "same": False}
            for n, d in before["files"].items()
            if n not in files
        }
    )
    result = {
        "command": " ".join(["python", "benchmarks/compare_report.py", args.before, args.after]),
        "trees": [before["simexplain"], after["simexplain"]],
        "files": files,
        "same_notes": before["notes"] == after["notes"],
    }
    write_result(args.stem, result, markdown)


if __name__ == "__main__":
    main()
