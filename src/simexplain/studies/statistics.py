"""The statistics of the studies, on plain numpy arrays: means over the values that exist, percentile
bootstrap intervals and Pearson's correlation. The reports compute with these; figures only draw results."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def finite_mean(values: np.ndarray) -> float:
    """The mean of the finite values (NaN when there are none).

    Example:
        >>> finite_mean(np.array([1.0, np.nan, 3.0])), finite_mean(np.array([np.nan]))
        (2.0, nan)
    """
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def bootstrap_means(
    values: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means of ``values`` (pairs × columns, NaN = no value) and their 95% percentile bootstrap
    interval: :func:`resampled_means` summed up by :func:`percentile_interval`.

    Example:
        >>> mean, low, high = bootstrap_means(np.array([[1.0], [2.0], [3.0]]), 1000, 0)
        >>> float(mean[0]), bool(1 <= low[0] < 2 < high[0] <= 3)
        (2.0, True)
    """
    values = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(defined, values, 0.0).sum(0) / defined.sum(0)
    low, high = percentile_interval(resampled_means(values, resamples, seed))
    return mean, low, high


def resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The column means of ``values`` (pairs × columns, NaN = no value) in each bootstrap resample:
    ``resamples × columns``.

    The pairs (rows) are resampled with replacement, with indices
    ``default_rng(seed).integers(0, n, (resamples, n))`` shared by all columns; each resample's mean skips the
    NaNs (NaN when a resample holds no value of the column). ``resamples=0`` or no pairs: no rows.

    Example:
        >>> resampled_means(np.array([[1.0, 5.0], [3.0, np.nan]]), 4, 0).shape
        (4, 2)
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if resamples == 0 or n == 0:
        return np.empty((0, values.shape[1]))
    defined = np.isfinite(values)
    clean = np.where(defined, values, 0.0)
    index = np.random.default_rng(seed).integers(0, n, (resamples, n))
    offsets = (np.arange(resamples)[:, None] * n + index).ravel()
    counts = np.bincount(offsets, minlength=resamples * n).reshape(resamples, n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ clean) / (counts @ defined)


def percentile_interval(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95% percentile interval (2.5th and 97.5th percentiles) of each column of ``means`` (resamples ×
    columns, as :func:`resampled_means` gives), NaNs skipped; NaN without resamples or values.

    Example:
        >>> percentile_interval(np.empty((0, 1)))
        (array([nan]), array([nan]))
    """
    if means.shape[0] == 0:
        nan = np.full(means.shape[1], math.nan)
        return nan, nan.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column without values: NaN, said in the notes
        low, high = np.nanpercentile(means, [2.5, 97.5], axis=0)
    return low, high


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation of ``x`` and ``y``; NaN with fewer than two points or a constant side.

    Example:
        >>> pearson_r([1, 2, 3], [2, 4, 7])
        0.9933992677987828
        >>> pearson_r([1, 1], [2, 3])
        nan
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    return float(np.clip((dx @ dy) / math.sqrt((dx @ dx) * (dy @ dy)), -1.0, 1.0))


__all__ = ["bootstrap_means", "finite_mean", "pearson_r", "percentile_interval", "resampled_means"]
