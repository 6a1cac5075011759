"""Models: the registry, checkpoint loading and one module per family of architectures."""

from .efficientnet import efficientnet_lite0
from .registry import available, load_model, register_model

DEFAULT_MODEL = "efficientnet-lite0"

register_model(
    "efficientnet-lite0",
    "SUPERVISED ImageNet EfficientNet-Lite0, embedded default that works offline",
    embedding="pooled 1280-d features",
    preprocessing="(x·255 − 127.5)/128",
    layer="network.bn2",
)(lambda weights=None: efficientnet_lite0(weights))

__all__ = ["DEFAULT_MODEL", "available", "load_model", "register_model"]
