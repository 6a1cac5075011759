"""Retrieval explanations: rank a gallery against a query, explain the top ``K`` matches, and explain why one
match beats another (:func:`explain_margin`).

The gallery is embedded once, in chunks, through image 2's encoder, and each image's embedding can be cached
on disk under a key made of the model (its name, preprocessing and a hash of its weights) and the image's
content, so a rerun on a grown gallery embeds only the new images. The query's clean embedding is computed
once; its share of the method's work is done once for all ``K`` matches when the method registered a
one-to-many hook (:func:`simexplain.methods.registry.register_one_to_many`: Conditional Occlusion embeds the
query's occluded copies once, the CAMs tap the query once, Input×Gradient and Smooth-Grad embed the query, or
each noisy copy of it, once). Other methods explain the ``K`` pairs in one batched call. Margins
(:func:`explain_margin`) likewise use the hook a method registered for them.

A gallery image whose content equals the query's (the same :func:`content_key`: SHA-256 of the file's bytes,
or of a tensor's values) is left out of the ranking, since it would rank first with ``s = 1``; the result
lists it in ``left_out``, and ``keep_query=True`` ranks it like any other image.

Example:
    >>> import torch, simexplain
    >>> from torch import nn
    >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    >>> gallery = torch.rand(6, 3, 16, 16)
    >>> result = explain_top_k(model, gallery[2:3], gallery, 2, "conditional-occlusion", window=8, stride=4)
    >>> result.left_out, 2 in result.indices.tolist(), len(result.explanation), result.shared_query
    ([2], False, 2, True)
    >>> kept = explain_top_k(model, gallery[2:3], gallery, 2, "conditional-occlusion", keep_query=True)
    >>> kept.indices[0].item(), kept.left_out
    (2, [])
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from .batching import chunk_slices, resolve_batch_size
from .cache import cache_root, usable_folder, warn
from .errors import SimexplainError
from .explanation import PairExplanation
from .images import ImageSource, load_image
from .methods.text_margin import TextMarginExplanation, explain_text_margin
from .pair import PairModel

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

Gallery = Tensor | Sequence[ImageSource] | str | os.PathLike


def default_cache_dir() -> Path:
    """The gallery embeddings' cache: ``cache_root() / "embeddings"`` (:func:`simexplain.cache.cache_root`:
    ``$SIMEXPLAIN_CACHE``, else ``$XDG_CACHE_HOME/simexplain``, else ``~/.cache/simexplain``).

    Example:
        >>> default_cache_dir().name
        'embeddings'
    """
    return cache_root() / "embeddings"


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
    """One file per (model, image content) under ``root/<model fingerprint>/``, checked when read.

    An entry holds its key, the model's whole fingerprint, the embedding's shape and the embedding; one whose
    file is corrupt, whose key, model or shape is not its own, or whose values are not finite is not used:
    :meth:`get` returns ``None`` and keeps the reason in :attr:`problems` (the caller embeds the image again
    and overwrites the entry). A root that cannot be used (a file, not writable) is one line.

    Example:
        >>> import tempfile, torch
        >>> cache = EmbeddingCache(tempfile.mkdtemp(), "m" * 64)
        >>> cache.put("abc", torch.ones(3)); cache.get("abc").tolist(), cache.get("xyz")
        ([1.0, 1.0, 1.0], None)
        >>> torch.save(torch.ones(3), cache.folder / "def.pt")  # a bare tensor: no key, no shape
        >>> cache.get("def"), cache.problems
        (None, ['def.pt: not a cache entry of this version'])
    """

    def __init__(self, root: str | os.PathLike, fingerprint: str) -> None:
        usable_folder(root, "retrieval cache")
        self.fingerprint = fingerprint
        self.folder = usable_folder(Path(root) / fingerprint[:32], "retrieval cache")
        self.problems: list[str] = []

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def get(self, key: str) -> Tensor | None:
        """The embedding stored for ``key``, or ``None`` (absent, or unusable: the reason in
        :attr:`problems`)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001  (torch.load fails in many ways on broken bytes)
            # Our own words: torch's message would suggest weights_only=False, never right for a cache.
            self.problems.append(f"{path.name}: unreadable ({type(error).__name__})")
            return None
        reason = self._refusal(entry, key)
        if reason:
            self.problems.append(f"{path.name}: {reason}")
            return None
        return entry["embedding"]

    def _refusal(self, entry: object, key: str) -> str:
        """Why ``entry`` cannot stand for ``key``'s embedding ("" when it can)."""
        fields = ("key", "model", "shape", "embedding")
        if not isinstance(entry, dict) or any(name not in entry for name in fields):
            return "not a cache entry of this version"
        embedding = entry["embedding"]
        if entry["key"] != key or entry["model"] != self.fingerprint:
            return "written for another image or model"
        if not isinstance(embedding, Tensor) or list(embedding.shape) != entry["shape"]:
            return f"an embedding whose shape is not its recorded {entry['shape']}"
        if not torch.isfinite(embedding).all():
            return "NaN or infinite values"
        return ""

    def warn_problems(self) -> None:
        """ONE :class:`~simexplain.cache.CacheWarning` line naming the entries found bad (when any), which
        the caller rebuilt; the list starts again."""
        if not self.problems:
            return
        count = f"{len(self.problems)} {'entry' if len(self.problems) == 1 else 'entries'}"
        first = "; ".join(self.problems[:2]) + ("; ..." if len(self.problems) > 2 else "")
        warn(f"retrieval cache {self.folder}: {count} not usable ({first}); rebuilt")
        self.problems = []

    def put(self, key: str, embedding: Tensor) -> None:
        """Store ``embedding`` under ``key`` (atomically); a non-finite one is not kept."""
        embedding = embedding.detach().cpu().clone()
        if not torch.isfinite(embedding).all():
            return  # the model's own NaN: computed again next time rather than stored
        entry = {
            "key": key,
            "model": self.fingerprint,
            "shape": list(embedding.shape),
            "embedding": embedding,
        }
        partial = self._path(key).with_suffix(f".{os.getpid()}.tmp")
        try:
            torch.save(entry, partial)
            os.replace(partial, self._path(key))  # atomic: a reader never sees half a file
        except OSError as error:
            partial.unlink(missing_ok=True)
            self.problems.append(f"{self._path(key).name}: not written ({error.strerror})")


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


class GallerySelection(NamedTuple):
    """Which gallery images a query is ranked against: ``kept`` (gallery indices, in order) and ``left_out``
    (those whose content equals the query's)."""

    kept: list[int]
    left_out: list[int]


def query_copies(query: ImageSource, items: Sequence[ImageSource]) -> list[int]:
    """The indices of the gallery ``items`` whose content equals the query's: the same :func:`content_key`
    (SHA-256 of a file's bytes; of a tensor's shape, dtype and values). Only the items that can match are
    hashed (files of the query file's size, tensors of the query's shape and dtype); a query given as bytes,
    a PIL image or an array matches nothing.

    Example:
        >>> import torch
        >>> gallery = list(torch.rand(4, 3, 8, 8))
        >>> query_copies(gallery[1].clone()[None], gallery), query_copies(torch.rand(3, 8, 8), gallery)
        ([1], [])
    """
    if isinstance(query, Tensor):
        query = query[0] if query.dim() == 4 and query.shape[0] == 1 else query
        candidates = [
            i
            for i, item in enumerate(items)
            if isinstance(item, Tensor) and item.shape == query.shape and item.dtype == query.dtype
        ]
    elif isinstance(query, str | os.PathLike) and _file_size(query) is not None:
        size = _file_size(query)
        candidates = [i for i, item in enumerate(items) if isinstance(item, str | os.PathLike)]
        candidates = [i for i in candidates if _file_size(items[i]) == size]
    else:
        return []
    if not candidates:
        return []
    key = content_key(query)
    return [i for i in candidates if content_key(items[i]) == key]


def _file_size(path: str | os.PathLike) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:  # a missing file matches nothing here; loading it says why
        return None


def select_gallery(
    query: ImageSource,
    items: Sequence[ImageSource],
    k: int,
    *,
    keep_query: bool = False,
    names: tuple[str, str] = ("k", "keep_query=True"),
) -> GallerySelection:
    """The gallery images ranked for ``query``: all of them with ``keep_query``, else all but
    :func:`query_copies`; one line when fewer than ``k`` are left (``names``: how the caller calls ``k`` and
    ``keep_query`` in that line).

    Example:
        >>> import torch
        >>> gallery = list(torch.rand(3, 3, 8, 8))
        >>> select_gallery(gallery[0], gallery, 2), select_gallery(gallery[0], gallery, 3, keep_query=True)
        (GallerySelection(kept=[1, 2], left_out=[0]), GallerySelection(kept=[0, 1, 2], left_out=[]))
    """
    left_out = [] if keep_query else query_copies(query, items)
    kept = [i for i in range(len(items)) if i not in set(left_out)]
    if k > len(kept):
        less = ""
        if left_out:
            them = "it" if len(left_out) == 1 else "them"
            less = f" less {len(left_out)} with the query's content ({names[1]} keeps {them})"
        raise SimexplainError(f"{names[0]}={k} exceeds the gallery's {len(items)} images{less}")
    return GallerySelection(kept, left_out)


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
    """The gallery's embeddings and how many of them were computed (not read from the cache).

    Cached entries are checked (:class:`EmbeddingCache`), and one whose size differs from the embeddings
    computed now (or, when all came from the cache, from most of them) is embedded again; every entry
    found bad is named in ONE warning line.
    """
    size = resolve_batch_size(batch_size, model.device)
    store = EmbeddingCache(cache, model_fingerprint(model)) if cache is not None else None
    keys = [content_key(item) for item in items] if store is not None else []
    found: dict[int, Tensor] = {}
    for i, key in enumerate(keys):
        hit = store.get(key)
        if hit is not None:
            found[i] = hit.to(model.device)
    computed = _embed(model, items, [i for i in range(len(items)) if i not in found], size)
    odd = _odd_sized(found, computed)
    if odd:
        store.problems += [f"{keys[i]}.pt: an embedding of {found.pop(i).numel()} values" for i in odd]
        computed.update(_embed(model, items, odd, size))
    if store is not None:
        for i, row in computed.items():
            store.put(keys[i], row)
        store.warn_problems()
    found.update(computed)
    with torch.inference_mode(False):
        return torch.stack([found[i] for i in range(len(items))]).clone(), len(computed)


def _embed(model: PairModel, items: list[ImageSource], indices: list[int], size: int) -> dict[int, Tensor]:
    """The embeddings of ``items[i]`` for ``i`` in ``indices``, through image 2's encoder, in chunks."""
    rows: dict[int, Tensor] = {}
    with model.explaining(), torch.inference_mode():
        for part in chunk_slices(len(indices), size, desc="gallery"):
            chunk = indices[part]
            z = model.embed(_load(model, [items[i] for i in chunk]), "b").clone()
            rows.update(zip(chunk, z))
    return rows


def _odd_sized(found: dict[int, Tensor], computed: dict[int, Tensor]) -> list[int]:
    """The cached embeddings whose shape is not the gallery's: the shape computed now, else the most
    common cached one."""
    shapes = [tuple(row.shape) for row in (computed or found).values()]
    if not shapes:
        return []
    expected = max(sorted(set(shapes)), key=shapes.count)  # sorted first: a tie breaks the same way
    return [i for i, row in found.items() if tuple(row.shape) != expected]


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
        left_out: the gallery indices not ranked because their content equals the query's
            (:func:`query_copies`; empty with ``keep_query``).
        keep_query: whether images with the query's content were ranked too.
    """

    indices: Tensor
    scores: Tensor
    explanation: PairExplanation
    query: Tensor
    matches: Tensor
    labels: list[str]
    shared_query: bool
    embedded: int = 0
    left_out: list[int] = field(default_factory=list)
    keep_query: bool = False

    def to_json(self) -> dict:
        """Ranks, gallery indices, labels, scores, the method's config and the images left out as plain JSON
        data."""
        left_out = [{"index": i, "label": self.labels[i]} for i in self.left_out]
        return {
            "method": self.explanation.method,
            "config": self.explanation.config,
            "shared_query": self.shared_query,
            "gallery": {
                "images": len(self.labels),
                "embedded": self.embedded,
                "keep_query": self.keep_query,
                "left_out": left_out,
            },
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
    keep_query: bool = False,
    **params,
) -> RetrievalResult:
    """Rank ``gallery`` by similarity to ``query`` and explain the ``k`` best pairs with ``method``.

    ``params`` are the method's own settings (as for :func:`simexplain.explain`); ``cache`` (a folder),
    ``gallery_batch_size`` (images per forward while embedding the gallery) and ``keep_query`` (rank gallery
    images whose content equals the query's too; by default they are left out and listed in ``left_out``)
    belong to the ranking step. The query is image 1 and each match image 2. A method with a one-to-many hook
    does the query's work once for all ``k`` matches; the result equals the method on the ``k`` pairs one by
    one.
    """
    from . import checks
    from .methods import get
    from .methods.common import check_pair

    k = checks.positive_int("k", k)
    keep_query = checks.boolean("keep_query", keep_query)
    entry = get(method)
    params = entry.check(params)
    entry.check_model(model)
    items = _items(gallery)
    selection = select_gallery(query, items, k, keep_query=keep_query)
    labels = [str(item) if not isinstance(item, Tensor) else f"gallery[{i}]" for i, item in enumerate(items)]
    query_image = (
        query if isinstance(query, Tensor) and query.dim() == 4 else load_image(query, model, "query")
    )
    with model.explaining():
        ranked = [items[i] for i in selection.kept]
        gallery_z, embedded = _embed_gallery(model, ranked, gallery_batch_size, cache)
        query_image, _ = check_pair(model, query_image, query_image)
        if query_image.shape[0] != 1:
            raise SimexplainError(f"give one query image, got {query_image.shape[0]}")
        with torch.inference_mode():
            query_z = model.embed(query_image, "a")
            ranking = model.similarity(query_z.expand(len(ranked), -1), gallery_z)
        scores, positions = ranking.topk(k)
        indices = torch.tensor(selection.kept, device=positions.device)[positions]  # gallery indices
        matches = _load(model, [items[i] for i in indices.tolist()])
        explanation = _explain_matches(
            model, query_image, matches, entry, params, (query_z, gallery_z[positions])
        )
    with torch.inference_mode(False):
        return RetrievalResult(
            indices.clone(),
            scores.clone(),
            explanation.result,
            query_image,
            matches,
            labels,
            explanation.shared_query,
            embedded,
            selection.left_out,
            keep_query,
        )


class _Explained(NamedTuple):
    result: PairExplanation
    shared_query: bool


def _explain_matches(
    model: PairModel, query: Tensor, matches: Tensor, entry, params: dict, embeddings: tuple[Tensor, Tensor]
) -> _Explained:
    """The ``K`` pairs ``(query, match)`` through the method's one-to-many hook when it has one (and
    ``K > 1``), else as one batched call of the method."""
    from .methods import explain

    hook = entry.one_to_many
    if hook is not None and len(matches) > 1:
        settings = {**entry.parameters(), **params}  # every parameter, as the method sees them
        result = hook(model, query, matches, embeddings=embeddings, **settings)
        if result is not None:
            return _Explained(result, True)
    queries = query.expand(len(matches), -1, -1, -1)
    return _Explained(explain(model, queries, matches, entry.name, **params), False)


# ---------------------------------------------------------------------------------------------- the margin
def margin_methods() -> list[str]:
    """The methods whose definition carries over to a margin of two scores (they registered a margin hook).

    Example:
        >>> margin_methods()
        ['input-x-gradient', 'conditional-occlusion', 'pair-grad-cam']
    """
    from .methods import available, get

    return [name for name in available() if get(name).margin is not None]


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
) -> MarginExplanation | TextMarginExplanation:
    """Explain why ``better`` beats ``worse`` for ``query``: the margin ``s(q, b) − s(q, w)`` with a map on
    each image, for the methods whose definition carries over to a difference of two scores
    (:func:`margin_methods`, docs/second_order.md):

    - ``input-x-gradient``: ``max_c |x ⊙ ∂margin/∂x|`` for each of the three images;
    - ``conditional-occlusion``: the margin's drop per window (query: ``d(q,b) − d(q,w)``, better: its drop,
      worse: minus its drop); the query's occluded copies are embedded once for both pairs;
    - ``pair-grad-cam``: ``Σ_d A ⊙ relu(∂margin/∂A)`` at the layer.

    With texts as ``better`` and ``worse`` (an image–text model), the image's map of ``s(image, better) −
    s(image, worse)`` and each word's share of it, for every method with an image–text form
    (:func:`simexplain.methods.text_margin.explain_text_margin`).

    Example:
        >>> import torch, simexplain
        >>> model = simexplain.PairModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3)))
        >>> q, b, w = torch.rand(3, 1, 3, 4, 4)
        >>> m = simexplain.explain_margin(model, q, b, w, "input-x-gradient")
        >>> m.map_worse.shape, bool(torch.allclose(m.margin, m.score_better - m.score_worse))
        (torch.Size([1, 4, 4]), True)
    """
    from .methods import get, is_text
    from .methods.common import check_pair

    if is_text(better) or is_text(worse) or getattr(model, "text_tower", None) is not None:
        return explain_text_margin(model, query, better, worse, method, **params)
    entry = get(method)
    if entry.margin is None:
        raise SimexplainError(f"explain_margin supports {', '.join(margin_methods())}, not {method!r}")
    settings = {**entry.parameters(), **entry.check(params)}
    entry.check_model(model)
    query, better = check_pair(model, query, better)
    _, worse = check_pair(model, query, worse)
    if better.shape != worse.shape:
        raise SimexplainError(
            f"better and worse differ in shape: {tuple(better.shape)} vs {tuple(worse.shape)}"
        )
    with model.explaining():
        maps, scores = entry.margin(model, query, better, worse, **settings)
    score_better, score_worse = scores[: len(query)], scores[len(query) :]
    return MarginExplanation(
        *maps,
        margin=score_better - score_worse,
        score_better=score_better,
        score_worse=score_worse,
        method=method,
        config={k: v for k, v in settings.items() if k != "batch_size"},
    )


__all__ = [
    "EmbeddingCache",
    "GallerySelection",
    "MarginExplanation",
    "RetrievalResult",
    "default_cache_dir",
    "embed_gallery",
    "explain_margin",
    "explain_top_k",
    "gallery_files",
    "margin_methods",
    "query_copies",
    "select_gallery",
]
