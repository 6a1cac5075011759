"""The result of :func:`simexplain.metrics.evaluate`: a dict of per-pair tensors plus curves and counts."""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor

from .groups import summary_groups
from .registry import METRIC_INFO


def _mean(values: Tensor) -> float:
    values = values.double()
    return float(values.nanmean()) if not bool(values.isnan().all()) else math.nan


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else float(value)


class MetricResults(dict):
    """Per-pair metric values (``[B]`` float64 tensors on the CPU) keyed by name, plus what plots need.

    Keys: the requested metrics (``SI``, ``SD``, ``CI``, ``CD``, ``SAD``, ``CAD``, ``MS``, registered ones),
    the per-direction values (``CI_1`` = image 1 perturbed with image 2 clean, ``CI_2``, ``CD_1``, ``CD_2``,
    ``CAD_1``, ``CAD_2``), the increase indicators ``SAD_increase``/``CAD_increase`` (their mean is the
    increase rate) and ``base``, the clean similarity of each pair.

    Attributes:
        curves: ``B×n`` score curves keyed ``SI``, ``SD``, ``CI_1``, ``CI_2``, ``CD_1``, ``CD_2``.
        fractions: the x axis of each curve (fraction of pixels changed), same keys.
        counts: ``SAD_undefined``/``CAD_undefined`` (pairs whose base similarity is ≤ 0, NaN values) and
            ``constant_maps`` (maps with one value everywhere: their pixel order is raster order, defined but
            uninformative).
        method: the explanation's method name.

    Example:
        >>> import torch
        >>> r = MetricResults({"SD": torch.tensor([0.2, 0.4])}, method="demo")
        >>> round(r.means()["SD"], 3)
        0.3
    """

    def __init__(
        self,
        values: Mapping[str, Tensor],
        *,
        curves: Mapping[str, Tensor] | None = None,
        fractions: Mapping[str, Tensor] | None = None,
        counts: Mapping[str, int] | None = None,
        method: str = "custom",
    ) -> None:
        super().__init__(values)
        self.curves = dict(curves or {})
        self.fractions = dict(fractions or {})
        self.counts = dict(counts or {})
        self.method = method

    def means(self) -> dict[str, float]:
        """Mean over pairs of every entry (undefined pairs left out; all undefined → NaN)."""
        return {name: _mean(values) for name, values in self.items()}

    def increase_rates(self) -> dict[str, float]:
        """Fraction of pairs whose masked score exceeds the clean one (docs/methods.md, Average drop)."""
        return {name[: -len("_increase")]: _mean(v) for name, v in self.items() if name.endswith("_increase")}

    def groups(self) -> dict[str, float]:
        """The summary groups (docs/methods.md, Summary groups) of the means, where their metrics are
        present."""
        return summary_groups(self.means())

    def to_dict(self, *, curves: bool = True) -> dict:
        """JSON-ready dict (NaN → ``None``): means, per-pair values, counts, groups and optionally curves."""
        out: dict = {
            "method": self.method,
            "pairs": len(next(iter(self.values()))) if self else 0,
            "mean": {k: _json_number(v) for k, v in self.means().items()},
            "per_pair": {k: [_json_number(x) for x in v.double().tolist()] for k, v in self.items()},
            "counts": dict(self.counts),
            "groups": {k: _json_number(v) for k, v in self.groups().items()},
        }
        if curves:
            out["curves"] = {k: v.double().tolist() for k, v in self.curves.items()}
            out["fractions"] = {k: v.double().tolist() for k, v in self.fractions.items()}
        return out

    def __repr__(self) -> str:
        means = ", ".join(f"{k}={v:.4f}" for k, v in self.means().items() if k in METRIC_INFO)
        return f"MetricResults(method={self.method!r}, {means})"
