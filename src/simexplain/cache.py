"""Where simexplain keeps files it can rebuild, and how it checks them: one root for every on-disk cache.

Every cache lives under :func:`cache_root`: the engines' exported graphs in ``engines/``, the retrieval
gallery's embeddings in ``embeddings/``, the face model's weights in ``face-api/``. What a cache holds is
checked when it is read, not only when it is written (:func:`sha256_matches`, the retrieval entries' own
checks); a cache folder that cannot be used is one line (:func:`usable_folder`), and an entry found bad is
rebuilt with one :class:`CacheWarning` line (:func:`warn`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

from .errors import SimexplainError


def cache_root() -> Path:
    """``$SIMEXPLAIN_CACHE``, else ``$XDG_CACHE_HOME/simexplain``, else ``~/.cache/simexplain``.

    The folder is not created here: each cache makes its own subfolder when it first writes.

    Example:
        >>> folder = cache_root() / "engines"  # the exported graphs of the inference engines
        >>> folder.parent.name == "simexplain" or "SIMEXPLAIN_CACHE" in os.environ
        True
    """
    explicit = os.environ.get("SIMEXPLAIN_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "simexplain"
    return Path.home() / ".cache" / "simexplain"


def file_sha256(path: str | os.PathLike, *more: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks; with ``more`` files, of all their bytes
    in order (a checkpoint split into shards).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "empty"
        >>> _ = path.write_bytes(b"")
        >>> file_sha256(path)[:16], file_sha256(path, path) == file_sha256(path)
        ('e3b0c44298fc1c14', True)
    """
    digest = hashlib.sha256()
    for each in (path, *more):
        with open(each, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sha256_matches(path: str | os.PathLike, expected: str | None) -> bool:
    """Whether the file at ``path`` exists and its SHA-256 is ``expected`` (the one "hash a file and
    compare" of every cache: the engines' graphs against their sidecars, the face weights against the
    release's).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "empty"
        >>> _ = path.write_bytes(b"")
        >>> digest = file_sha256(path)
        >>> sha256_matches(path, digest), sha256_matches(path, "0" * 64), sha256_matches(path, None)
        (True, False, False)
    """
    if not expected or not Path(path).is_file():
        return False
    return file_sha256(path) == expected


def usable_folder(folder: str | os.PathLike, what: str) -> Path:
    """``folder``, created when missing; one :class:`SimexplainError` line naming ``what`` when it cannot be
    used as a cache (a file, not creatable, not writable).

    Example:
        >>> import tempfile
        >>> file = Path(tempfile.mkdtemp()) / "file"
        >>> _ = file.write_bytes(b"")
        >>> usable_folder(file, "--cache")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        simexplain.errors.SimexplainError: --cache ...file: a file, not a folder
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise SimexplainError(f"{what} {path}: a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SimexplainError(f"{what} {path}: cannot create the folder ({error.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SimexplainError(f"{what} {path}: the folder is not writable")
    return path


class CacheWarning(UserWarning):
    """A cache entry could not be used and was rebuilt (the results are unaffected)."""


def warn(message: str) -> None:
    """Emit ``message`` as ONE :class:`CacheWarning` line (filterable like any warning; no source line
    under it, since the cause is a file, not a line of code)."""
    warnings.warn_explicit(message, CacheWarning, filename="simexplain", lineno=0, module="simexplain.cache")


__all__ = ["CacheWarning", "cache_root", "file_sha256", "sha256_matches", "usable_folder", "warn"]
