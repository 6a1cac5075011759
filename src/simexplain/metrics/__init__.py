"""Pair metrics (docs/methods.md, Metrics): insertion/deletion and average drop in the simultaneous and
conditional settings, maximum sensitivity, the sanity check, and the summary groups.

Metrics live in a registry (:func:`register`): adding one is one registered function, and ``evaluate``,
``resolve_metrics``, ``METRIC_INFO``, ``format_table`` and the summary groups take it from there.

Example:
    >>> import torch, simexplain
    >>> from torch import nn
    >>> from simexplain import metrics
    >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)))
    >>> x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    >>> results = metrics.evaluate(model, x1, x2, simexplain.explain(model, x1, x2), "all", step=32)
    >>> list(results)[:6]
    ['SI', 'SD', 'CI', 'CD', 'SAD', 'CAD']
    >>> table = metrics.format_table(results)
"""

from collections.abc import Sequence

from torch import Tensor

from ..methods.text_explanation import ImageTextExplanation
from ..pair import PairModel
from .average_drop import drops, masked_images
from .builtin import EXTRA_METRICS, METRICS
from .evaluate import check_options
from .evaluate import evaluate as evaluate_pairs
from .groups import summary_groups
from .image_text import IMAGE_TEXT_METRICS, WORD_METRICS, evaluate_image_text, usable_metrics, word_curves
from .insertion_deletion import DEFAULT_STEP, auc, curve_fractions, curve_points, pixel_ranks
from .registry import METRIC_INFO, Metric, MetricInputs, register, registered, resolve_metrics, unregister
from .results import MetricResults
from .sanity import SanityResult, randomizable_layers, sanity_check, spearman
from .sensitivity import max_sensitivity
from .table import format_table


def evaluate(
    model: PairModel,
    x1: Tensor,
    x2: Tensor | Sequence[str],
    explanation: object,
    metrics: str | Sequence[str] = "all",
    **options,
) -> MetricResults:
    """Per-pair metrics of an explanation: :func:`simexplain.metrics.evaluate.evaluate` for two images (its
    arguments and options), :func:`simexplain.metrics.image_text.evaluate_image_text` for an image–text
    explanation (``x2``: the texts)."""
    if isinstance(explanation, ImageTextExplanation):
        return evaluate_image_text(model, x1, x2, explanation, metrics, **options)
    return evaluate_pairs(model, x1, x2, explanation, metrics, **options)


__all__ = [
    "DEFAULT_STEP",
    "IMAGE_TEXT_METRICS",
    "WORD_METRICS",
    "EXTRA_METRICS",
    "METRICS",
    "METRIC_INFO",
    "Metric",
    "MetricInputs",
    "MetricResults",
    "SanityResult",
    "auc",
    "check_options",
    "curve_fractions",
    "curve_points",
    "drops",
    "evaluate",
    "evaluate_image_text",
    "evaluate_pairs",
    "format_table",
    "masked_images",
    "max_sensitivity",
    "pixel_ranks",
    "randomizable_layers",
    "register",
    "registered",
    "resolve_metrics",
    "sanity_check",
    "spearman",
    "summary_groups",
    "unregister",
    "usable_metrics",
    "word_curves",
]
