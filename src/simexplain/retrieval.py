"""Retrieval explanations: rank a gallery against a query, explain the top ``K`` matches, and explain why one
match beats another (:func:`explain_margin`).

The gallery is embedded once, in chunks, through image 2's encoder, and each image's embedding can be cached
on disk under a key made of the model (its name, preprocessing and a hash of its weights) and the image's
content, so a rerun on a grown gallery embeds only the new images. The query's own work is done once for all
``K`` matches where the method allows it: its clean embedding always; for Conditional Occlusion its
occluded copies (each embedded once and compared with the ``K`` matches); for the CAMs its tapped activations
(one forward) and its gradients (one backward vectorised over the ``K`` scores). Other methods explain the
``K`` pairs in one batched call.

Example:
    >>> import torch, simexplain
    >>> from torch import nn
    >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    >>> gallery = torch.rand(6, 3, 16, 16)
    >>> result = explain_top_k(model, gallery[2:3], gallery, 2, "conditional-occlusion", window=8, stride=4)
    >>> result.indices[0].item(), len(result.explanation), result.shared_query
    (2, 2, True)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .batching import chunk_slices, resolve_batch_size
from .errors import SimexplainError
from .explanation import PairExplanation
from .images import ImageSource, load_image
from .pair import PairModel

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Methods whose query side is computed once for all K matches.
SHARED_QUERY_METHODS = ("conditional-occlusion", "pair-grad-cam", "interaction-cam", "deep-similarity")

Gallery = Tensor | Sequence[ImageSource] | str | os.PathLike


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/simexplain/embeddings`` (``~/.cache/...`` without the variable)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "simexplain" / "embeddings"


def gallery_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a folder (by suffix), sorted by name; one line if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise SimexplainError(f"gallery {folder}: not a folder")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SimexplainError(f"gallery {folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def model_fingerprint(model: PairModel) -> str:
    """A hex key of what decides an embedding: the model's name, preprocessing and every weight and buffer."""
    digest = hashlib.sha256(f"{model.name}|{model.preprocessing!r}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def content_key(item: ImageSource) -> str:
    """A hex key of one gallery item's content: a file's bytes, or a tensor's shape, dtype and values."""
    digest = hashlib.sha256()
    if isinstance(item, Tensor):
        t = item.detach().cpu().contiguous()
        digest.update(f"tensor|{tuple(t.shape)}|{t.dtype}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(item, str | os.PathLike):
        try:
            digest.update(Path(item).read_bytes())
        except OSError as error:
            raise SimexplainError(f"{item}: cannot read ({error.strerror})") from None
    else:
        raise SimexplainError(
            f"cannot cache a gallery item of type {type(item).__name__}; give paths or tensors"
        )
    return digest.hexdigest()


class EmbeddingCache:
    """One file per (model, image content) under ``root/<model fingerprint>/``.

    Example:
        >>> import tempfile, torch
        >>> cache = EmbeddingCache(tempfile.mkdtemp(), "m" * 64)
        >>> cache.put("abc", torch.ones(3)); cache.get("abc").tolist(), cache.get("xyz")
        ([1.0, 1.0, 1.0], None)
    """

    def __init__(self, root: str | os.PathLike, fingerprint: str) -> None:
        self.folder = Path(root) / fingerprint[:32]

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def get(self, key: str) -> Tensor | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError):
            return None  # a broken entry is embedded again and overwritten

    def put(self, key: str, embedding: Tensor) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self._path(key).with_suffix(f".{os.getpid()}.tmp")
        torch.save(embedding.detach().cpu().clone(), partial)
        os.replace(partial, self._path(key))  # atomic: a reader never sees half a file


def _items(gallery: Gallery) -> list[ImageSource]:
    if isinstance(gallery, Tensor):
        if gallery.dim() != 4 or gallery.shape[1] != 3 or gallery.shape[0] == 0:
            raise SimexplainError(f"a gallery tensor must be N×3×H×W with N ≥ 1, got {tuple(gallery.shape)}")
        return list(gallery)
    if isinstance(gallery, str | os.PathLike):
        return list(gallery_files(gallery))
    items = list(gallery)
    if not items:
        raise SimexplainError("the gallery is empty")
    return items


def _load(model: PairModel, items: Sequence[ImageSource]) -> Tensor:
    """Model-input images: tensors ``3×H×W`` as they are, anything else read and resized for the model."""
    images = [
        item.to(model.device, model.dtype)
        if isinstance(item, Tensor)
        else load_image(item, model, str(item))[0]
        for item in items
    ]
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) > 1:
        raise SimexplainError(f"gallery images have different sizes {sorted(sizes)}; give one size")
    return torch.stack(images)


def embed_gallery(
    model: PairModel,
    gallery: Gallery,
    *,
    batch_size: int | None = None,
    cache: str | os.PathLike | None = None,
) -> Tensor:
    """Embeddings ``N×E`` of the gallery through image 2's encoder, in chunks of ``batch_size`` images
    (``None``: the device's default). With ``cache`` (a folder), each image's embedding is read from or
    written to it, so only images not seen before with this model are embedded.

    Example:
        >>> import torch, simexplain
        >>> model = simexplain.PairModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2)))
        >>> embed_gallery(model, torch.rand(5, 3, 4, 4), batch_size=2).shape
        torch.Size([5, 2])
    """
    return _embed_gallery(model, _items(gallery), batch_size, cache)[0]


def _embed_gallery(
    model: PairModel, items: list[ImageSource], batch_size: int | None, cache: str | os.PathLike | None
) -> tuple[Tensor, int]:
    """The gallery's embeddings and how many of them were computed (not read from the cache)."""
    size = resolve_batch_size(batch_size, model.device)
    store = EmbeddingCache(cache, model_fingerprint(model)) if cache is not None else None
    keys = [content_key(item) for item in items] if store is not None else None
    found: dict[int, Tensor] = {}
    if store is not None:
        for i, key in enumerate(keys):
            hit = store.get(key)
            if hit is not None:
                found[i] = hit.to(model.device)
    missing = [i for i in range(len(items)) if i not in found]
    with model.explaining(), torch.inference_mode():
        for part in chunk_slices(len(missing), size, desc="gallery"):
            chunk = missing[part]
            z = model.embed(_load(model, [items[i] for i in chunk]), "b").clone()
            for i, row in zip(chunk, z):
                found[i] = row
                if store is not None:
                    store.put(keys[i], row)
    with torch.inference_mode(False):
        return torch.stack([found[i] for i in range(len(items))]).clone(), len(missing)


@dataclass
class RetrievalResult:
    """The top ``K`` gallery matches of a query and their explanation.

    Attributes:
        indices: ``[K]`` gallery indices, best first.
        scores: ``[K]`` their similarity to the query.
        explanation: one :class:`PairExplanation` of the ``K`` pairs ``(query, gallery[indices[i]])``.
        query, matches: the model-input images (``1×3×H×W`` and ``K×3×H×W``), for figures.
        labels: the gallery items' names (paths, or ``"gallery[i]"``), in gallery order.
        shared_query: whether the query's side was computed once for all ``K`` matches.
        embedded: how many gallery images were embedded (the others came from the cache).
    """

    indices: Tensor
    scores: Tensor
    explanation: PairExplanation
    query: Tensor
    matches: Tensor
    labels: list[str]
    shared_query: bool
    embedded: int = 0

    def to_json(self) -> dict:
        """Ranks, gallery indices, labels, scores and the method's config as plain JSON data."""
        return {
            "method": self.explanation.method,
            "config": self.explanation.config,
            "shared_query": self.shared_query,
            "gallery": {"images": len(self.labels), "embedded": self.embedded},
            "matches": [
                {"rank": r + 1, "index": int(i), "label": self.labels[int(i)], "score": float(s)}
                for r, (i, s) in enumerate(zip(self.indices.tolist(), self.scores.double().tolist()))
            ],
        }


def explain_top_k(
    model: PairModel,
    query: ImageSource,
    gallery: Gallery,
    k: int = 5,
    method: str = "conditional-occlusion",
    *,
    cache: str | os.PathLike | None = None,
    gallery_batch_size: int | None = None,
    **params,
) -> RetrievalResult:
    """Rank ``gallery`` by similarity to ``query`` and explain the ``k`` best pairs with ``method``.

    ``params`` are the method's own settings (as for :func:`simexplain.explain`); ``cache`` (a folder) and
    ``gallery_batch_size`` (images per forward while embedding the gallery) belong to the ranking step. The
    query is image 1 and each match image 2. With Conditional Occlusion the query's occluded copies are
    embedded once for all ``k`` matches; the result equals the method on the ``k`` pairs one by one.
    """
    from . import checks
    from .methods import explain, get
    from .methods.common import check_pair

    k = checks.positive_int("k", k)
    entry = get(method)
    params = entry.check(params)
    items = _items(gallery)
    if k > len(items):
        raise SimexplainError(f"k={k} exceeds the gallery's {len(items)} images")
    labels = [str(item) if not isinstance(item, Tensor) else f"gallery[{i}]" for i, item in enumerate(items)]
    query_image = (
        query if isinstance(query, Tensor) and query.dim() == 4 else load_image(query, model, "query")
    )
    with model.explaining():
        gallery_z, embedded = _embed_gallery(model, items, gallery_batch_size, cache)
        query_image, _ = check_pair(model, query_image, query_image)
        if query_image.shape[0] != 1:
            raise SimexplainError(f"give one query image, got {query_image.shape[0]}")
        with torch.inference_mode():
            query_z = model.embed(query_image, "a")
            ranking = model.similarity(query_z.expand(len(items), -1), gallery_z)
        scores, indices = ranking.topk(k)
        matches = _load(model, [items[i] for i in indices.tolist()])
        shared = method in SHARED_QUERY_METHODS and k > 1
        settings = {**entry.parameters(), **params}  # the defaults filled in, as the method would
        if shared and method == "conditional-occlusion":
            from .methods.occlusion import occlude_windows

            explanation = occlude_windows(
                model, query_image, matches, embeddings=(query_z, gallery_z[indices]), **settings
            )
        elif shared:
            explanation = _cam_for_query(model, query_image, matches, method, settings)
            explanation.config = _cam_config(method, settings)
        else:
            explanation = explain(model, query_image.expand(k, -1, -1, -1), matches, method, **params)
    with torch.inference_mode(False):
        return RetrievalResult(
            indices.clone(), scores.clone(), explanation, query_image, matches, labels, shared, embedded
        )


def _cam_config(method: str, settings: dict) -> dict:
    keys = {"interaction-cam": ("reduction", "gradient_interaction", "layer")}.get(method, ("layer",))
    return {key: settings[key] for key in keys}


def _cam_for_query(model: PairModel, query: Tensor, matches: Tensor, method: str, settings: dict):
    """A CAM of the ``K`` pairs ``(query, match)`` with the query tapped ONCE: its activations come from one
    forward, and its gradient for each match from one backward vectorised over the ``K`` scores."""
    from .explanation import upsample_maps
    from .methods.cam import _check_layer, deep_similarity_maps, interaction_cam_maps, pair_grad_cam_maps
    from .methods.interaction import tapped_embed
    from .pair import TokenLayout

    def on_grid(t: Tensor, hw: tuple[int, int]) -> Tensor:  # B×D×h×w, or B×N×D tokens laid on the patch grid
        return t if t.dim() == 4 else (model.token_layout or TokenLayout()).to_grid(t, hw)

    layer = settings["layer"]
    _check_layer(model, query, matches[:1].expand(2, -1, -1, -1), layer)
    if method == "interaction-cam":

        def rule(a1, a2, g1, g2):
            options = {
                "reduction": settings["reduction"],
                "gradient_interaction": settings["gradient_interaction"],
            }
            return interaction_cam_maps(a1, a2, g1, g2, **options)
    elif method == "deep-similarity":

        def rule(a1, a2, g1, g2):
            return deep_similarity_maps(a1, a2)
    else:
        rule = pair_grad_cam_maps
    size = resolve_batch_size(settings.get("batch_size"), model.device)
    hw1, hw2 = tuple(query.shape[-2:]), tuple(matches.shape[-2:])
    scores, grids1, grids2 = [], [], []
    with torch.enable_grad():
        leaf_q, z_q = tapped_embed(model, query, "a", layer)
        a_q = on_grid(leaf_q.detach(), hw1)
        for part in chunk_slices(matches.shape[0], size):
            leaf_m, z_m = tapped_embed(model, matches[part], "b", layer)
            n = part.stop - part.start
            score = model.similarity(z_q.expand(n, -1), z_m)
            g_m = torch.autograd.grad(score.sum(), leaf_m, retain_graph=True)[0]
            eye = torch.eye(n, dtype=score.dtype, device=score.device)
            g_q = torch.autograd.grad(score, leaf_q, eye, retain_graph=True, is_grads_batched=True)[0][:, 0]
            a1 = a_q.expand(n, *a_q.shape[1:])
            a2, g1, g2 = on_grid(leaf_m.detach(), hw2), on_grid(g_q, hw1), on_grid(g_m, hw2)
            grid1, grid2 = rule(a1, a2, g1, g2)
            scores.append(score.detach())
            grids1.append(grid1.detach())
            grids2.append(grid2.detach())
    grid1, grid2 = torch.cat(grids1), torch.cat(grids2)
    return PairExplanation(
        map1=upsample_maps(grid1, hw1),
        map2=upsample_maps(grid2, hw2),
        score=torch.cat(scores),
        grid1=grid1,
        grid2=grid2,
        method=method,
    )


# ---------------------------------------------------------------------------------------------- the margin
MARGIN_METHODS = ("input-x-gradient", "conditional-occlusion", "pair-grad-cam")


@dataclass
class MarginExplanation:
    """Maps of ``s(query, better) − s(query, worse)`` on the three images of ``B`` triplets.

    Attributes:
        map_query, map_better, map_worse: ``B×H×W`` maps at each image's input size.
        margin, score_better, score_worse: ``[B]``.
        method, config: the method and its resolved settings.
    """

    map_query: Tensor
    map_better: Tensor
    map_worse: Tensor
    margin: Tensor
    score_better: Tensor
    score_worse: Tensor
    method: str
    config: dict


def explain_margin(
    model: PairModel, query: Tensor, better: Tensor, worse: Tensor, method: str = "input-x-gradient", **params
) -> MarginExplanation:
    """Explain why ``better`` beats ``worse`` for ``query``: the margin ``s(q, b) − s(q, w)`` with a map on
    each image, for the methods whose definition carries over to a difference of two scores
    (docs/second_order.md):

    - ``input-x-gradient``: ``max_c |x ⊙ ∂margin/∂x|`` for each of the three images;
    - ``conditional-occlusion``: the margin's drop per window (query: ``d(q,b) − d(q,w)``, better: its drop,
      worse: minus its drop); the query's occluded copies are embedded once for both pairs;
    - ``pair-grad-cam``: ``Σ_d A ⊙ relu(∂margin/∂A)`` at the layer.

    Example:
        >>> import torch, simexplain
        >>> model = simexplain.PairModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3)))
        >>> q, b, w = torch.rand(3, 1, 3, 4, 4)
        >>> m = simexplain.explain_margin(model, q, b, w, "input-x-gradient")
        >>> m.map_worse.shape, bool(torch.allclose(m.margin, m.score_better - m.score_worse))
        (torch.Size([1, 4, 4]), True)
    """
    from .methods import get
    from .methods.common import check_pair

    if method not in MARGIN_METHODS:
        raise SimexplainError(f"explain_margin supports {', '.join(MARGIN_METHODS)}, not {method!r}")
    entry = get(method)
    params = {**entry.parameters(), **entry.check(params)}
    if params.get("guided"):
        raise SimexplainError("explain_margin does not take guided=True")
    query, better = check_pair(model, query, better)
    _, worse = check_pair(model, query, worse)
    if better.shape != worse.shape:
        raise SimexplainError(
            f"better and worse differ in shape: {tuple(better.shape)} vs {tuple(worse.shape)}"
        )
    batch = query.shape[0]
    with model.explaining():
        if method == "input-x-gradient":
            maps, scores = _margin_gradients(model, query, better, worse)
        elif method == "conditional-occlusion":
            maps, scores = _margin_occlusion(model, query, better, worse, params)
        else:
            maps, scores = _margin_grad_cam(model, query, better, worse, params.get("layer"))
    score_better, score_worse = scores[:batch], scores[batch:]
    return MarginExplanation(
        *maps,
        margin=score_better - score_worse,
        score_better=score_better,
        score_worse=score_worse,
        method=method,
        config={k: v for k, v in params.items() if k != "batch_size"},
    )


def _margin_gradients(model: PairModel, q: Tensor, b: Tensor, w: Tensor) -> tuple[tuple, Tensor]:
    from .methods.common import saliency_map

    q, b, w = (x.detach().requires_grad_(True) for x in (q, b, w))
    with torch.enable_grad():
        zq = model.embed(q, "a")
        zbw = model.embed(torch.cat([b, w]), "b")
        scores = model.similarity(torch.cat([zq, zq]), zbw)
        half = len(q)
        margin = scores[:half] - scores[half:]
        gq, gb, gw = torch.autograd.grad(margin.sum(), (q, b, w))
    return (saliency_map(q, gq), saliency_map(b, gb), saliency_map(w, gw)), scores.detach()


def _margin_occlusion(
    model: PairModel, q: Tensor, b: Tensor, w: Tensor, params: dict
) -> tuple[tuple, Tensor]:
    from .methods.occlusion import occlude_windows

    settings = {key: params[key] for key in ("window", "stride", "fill", "output", "batch_size")}
    maps_q, maps_b, maps_w, better, worse = [], [], [], [], []
    for i in range(len(q)):  # per triplet: one query, two partners, its occluded copies embedded once
        e = occlude_windows(model, q[i : i + 1], torch.stack([b[i], w[i]]), **settings)
        maps_q.append(e.map1[0] - e.map1[1])
        maps_b.append(e.map2[0])
        maps_w.append(-e.map2[1])
        better.append(e.score[0])
        worse.append(e.score[1])
    stack = torch.stack
    return (stack(maps_q), stack(maps_b), stack(maps_w)), torch.cat([stack(better), stack(worse)])


def _margin_grad_cam(
    model: PairModel, q: Tensor, b: Tensor, w: Tensor, layer: str | None
) -> tuple[tuple, Tensor]:
    from .explanation import upsample_maps
    from .methods.cam import weighted_activation

    half = len(q)
    scores, a1, a2, g1, g2 = model.activations_and_gradients(torch.cat([q, q]), torch.cat([b, w]), layer)
    grid_q = weighted_activation(a1[:half], g1[:half] - g1[half:])
    grid_b = weighted_activation(a2[:half], g2[:half])
    grid_w = weighted_activation(a2[half:], -g2[half:])
    maps = (
        upsample_maps(grid_q, tuple(q.shape[-2:])),
        upsample_maps(grid_b, tuple(b.shape[-2:])),
        upsample_maps(grid_w, tuple(w.shape[-2:])),
    )
    return maps, scores


__all__ = [
    "MARGIN_METHODS",
    "EmbeddingCache",
    "MarginExplanation",
    "RetrievalResult",
    "default_cache_dir",
    "embed_gallery",
    "explain_margin",
    "explain_top_k",
    "gallery_files",
]
