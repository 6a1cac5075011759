"""Saliency family (SPEC §1): maps ``max_c |x ⊙ G|`` from input gradients of the pair score."""

from __future__ import annotations

from torch import Tensor

from ..explanation import PairExplanation
from ..pair import PairModel
from .common import saliency_map, scores_and_input_gradients
from .registry import register


@register("input-x-gradient", "saliency", "Input×Gradient of the pair score (baseline; SPEC 1.1)")
def input_x_gradient(model: PairModel, x1: Tensor, x2: Tensor) -> PairExplanation:
    """``S_k = max_c |x_k ⊙ ∂s/∂x_k|`` for both images from one forward and one backward of all pairs."""
    scores, g1, g2 = scores_and_input_gradients(model, x1, x2)
    return PairExplanation(
        map1=saliency_map(x1, g1), map2=saliency_map(x2, g2), score=scores, method="input-x-gradient", params={}
    )
