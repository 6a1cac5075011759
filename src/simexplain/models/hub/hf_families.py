"""The transformers vision families the ``hf:`` route knows: embedding, tower, tokens, default layer.

Each family is data: which class loads the checkpoint, which part of it maps pixels, the embeddings it offers
(the first is the default), its class and register tokens, and where its blocks are. A ``model_type`` not
listed here loads through ``AutoModel`` as :data:`GENERIC`.
"""

from __future__ import annotations

from dataclasses import dataclass

# What each embedding name reads from the tower's output (``last_hidden_state``, ``pooler_output``).
EMBEDDINGS = {
    "cls": "the class token of the last hidden state",
    "mean-patch": "the mean of the last hidden state's patch tokens (class and register tokens left out)",
    "cls+mean": "the class token and the patch tokens' mean, concatenated",
    "pooler": "the model's pooled output",
    "projected": "the pooled output through the model's projection (CLIP's get_image_features)",
    "mean": "the mean of the last hidden state over every position",
}


# The module lists that hold a tower's blocks or stages, by the names transformers gives them.
BLOCK_LISTS = ("encoder.layer", "encoder.layers", "layers", "model.layer", "encoder.stages")


@dataclass(frozen=True)
class Family:
    """How one ``model_type`` of transformers becomes an image encoder.

    Attributes:
        title: the family's name in listings.
        model_class: the transformers class that loads the checkpoint (the full CLIP/SigLIP model for a
            two-tower repo: issue 23's image–text pairs reuse the same load).
        embeddings: the embeddings it offers (:data:`EMBEDDINGS`); the first is the default.
        tower: the attribute of the loaded model that maps ``pixel_values`` ("": the model itself).
        projection: the attribute holding the image projection (CLIP), if any.
        class_tokens: class tokens before the patches (SigLIP: none).
        registers: the config attribute counting register tokens, if any.
        pooled_from_class: the pooled output reads only the class token (then the last block's patch tokens
            get no gradient and the default CAM layer is the block before it).
        position_flag: the forward takes ``interpolate_pos_encoding`` (for inputs of another size).
        convolutional: a CNN: the CAM layer is the last stage, there are no tokens.
        blocks: where the tower's blocks or stages may be (the first that exists; transformers renames
            them between releases, e.g. ViT's ``encoder.layer`` became ``layers``).
    """

    title: str
    model_class: str
    embeddings: tuple[str, ...]
    tower: str = ""
    projection: str = ""
    class_tokens: int = 1
    registers: str = ""
    pooled_from_class: bool = True
    position_flag: bool = False
    convolutional: bool = False
    blocks: tuple[str, ...] = BLOCK_LISTS

    def reads_class_only(self, embedding: str) -> bool:
        """Whether ``embedding`` depends on the last block only through the class token."""
        return embedding == "cls" or (embedding in ("pooler", "projected") and self.pooled_from_class)


_DINO = ("cls", "mean-patch", "cls+mean", "pooler", "mean")
_CNN = ("pooler", "mean")

FAMILIES: dict[str, Family] = {
    "dinov2": Family("DINOv2", "Dinov2Model", _DINO),
    "dinov2_with_registers": Family(
        "DINOv2 with registers", "Dinov2WithRegistersModel", _DINO, registers="num_register_tokens"
    ),
    "dinov3_vit": Family("DINOv3 ViT", "DINOv3ViTModel", _DINO, registers="num_register_tokens"),
    "clip": Family(
        "CLIP",
        "CLIPModel",
        ("projected", "pooler", "cls", "mean-patch", "mean"),
        tower="vision_model",
        projection="visual_projection",
        position_flag=True,
    ),
    "siglip": Family(
        "SigLIP",
        "SiglipModel",
        ("pooler", "mean-patch", "mean"),
        tower="vision_model",
        class_tokens=0,
        pooled_from_class=False,
        position_flag=True,
    ),
    "siglip_vision_model": Family(
        "SigLIP vision tower",
        "SiglipVisionModel",
        ("pooler", "mean-patch", "mean"),
        class_tokens=0,
        pooled_from_class=False,
        position_flag=True,
    ),
    "vit": Family("ViT", "ViTModel", ("pooler", "cls", "mean-patch", "mean"), position_flag=True),
    "convnext": Family("ConvNeXt", "ConvNextModel", _CNN, convolutional=True),
    "resnet": Family("ResNet", "ResNetModel", _CNN, convolutional=True),
}

# Any other vision model AutoModel knows: pooled output, class token or mean; layer= for the CAMs.
GENERIC = Family("any other AutoModel vision encoder", "AutoModel", ("pooler", "cls", "mean"), blocks=())


def family_names() -> tuple[str, ...]:
    """The families for ``simexplain models``: each with its default embedding."""
    known = tuple(f"{f.title} ({f.embeddings[0]})" for f in FAMILIES.values())
    return known + (f"{GENERIC.title} (embedding=pooler|cls|mean, layer=)",)
