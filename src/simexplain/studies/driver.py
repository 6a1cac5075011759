"""The evaluation driver: every method variant on every pair, scored with the pair metrics, into a store.

One step takes ``batch_size`` pairs (their images decoded ahead by a background thread), explains them with
each variant not yet stored for them, scores the explanations, and writes everything in one transaction. A
rerun skips what is stored for the same images: each image file is hashed once per run, and a pair whose
images changed since its results were stored is computed again (and counted). Under ``torchrun`` each rank
takes every ``world``-th pair, works on its own shard file next to the store, and rank 0 merges the shards
after a barrier.

Example:
    >>> import os, tempfile, torch, simexplain
    >>> from torch import nn
    >>> from simexplain.studies import Evaluation, evaluate_pairs, load_pairs, parse_variants
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> model = simexplain.PairModel(net, layer="1", name="tiny")
    >>> run = Evaluation(model, parse_variants("input-x-gradient"), ["SAD"], seed=0)
    >>> db = os.path.join(tempfile.mkdtemp(), "results.sqlite")
    >>> summary = evaluate_pairs(run, load_pairs("demo", limit=1), db, progress=False)
    >>> summary.done, summary.failed
    (1, 0)
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import checks
from ..batching import default_batch_size
from ..cache import file_sha256
from ..engines import describe
from ..errors import SimexplainError
from ..pair import PairModel
from .sources import ImageDigests, PairSpec, pair_images, with_digests
from .store import Item, Pair, Store, shard_path
from .variants import Variant


@dataclass
class Evaluation:
    """What one evaluation run computes: the model, the method variants, the metrics and their settings.

    ``weights`` (a checkpoint path, or ``None`` for built-in weights) is fingerprinted with SHA-256, so a
    rerun with other weights into the same store is refused. ``batch_size`` (pairs per step and images per
    forward) and the model's engine and precision are speed knobs, never part of the run's identity: each
    item records the ones it ran with. ``study`` names the kind of run for the
    report (``"evaluation"``, or ``"dissection"`` for :func:`~simexplain.studies.dissection_variants`).
    A model loaded by its published name carries ``model.provenance`` (the hub revision, the weights'
    SHA-256): its SHA-256 stands for the weights file's, and the store records the whole of it.
    """

    model: PairModel
    variants: Sequence[Variant]
    metrics: Sequence[str]
    metric_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    weights: str | None = None
    batch_size: int | None = None
    study: str = "evaluation"

    def identity(self) -> dict[str, Any]:
        """What must be equal for two runs to share a store."""
        return {
            "model": self.model.name,
            "weights_sha256": file_sha256(self.weights)
            if self.weights
            else _provenance(self.model).get("weights_sha256"),
            "fingerprint": _fingerprint(self),
        }


@dataclass
class Summary:
    """How a run went: pairs in the source share of this process, (pair, variant) items done now, skipped as
    already stored, failed (with their one-line errors), the wall time, the pairs recomputed because their
    images changed since they were stored, and the pairs of a store written before pairs were keyed by
    content that were adopted (their images now taken as theirs)."""

    pairs: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    recomputed: int = 0
    adopted: int = 0

    def line(self) -> str:
        rate = f", {3600 * self.done / self.seconds:.0f} items/h" if self.seconds > 0 and self.done else ""
        failed = f"; {self.failed} FAILED (first: {self.errors[0]})" if self.failed else ""
        changed = f"; {_count(self.recomputed, 'pair')} recomputed: images changed" if self.recomputed else ""
        adopted = (
            f"; {_count(self.adopted, 'pair')} stored before pairs were keyed by content kept as results of "
            "the images now at their paths (a new --db recomputes them)"
            if self.adopted
            else ""
        )
        return (
            f"{self.pairs} pairs: {self.done} explanations scored, {self.skipped} already stored"
            f"{changed}{failed}{adopted} ({self.seconds:.1f} s{rate})"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def evaluate_pairs(
    run: Evaluation,
    specs: Sequence[PairSpec],
    db: str | os.PathLike,
    *,
    progress: bool = True,
    command: str | None = None,
) -> Summary:
    """Evaluate ``specs`` into the store ``db`` (resumable); under ``torchrun`` this process does its share.

    Returns this process's :class:`Summary`. Refuses, in one line and before any work, a store that holds
    another model, weights or settings.
    """
    rank, world = _distributed(run.model.device)
    db = Path(db)
    identity, facts = run.identity(), _facts(run, command)
    if db.is_file():
        with Store(db, readonly=True) as main:  # refuse a mismatch before any work, on every rank
            main.refuse_other_run(identity, facts["settings"])
    digests = ImageDigests()  # each image file hashed once in this run
    summary = Summary(adopted=_adopt_legacy_pairs(db, rank, world, digests, specs))
    mine = with_digests(list(specs)[rank::world], digests)
    target = shard_path(db, rank, world) if world > 1 else db
    started = time.perf_counter()
    with Store(target) as store:
        store.check_run(identity, facts)
        store.set_variants([(v.label, v.method, v.params, v.title) for v in run.variants])
        done = _resume(store, db if world > 1 else None, mine, summary)
        summary.pairs = len(mine)
        _run(run, mine, store, done, summary, progress and rank == 0)
    summary.seconds = time.perf_counter() - started
    if world > 1:
        _merge_shards(db, rank, world, identity, facts)
    return summary


def _adopt_legacy_pairs(
    db: Path, rank: int, world: int, digests: ImageDigests, specs: Sequence[PairSpec]
) -> int:
    """Rank 0 records the images of the run (``specs``) as the pairs' of a store written before pairs were
    keyed by content (:meth:`Store.adopt_legacy_pairs`); the other ranks wait for it before they read it."""
    adopted = 0
    if rank == 0 and db.is_file():
        with Store(db) as main:
            adopted = main.adopt_legacy_pairs(digests, {s.id: (s.image1, s.image2) for s in specs})
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return adopted


def _resume(store: Store, main: Path | None, specs: list[PairSpec], summary: Summary) -> set:
    """The (pair, variant) items stored for the images as they are now, in this process's store and (for a
    shard) the main store ``main``. The results of pairs whose images changed are dropped from this
    process's store (the main store's are replaced when the shard is merged) and counted as recomputed."""
    current = {spec.id: spec.digests for spec in specs}
    changed, done = store.changed(current), set()
    if main is not None and main.is_file():
        with Store(main, readonly=True) as stored:
            changed |= stored.changed(current)
            done = stored.done(current)
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    store.forget([Pair(s.id, s.image1, s.image2, s.seed, *s.digests, when) for s in specs if s.id in changed])
    summary.recomputed = len(changed)
    return done | store.done(current)


# ---------------------------------------------------------------------------------------------- one process
def _run(
    run: Evaluation, specs: list[PairSpec], store: Store, done: set, summary: Summary, progress: bool
) -> None:
    model = run.model
    step = checks.positive_int("batch size", run.batch_size or default_batch_size(model.device))
    todo = [s for s in specs if any((s.id, v.label) not in done for v in run.variants)]
    summary.skipped = len(run.variants) * len(specs) - sum(
        1 for s in todo for v in run.variants if (s.id, v.label) not in done
    )
    bar = _bar(len(specs), len(specs) - len(todo), progress)
    try:
        for loaded in _prefetched(todo, model, step):
            for pairs, items, metrics, curves in _step(run, loaded, done, step):
                store.write(pairs, items, metrics, curves)  # one transaction per (step, variant)
                summary.done += sum(1 for i in items if i.error is None)
                failed = [i for i in items if i.error is not None]
                summary.failed += len(failed)
                summary.errors += [f"{i.pair} / {i.variant}: {i.error}" for i in failed]
            if bar is not None:
                bar.update(len(loaded))
    finally:
        if bar is not None:
            bar.close()


Loaded = tuple[PairSpec, Tensor | None, Tensor | None, str | None]  # spec, x1, x2, error
Rows = tuple[list[Pair], list[Item], list[tuple], list[tuple]]  # pairs, items, metric rows, curve rows


def _prefetched(specs: list[PairSpec], model: PairModel, step: int) -> Iterator[list[Loaded]]:
    """Steps of ``step`` pairs, their images decoded ahead by a background thread (at most 2 steps ahead)."""
    ahead: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def load() -> None:
        for start in range(0, len(specs), step):
            batch = []
            for spec in specs[start : start + step]:
                try:
                    x1, x2 = pair_images(spec, model)
                    batch.append((spec, x1, x2, None))
                except SimexplainError as error:
                    batch.append((spec, None, None, str(error).splitlines()[0]))
            while not stop.is_set():
                try:
                    ahead.put(batch, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        ahead.put(None)

    worker = threading.Thread(target=load, name="simexplain-prefetch", daemon=True)
    worker.start()
    try:
        while (batch := ahead.get()) is not None:
            yield batch
    finally:
        stop.set()


def _step(run: Evaluation, loaded: list[Loaded], done: set, step: int) -> Iterator[Rows]:
    """Explain and score one step of pairs with every variant they still need: the rows of one transaction
    per variant, so an interruption loses at most one variant of one step."""
    device = str(run.model.device)
    pairs = [Pair(s.id, s.image1, s.image2, s.seed, *s.digests) for s, *_ in loaded]
    unreadable = [
        Item(spec.id, v.label, None, {}, device, step, error)
        for spec, _, _, error in loaded
        if error is not None
        for v in run.variants
        if (spec.id, v.label) not in done
    ]
    yield pairs, unreadable, [], []
    good = [entry for entry in loaded if entry[3] is None]
    clean = _clean_embeddings(run.model, good)  # once per pair, for every variant's metrics
    for variant in run.variants:
        batch = [(s, x1, x2) for s, x1, x2, _ in good if (s.id, variant.label) not in done]
        if batch:
            yield [], *_variant_rows(run, variant, batch, clean, step)


def _variant_rows(run: Evaluation, variant: Variant, batch: list, clean: dict, step: int):
    """One variant on the step's pairs that still need it: items, metric rows and curve rows."""
    from .. import metrics as metrics_module
    from ..methods import explain, get

    model, device = run.model, str(run.model.device)
    specs = [s for s, _, _ in batch]
    x1 = torch.cat([b[1] for b in batch])
    x2 = _joined([b[2] for b in batch])
    embeddings = tuple(torch.stack([clean[s.id][side] for s in specs]) for side in (0, 1))
    params = dict(variant.params)
    known = get(variant.method).parameters()
    if "seed" in known and "seed" not in params:
        params["seed"] = [s.seed for s in specs]  # per pair: the same in every run, batch and shard
    if "batch_size" in known:
        params["batch_size"] = step
    try:
        started = time.perf_counter()
        explanation = explain(model, x1, x2, variant.method, **params)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        seconds = (time.perf_counter() - started) / len(batch)
        results = {}
        if run.metrics:
            results = metrics_module.evaluate(
                model,
                x1,
                x2,
                explanation,
                metrics_module.usable_metrics(run.metrics, explanation),
                batch_size=step,
                clean=embeddings,
                **run.metric_options,
            )
    except SimexplainError as error:
        message = str(error).splitlines()[0]
        return [Item(s.id, variant.label, None, {}, device, step, message) for s in specs], [], []
    engine = describe(model)["label"]  # after the run: a graph refused on the way shows as torch
    # One host copy per metric and curve, not one per pair (float64 holds every float32 value exactly).
    values = {name: v.double().tolist() for name, v in results.items()}
    curves = {name: c.float().numpy() for name, c in getattr(results, "curves", {}).items()}
    items, metric_rows, curve_rows = [], [], []
    for i, spec in enumerate(specs):
        items.append(Item(spec.id, variant.label, seconds, explanation[i].config, device, step, None, engine))
        metric_rows += [(spec.id, variant.label, name, v[i]) for name, v in values.items()]
        curve_rows += [(spec.id, variant.label, name, c[i]) for name, c in curves.items()]
    return items, metric_rows, curve_rows


def _clean_embeddings(model: PairModel, good: list[Loaded]) -> dict[str, tuple[Tensor, Tensor]]:
    """Each pair's clean embeddings ``(f_a(x1), f_b(x2))``, from one forward of the step's pairs."""
    if not good:
        return {}
    x1 = torch.cat([entry[1] for entry in good])
    x2 = _joined([entry[2] for entry in good])
    with model.explaining(), torch.inference_mode():
        if isinstance(x2, Tensor):
            z1, z2 = model.embed_pair(x1, x2)
        else:  # image–text pairs: the images and their texts
            z1, z2 = model.embed(x1, "a"), model.embed(model.text_tower.tokenize(x2), "b")
    with torch.inference_mode(False):  # plain tensors: metrics may use them outside inference mode
        z1, z2 = z1.clone(), z2.clone()
    return {entry[0].id: (z1[i], z2[i]) for i, entry in enumerate(good)}


def _joined(seconds: list) -> Tensor | list[str]:
    """The pairs' second sides as one batch: images concatenated, texts (image–text pairs) as a list."""
    return torch.cat(seconds) if isinstance(seconds[0], Tensor) else list(seconds)


def _bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="evaluating", unit="pair", file=sys.stderr, disable=None)


# ------------------------------------------------------------------------------------------ many processes
def _distributed(device: torch.device) -> tuple[int, int]:
    """``(rank, world)`` from torchrun's environment, initialising the process group once: NCCL when the run
    is on CUDA devices, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(device)  # NCCL's barrier runs on the current device: this rank's own
        # Ranks wait for the slowest at the final barrier: allow long runs.
        dist.init_process_group(backend=backend, timeout=timedelta(hours=72))
    return dist.get_rank(), dist.get_world_size()


def local_device(name: str) -> torch.device:
    """The device of this process: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def _merge_shards(db: Path, rank: int, world: int, identity: dict, facts: dict) -> None:
    import torch.distributed as dist

    dist.barrier()
    if rank == 0:
        shards = [shard_path(db, r, world) for r in range(world)]
        with Store(db) as main:
            main.check_run(identity, facts)
            main.merge([s for s in shards if s.is_file()])
        for shard in shards:  # merged: the store holds everything, a rerun starts from it
            for suffix in ("", "-wal", "-shm"):
                Path(f"{shard}{suffix}").unlink(missing_ok=True)
    dist.barrier()


# ---------------------------------------------------------------------------------------------- identity
def _fingerprint(run: Evaluation) -> str:
    settings = {
        "variants": [[v.label, v.method, v.params] for v in run.variants],
        "metrics": list(run.metrics),
        "metric_options": run.metric_options,
        "seed": run.seed,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _provenance(model: PairModel) -> dict[str, Any]:
    """Where a hub model's weights came from (``models/hub``), else nothing."""
    return getattr(model, "provenance", None) or {}


def _facts(run: Evaluation, command: str | None) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("simexplain", "torch", "torchvision", "timm", "numpy", "Pillow"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "study": run.study,
        "settings": {
            "variants": [v.label for v in run.variants],
            "metrics": list(run.metrics),
            "metric_options": run.metric_options,
            "seed": run.seed,
        },
        "weights": run.weights,
        "provenance": _provenance(run.model) or None,
        "versions": {**versions, "python": sys.version.split()[0]},
        "device": str(run.model.device),
        "batch_size": run.batch_size or default_batch_size(run.model.device),
        "engine": describe(run.model),
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
