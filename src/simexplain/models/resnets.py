"""Barlow Twins, SimSiam and DINO ResNet-50s, each built on torchvision's ``resnet50`` with its official
key names.

Each network's ``state_dict()`` equals the official file's state dict once ``module.`` is stripped, so
loading is one strict ``load_state_dict``. The backbone-only releases (Barlow Twins ``resnet50.pth``, DINO
``dino_resnet50_pretrain.pth``) are torchvision's ResNet-50 without ``fc``: their embedding is the pooled
2048-d feature, and the loader says so.
"""

from __future__ import annotations

import os
import warnings
from itertools import pairwise

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50

from ..errors import SimexplainError
from ..pair import PairModel
from .checkpoints import describe_checkpoint, load_checkpoint
from .common import check_choice, finish, imagenet, instantiate, load_entry, random_note


def resnet50_trunk() -> nn.Module:
    """torchvision ResNet-50 whose ``fc`` is the identity: ``B×3×H×W → B×2048`` pooled features."""
    trunk = resnet50(weights=None)
    trunk.fc = nn.Identity()
    return trunk


def _mlp(dims: list[int], *, last_bn: bool | None, bias_last: bool = False) -> nn.Sequential:
    """[Linear no-bias, BN, ReLU] for each hidden layer, then a Linear.

    ``last_bn`` adds a final BN (its value is the BN's affine flag); ``None`` adds none.
    """
    layers: list[nn.Module] = []
    for cin, cout in pairwise(dims[:-1]):
        layers += [nn.Linear(cin, cout, bias=False), nn.BatchNorm1d(cout), nn.ReLU()]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=bias_last))
    if last_bn is not None:
        layers.append(nn.BatchNorm1d(dims[-1], affine=last_bn))
    return nn.Sequential(*layers)


def _is_trunk_only(state: dict[str, Tensor]) -> bool:
    return "conv1.weight" in state and not any(k.startswith(("backbone.", "encoder.", "fc.")) for k in state)


def _trunk_model(obj: object, weights: str | os.PathLike, *, name: str, note: str, input_size) -> PairModel:
    trunk = instantiate(resnet50_trunk, random=False)
    load_entry(trunk, obj, [], what=name, file=weights)
    finish(trunk, name)
    warnings.warn(f"{name}: {os.path.basename(os.fspath(weights))} is {note}", UserWarning, stacklevel=3)
    return PairModel(
        trunk,
        layer="layer4",
        preprocessing=imagenet(input_size),
        name=name,
        description=f"{name}: {note}",
    )


# ---------------------------------------------------------------- Barlow Twins


class BarlowTwins(nn.Module):
    """``backbone`` (ResNet-50 trunk), ``projector`` 2048→8192→8192→8192 and the loss-only ``bn``
    (never applied)."""

    def __init__(self, dim: int = 8192) -> None:
        super().__init__()
        self.backbone = resnet50_trunk()
        self.projector = _mlp([2048, dim, dim, dim], last_bn=None)
        # Affine-free BN of the cross-correlation loss: stored in the checkpoint, not part of the embedding.
        self.bn = nn.BatchNorm1d(dim, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(self.backbone(x))


def barlowtwins_r50(
    weights: str | os.PathLike | None = None, *, input_size: int | tuple[int, int] = 224
) -> PairModel:
    """Barlow Twins ResNet-50: the full training checkpoint (``checkpoint.pth``, embedding = 8192-d
    projector output) or the backbone-only release (``resnet50.pth``, embedding = pooled 2048-d feature,
    with a warning).

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model("barlowtwins-r50", weights="checkpoint.pth")  # doctest: +SKIP
        >>> model.layer  # doctest: +SKIP
        'backbone.layer4'
    """
    name = "barlowtwins-r50"
    network = instantiate(BarlowTwins, random=weights is None)
    if weights is not None:
        obj = load_checkpoint(weights)
        if isinstance(obj, dict) and "model" not in obj and _is_trunk_only(obj):
            return _trunk_model(
                obj,
                weights,
                name=name,
                input_size=input_size,
                note="the backbone-only release (no projector): embedding = pooled 2048-d backbone feature, "
                "not the paper's 8192-d projector output",
            )
        load_entry(network, obj, ["model"], what=name, file=weights)
    finish(network, name)
    return PairModel(
        network,
        layer="backbone.layer4",
        preprocessing=imagenet(input_size),
        name=name,
        description="Barlow Twins ResNet-50; embedding: 8192-d projector output" + random_note(weights),
    )


# ---------------------------------------------------------------- SimSiam


class SimSiam(nn.Module):
    """``encoder`` = ResNet-50 whose ``fc`` is the 3-layer projector; ``predictor`` 2048→512→2048."""

    def __init__(self, embedding: str = "predictor") -> None:
        super().__init__()
        self.embedding = check_choice("simsiam embedding", embedding, ("predictor", "projector"))
        self.encoder = resnet50(weights=None)
        self.encoder.fc = _mlp([2048, 2048, 2048, 2048], last_bn=False, bias_last=True)
        self.predictor = _mlp([2048, 512, 2048], last_bn=None, bias_last=True)

    def forward(self, x: Tensor) -> Tensor:
        z = self.encoder(x)
        return self.predictor(z) if self.embedding == "predictor" else z


def simsiam_r50(
    weights: str | os.PathLike | None = None,
    *,
    embedding: str = "predictor",
    input_size: int | tuple[int, int] = 224,
) -> PairModel:
    """SimSiam ResNet-50 from ``checkpoint_0099.pth.tar``; embedding = predictor(projector(·)) as the
    paper, or the projector output with ``embedding="projector"``.

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model("simsiam-r50", weights="checkpoint_0099.pth.tar")  # doctest: +SKIP
        >>> model.layer  # doctest: +SKIP
        'encoder.layer4'
    """
    name = "simsiam-r50"
    check_choice("simsiam embedding", embedding, ("predictor", "projector"))
    network = instantiate(lambda: SimSiam(embedding), random=weights is None)
    if weights is not None:
        obj = load_checkpoint(weights)
        load_entry(network, obj, ["state_dict"], what=name, file=weights)
    finish(network, name)
    what = "2048-d predictor output (paper)" if embedding == "predictor" else "2048-d projector output"
    return PairModel(
        network,
        layer="encoder.layer4",
        preprocessing=imagenet(input_size),
        name=name,
        description=f"SimSiam ResNet-50; embedding: {what}" + random_note(weights),
    )


# ---------------------------------------------------------------- DINO ResNet-50


class DINOHead(nn.Module):
    """The head of the released DINO ResNet-50: ``mlp`` 2048→4096 (BN, GELU)→256, L2-normalise,
    ``last_layer``."""

    def __init__(
        self, dim: int = 2048, hidden: int = 4096, bottleneck: int = 256, out_dim: int = 60000
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Linear(hidden, bottleneck)
        )
        self.last_layer = nn.Linear(bottleneck, out_dim, bias=False)

    def forward(self, x: Tensor, upto: str = "head") -> Tensor:
        z = F.normalize(self.mlp(x), dim=-1, p=2)
        return z if upto == "bottleneck" else self.last_layer(z)


class DINOResNet(nn.Module):
    """DINO teacher/student network of the full checkpoint: ``backbone`` + ``head``; ``embedding`` picks
    the output."""

    def __init__(self, embedding: str = "head", out_dim: int = 60000) -> None:
        super().__init__()
        self.embedding = check_choice("dino-r50 embedding", embedding, ("head", "bottleneck", "backbone"))
        self.backbone = resnet50_trunk()
        self.head = DINOHead(out_dim=out_dim)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.backbone(x)
        return pooled if self.embedding == "backbone" else self.head(pooled, self.embedding)


def dino_r50(
    weights: str | os.PathLike | None = None,
    *,
    embedding: str | None = None,
    network: str = "teacher",
    input_size: int | tuple[int, int] = 224,
) -> PairModel:
    """DINO ResNet-50: the backbone-only file (``dino_resnet50_pretrain.pth``; embedding = pooled 2048-d
    feature) or the full checkpoint (``…_full_checkpoint.pth``; ``network`` "teacher" (default) or
    "student", ``embedding`` "head" (60000-d, the reference code's default), "bottleneck" (256-d) or
    "backbone").

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model("dino-r50", weights="dino_resnet50_pretrain.pth")  # doctest: +SKIP
        >>> model.layer  # doctest: +SKIP
        'layer4'
    """
    import argparse

    name = "dino-r50"
    check_choice("dino-r50 network", network, ("teacher", "student"))
    obj = load_checkpoint(weights, safe_globals=[argparse.Namespace]) if weights is not None else None
    if obj is not None and not (isinstance(obj, dict) and network in obj):
        if not (isinstance(obj, dict) and _is_trunk_only(obj)):
            guess = describe_checkpoint(obj)
            raise SimexplainError(
                f"{name}: {os.fspath(weights)} is neither the DINO ResNet-50 backbone file "
                "nor its full checkpoint" + (f"; it looks like {guess}" if guess else "")
            )
        if embedding not in (None, "backbone"):
            raise SimexplainError(
                f"{name}: the backbone-only file has no head; "
                f"embedding={embedding!r} needs the full checkpoint"
            )
        model = _trunk_model(
            obj,
            weights,
            name=name,
            input_size=input_size,
            note="the backbone-only release: embedding = pooled 2048-d feature",
        )
        return model
    chosen = check_choice("dino-r50 embedding", embedding or "head", ("head", "bottleneck", "backbone"))
    net = instantiate(lambda: DINOResNet(chosen), random=obj is None)
    if obj is not None:
        load_entry(net, obj, [network], what=name, file=weights, label=f"{name} {network}")
    finish(net, name)
    what = {
        "head": "60000-d head output",
        "bottleneck": "256-d L2-normalised bottleneck",
        "backbone": "pooled 2048-d",
    }
    return PairModel(
        net,
        layer="backbone.layer4",
        preprocessing=imagenet(input_size, ", bicubic resize"),
        name=name,
        description=f"DINO ResNet-50 ({network}); embedding: {what[chosen]}" + random_note(weights),
    )
