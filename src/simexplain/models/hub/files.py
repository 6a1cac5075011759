"""Published weights in the libraries' own caches: the Hugging Face hub cache, offline or not.

The environment is read at each call, so ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` (or
``TRANSFORMERS_OFFLINE``) set by the caller apply even after ``huggingface_hub`` was imported. A file that is
neither cached nor reachable is one line: the model, where it was looked for, and the command that downloads
it. Every loaded model records where its weights came from in a ``provenance`` dict (:func:`provenance`).
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from ...cache import file_sha256
from ...errors import SimexplainError

EXTRA = "pip install 'simexplain[hub]'"
_TRUE = {"1", "ON", "YES", "TRUE"}


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` of the hub extra, or one line naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SimexplainError(f"{what} needs the hub extra ({module} is not installed): {EXTRA}") from None


def hub_cache() -> Path:
    """The Hugging Face hub cache as ``huggingface_hub`` finds it (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.environ.get("HF_HOME") or os.path.join(cache, "huggingface")).expanduser() / "hub"


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) says the hub must not be contacted."""
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if flag is not None:
        return flag.strip().upper() in _TRUE
    try:  # the flag as huggingface_hub read it at its import
        return bool(importlib.import_module("huggingface_hub.constants").HF_HUB_OFFLINE)
    except ImportError:
        return False


def download_command(repo: str, revision: str | None = None, filename: str | None = None) -> str:
    """The ``hf`` command line (huggingface_hub's own) that puts ``repo`` into the cache."""
    return (
        f"hf download {repo}"
        + (f" {filename}" if filename else "")
        + (f" --revision {revision}" if revision else "")
    )


def hub_file(
    what: str, repo: str, filename: str, revision: str | None = None, *, required: bool = True
) -> Path | None:
    """``filename`` of hub repository ``repo`` in the cache (fetched first unless offline).

    ``required=False`` returns ``None`` for a file the repository does not have (or, offline, that the cache
    lacks); any other failure is one :class:`SimexplainError` line.
    """
    hub = require("huggingface_hub", what)
    errors = hub.errors
    command = download_command(repo, revision)
    try:
        path = hub.hf_hub_download(
            repo, filename, revision=revision, cache_dir=hub_cache(), local_files_only=offline()
        )
    except errors.LocalEntryNotFoundError:
        if not required:
            return None
        raise not_cached(what, command) from None
    except errors.EntryNotFoundError:
        if not required:
            return None
        raise SimexplainError(f"{what}: the hub repository {repo} has no file {filename}") from None
    except errors.GatedRepoError:
        raise SimexplainError(
            f"{what}: {repo} is gated: accept its licence on the hub, log in (hf auth login), then: {command}"
        ) from None
    except errors.RepositoryNotFoundError:
        raise SimexplainError(
            f"{what}: no hub repository {repo} (a private one needs hf auth login)"
        ) from None
    except errors.RevisionNotFoundError:
        raise SimexplainError(f"{what}: {repo} has no revision {revision!r}") from None
    except (errors.HfHubHTTPError, OSError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SimexplainError(f"{what}: cannot fetch {filename} of {repo} ({reason})") from None
    return Path(path)


def hub_weights(what: str, repo: str, filename: str) -> Path:
    """A weights file of ``repo``: its safetensors twin when the repository has one (timm's and open_clip's
    rule: ``pytorch_model.bin`` → ``model.safetensors``, ``open_clip_pytorch_model.bin`` →
    ``open_clip_model.safetensors``), else ``filename`` itself (then loaded as plain tensors only)."""
    candidates = [filename]
    if filename.endswith(".bin"):
        stem = filename[: -len(".bin")].replace("pytorch_model", "model")
        candidates.insert(0, stem + ".safetensors")
    for name in candidates:
        path = hub_file(what, repo, name, required=False)
        if path is not None:
            return path
    if offline():
        raise not_cached(what, download_command(repo, filename=candidates[0]))
    raise SimexplainError(f"{what}: the hub repository {repo} has none of {', '.join(candidates)}")


def load_error(what: str, file: Path, error: BaseException) -> SimexplainError:
    """One line for a weights file its library could not load: a pickle that holds more than tensors (which
    ``torch.load(weights_only=True)`` blocks) is refused as such."""
    text = str(error).strip()
    if isinstance(error, pickle.UnpicklingError) or "weights_only" in text:
        return SimexplainError(
            f"{what}: {file.name} is a pickle holding more than tensors; refused (only safetensors or plain "
            "tensor files load)"
        )
    reason = (text.splitlines() or [type(error).__name__])[0][:300]
    return SimexplainError(f"{what}: cannot load {file.name} ({reason})")


def not_cached(what: str, command: str, cache: Path | None = None) -> SimexplainError:
    """The one line for weights that are neither cached nor reachable."""
    why = "HF_HUB_OFFLINE is set" if offline() else "the hub could not be reached"
    return SimexplainError(
        f"{what}: not in the cache {cache or hub_cache()} and {why}; download it: {command}"
    )


def revision_of(path: Path) -> str | None:
    """The commit hash of a file in a hub cache snapshot (``.../snapshots/COMMIT/FILE``), else ``None``."""
    parts = path.parts
    if "snapshots" in parts[:-1]:
        index = len(parts) - 1 - parts[::-1].index("snapshots")
        return parts[index + 1] if index + 1 < len(parts) - 1 else None
    return None


def sha256_of(files: Sequence[Path]) -> str:
    """SHA-256 of the files' bytes in the given order (one file: exactly its own SHA-256)."""
    return file_sha256(*files)


def provenance(
    source: str, files: Sequence[Path], *, repository: str | None = None, revision: str | None = None
) -> dict:
    """Where a model's weights came from, as JSON-ready facts (``PairModel.provenance``).

    Example:
        >>> import tempfile
        >>> file = Path(tempfile.mkdtemp()) / "model.safetensors"
        >>> _ = file.write_bytes(b"")
        >>> facts = provenance("open_clip:RN50/model.safetensors", [file])
        >>> facts["weights_sha256"][:12], facts["revision"]
        ('e3b0c44298fc', None)
    """
    return {
        "source": source,
        "repository": repository,
        "revision": revision,
        "files": [Path(f).name for f in files],
        "weights_sha256": sha256_of(files),
    }
