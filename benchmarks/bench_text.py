"""Image–text pairs on a real-size CLIP ViT-B/32 (open_clip's architecture, random weights) on this CPU:
seconds per pair for every method with an image–text form, and ``pair-interaction`` (vectorised over the
embedding dimensions) against a naive form with one backward per token.

The model loads through the library's own route, ``open_clip:ViT-B-32/FILE`` with ``pair="image-text"`` (the
random weights saved to a temporary safetensors file; open_clip's bundled tokenizer): speed does not depend
on the weights, and nothing is downloaded. Each method runs once untimed (engines built, caches warm), then
``--rounds`` times timed on one pair (a 224×224 image and a seven-word caption). The naive
``pair-interaction``: the text side's relevances ``R_m(text)[t]`` from one backward per embedding dimension
(``E`` passes of the text tower), the image side's column ``I[:, t]`` from one backward of
``⟨f(x), R(text)[t]⟩`` per word token; it must equal the library's matrix.

Usage:
    python benchmarks/bench_text.py [--rounds 2] [--quick]

Writes ``benchmarks/results/text.json`` and ``text.md`` (``--quick``: ``text_quick.*``, not kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

import simexplain
from simexplain import engines
from simexplain.methods import image_text_methods
from simexplain.methods.interaction import tapped_embed
from simexplain.methods.patch_token import explained_form

RESULTS = Path(__file__).resolve().parent / "results"
CAPTION = "a photo of a cat on a sofa"
# Settings of the quick smoke run (the full run uses every method's defaults).
QUICK = {
    "smooth-grad": {"samples": 4},
    "averaged-transforms": {"steps": 2},
    "conditional-occlusion": {"window": 112, "stride": 112},
    "integrated-gradients": {"steps": 2},
    "pair-interaction": {"projection": 16},
}


def load_clip() -> simexplain.PairModel:
    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-32").eval()
    folder = tempfile.mkdtemp(prefix="bench-text-")
    path = os.path.join(folder, "random.safetensors")
    save_file(reference.state_dict(), path)
    del reference
    model = simexplain.load_model(f"open_clip:ViT-B-32/{path}", pair="image-text")
    os.remove(path)
    return model


def image(model: simexplain.PairModel) -> torch.Tensor:
    return simexplain.load_image(simexplain.sample_path("chelsea.jpg"), model)


def timed(call, rounds: int) -> tuple[list[float], object]:
    call()  # untimed: engines built, caches warm
    seconds, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def naive_interaction(model: simexplain.PairModel, x: torch.Tensor, text: str) -> torch.Tensor:
    """``I`` (``h×w×T``) with one backward per embedding dimension on the text side and one per word token
    on the image side (no vectorisation)."""
    tokens = model.text_tower.tokenize([text])
    kind, scale = explained_form(model)
    with model.explaining(), torch.enable_grad():
        leaf2, z2 = tapped_embed(model, tokens, "b", None)
        rows = []
        for m in range(z2.shape[1]):  # R_m(text)[t] = Σ_d A[t,d] ∂g_m/∂A[t,d], one backward each
            (grad,) = torch.autograd.grad(z2[0, m], leaf2, retain_graph=True)
            rows.append((leaf2.detach() * grad).sum(-1)[0])
        text_relevance = torch.stack(rows) * tokens.word_mask()[0]  # E×T, special tokens out
        leaf1, z1 = tapped_embed(model, x, "a", None)
        grid = model.token_layout.grid(tuple(x.shape[-2:]))
        columns = torch.zeros(*grid, tokens.length, dtype=z1.dtype)
        for t in tokens.word_mask()[0].nonzero()[:, 0].tolist():  # one backward per word token
            (grad,) = torch.autograd.grad((z1[0] * text_relevance[:, t]).sum(), leaf1, retain_graph=True)
            patches = (leaf1.detach() * grad).sum(-1)[0, model.token_layout.leading_tokens :]
            columns[..., t] = patches.view(*grid)
        norm = z1.detach().norm() * z2.detach().norm() if kind == "cosine" else 1.0
    return scale * columns / norm


def embedding_size(model: simexplain.PairModel, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model.embed(x, "a").shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="reduced settings, one round: a smoke run")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    started_load = os.getloadavg()
    model = load_clip()
    x = image(model)
    rows = []
    for method in image_text_methods():
        params = QUICK.get(method, {}) if args.quick else {}
        if "seed" in simexplain.methods.get(method).parameters():
            params = {**params, "seed": 0}
        seconds, e = timed(lambda m=method, p=params: simexplain.explain(model, x, [CAPTION], m, **p), rounds)
        rows.append({"method": method, "seconds": seconds, "best": min(seconds), "config": e.config})
        print(f"{method:24s} {min(seconds):8.2f} s/pair", flush=True)
    library, e = timed(lambda: simexplain.explain(model, x, [CAPTION], "pair-interaction"), rounds)
    naive, matrix = timed(lambda: naive_interaction(model, x, CAPTION), rounds)
    difference = float((matrix - e.interaction[0]).abs().max() / e.interaction[0].abs().max())
    embedding = embedding_size(model, x)  # before the float64 copy below
    # Random weights leave the words tiny shares that cancel (the end token holds the score): float32 rounding
    # shows at the percent level, so equality is checked once more in float64.
    model.double()
    exact = simexplain.explain(model, x.double(), [CAPTION], "pair-interaction").interaction[0]
    difference64 = float(
        (naive_interaction(model, x.double(), CAPTION) - exact).abs().max() / exact.abs().max()
    )
    print(f"pair-interaction vectorised {min(library):.2f} s, one backward per token {min(naive):.2f} s")
    report = {
        "model": "open_clip ViT-B-32 (random weights), pair='image-text'",
        "caption": CAPTION,
        "tokens": int(model.text_tower.tokenize([CAPTION]).length),
        "words": len(e.words[0]),
        "embedding": embedding,
        "engine": engines.describe(model)["label"],  # what ran the image tower's gradient-free forwards
        "methods": rows,
        "pair_interaction": {
            "vectorised": library,
            "per_token": naive,
            "speedup": min(naive) / min(library),
            "max_relative_difference": difference,
            "max_relative_difference_float64": difference64,
        },
        "threads": torch.get_num_threads(),
        "load_before": started_load,
        "load_after": os.getloadavg(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "command": " ".join([sys.executable, *sys.argv]),
    }
    name = "text_quick" if args.quick else "text"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(report))
    print(f"wrote {RESULTS / name}.json and .md")


def markdown(report: dict) -> str:
    lines = [
        f"# Image–text pairs on {report['model']}",
        "",
        f"One pair: a 224×224 image and “{report['caption']}” ({report['words']} words, {report['tokens']} "
        f"tokens with open_clip's padding), engine `{report['engine']}`, {report['threads']} threads, load "
        f"{report['load_before'][0]:.1f} before and {report['load_after'][0]:.1f} after (2 cores, shared). "
        "Each method's defaults; best of the timed rounds after one untimed run.",
        "",
        "| method | seconds per pair |",
        "| --- | --- |",
    ]
    lines += [f"| `{row['method']}` | {row['best']:.2f} |" for row in report["methods"]]
    pair = report["pair_interaction"]
    lines += [
        "",
        f"`pair-interaction` vectorised (the text side's E = {report['embedding']} backward rows and the "
        "image side's one row per token, each side in batched backward passes): "
        f"**{min(pair['vectorised']):.2f} s**; one backward per embedding dimension on the text side and one "
        f"per word token on the image side: **{min(pair['per_token']):.2f} s** "
        f"({pair['speedup']:.2f}× the vectorised time); largest difference "
        f"{pair['max_relative_difference']:.1e} of the largest entry in float32, "
        f"{pair['max_relative_difference_float64']:.1e} in float64 (with random weights the words' shares "
        "are tiny and cancel: the end token holds the score).",
        "",
        f"`{report['command']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
