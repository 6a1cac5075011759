"""Checkpoint files: safe loading, prefix stripping and strict matching with a readable report.

Checkpoints are pickles: they are always read with ``weights_only=True`` so that a file can never run code.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import SimexplainError


def load_checkpoint(path: str | os.PathLike, *, safe_globals: Iterable[type] = ()) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one-line errors.

    A ``.safetensors`` file is read with ``safetensors`` instead (tensors only, nothing to unpickle).

    ``safe_globals`` allow-lists plain container classes an official file needs (e.g. ``argparse.Namespace``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SimexplainError(f"checkpoint {path}: no such file")
    if path.endswith(".safetensors"):
        return _load_safetensors(path)
    try:
        with torch.serialization.safe_globals(list(safe_globals)), warnings.catch_warnings():
            # torch's notes on the file's pickle protocol: the refusal below says what matters, in one line
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # torch's message is long; its informative line names a blocked GLOBAL (a class or function the pickle
        # wants to call) or an unsupported opcode (bytes that are not a pickle at all).
        reason = next(
            (line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[0] if lines else ""
        )
        if "GLOBAL" in reason or _plain_pickle_calls_code(path):
            raise SimexplainError(
                f"checkpoint {path} refused: it needs arbitrary unpickling, "
                f"which could run code ({reason[:160]})"
            ) from None
        raise SimexplainError(
            f"checkpoint {path} is truncated or not a torch checkpoint ({reason[:160]})"
        ) from None
    except Exception as error:  # noqa: BLE001  (torch.load fails in many ways on foreign bytes: one line for all)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SimexplainError(
            f"checkpoint {path} is truncated or not a torch checkpoint ({first[:160]})"
        ) from None


def _plain_pickle_calls_code(path: str) -> bool:
    """Whether a plain (non-torch) pickle file would import or call something when loaded.

    ``pickletools.genops`` only decodes opcodes, it never executes them, so this is safe on hostile files.
    """
    try:
        with open(path, "rb") as handle:
            return any(op.name in _CODE_OPCODES for op, _, _ in pickletools.genops(handle))
    except Exception:  # noqa: BLE001  (not a pickle at all)
        return False


_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"}


def _load_safetensors(path: str) -> dict[str, Tensor]:
    # safetensors holds raw tensors only (no pickle), the format of timm's and Hugging Face's releases.
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover - installed with timm
        raise SimexplainError(
            f"checkpoint {path}: reading .safetensors needs the package safetensors"
        ) from None
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SimexplainError(
            f"checkpoint {path} is truncated or not a safetensors file ({first[:160]})"
        ) from None


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


# ---------------------------------------------------------------- official containers
# Key signatures of the published files (after ``module.`` is stripped), so that a file handed to the wrong
# loader is named in the error instead of producing a list of hundreds of missing keys.
_SIGNATURES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("a MoCo v3 checkpoint (load it with 'mocov3-vit-b')", ("base_encoder.", "momentum_encoder."), ""),
    ("a SimSiam checkpoint (load it with 'simsiam-r50')", ("encoder.", "predictor."), ""),
    ("a Barlow Twins training checkpoint (load it with 'barlowtwins-r50')", ("backbone.", "projector."), ""),
    (
        "a DINO ResNet-50 teacher/student state dict (load the file with 'dino-r50')",
        ("backbone.", "head.mlp."),
        "",
    ),
    (
        "a ViT backbone state dict (e.g. DINO ViT-B/16: 'dino-vit-b16')",
        ("cls_token", "blocks.0.attn.qkv."),
        "",
    ),
    (
        (
            "a torchvision ResNet-50 trunk without classifier (Barlow Twins resnet50.pth or DINO "
            "dino_resnet50_pretrain.pth: 'barlowtwins-r50' or 'dino-r50')"
        ),
        ("conv1.weight", "layer4.2.conv3.weight"),
        "fc.weight",
    ),
    (
        "a torchvision-style ResNet with classifier ('torchvision:resnet50')",
        ("conv1.weight", "fc.weight"),
        "",
    ),
    ("an EfficientNet-Lite0 state dict ('efficientnet-lite0')", ("_blocks.",), ""),
)


def describe_checkpoint(obj: Any) -> str:
    """A short guess at which published model a loaded checkpoint belongs to ("" when unknown).

    Example:
        >>> describe_checkpoint({"resnet": {}, "head": {}})
        "a SimCLRv2 checkpoint (load it with 'simclrv2-…' or 'simclrv2')"
    """
    if isinstance(obj, Mapping):
        if "resnet" in obj and "head" in obj:
            return "a SimCLRv2 checkpoint (load it with 'simclrv2-…' or 'simclrv2')"
        if "teacher" in obj and "student" in obj:
            return "a DINO full training checkpoint (load it with 'dino-r50' or 'dino-vit-b16')"
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                return describe_checkpoint(obj[key])
        keys = [k[len("module.") :] if isinstance(k, str) and k.startswith("module.") else k for k in obj]
        keys = [k for k in keys if isinstance(k, str)]
        for label, needles, absent in _SIGNATURES:
            if all(any(k.startswith(n) for k in keys) for n in needles) and not (absent and absent in keys):
                return label
    return ""


def _hint(obj: Any) -> str:
    guess = describe_checkpoint(obj)
    return f"; it looks like {guess}" if guess else ""


def state_dict_at(obj: Any, path: Sequence[str], *, what: str, file: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict at ``path`` inside a loaded container, ``module.`` stripped; one clear line if absent.

    Example:
        >>> import torch
        >>> state_dict_at({"model": {"module.w": torch.zeros(1)}}, ["model"], what="m", file="f.pth")
        {'w': tensor([0.])}
    """
    node = obj
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            where = "/".join(path)
            raise SimexplainError(
                f"{what}: {os.fspath(file)} is not the expected checkpoint (no {where!r} entry){_hint(obj)}"
            )
        node = node[key]
    if not isinstance(node, Mapping) or not node or not all(isinstance(v, Tensor) for v in node.values()):
        raise SimexplainError(
            f"{what}: {os.fspath(file)} does not hold a state dict where expected{_hint(obj)}"
        )
    return strip_prefix(node)


def load_matching(
    module: nn.Module, state: Mapping[str, Tensor], *, what: str, source: Any = None, assign: bool = False
) -> None:
    """Load ``state`` into ``module`` requiring an exact key and shape match, else one readable error
    line that names the model the file seems to belong to.

    ``assign=True`` adopts the file's tensors (for a module built on the ``meta`` device: no wasted init).
    """
    report = mismatch_report(module, state)
    if report:
        hint = _hint(source if source is not None else state)
        raise SimexplainError(f"{what}: checkpoint does not match the architecture ({report}){hint}")
    module.load_state_dict(state, strict=True, assign=assign)
