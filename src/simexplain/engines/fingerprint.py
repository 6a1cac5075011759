"""What an encoder is (its fingerprint: the key of its graphs) and whether it is still what a runner was built
from (a cheap signature of its tensors, read before every routed forward)."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_globals


def fingerprint(encoder: nn.Module) -> str:
    """SHA-256 of the encoder's class, its ``repr``, every module's plain settings (``global_pool="token"``
    is not in a ``repr``) and every parameter's and buffer's name, dtype, shape and bytes: two wrappers of the
    same weights that compute different outputs get different fingerprints.

    Example:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> fingerprint(a) == fingerprint(a), fingerprint(a) == fingerprint(b)
        (True, False)
    """
    digest = hashlib.sha256()
    digest.update(f"{type(encoder).__module__}.{type(encoder).__qualname__}\n{encoder!r}\n".encode())
    for name, module in encoder.named_modules(remove_duplicate=False):
        digest.update(f"{name} {type(module).__qualname__} {_settings(module)}\n".encode())
    for name, tensor in _tensors(encoder):
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        with torch.inference_mode(False), torch.no_grad():
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return digest.hexdigest()


def signature(encoder: nn.Module) -> tuple:
    """Each tensor's identity, storage and in-place version counter: any change to a weight (an in-place
    update, ``load_state_dict``, a move to another device) changes the signature."""
    return tuple((id(t), t.data_ptr(), t._version) for _, t in _tensors(encoder))


def plain_forward(encoder: nn.Module) -> bool:
    """True when a forward of ``encoder`` is just its computation: every module in eval mode, no forward hook
    (the layer taps, a library's hooks) and no torch function mode (guided backprop) that an exported graph
    would skip."""
    if torch._C._is_torch_function_mode_enabled():
        return False
    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return False
    return not any(m.training or m._forward_hooks or m._forward_pre_hooks for m in encoder.modules())


def parameter_count(encoder: nn.Module) -> int:
    """How many parameter values the encoder holds (what ``auto`` sizes it by)."""
    return sum(p.numel() for p in encoder.parameters())


def _settings(module: nn.Module) -> list[tuple[str, str]]:
    """A module's public attributes of plain types (numbers, strings, their tuples): its configuration."""
    plain = (bool, int, float, str, type(None))
    return sorted(
        (key, repr(value))
        for key, value in vars(module).items()
        if not key.startswith("_")
        and key != "training"
        and (
            isinstance(value, plain)
            or (isinstance(value, tuple | list) and all(isinstance(v, plain) for v in value))
        )
    )


def _tensors(encoder: nn.Module) -> list[tuple[str, Tensor]]:
    named = [
        *encoder.named_parameters(remove_duplicate=False),
        *encoder.named_buffers(remove_duplicate=False),
    ]
    return [(name, tensor) for name, tensor in named if tensor is not None]
