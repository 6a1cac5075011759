"""MoCo v3 and DINO ViT-B/16 on timm's ``VisionTransformer`` (its key names are those of the official files).

Position embeddings are stored for 224×224 (14×14 patches) and resampled to other input sizes at forward time
(timm's ``dynamic_img_size``), so the checkpoint still loads strictly and small inputs work for quick runs.
Activation methods tap a block's output tokens; the pair model's :class:`~simexplain.pair.TokenLayout`
(patch 16, one class token) turns them into a 768×h×w grid.
"""

from __future__ import annotations

import os

from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from ..errors import SimexplainError
from ..pair import PairModel, TokenLayout
from .checkpoints import load_checkpoint, load_matching, select, state_dict_at
from .common import check_choice, finish, imagenet, instantiate, load_entry, random_note

DEPTH = 12
VIT_LAYOUT = TokenLayout(patch_size=16, prefix_tokens=1)


def vit_base16() -> VisionTransformer:
    """ViT-B/16 without classifier (``num_classes=0``): returns the CLS token after the final norm,
    ``B×768``."""
    return VisionTransformer(
        img_size=224,
        patch_size=16,
        embed_dim=768,
        depth=DEPTH,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        num_classes=0,
        global_pool="token",
        dynamic_img_size=True,
    )


# The last block's patch tokens cannot reach the class token (only the class token is read after it), so
# their CAM gradients are exactly zero; the block before it is the last one whose patch tokens matter.
CAM_BLOCK = DEPTH - 2


def _block(block: int) -> int:
    if not -DEPTH <= block < DEPTH:
        raise SimexplainError(f"block must be in 0..{DEPTH - 1} (or negative from the end), got {block}")
    return block % DEPTH


def _mlp(dims: list[int], hidden_layers: int) -> nn.Sequential:
    """MoCo v3's MLPs: [Linear no-bias, BN, ReLU] × hidden layers, Linear no-bias, BN without affine."""
    layers: list[nn.Module] = []
    for i in range(hidden_layers):
        layers += [nn.Linear(dims[i], dims[i + 1], bias=False), nn.BatchNorm1d(dims[i + 1]), nn.ReLU()]
    layers += [nn.Linear(dims[-2], dims[-1], bias=False), nn.BatchNorm1d(dims[-1], affine=False)]
    return nn.Sequential(*layers)


def _mocov3_encoder() -> VisionTransformer:
    vit = vit_base16()
    vit.head = _mlp([768, 4096, 4096, 256], hidden_layers=2)
    return vit


class MoCoV3(nn.Module):
    """The official container: ``base_encoder`` and ``momentum_encoder`` (ViT + 3-layer head) and
    ``predictor``."""

    def __init__(self) -> None:
        super().__init__()
        self.base_encoder = _mocov3_encoder()
        self.momentum_encoder = _mocov3_encoder()
        self.predictor = _mlp([256, 4096, 256], hidden_layers=1)


class MoCoV3Query(nn.Module):
    """Image 1 in the paper's pairing: ``predictor(base_encoder(x))`` (256-d)."""

    def __init__(self, network: MoCoV3) -> None:
        super().__init__()
        self.base_encoder = network.base_encoder
        self.predictor = network.predictor

    def forward(self, x: Tensor) -> Tensor:
        return self.predictor(self.base_encoder(x))


class MoCoV3Key(nn.Module):
    """Image 2 in the paper's pairing: ``momentum_encoder(x)`` (256-d)."""

    def __init__(self, network: MoCoV3) -> None:
        super().__init__()
        self.momentum_encoder = network.momentum_encoder

    def forward(self, x: Tensor) -> Tensor:
        return self.momentum_encoder(x)


def mocov3_vit_b(
    weights: str | os.PathLike | None = None,
    *,
    symmetric: bool = False,
    block: int = CAM_BLOCK,
    input_size: int | tuple[int, int] = 224,
) -> PairModel:
    """MoCo v3 ViT-B/16 from ``vit-b-300ep.pth.tar``: an asymmetric pair model (query encoder + predictor for
    image 1, momentum encoder for image 2) as in the paper, or ``symmetric=True`` (query branch for both).
    Activation methods tap block ``block``'s patch tokens.

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model("mocov3-vit-b", weights="vit-b-300ep.pth.tar")  # doctest: +SKIP
        >>> model.layer, model.layer_b  # doctest: +SKIP
        ('base_encoder.blocks.10', 'momentum_encoder.blocks.10')
    """
    name = "mocov3-vit-b"
    b = _block(block)
    network = instantiate(MoCoV3, random=weights is None)
    if weights is not None:
        obj = load_checkpoint(weights)
        load_entry(network, obj, ["state_dict"], what=name, file=weights)
    finish(network, name)
    query = MoCoV3Query(network)
    pairing = (
        "symmetric: query encoder + predictor for both images"
        if symmetric
        else ("asymmetric: predictor(base_encoder) for image 1, momentum_encoder for image 2")
    )
    return PairModel(
        query,
        encoder_b=None if symmetric else MoCoV3Key(network),
        layer=f"base_encoder.blocks.{b}",
        layer_b=None if symmetric else f"momentum_encoder.blocks.{b}",
        preprocessing=imagenet(input_size),
        token_layout=VIT_LAYOUT,
        name=name,
        description=f"MoCo v3 ViT-B/16, {pairing}; 256-d embeddings" + random_note(weights),
    )


def dino_vit_b16(
    weights: str | os.PathLike | None = None,
    *,
    network: str = "teacher",
    block: int = CAM_BLOCK,
    input_size: int | tuple[int, int] = 224,
) -> PairModel:
    """DINO ViT-B/16 from the backbone file ``dino_vitbase16_pretrain.pth`` (or the ``teacher``/``student``
    backbone of a full checkpoint); embedding = the 768-d CLS token after the final norm.

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model(  # doctest: +SKIP
        ...     "dino-vit-b16", weights="dino_vitbase16_pretrain.pth"
        ... )
        >>> model.layer  # doctest: +SKIP
        'blocks.10'
    """
    import argparse

    name = "dino-vit-b16"
    check_choice("dino-vit-b16 network", network, ("teacher", "student"))
    b = _block(block)
    vit = instantiate(vit_base16, random=weights is None)
    if weights is not None:
        obj = load_checkpoint(weights, safe_globals=[argparse.Namespace])
        if isinstance(obj, dict) and network in obj:
            # A full training checkpoint: the ViT sits under ``backbone.``; its DINO head is not the
            # embedding.
            state = select(state_dict_at(obj, [network], what=name, file=weights), "backbone.")
        else:
            state = state_dict_at(obj, [], what=name, file=weights)
        load_matching(vit, state, what=name, source=obj, assign=True)
    finish(vit, name)
    return PairModel(
        vit,
        layer=f"blocks.{b}",
        preprocessing=imagenet(input_size, ", bicubic resize"),
        token_layout=VIT_LAYOUT,
        name=name,
        description="DINO ViT-B/16 backbone; embedding: 768-d CLS token after the final norm"
        + random_note(weights),
    )
