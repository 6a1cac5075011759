"""Feature inversion (the paper's appendix Fig. 19): images whose features at a layer match a given image's.

From ``0.1·N(0, 1)`` noise, SGD finds for each requested layer ℓ an image ``x̂`` (in [0, 1] pixels) that
minimises ``0.1·‖Φ_ℓ(x̂) − Φ_ℓ(x)‖² / ‖Φ_ℓ(x)‖² + 1e-7·Σ x̂⁶ + 1e-8·TV²(x̂)`` (docs/studies.md, Feature
inversion). All layers are optimised together as one batch: image ``i`` is matched to layer ``i`` only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import checks
from ..errors import SimexplainError
from ..pair import PairModel

FEATURE_WEIGHT = 0.1
POWER_WEIGHT, POWER = 1e-7, 6
TV_WEIGHT = 1e-8
RESNET_STAGES = ("layer2", "layer3", "layer4")  # the outputs of stages 3, 4 and 5 of a torchvision ResNet
EFFICIENTNET_BLOCKS = (2, 4, 6)  # timm's 7 stages: the outputs at strides 8, 16 and 32


@dataclass(frozen=True)
class Inversion:
    """The result of :func:`invert_features`.

    Attributes:
        images: ``L×3×H×W`` inversions in [0, 1] pixels (CPU), one per layer.
        layers: the layer names, in the order of ``images``.
        losses: ``iterations×L`` relative feature error ``‖Φ(x̂) − Φ(x)‖² / ‖Φ(x)‖²`` before each step.
        config: every setting used (JSON data): ``invert_features(model, image, **config)`` redoes it.
    """

    images: Tensor
    layers: list[str]
    losses: Tensor
    config: dict[str, Any] = field(default_factory=dict)


def default_inversion_layers(model: PairModel) -> list[str]:
    """Three layers at increasing depth for ``model``'s encoder (image 1's side).

    Torchvision-style ResNets: the outputs of stages 3, 4 and 5 (``layer2``, ``layer3``, ``layer4``). timm
    EfficientNets (a ``blocks`` container of 7 stages, e.g. the default efficientnet-lite0): blocks 2, 4 and 6
    (strides 8, 16 and 32). Any other model: one line asking for the layers.

    Example:
        >>> import simexplain
        >>> default_inversion_layers(simexplain.load_model("efficientnet-lite0"))
        ['network.blocks.2', 'network.blocks.4', 'network.blocks.6']
    """
    modules = dict(model.encoder_for("a").named_modules())
    stages = [_first_named(modules, stage) for stage in RESNET_STAGES]
    if all(stages):
        return stages
    for name, module in modules.items():
        if name.rsplit(".", 1)[-1] == "blocks" and len(list(module.children())) == 7:
            return [f"{name}.{index}" for index in EFFICIENTNET_BLOCKS]
    raise SimexplainError(
        f"model {model.name!r} has no default inversion layers; name them (some module names: "
        f"{', '.join([n for n in modules if n][:12])})"
    )


def _first_named(modules: dict[str, nn.Module], last: str) -> str | None:
    """The shallowest module whose name ends with the component ``last``."""
    found = [name for name in modules if name.rsplit(".", 1)[-1] == last]
    return min(found, key=lambda name: name.count("."), default=None)


def invert_features(
    model: PairModel,
    image: Tensor,
    layers: Sequence[str],
    *,
    iterations: int = 200,
    lr: float = 1e4,
    momentum: float = 0.9,
    decay_every: int = 40,
    decay: float = 0.1,
    seed: int = 0,
    progress: bool = False,
) -> Inversion:
    """Invert ``image``'s features at each of ``layers`` of ``model``'s encoder (image 1's side).

    ``image`` is ``1×3×H×W`` in model-input space. The inversions are optimised in [0, 1] pixel space, fed as
    ``model.preprocessing.to_model(x̂)`` and clipped to [0, 1] after each step; the regularisers act on the
    pixels. SGD with ``momentum``, learning rate ``lr`` times ``decay`` every ``decay_every`` iterations; the
    start noise comes from a CPU generator seeded with ``seed``, so a seed gives the same images on any
    device. The model runs in eval mode with frozen parameters and is left as it was.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten()))
        >>> result = invert_features(model, torch.rand(1, 3, 8, 8), ["0", "1"], iterations=3, lr=10.0)
        >>> result.images.shape, result.losses.shape
        (torch.Size([2, 3, 8, 8]), torch.Size([3, 2]))
    """
    layers = _checked_layers(model, layers)
    config = {
        "layers": layers,
        "iterations": checks.positive_int("iterations", iterations),
        "lr": checks.positive_number("lr", lr),
        "momentum": checks.number("momentum", momentum, low=0.0, high=1.0),
        "decay_every": checks.positive_int("decay_every", decay_every),
        "decay": checks.positive_number("decay", decay),
        "seed": checks.non_negative_int("seed", seed),
    }
    progress = checks.boolean("progress", progress)
    if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[:2] != (1, 3):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise SimexplainError(f"image must be one 1×3×H×W tensor, got {shape}")
    checks.finite_images("image", image)
    modules = [model.layer_module("a", name) for name in layers]
    with model.explaining():
        images, losses = _optimise(
            model, image.to(model.device, model.dtype), layers, modules, config, progress
        )
    return Inversion(images, layers, losses, config)


def _checked_layers(model: PairModel, layers: Sequence[str]) -> list[str]:
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise SimexplainError(f"layers must be a non-empty list of module names, got {layers!r}")
    names = [checks.text("layers", name) for name in layers]
    if len(set(names)) != len(names):
        raise SimexplainError(f"layers must be distinct, got {', '.join(names)}")
    for name in names:
        model.layer_module("a", name)  # one line naming some of the model's layers if it does not exist
    return names


def _optimise(
    model: PairModel,
    image: Tensor,
    layers: list[str],
    modules: list[nn.Module],
    config: dict[str, Any],
    progress: bool,
) -> tuple[Tensor, Tensor]:
    count, (_, _, height, width) = len(layers), image.shape
    to_model = model.preprocessing.to_model
    with _captured(layers, modules) as outputs, torch.no_grad():
        model.embed(image)
        targets = [outputs[name][0] for name in layers]
    target_norms = [target.pow(2).sum() for target in targets]
    generator = torch.Generator().manual_seed(config["seed"])
    start = 0.1 * torch.randn(count, 3, height, width, generator=generator, dtype=torch.float64)
    pixels = start.to(model.device, model.dtype).requires_grad_(True)
    optimizer = torch.optim.SGD([pixels], lr=config["lr"], momentum=config["momentum"])
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, config["decay_every"], gamma=config["decay"])
    history = []
    for _ in _steps(config["iterations"], progress):
        with _captured(layers, modules) as outputs, torch.enable_grad():
            model.embed(to_model(pixels))
            errors = torch.stack(
                [
                    (outputs[name][i] - target).pow(2).sum() / norm
                    for i, (name, target, norm) in enumerate(zip(layers, targets, target_norms))
                ]
            )
            loss = FEATURE_WEIGHT * errors.sum() + POWER_WEIGHT * pixels.pow(POWER).sum()
            loss = loss + TV_WEIGHT * _total_variation(pixels)
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            pixels.clamp_(0.0, 1.0)
        history.append(errors.detach().double().cpu())
    return pixels.detach().float().cpu(), torch.stack(history)


def _total_variation(pixels: Tensor) -> Tensor:
    """TV²: the sum of squared differences between vertical and horizontal neighbours."""
    return (pixels.diff(dim=-2).pow(2).sum()) + pixels.diff(dim=-1).pow(2).sum()


def _steps(iterations: int, progress: bool) -> Iterator[int] | range:
    if not progress:
        return range(iterations)
    from tqdm.auto import tqdm

    return tqdm(range(iterations), desc="inversion", unit="step", leave=False, disable=None, file=sys.stderr)


@contextmanager
def _captured(layers: list[str], modules: list[nn.Module]) -> Iterator[dict[str, Tensor]]:
    """Each layer's output of the forwards run inside the block; the hooks are removed on exit."""
    outputs: dict[str, Tensor] = {}

    def capture(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            if not isinstance(output, Tensor):
                raise SimexplainError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
            if name in outputs:
                raise SimexplainError(f"layer {name!r} runs more than once per forward; invert another layer")
            outputs[name] = output.clone()  # later in-place operations leave the captured value alone

        return hook

    with ExitStack() as stack:
        for name, module in zip(layers, modules):
            stack.callback(module.register_forward_hook(capture(name)).remove)
        yield outputs


__all__ = ["Inversion", "default_inversion_layers", "invert_features"]
