"""Checkpoint files: safe loading, prefix stripping and strict matching with a readable report.

Checkpoints are pickles: they are always read with ``weights_only=True`` so that a file can never run code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import SimexplainError


def load_checkpoint(path: str | os.PathLike, *, safe_globals: Iterable[type] = ()) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one-line errors.

    ``safe_globals`` allow-lists plain container classes an official file needs (e.g. ``argparse.Namespace``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SimexplainError(f"checkpoint {path}: no such file")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unsupported content"
        raise SimexplainError(
            f"checkpoint {path} refused: it needs arbitrary unpickling, which could run code ({first[:160]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SimexplainError(f"checkpoint {path} is truncated or not a torch checkpoint ({first[:160]})") from None


def strip_prefix(state: Mapping[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """Drop a leading ``prefix`` (DistributedDataParallel's ``module.``) wherever a key has it."""
    return {key.removeprefix(prefix): value for key, value in state.items()}


def select(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under ``prefix`` with the prefix removed (e.g. ``backbone.``)."""
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def load_state_dict_file(path: str | os.PathLike, key: str | None = None) -> dict[str, Tensor]:
    """A state dict from a file: the file itself or the entry ``key`` of a dict container."""
    obj = load_checkpoint(path)
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            raise SimexplainError(f"checkpoint {os.fspath(path)} has no {key!r} entry")
        obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise SimexplainError(f"checkpoint {os.fspath(path)} is not a state dict")
    return dict(obj)


def mismatch_report(module: nn.Module, state: Mapping[str, Tensor]) -> str:
    """Missing, unexpected and mis-shaped keys in one line ("" when the state dict matches exactly)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            shown = ", ".join(keys[:5]) + (f", … ({len(keys)} in all)" if len(keys) > 5 else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts)


def load_strict(module: nn.Module, state: Mapping[str, Tensor], *, what: str) -> None:
    """Load ``state`` into ``module`` requiring an exact key and shape match, else one readable error line."""
    report = mismatch_report(module, state)
    if report:
        raise SimexplainError(f"{what}: checkpoint does not match the architecture ({report})")
    module.load_state_dict(state, strict=True)
