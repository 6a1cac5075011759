"""timm networks shared by the ``timm:`` routes (your weights in ``models/user.py``, timm's pretrained weights
in ``models/hub/timm_pretrained.py``): creation with resampled position embeddings, the CAM layer and the
token layout."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from torch import nn

from ..errors import SimexplainError
from ..pair import TokenLayout


def refused_option(
    what: str, builder: Callable, library: str, options: dict, error: TypeError
) -> SimexplainError:
    """A one-line error for an option neither ``builder`` nor ``library`` takes (from its ``TypeError``)."""
    kinds = (inspect.Parameter.KEYWORD_ONLY,)
    own = [p.name for p in inspect.signature(builder).parameters.values() if p.kind in kinds]
    found = re.search(r"unexpected keyword argument '(\w+)'", str(error))
    names = found.group(1) if found else ", ".join(options)
    return SimexplainError(
        f"{what}: option {names} is not taken by {library} ({error}); "
        f"{what} takes {', '.join(own)} and {library}'s keyword arguments"
    )


def timm_network(name: str, what: str, options: dict, *, builder: Callable, **create) -> nn.Module:
    """``timm.create_model(name, **create, **options)``, with position embeddings resampled to other input
    sizes where the architecture takes ``dynamic_img_size``; an option timm refuses is one line naming the
    options of ``builder`` (the route's own function) too."""
    import timm

    try:
        return timm.create_model(name, dynamic_img_size=True, **create, **options)
    except TypeError:  # ViT-style models take the flag; others do not
        try:
            return timm.create_model(name, **create, **options)
        except TypeError as error:
            if not options:
                raise
            raise refused_option(what, builder, "timm.create_model", options, error) from error


def timm_layer_and_layout(
    network: nn.Module, layer: str | None = None
) -> tuple[str | None, TokenLayout | None]:
    """A timm network's CAM layer (``layer`` if given) and, for a ViT, its token layout."""
    if layer is None and getattr(network, "feature_info", None):
        layer = network.feature_info[-1]["module"]
        if getattr(network, "global_pool", None) == "token" and layer.startswith("blocks."):
            # A class-token ViT reads only the class token after its last block, so that block's patch
            # tokens get zero gradients: tap the block before it.
            layer = f"blocks.{int(layer.split('.')[1]) - 1}"
    token_layout = None
    if hasattr(network, "patch_embed") and hasattr(network, "num_prefix_tokens"):
        patch = network.patch_embed.patch_size
        registers = int(getattr(network, "num_reg_tokens", 0) or 0)
        token_layout = TokenLayout(
            patch_size=patch[0] if isinstance(patch, tuple) else patch,
            prefix_tokens=network.num_prefix_tokens - registers,
            register_tokens=registers,
        )
    return layer, token_layout
