"""Where simexplain keeps files it can rebuild: one root for every on-disk cache.

The inference engines keep their exported graphs under ``cache_root() / "engines"``. (The retrieval gallery
and the face model's weights still compute their own folders; a later change moves them here.)
"""

from __future__ import annotations

import os
from pathlib import Path


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
