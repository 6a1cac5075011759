"""User models by architecture name: ``torchvision:NAME`` and ``timm:NAME`` with a weights file.

With a file nothing is downloaded: the architecture comes from torchvision or timm, the weights from the
user's file (a state dict, or a dict holding one under ``state_dict`` or ``model``; ``module.`` prefixes are
stripped), matched strictly. The embedding is the penultimate feature (``embedding="pooled"``, the classifier
removed) or the model's output (``embedding="output"``). Preprocessing is stated: torchvision models use
ImageNet mean/std, timm models their architecture's ``pretrained_cfg`` mean/std, unless ``preprocessing=``
says otherwise. ``timm:NAME.TAG`` without a file is timm's pretrained weights
(``models/hub/timm_pretrained.py``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping

from torch import Tensor, nn

from ..errors import SimexplainError
from ..pair import PairModel, TokenLayout
from ..preprocessing import Preprocessing
from .checkpoints import load_checkpoint, load_matching, state_dict_at
from .common import check_choice, imagenet, sized
from .timm_networks import refused_option, timm_layer_and_layout, timm_network

EMBEDDINGS = ("pooled", "output")


def _user_state(weights: str | os.PathLike | None, what: str) -> dict[str, Tensor]:
    if weights is None:
        raise SimexplainError(f"{what} needs a weights file (nothing is downloaded): pass weights=PATH")
    obj = load_checkpoint(weights)
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            return state_dict_at(obj, [key], what=what, file=weights)
    return state_dict_at(obj, [], what=what, file=weights)


def _drop(state: dict[str, Tensor], prefixes: list[str]) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if not any(k == p or k.startswith(p + ".") for p in prefixes)}


def _unknown(kind: str, name: str, known: list[str]) -> SimexplainError:
    close = difflib.get_close_matches(name, known, n=5)
    return SimexplainError(
        f"unknown {kind} model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
    )


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def torchvision_model(
    name: str,
    weights: str | os.PathLike | None = None,
    *,
    embedding: str = "pooled",
    layer: str | None = None,
    preprocessing: Preprocessing | None = None,
    input_size: int | tuple[int, int] = 224,
    token_layout: TokenLayout | None = None,
    **options,
) -> PairModel:
    """A torchvision architecture with the user's weights, e.g.
    ``load_model("torchvision:resnet50", weights=…)``.

    ``embedding="pooled"`` replaces the last ``nn.Linear`` (the classifier) by the identity, so a
    backbone-only file without classifier keys also loads; ``"output"`` keeps the whole model. ``layer``
    defaults to ``layer4`` (ResNets), ``features`` (VGG, MobileNet, EfficientNet, DenseNet, ConvNeXt) or a
    ViT's last encoder block. ``options`` go to ``torchvision.models.get_model``.

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model("torchvision:resnet50", weights="my_resnet50.pth")  # doctest: +SKIP
        >>> model.layer  # doctest: +SKIP
        'layer4'
    """
    import torchvision

    what = f"torchvision:{name}"
    check_choice(what, embedding, EMBEDDINGS)
    if name not in torchvision.models.list_models():
        raise _unknown("torchvision", name, torchvision.models.list_models())
    state = _user_state(weights, what)
    try:
        network = torchvision.models.get_model(name, weights=None, **options)
    except TypeError as error:
        if not options:
            raise
        library = "torchvision.models.get_model"
        raise refused_option(what, torchvision_model, library, options, error) from error
    if embedding == "pooled":
        linears = [n for n, m in network.named_modules() if isinstance(m, nn.Linear)]
        if linears:
            _set_module(network, linears[-1], nn.Identity())
            state = _drop(state, [linears[-1]])
    load_matching(network, state, what=what)
    names = {n for n, _ in network.named_modules()}
    if layer is None:
        if "layer4" in names:
            layer = "layer4"
        elif "features" in names and not name.startswith("swin"):
            layer = "features"
        elif "encoder.layers" in names:
            blocks = [
                n for n, _ in network.named_modules() if n.count(".") == 2 and n.startswith("encoder.layers.")
            ]
            layer = blocks[-1]
            token_layout = token_layout or TokenLayout(
                patch_size=getattr(network, "patch_size", 16), prefix_tokens=1
            )
    return PairModel(
        network.eval(),
        layer=layer,
        token_layout=token_layout,
        preprocessing=preprocessing or imagenet(input_size),
        name=what,
        description=f"torchvision {name} with user weights; embedding: "
        + ("penultimate (pooled) features" if embedding == "pooled" else "the model's output"),
    )


def timm_model(
    name: str,
    weights: str | os.PathLike | None = None,
    *,
    embedding: str = "pooled",
    layer: str | None = None,
    preprocessing: Preprocessing | None = None,
    input_size: int | tuple[int, int] | None = None,
    **options,
) -> PairModel:
    """A timm architecture with the user's weights, e.g.
    ``load_model("timm:vit_small_patch16_224", weights=…)``; without ``weights``, timm's pretrained weights
    of ``NAME.TAG`` (:func:`simexplain.models.hub.timm_pretrained`, the hub extra).

    ``embedding="pooled"`` builds the model with ``num_classes=0`` (timm's pooled pre-logits features; the
    file's classifier keys are ignored); ``"output"`` keeps the head. The default layer is the last entry of
    timm's ``feature_info`` (e.g. ``layer4``); a class-token ViT taps the block before its last
    (``blocks.10``), whose patch tokens still reach the class token, laid out by its patch size, prefix and
    register tokens. ViTs resample their position embedding to other input sizes. ``options`` go to
    ``timm.create_model``.

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model(  # doctest: +SKIP
        ...     "timm:vit_small_patch16_224", weights="vit_s16.pth"
        ... )
        >>> model.layer, model.token_layout.patch_size  # doctest: +SKIP
        ('blocks.10', 16)
    """
    import timm

    what = f"timm:{name}"
    check_choice(what, embedding, EMBEDDINGS)
    if not timm.is_model(name.split(".")[0]):
        raise _unknown("timm", name, timm.list_models())
    if weights is None:
        from .hub.timm_pretrained import timm_pretrained

        return timm_pretrained(
            name,
            embedding=embedding,
            layer=layer,
            preprocessing=preprocessing,
            input_size=input_size,
            **options,
        )
    state = _user_state(weights, what)
    if embedding == "pooled":
        options.setdefault("num_classes", 0)
    network = timm_network(name, what, options, builder=timm_model, pretrained=False)
    cfg = dict(getattr(network, "pretrained_cfg", {}) or {})
    if embedding == "pooled":
        classifier = cfg.get("classifier") or []
        state = _drop(state, [classifier] if isinstance(classifier, str) else list(classifier))
    load_matching(network, state, what=what)
    layer, token_layout = timm_layer_and_layout(network, layer)
    if preprocessing is None:
        size = input_size or tuple(cfg.get("input_size", (3, 224, 224))[1:])
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        preprocessing = sized(
            size, mean=mean, std=std, description=f"timm pretrained_cfg mean {mean} std {std}"
        )
        if cfg.get("crop_pct"):
            # timm states its own centre-crop fraction (1.0 for OpenAI CLIP: resize straight to the input
            # size).
            resize = round(min(preprocessing.input_size) / float(cfg["crop_pct"]))
            preprocessing = dataclasses.replace(preprocessing, resize=resize)
    return PairModel(
        network.eval(),
        layer=layer,
        token_layout=token_layout,
        preprocessing=preprocessing,
        name=what,
        description=f"timm {name} with user weights; embedding: "
        + ("pooled pre-logits features" if embedding == "pooled" else "the model's output"),
    )


def python_model(target: str, weights: str | None = None, **options) -> PairModel:
    """``python:package.module:function``: a model built by your own code, for the command line's ``--model``.

    ``function(weights=None, **options)`` must return a :class:`PairModel`; the module is imported from the
    Python path (set ``PYTHONPATH``). Useful to evaluate an encoder that is not in the zoo.

    Example:
        >>> model = python_model("simexplain.models:efficientnet_lite0")
        >>> model.name
        'efficientnet-lite0'
    """
    import importlib

    module_name, _, function_name = target.partition(":")
    if not module_name or not function_name:
        raise SimexplainError(f"python:{target}: use python:package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SimexplainError(f"python:{target}: cannot import {module_name} ({error})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise SimexplainError(f"python:{target}: {module_name} has no function {function_name}")
    _check_builder(target, function, weights, options)
    model = function(weights=weights, **options)
    if not isinstance(model, PairModel):
        raise SimexplainError(f"python:{target} returned {type(model).__name__}, not a simexplain.PairModel")
    return model


def _check_builder(target: str, function, weights: str | None, options: dict) -> None:
    """Refuse, in one line, a callable that cannot be called as ``function(weights=..., **options)``: not a
    model builder (a TypeError from inside a real builder is the builder's own and is left alone)."""
    import inspect

    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: the call itself will tell
        return
    try:
        signature.bind(weights=weights, **options)
    except TypeError as error:
        raise SimexplainError(
            f"python:{target}: not a model builder, which takes weights= (and the model options) and "
            f"returns a simexplain.PairModel ({error})"
        ) from None
