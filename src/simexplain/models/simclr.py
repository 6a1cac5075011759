"""SimCLRv2 ResNets (TF-SimCLR architecture) loaded from the common PyTorch conversion of the TF checkpoints.

The converted files (``r50_1x_sk0_ema.pth`` …) are dicts ``{"resnet": state_dict, "head": state_dict}``. The
module tree below is laid out so that its ``state_dict()`` carries exactly the converted key names:

- ``resnet.net.0``: the stem (7×7 conv, or three 3×3 convs with selective kernels), BN+ReLU, max-pool;
- ``resnet.net.1`` … ``net.4``: stages of bottleneck blocks ``blocks.{i}.net.*``, the first block of each
  stage with a ``projection`` shortcut;
- ``resnet.fc``: the supervised 1000-class layer stored in the file (not part of the embedding);
- ``head.layers.{0..7}``: Linear (no bias), BN, ReLU, Linear, BN, ReLU, Linear to 128, BN.

Inputs are raw [0, 1] RGB without mean/std normalisation, as the TF models were trained.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from torch import Tensor, nn

from ..errors import SimexplainError
from ..pair import PairModel
from .checkpoints import load_checkpoint
from .common import check_choice, file_name, finish, instantiate, load_entry, random_note, sized

BN_EPS = 1e-5
SK_RATIO = 0.0625
SK_MIN_DIM = 32
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
# The released TF checkpoints (SimCLRv2 README): every depth at 1x and 2x with and without SK,
# plus r152 3x SK.
RELEASED = tuple(
    [f"r{d}_{w}x_sk{s}" for d in (50, 101, 152) for w in (1, 2) for s in (0, 1)] + ["r152_3x_sk1"]
)
EMBEDDINGS = ("head", "backbone")

_VARIANT = re.compile(r"r(50|101|152)_([123])x_sk([01])")


@dataclass(frozen=True)
class Architecture:
    """A SimCLRv2 architecture: ResNet depth, width multiplier, selective kernels on/off.

    Example:
        >>> Architecture.parse("r50_2x_sk0_ema.pth")
        Architecture(depth=50, width=2, sk=False)
    """

    depth: int
    width: int
    sk: bool

    @classmethod
    def parse(cls, text: str) -> Architecture:
        """Read ``r{depth}_{width}x_sk{0|1}`` from a name such as ``r50_1x_sk0`` or a file name
        containing it."""
        match = _VARIANT.search(text)
        if match is None:
            raise SimexplainError(
                f"cannot read a SimCLRv2 variant from {text!r}: expected a name like r50_1x_sk0 "
                "(depth 50/101/152, width 1x/2x/3x, sk0/sk1); pass variant='r50_1x_sk0'"
            )
        return cls(int(match.group(1)), int(match.group(2)), match.group(3) == "1")

    @property
    def tag(self) -> str:
        return f"r{self.depth}_{self.width}x_sk{int(self.sk)}"

    @property
    def model_name(self) -> str:
        return f"simclrv2-r{self.depth}-{self.width}x" + ("-sk1" if self.sk else "")

    @property
    def features(self) -> int:
        return 2048 * self.width


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    # Symmetric (k-1)//2 padding equals TF-SimCLR's fixed padding for the odd kernels used here.
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False)


class BatchNormReLU(nn.Sequential):
    """BN then ReLU (or nothing): a Sequential so the BN keys read ``….0.weight`` like the converted files."""

    def __init__(self, channels: int, relu: bool = True) -> None:
        super().__init__(nn.BatchNorm2d(channels, eps=BN_EPS), nn.ReLU() if relu else nn.Identity())


class SelectiveKernel(nn.Module):
    """TF-SimCLR's selective-kernel conv: one 3×3 conv to two branches mixed by a softmax over branches."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        mid = max(int(cout * SK_RATIO), SK_MIN_DIM)
        self.main_conv = nn.Sequential(_conv(cin, 2 * cout, 3, stride), BatchNormReLU(2 * cout))
        self.mixing_conv = nn.Sequential(_conv(cout, mid, 1), BatchNormReLU(mid), _conv(mid, 2 * cout, 1))

    def forward(self, x: Tensor) -> Tensor:
        branches = self.main_conv(x).unflatten(1, (2, -1))  # B×2×C×H×W
        mix = self.mixing_conv(branches.sum(1).mean((2, 3), keepdim=True)).unflatten(1, (2, -1))
        return (branches * mix.softmax(dim=1)).sum(1)


class Projection(nn.Module):
    """The shortcut of a stage's first block: 1×1 conv (+ 2×2 average pool first with SK, ResNet-D) and BN."""

    def __init__(self, cin: int, cout: int, stride: int, sk: bool) -> None:
        super().__init__()
        if sk:
            # Index 2 holds the conv in the converted files, whatever the stride.
            down = stride > 1
            self.shortcut = nn.Sequential(
                nn.ZeroPad2d((0, 1, 0, 1)) if down else nn.Identity(),
                nn.AvgPool2d(2, stride) if down else nn.Identity(),
                _conv(cin, cout, 1),
            )
        else:
            self.shortcut = _conv(cin, cout, 1, stride)
        self.bn = BatchNormReLU(cout, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided; selective kernel with SK) → 1×1 ×4, residual, ReLU."""

    def __init__(self, cin: int, width: int, stride: int, sk: bool, project: bool) -> None:
        super().__init__()
        if project:
            self.projection = Projection(cin, 4 * width, stride, sk)
        middle: list[nn.Module] = (
            [SelectiveKernel(width, width, stride)]
            if sk
            else [_conv(width, width, 3, stride), BatchNormReLU(width)]
        )
        self.net = nn.Sequential(
            _conv(cin, width, 1),
            BatchNormReLU(width),
            *middle,
            _conv(width, 4 * width, 1),
            BatchNormReLU(4 * width, relu=False),
        )
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.projection(x) if hasattr(self, "projection") else x
        return self.relu(shortcut + self.net(x))


class Stage(nn.Module):
    """``blocks.{i}``: the first block changes width and stride, the others keep them."""

    def __init__(self, count: int, cin: int, width: int, stride: int, sk: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                Bottleneck(cin if i == 0 else 4 * width, width, stride if i == 0 else 1, sk, i == 0)
                for i in range(count)
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def _stem(width: int, sk: bool) -> nn.Sequential:
    half = 32 * width
    if sk:
        convs: list[nn.Module] = [
            _conv(3, half, 3, 2),
            BatchNormReLU(half),
            _conv(half, half),
            BatchNormReLU(half),
            _conv(half, 2 * half),
        ]
    else:
        convs = [_conv(3, 2 * half, 7, 2)]
    # Symmetric pool padding, as the common PyTorch conversion and the paper's code run these weights (TF's
    # SAME padding would pad only bottom/right: a one-pixel border difference).
    return nn.Sequential(*convs, BatchNormReLU(2 * half), nn.MaxPool2d(3, 2, padding=1))


class SimCLRv2ResNet(nn.Module):
    """The TF-SimCLR ResNet trunk: ``net`` (stem + 4 stages) and the stored supervised ``fc``."""

    def __init__(self, variant: Architecture) -> None:
        super().__init__()
        w = variant.width
        stages: list[nn.Module] = [_stem(w, variant.sk)]
        cin = 64 * w
        for i, count in enumerate(DEPTHS[variant.depth]):
            stages.append(Stage(count, cin, 64 * w * 2**i, 1 if i == 0 else 2, variant.sk))
            cin = 256 * w * 2**i
        self.net = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, 1000)

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features (``B×2048·width``)."""
        return self.net(x).mean((2, 3))


class ContrastiveHead(nn.Module):
    """``layers``: [Linear no-bias, BN, ReLU] ×2 then Linear no-bias to 128 and BN."""

    def __init__(self, channels: int, out_dim: int = 128) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(channels, channels, bias=False),
            nn.BatchNorm1d(channels, eps=BN_EPS),
            nn.ReLU(),
            nn.Linear(channels, channels, bias=False),
            nn.BatchNorm1d(channels, eps=BN_EPS),
            nn.ReLU(),
            nn.Linear(channels, out_dim, bias=False),
            nn.BatchNorm1d(out_dim, eps=BN_EPS),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class SimCLRv2(nn.Module):
    """SimCLRv2 encoder: ``head(mean_hw(resnet.net(x)))``, or the pooled features with
    ``embedding="backbone"``."""

    def __init__(self, variant: Architecture, embedding: str = "head") -> None:
        super().__init__()
        self.variant = variant
        self.embedding = check_choice("simclrv2 embedding", embedding, EMBEDDINGS)
        self.resnet = SimCLRv2ResNet(variant)
        self.head = ContrastiveHead(variant.features)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.resnet(x)
        return self.head(pooled) if self.embedding == "head" else pooled


def simclrv2(
    weights: str | os.PathLike | None = None,
    *,
    variant: str | None = None,
    embedding: str = "head",
    input_size: int | tuple[int, int] = 224,
    name: str | None = None,
) -> PairModel:
    """A SimCLRv2 ResNet as a pair model from a converted checkpoint (``{"resnet": …, "head": …}``).

    The variant comes from ``variant`` (``"r50_2x_sk0"``) or else from the file name; a registered name
    such as ``simclrv2-r50-2x`` fixes it. ``embedding="head"`` (default, the paper: 128-d projection-head
    output) or ``"backbone"`` (pooled trunk features). ``weights=None`` builds random weights
    (architecture only).

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model("simclrv2", weights="r50_1x_sk0_ema.pth")  # doctest: +SKIP
        >>> model.layer  # doctest: +SKIP
        'resnet.net.4'
    """
    if variant is None:
        if weights is None:
            raise SimexplainError(
                "simclrv2: pass variant='r50_1x_sk0' (or a checkpoint named like r50_1x_sk0_ema.pth)"
            )
        variant = file_name(weights)
    chosen = Architecture.parse(variant)
    label = name or chosen.model_name
    named = _VARIANT.search(file_name(weights)) if weights is not None else None
    if named is not None and Architecture.parse(named.group(0)) != chosen:
        raise SimexplainError(
            f"{label}: the file {file_name(weights)} is a SimCLRv2 {named.group(0)} checkpoint, "
            f"not {chosen.tag}; load it with {Architecture.parse(named.group(0)).model_name!r}"
        )
    check_choice("simclrv2 embedding", embedding, EMBEDDINGS)
    encoder = instantiate(lambda: SimCLRv2(chosen, embedding), random=weights is None)
    if weights is not None:
        obj = load_checkpoint(weights)
        for part in ("resnet", "head"):
            load_entry(getattr(encoder, part), obj, [part], what=label, file=weights, label=f"{label} {part}")
    finish(encoder, label)
    what = (
        "128-d projection-head output"
        if embedding == "head"
        else f"pooled {chosen.features}-d trunk features"
    )
    return PairModel(
        encoder,
        layer="resnet.net.4",
        preprocessing=sized(input_size, description="[0, 1] pixels, no mean/std normalisation (TF SimCLR)"),
        name=label,
        description=f"SimCLRv2 ResNet-{chosen.depth} {chosen.width}x sk{int(chosen.sk)}; embedding: {what}"
        + random_note(weights),
    )
