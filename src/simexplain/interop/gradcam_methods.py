"""pytorch-grad-cam's CAMs on pairs: ``grad-cam:NAME`` methods (extra ``simexplain[gradcam]``).

pytorch-grad-cam explains one model output per image. Here the model is the pair's encoder and each image's
target is its similarity to its partner's clean embedding (:class:`PairSimilarityTarget`): for image 1 of pair
``i``, ``sim(f(x1_i), z2_i)``, whose gradient at any layer is the pair score's. A shared encoder takes both
images as ONE batch ``[x1; x2]``, so the tapped module runs once and the library's hook (which appends one
activation per forward call) keeps both branches; two encoders or two image sizes run one side at a time.

The maps are the library's own output: ReLU'd, resized to the image and min–max scaled per image. Pairs run
one at a time (the min–max scaling would magnify other batch compositions' last-bit differences), so a pair's
map is the same in any batch.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .. import checks
from ..batching import resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..methods.registry import register
from ..pair import PairModel
from .common import layer_runs

PREFIX = "grad-cam:"
# class name → one-line description (the CAMs whose model is any module with a tapped layer)
CAMS = {
    "GradCAM": "Grad-CAM: activations weighted by spatially averaged gradients",
    "HiResCAM": "HiResCAM: activations times gradients, element-wise",
    "GradCAMElementWise": "element-wise Grad-CAM with a ReLU per element",
    "GradCAMPlusPlus": "Grad-CAM++: second-order gradient weights",
    "XGradCAM": "XGrad-CAM: activation-normalised gradient weights",
    "LayerCAM": "LayerCAM: positive gradients times activations",
    "EigenCAM": "EigenCAM: first principal component of the activations (no gradient)",
    "EigenGradCAM": "EigenGradCAM: first principal component of activations times gradients",
    "ScoreCAM": "Score-CAM: each channel as a mask, weighted by the partner similarity",
    "AblationCAM": "Ablation-CAM: the similarity drop when a channel is ablated",
    "FullGrad": "FullGrad: input and bias gradients of every layer (ignores the layer setting)",
}


def _library() -> Any:
    try:
        import pytorch_grad_cam
    except ImportError:
        raise SimexplainError(
            "grad-cam methods need the pytorch_grad_cam package: pip install 'simexplain[gradcam]'"
        ) from None
    return pytorch_grad_cam


class Embedder(nn.Module):
    """The encoder of one side as the library's "model": images → embeddings."""

    def __init__(self, model: PairModel, side: str) -> None:
        super().__init__()
        self.model = model
        self.side = side

    def forward(self, x: Tensor) -> Tensor:
        return self.model.embed(x, self.side)


class PairSimilarityTarget:
    """The library's target for one image: its similarity to its partner's clean embedding (argument order
    kept: image 1 first)."""

    def __init__(self, model: PairModel, partner: Tensor, first: bool) -> None:
        self.model, self.partner, self.first = model, partner, first

    def __call__(self, output: Tensor) -> Tensor:
        z, partner = output.unsqueeze(0), self.partner.unsqueeze(0).to(output.device)
        return (self.model.similarity(z, partner) if self.first else self.model.similarity(partner, z))[0]


def _pair_maps(
    library: Any,
    cls_name: str,
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    layer: str | None,
    eigen_smooth: bool,
    batch_size: int | None,
) -> tuple[Tensor, Tensor]:
    """The library's maps of one pair: ``[x1; x2]`` as one batch through a shared encoder, else one side at a
    time."""
    maps = []
    for side, x, partner, first in layer_runs(model, x1, x2):
        # Transformer tokens B×N×D become the patch grid the library expects; feature maps pass as is.
        reshape = functools.partial(model.as_grid, input_hw=tuple(x.shape[-2:]))
        targets = [PairSimilarityTarget(model, p, bool(f)) for p, f in zip(partner, first)]
        with contextlib.redirect_stdout(io.StringIO()):  # FullGrad prints a notice on stdout
            cam = getattr(library, cls_name)(
                model=Embedder(model, side),
                target_layers=[model.layer_module(side, layer)],
                reshape_transform=reshape,
            )
        if (
            cls_name == "ScoreCAM"
        ):  # masked copies per forward (AblationCAM keeps its own: its maps depend on it)
            cam.batch_size = resolve_batch_size(batch_size, x.device)
        with cam:
            out = cam(
                input_tensor=x.detach().requires_grad_(True), targets=targets, eigen_smooth=eigen_smooth
            )
        maps.append(torch.as_tensor(out, dtype=x.dtype, device=x.device))
    return (maps[0][:1], maps[0][1:]) if len(maps) == 1 else (maps[0], maps[1])


def _cam_method(cls_name: str) -> Callable:
    name = PREFIX + cls_name

    def method(
        model: PairModel,
        x1: Tensor,
        x2: Tensor,
        *,
        layer: checks.LayerName = None,
        eigen_smooth: checks.Flag = False,
        batch_size: checks.BatchSize = None,
    ) -> PairExplanation:
        library = _library()
        model.layer_module("a", layer)
        model.layer_module("b", layer)  # an unknown layer fails before any forward
        # One pair per call: the library min-max scales each map, which magnifies the last-bit differences of
        # other batch compositions, so a pair's map is computed the same way in any batch.
        pairs = [
            _pair_maps(
                library, cls_name, model, x1[i : i + 1], x2[i : i + 1], layer, eigen_smooth, batch_size
            )
            for i in range(len(x1))
        ]
        maps = [torch.cat(side) for side in zip(*pairs)]
        with torch.no_grad():
            score = model(x1, x2)
        return PairExplanation(
            map1=maps[0],
            map2=maps[1],
            score=score,
            method=name,
            config={"layer": layer, "eigen_smooth": eigen_smooth},
        )

    method.__name__ = method.__qualname__ = "grad_cam_" + cls_name
    method.__doc__ = f"pytorch-grad-cam's {cls_name} with a pair-similarity target (docs/interop.md)."
    return method


for _cls_name, _description in CAMS.items():
    register(PREFIX + _cls_name, "activation", f"pytorch-grad-cam {_description}")(_cam_method(_cls_name))
