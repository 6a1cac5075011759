"""Small pieces the method families share."""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import finite_images
from ..errors import SimexplainError
from ..pair import PairModel


def saliency_map(x: Tensor, grad: Tensor) -> Tensor:
    """``S = max_c |x ⊙ G|`` (docs/methods.md, Saliency): ``B×3×H×W`` → ``B×H×W``; each image keeps
    its own size."""
    return (x * grad).abs().amax(1)


def check_pair(model: PairModel, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
    """Validate and batch a pair of image tensors, moved to the model's device and dtype; NaN or infinite
    values are refused. Images 1 and 2 may differ in size."""
    tensors = []
    for name, x in (("x1", x1), ("x2", x2)):
        if not isinstance(x, Tensor):
            raise SimexplainError(f"{name} must be a torch.Tensor (use simexplain.load_images for files)")
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != 3:
            raise SimexplainError(f"{name} must be B×3×H×W in model-input space, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise SimexplainError(f"{name} must be a float tensor, got {x.dtype}")
        finite_images(name, x)
        # float16/float64 inputs meet the model in its own dtype instead of a raw dtype-mismatch error.
        tensors.append(x.detach().to(device=model.device, dtype=model.dtype))
    if tensors[0].shape[0] == 0:
        raise SimexplainError("x1 and x2 hold no images")
    if tensors[0].shape[0] != tensors[1].shape[0]:
        raise SimexplainError(f"x1 and x2 hold {tensors[0].shape[0]} and {tensors[1].shape[0]} images")
    return tensors[0], tensors[1]


def scores_and_input_gradients(model: PairModel, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One forward and one backward of the summed scores: ``(scores, ∂s/∂x1, ∂s/∂x2)``.

    Scores of different pairs are independent, so the gradient of their sum gives every pair's gradient.
    Images 1 and 2 may differ in size (:meth:`PairModel.embed_pair` embeds them side by side then).
    Parameters are frozen by :meth:`PairModel.explaining`, so no parameter gradient is computed.
    """
    x1 = x1.detach().requires_grad_(True)
    x2 = x2.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = model(x1, x2)
        g1, g2 = torch.autograd.grad(scores.sum(), (x1, x2))
    return scores.detach(), g1, g2
