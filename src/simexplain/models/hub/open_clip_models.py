"""``open_clip:ARCH/PRETRAINED``: open_clip's image towers with open_clip's own preprocessing config.

``PRETRAINED`` is one of open_clip's tags for ``ARCH`` (``open_clip.list_pretrained()``), whose weights are
found in the Hugging Face cache (safetensors preferred; a pickle loads only as plain tensors,
``weights_only``), or a local weights file. :func:`load_open_clip` loads the whole CLIP model (text tower and
logit scale included) for any caller that needs more than the image tower.
"""

from __future__ import annotations

import difflib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ...errors import SimexplainError
from ...pair import PairModel, TokenLayout
from ...preprocessing import Preprocessing
from .files import hub_weights, load_error, not_cached, offline, provenance, require, revision_of
from .text_towers import check_pair_kind, open_clip_image_text

# open_clip's preprocessing keys that a pretrained tag may set.
_TAG_PREPROCESS = ("mean", "std", "interpolation", "resize_mode")


@dataclass
class OpenClipCheckpoint:
    """A loaded open_clip model (eval), where its weights came from and its final preprocessing config."""

    model: nn.Module
    provenance: dict
    preprocess: dict


def load_open_clip(
    arch: str, pretrained: str, *, input_size: int | tuple[int, int] | None = None
) -> OpenClipCheckpoint:
    """The whole open_clip model ``arch`` with the weights of tag or file ``pretrained`` (strict load).

    Example:
        >>> checkpoint = load_open_clip("ViT-B-32", "laion2b_s34b_b79k")  # doctest: +SKIP
        >>> checkpoint.preprocess["size"], checkpoint.provenance["repository"]  # doctest: +SKIP
        ((224, 224), 'laion/CLIP-ViT-B-32-laion2B-s34B-b79K')
    """
    what = f"open_clip:{arch}/{pretrained}"
    open_clip = require("open_clip", what)
    if arch not in open_clip.list_models():
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=5)
        raise SimexplainError(
            f"{what}: unknown open_clip architecture {arch!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
        )
    file, facts, tag = _weights(open_clip, arch, pretrained, what)
    forced = {key: tag[key] for key in _TAG_PREPROCESS if key in tag}
    try:
        model = open_clip.create_model(
            arch,
            pretrained=str(file),
            force_preprocess_cfg=forced or None,
            force_image_size=input_size,
            weights_only=True,
        )
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, KeyError) as error:
        raise load_error(what, file, error) from None
    return OpenClipCheckpoint(model.eval(), facts, dict(model.visual.preprocess_cfg))


def _weights(open_clip, arch: str, pretrained: str, what: str) -> tuple[Path, dict, dict]:
    """The weights file of a tag (from the hub cache or open_clip's URL cache) or a local file."""
    if os.path.isfile(pretrained):
        path = Path(pretrained)
        return path, provenance(what, [path]), {}
    tag = open_clip.get_pretrained_cfg(arch, pretrained)
    if not tag:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise SimexplainError(
            f"{what}: {pretrained!r} is neither a file nor a pretrained tag of {arch} "
            f"(tags: {', '.join(tags) or 'none'})"
        )
    hub = tag.get("hf_hub")
    if hub:
        # open_clip's form: "org/repo/" (its default file name) or "org/repo/filename".
        repo, filename = (hub.rstrip("/"), "") if hub.endswith("/") else os.path.split(hub)
        path = hub_weights(what, repo, filename or "open_clip_pytorch_model.bin")
        return path, provenance(what, [path], repository=repo, revision=revision_of(path)), tag
    path = _url_weights(open_clip, arch, pretrained, what, tag)
    return path, provenance(what, [path]), tag


def _url_weights(open_clip, arch: str, tag_name: str, what: str, tag: dict) -> Path:
    """A tag published by URL only: open_clip's own download cache (``~/.cache/clip``)."""
    cache = Path(os.path.expanduser("~/.cache/clip"))
    path = cache / os.path.basename(tag["url"])
    if not path.is_file():
        command = f"python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{tag_name}')\""
        if offline():
            raise not_cached(what, command, cache)
        try:
            path = Path(open_clip.download_pretrained_from_url(tag["url"], cache_dir=str(cache)))
        except (OSError, RuntimeError) as error:
            raise SimexplainError(
                f"{what}: cannot download {tag['url']} ({error}); then: {command}"
            ) from None
    return path


def open_clip_model(
    name: str,
    weights: str | None = None,
    *,
    layer: str | None = None,
    input_size: int | tuple[int, int] | None = None,
    preprocessing: Preprocessing | None = None,
    token_layout: TokenLayout | None = None,
    pair: str = "image",
    text_layer: str | None = None,
) -> PairModel:
    """``open_clip:ARCH/PRETRAINED``: the image tower of an open_clip model (its ``encode_image``);
    ``pair="image-text"`` adds its text tower (``encode_text``) and tokenizer on side 2 (docs/image_text.md).

    ``PRETRAINED`` is a tag of ``ARCH`` or a weights file (``open_clip:ViT-B-32//path/to/file.safetensors``
    for an absolute path). ``input_size`` rebuilds the tower at another size (open_clip resamples the position
    embedding). The default layer is a ViT's block before the last (its pooled output reads the class token)
    or a ResNet's ``layer4``; the model's ``provenance`` records the file, its repository and commit.

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model("open_clip:ViT-B-32/laion2b_s34b_b79k")  # doctest: +SKIP
        >>> model.layer  # doctest: +SKIP
        'transformer.resblocks.10'
    """
    arch, _, pretrained = name.partition("/")
    if not arch or not pretrained:
        raise SimexplainError(f"open_clip:{name}: use open_clip:ARCH/PRETRAINED (a tag or a weights file)")
    if weights is not None:
        raise SimexplainError(f"open_clip:{name}: name the weights as PRETRAINED; drop weights=/--weights")
    with_text = check_pair_kind(f"open_clip:{name}", pair)
    checkpoint = load_open_clip(arch, pretrained, input_size=input_size)
    visual = checkpoint.model.visual
    default_layer, layout = tower_layer(visual)
    model = PairModel(
        visual,
        layer=layer or default_layer,
        token_layout=token_layout or layout,
        preprocessing=preprocessing or open_clip_preprocessing(checkpoint.preprocess),
        name=f"open_clip:{name}",
        description=f"open_clip {arch} image tower ({type(visual).__name__}) with {pretrained}; "
        "embedding: encode_image (the projected embedding)",
    )
    model.provenance = checkpoint.provenance
    return open_clip_image_text(model, checkpoint.model, arch, text_layer) if with_text else model


def tower_layer(visual: nn.Module) -> tuple[str | None, TokenLayout | None]:
    """The default CAM layer and token layout of an open_clip image tower."""
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is not None and hasattr(visual, "conv1"):
        has_class = getattr(visual, "class_embedding", None) is not None
        from_class = has_class and getattr(visual, "attn_pool", None) is None and visual.pool_type == "tok"
        index = len(blocks) - 2 if from_class and len(blocks) > 1 else len(blocks) - 1
        patch = visual.patch_size[0] if isinstance(visual.patch_size, tuple) else visual.patch_size
        return f"transformer.resblocks.{index}", TokenLayout(patch_size=patch, prefix_tokens=int(has_class))
    if hasattr(visual, "layer4"):  # ModifiedResNet: attention pooling after layer4
        return "layer4", None
    if hasattr(visual, "trunk"):  # a timm trunk
        from ..timm_networks import timm_layer_and_layout

        layer, layout = timm_layer_and_layout(visual.trunk)
        return (f"trunk.{layer}" if layer else None), layout
    return None, None


def open_clip_preprocessing(cfg: dict) -> Preprocessing:
    """open_clip's preprocessing config as :class:`Preprocessing` (its eval transform: resize the shorter
    side and centre-crop, or squash; ``longest`` is approximated by a centre crop)."""
    size = cfg["size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    mode = cfg.get("resize_mode", "shortest")
    resize = None if mode == "squash" else min(h, w)
    return Preprocessing(
        input_size=(h, w),
        resize=resize,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        description=f"open_clip preprocess: {mode} resize to {h}×{w}, {cfg.get('interpolation', 'bicubic')}, "
        f"mean {tuple(cfg['mean'])} std {tuple(cfg['std'])}",
        interpolation=cfg.get("interpolation", "bicubic"),
    )
