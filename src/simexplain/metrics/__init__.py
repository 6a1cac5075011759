"""Pair metrics (SPEC 4): insertion/deletion and average drop in the simultaneous and conditional settings,
maximum sensitivity, the sanity check, and the summary groups.

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
from .evaluate import EXTRA_METRICS, METRICS, evaluate, resolve_metrics
from .insertion_deletion import DEFAULT_STEP, auc, curve_fractions, curve_points, pixel_ranks
from .results import METRIC_INFO, MetricResults
from .sanity import SanityResult, randomizable_layers, sanity_check, spearman
from .sensitivity import max_sensitivity
from .summary import format_table, summary_groups

__all__ = [
    "DEFAULT_STEP",
    "EXTRA_METRICS",
    "METRICS",
    "METRIC_INFO",
    "MetricResults",
    "SanityResult",
    "auc",
    "curve_fractions",
    "curve_points",
    "drops",
    "evaluate",
    "format_table",
    "masked_images",
    "max_sensitivity",
    "pixel_ranks",
    "randomizable_layers",
    "resolve_metrics",
    "sanity_check",
    "spearman",
    "summary_groups",
]
