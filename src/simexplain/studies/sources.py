"""Where an evaluation's pairs come from: a folder, a CSV, two matched folders or the bundled photos.

:func:`load_pairs` turns a ``--pairs`` SOURCE into a list of :class:`PairSpec` (paths and seeds only; no image
is read, so a corrupt file fails its own pair later and nothing else). :func:`pair_images` reads one pair into
model-input tensors. SOURCE is one of:

- a folder of images, searched recursively: each image is paired with one seeded SimCLR view of itself (the
  paper's protocol); the pair's id is the image's path relative to the folder;
- a CSV file with the columns ``image1,image2`` and an optional ``id`` (relative paths are read from the CSV's
  folder); without ``id`` a pair is called ``row-<n>``, ``n`` counting data rows from 1; with the columns
  ``image,text`` instead, image–text pairs (for a model with a text tower, docs/image_text.md);
- ``DIR1:DIR2``: two folders, images matched by their relative path (the id); files found in one folder only
  are listed in :attr:`PairList.unmatched`;
- ``demo``: the bundled photos, each with its view (a folder named ``demo`` is reached as ``./demo``).

A path that exists is never split at a colon. Pairs come in the natural order of their ids (``row-2`` before
``row-10``), the same everywhere, so ``limit`` takes the same first pairs on every machine and shard; each
pair's seed comes from the run's seed and its id alone (:func:`pair_seed`). A run identifies a pair by its id
together with its images' content: :func:`with_digests` adds the SHA-256 of each image file's bytes, reading
each file once per run (:class:`ImageDigests`).

Example:
    >>> pairs = load_pairs("demo", seed=0)
    >>> [p.id for p in pairs], pairs[0].image2 is None
    (['astronaut.jpg', 'chelsea.jpg', 'coffee.jpg'], True)
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from .. import checks
from ..cache import file_sha256
from ..errors import SimexplainError
from ..images import load_image, sample_path, view_pair
from ..pair import PairModel

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DEMO_PHOTOS = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg")


@dataclass(frozen=True)
class PairSpec:
    """One pair of an evaluation, before any image is read.

    Attributes:
        id: stable unique name of the pair (a relative path, the CSV's ``id``, ``row-<n>``, a photo's name).
        image1: path of image 1.
        image2: path of image 2, or ``None``: image 2 is one SimCLR view of image 1 drawn with ``seed``.
        seed: the pair's seed, from the run's seed and ``id`` (:func:`pair_seed`).
        image1_sha256, image2_sha256: the SHA-256 of the image files' bytes, once :func:`with_digests`
            added them (``None`` before, for a view, or for a file that could not be read).
        text: for an image–text pair, the text (``image2`` is then ``None``).
    """

    id: str
    image1: str
    image2: str | None
    seed: int
    text: str | None = None
    image1_sha256: str | None = None
    image2_sha256: str | None = None

    @property
    def digests(self) -> tuple[str | None, str | None]:
        """``(image1_sha256, image2_sha256)``: the pair's content; for an image–text pair the second is the
        SHA-256 of the text's UTF-8 bytes, so a CSV whose text changed under the same id is computed again."""
        if self.text is not None:
            return self.image1_sha256, hashlib.sha256(self.text.encode("utf-8")).hexdigest()
        return self.image1_sha256, self.image2_sha256


class PairList(list):
    """The pairs of a source, in order (a ``list`` of :class:`PairSpec`).

    Attributes:
        unmatched: for ``DIR1:DIR2``, the paths of the images found in only one of the two folders, sorted;
            empty for the other sources.
    """

    def __init__(self, pairs: Iterable[PairSpec] = (), unmatched: Iterable[str] = ()) -> None:
        super().__init__(pairs)
        self.unmatched = tuple(unmatched)


def pair_seed(run_seed: int, pair_id: str) -> int:
    """A pair's seed in ``[0, 2**63)``: the SHA-256 of ``"{run_seed}:{pair_id}"``, so it is the same in every
    run, shard and machine, and differs between pairs.

    Example:
        >>> pair_seed(0, "cat.jpg") == pair_seed(0, "cat.jpg") != pair_seed(1, "cat.jpg")
        True
    """
    run_seed = checks.non_negative_int("seed", run_seed)
    digest = hashlib.sha256(f"{run_seed}:{pair_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % checks.SEED_LIMIT


def load_pairs(source: str, *, seed: int = 0, limit: int | None = None) -> PairList:
    """The pairs of ``source`` (see the module's text for the forms), in a stable order, the first ``limit``.

    Only names and paths are read here; a missing, empty or malformed source is a one-line
    :class:`SimexplainError`.

    Example:
        >>> [p.id for p in load_pairs("demo", limit=2)]
        ['astronaut.jpg', 'chelsea.jpg']
    """
    seed = checks.non_negative_int("seed", seed)
    if limit is not None:
        limit = checks.positive_int("limit", limit)
    if not isinstance(source, str | os.PathLike) or not str(source).strip():
        raise SimexplainError("no pair source given (a folder, a CSV file, DIR1:DIR2 or demo)")
    source = os.fspath(source)
    unmatched: tuple[str, ...] = ()
    if source == "demo":
        found = {name: (str(sample_path(name)), None) for name in DEMO_PHOTOS}
    elif os.path.isdir(source):
        found = {name: (path, None) for name, path in _images(source).items()}
        if not found:
            raise SimexplainError(f"{source}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    elif os.path.isfile(source):
        found = _csv_pairs(source)
    elif os.path.exists(source):
        raise SimexplainError(f"{source}: not a folder or a CSV file")
    else:
        found, unmatched = _matched_folders(source)
    ids = sorted(found, key=_natural)[:limit]
    pairs = [PairSpec(i, found[i][0], found[i][1], pair_seed(seed, i), *found[i][2:]) for i in ids]
    return PairList(pairs, unmatched)


def holds_texts(source: str | os.PathLike) -> bool:
    """Whether ``source`` is a CSV file of image–text pairs (its header has ``image`` and ``text``).

    Example:
        >>> holds_texts("demo")
        False
    """
    path = os.fspath(source)
    if not os.path.isfile(path) or path.lower().endswith(IMAGE_EXTENSIONS):
        return False
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            header = [name.strip() for name in next(csv.reader(file), [])]
    except (UnicodeDecodeError, csv.Error, OSError):
        return False
    return "image" in header and "text" in header and "image1" not in header


def _natural(pair_id: str) -> tuple:
    """Sort key: digit runs compare as numbers (``row-2`` < ``row-10``); the text itself breaks ties."""
    parts = re.split(r"(\d+)", pair_id)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), pair_id


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images(folder: str) -> dict[str, str]:
    """Relative path (with ``/``) → path of every image under ``folder``; hidden files and folders skipped.

    Linked folders are followed once each (a link loop cannot recurse forever).
    """
    found = {}
    seen = {os.path.realpath(folder)}
    for root, dirs, files in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(dirs):
            real = os.path.realpath(os.path.join(root, name))
            if not name.startswith(".") and real not in seen:
                seen.add(real)
                kept.append(name)
        dirs[:] = kept
        for name in files:
            path = os.path.join(root, name)
            if _is_image(name) and os.path.isfile(path):
                found[Path(os.path.relpath(path, folder)).as_posix()] = path
    return found


def _csv_pairs(path: str) -> dict[str, tuple[str, str]]:
    """``id`` → ``(image1, image2)`` from a CSV file with the columns ``image1,image2`` and maybe ``id``."""
    if path.lower().endswith(IMAGE_EXTENSIONS):
        raise SimexplainError(
            f"{path}: an image, not a pair source (give its folder, a CSV file or DIR1:DIR2)"
        )
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
            columns = [name.strip() for name in reader.fieldnames or []]
    except (UnicodeDecodeError, csv.Error, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SimexplainError(f"{path}: cannot read as a CSV file ({reason})") from None
    if "image" in columns and "text" in columns and "image1" not in columns:
        return _text_rows(path, rows, columns, folder)
    missing = [c for c in ("image1", "image2") if c not in columns]
    if missing:
        raise SimexplainError(
            f"{path}: CSV lacks the column {', '.join(missing)} (needs image1,image2, or image,text, and "
            f"optionally id; found {', '.join(columns) or 'no header'})"
        )
    if not rows:
        raise SimexplainError(f"{path}: the CSV file holds no pairs")
    found: dict[str, tuple[str, str]] = {}
    for number, row in enumerate(rows, start=1):
        row = {k.strip(): v.strip() for k, v in row.items() if isinstance(k, str) and isinstance(v, str)}
        pair_id = row.get("id", f"row-{number}") if "id" in columns else f"row-{number}"
        images = [row.get(c, "") for c in ("image1", "image2")]
        for column, value in (("id", pair_id), ("image1", images[0]), ("image2", images[1])):
            if not value:
                raise SimexplainError(f"{path}: data row {number} has an empty {column}")
        if pair_id in found:
            raise SimexplainError(f"{path}: the id {pair_id!r} appears twice (data row {number})")
        found[pair_id] = tuple(os.path.join(folder, os.path.expanduser(image)) for image in images)
    return found


def _text_rows(path: str, rows: list[dict], columns: list[str], folder: str) -> dict[str, tuple]:
    """``id`` → ``(image, None, text)`` from the rows of an ``image,text`` CSV."""
    found: dict[str, tuple] = {}
    for number, row in enumerate(rows, start=1):
        row = {k.strip(): v.strip() for k, v in row.items() if isinstance(k, str) and isinstance(v, str)}
        pair_id = row.get("id", f"row-{number}") if "id" in columns else f"row-{number}"
        for column in ("id", "image", "text"):
            if not (pair_id if column == "id" else row.get(column, "")):
                raise SimexplainError(f"{path}: data row {number} has an empty {column}")
        if pair_id in found:
            raise SimexplainError(f"{path}: the id {pair_id!r} appears twice (data row {number})")
        found[pair_id] = (os.path.join(folder, os.path.expanduser(row["image"])), None, row["text"])
    return found


def _matched_folders(source: str) -> tuple[dict[str, tuple[str, str]], tuple[str, ...]]:
    """``DIR1:DIR2``: the images present in both folders (by relative path), and the unmatched ones."""
    splits = [i for i, c in enumerate(source) if c == ":"]
    folders = [(source[:i], source[i + 1 :]) for i in splits]
    both = [(a, b) for a, b in folders if os.path.isdir(a) and os.path.isdir(b)]
    if not folders:
        raise SimexplainError(f"{source}: no such file or folder")
    if len(both) > 1:
        raise SimexplainError(f"{source}: ambiguous DIR1:DIR2 (several colons split it into two folders)")
    if not both:
        absent = [f for f in folders[0] if not os.path.isdir(f)] if len(folders) == 1 else []
        what = f"no such folder {', '.join(absent)}" if absent else "no split gives two existing folders"
        raise SimexplainError(f"{source}: not a file or folder, nor DIR1:DIR2 ({what})")
    first, second = both[0]
    images1, images2 = _images(first), _images(second)
    names = images1.keys() & images2.keys()
    if not names:
        raise SimexplainError(
            f"{source}: the two folders share no image name ({len(images1)} and {len(images2)} images)"
        )
    unmatched = [images1[n] for n in images1.keys() - names] + [images2[n] for n in images2.keys() - names]
    return {n: (images1[n], images2[n]) for n in names}, tuple(sorted(unmatched))


class ImageDigests:
    """The SHA-256 of image files, each file read once however many pairs share it (one per run).

    Calling it with a path gives the hex digest, or ``None`` for no path (a view) or a file that cannot be
    read now (the pair then fails on its own when its images are decoded).

    Example:
        >>> digests = ImageDigests()
        >>> digests(str(sample_path("chelsea.jpg")))[:12], digests(None), digests("no-such.jpg")
        ('4668d369e5b6', None, None)
    """

    def __init__(self) -> None:
        self._known: dict[str, str | None] = {}

    def __call__(self, path: str | None) -> str | None:
        if path is None:
            return None
        key = os.path.abspath(path)
        if key not in self._known:
            try:
                self._known[key] = file_sha256(key)
            except OSError:
                self._known[key] = None
        return self._known[key]


def with_digests(specs: Iterable[PairSpec], digests: ImageDigests | None = None) -> list[PairSpec]:
    """``specs`` with the SHA-256 of their image files (``digests`` reads each file once; a new one by
    default).

    Example:
        >>> spec = with_digests(load_pairs("demo", limit=1))[0]
        >>> len(spec.image1_sha256), spec.image2_sha256
        (64, None)
    """
    digests = digests or ImageDigests()
    return [
        dataclasses.replace(spec, image1_sha256=digests(spec.image1), image2_sha256=digests(spec.image2))
        for spec in specs
    ]


def pair_images(spec: PairSpec, model: PairModel) -> tuple[Tensor, Tensor | str]:
    """The pair as two ``1×3×H×W`` model-input tensors on the model's device and dtype.

    Image 2 is read from its file, or, when ``spec.image2`` is ``None``, drawn as one SimCLR view of image 1
    (resized and cropped as the model wants) with a generator seeded by ``spec.seed``, as
    :func:`simexplain.service.demo_pair` does. The same spec gives the same tensors. An unreadable image is a
    one-line :class:`SimexplainError` naming its file.

    Example:
        >>> import simexplain, torch
        >>> small = simexplain.Preprocessing(input_size=(32, 32), resize=36)
        >>> model = simexplain.PairModel(torch.nn.Flatten(), preprocessing=small)
        >>> x1, x2 = pair_images(load_pairs("demo")[0], model)
        >>> x1.shape, torch.equal(x2, pair_images(load_pairs("demo")[0], model)[1])
        (torch.Size([1, 3, 32, 32]), True)
    """
    target = {"device": model.device, "dtype": model.dtype}
    if spec.text is not None:  # an image–text pair: the image and its text
        return load_image(spec.image1, model, "image").to(**target), spec.text
    if spec.image2 is not None:
        x1 = load_image(spec.image1, model, "image 1").to(**target)
        return x1, load_image(spec.image2, model, "image 2").to(**target)
    return view_pair(spec.image1, model, spec.seed, "image 1")


__all__ = [
    "DEMO_PHOTOS",
    "IMAGE_EXTENSIONS",
    "ImageDigests",
    "PairList",
    "PairSpec",
    "holds_texts",
    "load_pairs",
    "pair_images",
    "pair_seed",
    "with_digests",
]
