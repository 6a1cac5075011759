"""``timm:NAME.TAG`` without a weights file: timm's pretrained weights, with timm's own eval preprocessing.

The weights file is found here, not by timm: in the Hugging Face cache for a tag published on the hub
(safetensors preferred), in torch's hub cache for one published by URL, or the user's own file through
timm's overlay (``pretrained_cfg_overlay={"file": PATH}``, which also converts an upstream checkpoint with
timm's filter). timm then loads it as plain tensors only (safetensors, or ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import torch

from ...errors import SimexplainError
from ...pair import PairModel
from ...preprocessing import INTERPOLATIONS, Preprocessing
from .files import hub_weights, load_error, not_cached, offline, provenance, revision_of


def timm_pretrained(
    name: str,
    *,
    embedding: str = "pooled",
    layer: str | None = None,
    preprocessing: Preprocessing | None = None,
    input_size: int | tuple[int, int] | None = None,
    **options,
) -> PairModel:
    """timm's pretrained ``NAME.TAG`` (``timm.list_pretrained()``) as a :class:`PairModel`.

    Example:
        >>> import simexplain
        >>> name = "timm:vit_small_patch14_dinov2.lvd142m"
        >>> model = simexplain.load_model(name, input_size=224)  # doctest: +SKIP
        >>> model.layer, model.token_layout.patch_size  # doctest: +SKIP
        ('blocks.10', 14)
    """
    import timm

    from ..timm_networks import timm_layer_and_layout, timm_network

    what = f"timm:{name}"
    cfg = _pretrained_cfg(timm, name, what)
    overlay = dict(options.pop("pretrained_cfg_overlay", None) or {})
    file, facts = _weights(cfg, overlay, name, what)
    if embedding == "pooled":
        options.setdefault("num_classes", 0)
    try:
        network = timm_network(
            name,
            what,
            options,
            builder=timm_pretrained,
            pretrained=True,
            pretrained_cfg_overlay={**overlay, "file": str(file)},
        )
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, KeyError) as error:
        raise load_error(what, file, error) from None
    layer, token_layout = timm_layer_and_layout(network, layer)
    model = PairModel(
        network.eval(),
        layer=layer,
        token_layout=token_layout,
        preprocessing=preprocessing or timm_preprocessing(network, input_size),
        name=what,
        description=f"timm {name} with its pretrained weights ({Path(file).name}); embedding: "
        + ("pooled pre-logits features" if embedding == "pooled" else "the model's output"),
    )
    model.provenance = facts
    return model


def _pretrained_cfg(timm, name: str, what: str):  # noqa: ANN202 (timm's PretrainedCfg)
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except (RuntimeError, ValueError, KeyError):
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        tags = timm.list_pretrained(name.split(".")[0] + ".*")
        raise SimexplainError(
            f"{what}: timm has no pretrained weights by that name (tags: {', '.join(tags[:8]) or 'none'}); "
            "or pass weights=PATH"
        )
    return cfg


def _weights(cfg, overlay: dict, name: str, what: str) -> tuple[Path, dict]:
    """The weights file and its provenance: the overlay's file, the hub cache or torch's URL cache."""
    if overlay.get("file"):
        path = Path(overlay["file"])
        if not path.is_file():
            raise SimexplainError(f"{what}: no weights file {str(path)!r}")
        return path, provenance(what, [path])
    if cfg.hf_hub_id:
        path = hub_weights(what, cfg.hf_hub_id, cfg.hf_hub_filename or "pytorch_model.bin")
        return path, provenance(what, [path], repository=cfg.hf_hub_id, revision=revision_of(path))
    url = cfg.url or cfg.file
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        command = f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\""
        if offline():
            raise not_cached(what, command, path.parent)
        try:
            torch.hub.download_url_to_file(url, str(path))
        except (OSError, RuntimeError) as error:
            raise SimexplainError(f"{what}: cannot download {url} ({error}); then: {command}") from None
    return path, provenance(what, [path])


def timm_preprocessing(network, input_size: int | tuple[int, int] | None = None) -> Preprocessing:
    """timm's eval transform of ``network``'s pretrained config (``timm.data.create_transform``): resize the
    shorter side to ``⌊size / crop_pct⌋`` and centre-crop (``crop_mode="squash"``: resize both sides), with
    its interpolation, mean and std. Exact for square inputs."""
    import timm

    cfg = timm.data.resolve_model_data_config(network)
    size = input_size or tuple(cfg["input_size"][1:])
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    crop_pct = cfg.get("crop_pct") or timm.data.DEFAULT_CROP_PCT
    if cfg.get("crop_mode") == "squash":
        resize: int | tuple[int, int] = (math.floor(h / crop_pct), math.floor(w / crop_pct))
    else:
        resize = math.floor(min(h, w) / crop_pct)
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in INTERPOLATIONS:
        interpolation = "bicubic"
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    return Preprocessing(
        input_size=(h, w),
        resize=resize,
        mean=mean,
        std=std,
        description=f"timm pretrained_cfg: resize {resize}, crop {h}×{w}, {interpolation}, "
        f"mean {mean} std {std}",
        interpolation=interpolation,
    )
