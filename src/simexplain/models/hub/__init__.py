"""Models by their published names: ``hf:ORG/NAME[@REVISION]``, ``open_clip:ARCH/PRETRAINED`` and timm's
pretrained ``timm:NAME.TAG`` (the ``simexplain[hub]`` extra; docs/models.md).

Weights come from the libraries' own caches (the Hugging Face hub cache, honouring ``HF_HOME`` and
``HF_HUB_OFFLINE``), as safetensors or plain tensors only, and custom code is never run. Each loaded
:class:`~simexplain.PairModel` carries ``provenance``: a dict with the ``source`` name, the hub
``repository``, the resolved ``revision`` (commit hash), the weight ``files`` and their ``weights_sha256``,
which the evaluation store records. The libraries are imported when a model is loaded, not here.
"""

from ..registry import register_model
from .files import provenance
from .hf_families import family_names
from .hf_models import HubCheckpoint, HubRef, HubSource, hf_model, load_checkpoint, open_source
from .open_clip_models import OpenClipCheckpoint, load_open_clip, open_clip_model
from .timm_pretrained import timm_pretrained

register_model(
    "hf:",
    "a transformers vision encoder by its hub name: hf:ORG/NAME[@REVISION] (simexplain[hub]; weights from "
    "the Hugging Face cache, safetensors only; HF_HOME and HF_HUB_OFFLINE honoured)",
    embedding="per family (see families; embedding=NAME): DINOv2 the class token, CLIP get_image_features, "
    "SigLIP, ViT, ConvNeXt and ResNet the pooled output",
    preprocessing="the repository's own image processor: resize, crop, interpolation, mean, std",
    layer="a ViT's block before the last (the last when the embedding reads every token); a CNN's last "
    "stage (layer=NAME)",
    families=family_names(),
)(hf_model)

register_model(
    "open_clip:",
    "an open_clip image tower: open_clip:ARCH/PRETRAINED, a pretrained tag (open_clip.list_pretrained()) or "
    "a weights file (simexplain[hub])",
    embedding="encode_image: the projected image embedding",
    preprocessing="open_clip's preprocessing config of the tag: size, mean, std, interpolation",
    layer="transformer.resblocks.N-2 (ViT pooled from the class token; N-1 otherwise), layer4 (ResNet), "
    "the timm trunk's (layer=NAME)",
    families=("ViT (class-token or attention pooling)", "ModifiedResNet (RN50…)", "timm trunks (ConvNeXt…)"),
)(open_clip_model)

__all__ = [
    "HubCheckpoint",
    "HubRef",
    "HubSource",
    "OpenClipCheckpoint",
    "hf_model",
    "load_checkpoint",
    "load_open_clip",
    "open_clip_model",
    "open_source",
    "provenance",
    "timm_pretrained",
]
