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

from .average_drop import drops, masked_images
from .builtin import EXTRA_METRICS, METRICS
from .evaluate import check_options, evaluate
from .groups import summary_groups
from .insertion_deletion import DEFAULT_STEP, auc, curve_fractions, curve_points, pixel_ranks
from .registry import METRIC_INFO, Metric, MetricInputs, register, registered, resolve_metrics, unregister
from .results import MetricResults
from .sanity import SanityResult, randomizable_layers, sanity_check, spearman
from .sensitivity import max_sensitivity
from .table import format_table

__all__ = [
    "DEFAULT_STEP",
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
]
