"""Metric registry: adding a metric is one registered function.

A metric is ``fn(inputs: MetricInputs) -> Tensor | Mapping[str, Tensor]``: one value per pair (``[B]``), or
a mapping that holds the metric under its own name plus any per-direction or auxiliary values. The
registration says what the function needs; :func:`simexplain.metrics.evaluate` embeds every perturbed
sequence the asked-for metrics need once, shared by all of them, and hands them over.
:func:`resolve_metrics`, :data:`METRIC_INFO`, :func:`simexplain.metrics.format_table` and the summary groups
all read the registry.

Example:
    >>> from simexplain import metrics
    >>> @metrics.register("BASE", higher_is_better=True, description="clean similarity", in_all=False)
    ... def clean_similarity(inputs):
    ...     return inputs.base
    >>> METRIC_INFO["BASE"]
    (True, 'clean similarity')
    >>> metrics.unregister("BASE")  # for tests and notebooks
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor

from ..checks import boolean
from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..pair import PairModel

# The shared perturbation sequences evaluate can embed for a metric: the curves' deletion and insertion
# sequences of both images (docs/methods.md, Insertion and deletion) and the average drop's masked images.
SEQUENCES = ("deletion", "insertion", "masked")


@dataclass
class MetricInputs:
    """What a metric function receives from :func:`simexplain.metrics.evaluate`.

    Attributes:
        model: the explained model.
        x1, x2: the images the maps belong to (model-input space; the explanation's own views when it carries
            them, e.g. Averaged Transforms' transformed second image).
        inputs: the pair as given to ``evaluate``; a metric that re-runs the method starts from these.
        explanation: the evaluated explanation (``explanation.config`` re-runs its method).
        map1, map2: ``B×H×W`` float32 maps at input size.
        base: ``[B]`` clean similarity of each pair (float64, on the model's device).
        embeddings: ``clean1``/``clean2`` (``B×D``), and for each sequence the asked-for metrics need:
            ``deletion1/2``, ``insertion1/2`` (``B×n×D``, one row per curve point), ``masked1/2`` (``B×D``).
        batch_size, step, blur_kernel, blur_sigma: ``evaluate``'s settings.
        curves, fractions: the ``B×n`` score curves of the embedded deletion/insertion sequences (``SD``,
            ``CD_1``, ``CD_2``, ``SI``, ``CI_1``, ``CI_2``) and their x axes, shared by every metric.
        counts: notes for the table; a metric may add its own (e.g. ``SAD_undefined``).
    """

    model: PairModel
    x1: Tensor
    x2: Tensor
    inputs: tuple[Tensor, Tensor]
    explanation: PairExplanation
    map1: Tensor
    map2: Tensor
    base: Tensor
    embeddings: dict[str, Tensor]
    batch_size: int
    step: int
    blur_kernel: int
    blur_sigma: float
    curves: dict[str, Tensor] = field(default_factory=dict)
    fractions: dict[str, Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


MetricFn = Callable[[MetricInputs], "Tensor | Mapping[str, Tensor]"]


@dataclass(frozen=True)
class Metric:
    """A registered metric (see :func:`register` for the fields)."""

    name: str
    fn: MetricFn
    higher_is_better: bool
    description: str
    needs: tuple[str, ...] = ()
    in_all: bool = True
    reruns_method: bool = False
    same_size: bool = False
    group: str | None = None


_METRICS: dict[str, Metric] = {}


def register(
    name: str,
    *,
    higher_is_better: bool,
    description: str,
    needs: Sequence[str] = (),
    in_all: bool = True,
    reruns_method: bool = False,
    same_size: bool = False,
    group: str | None = None,
) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register ``fn(inputs: MetricInputs)`` as metric ``name`` (matched case-insensitively).

    Args:
        name: the result key and table column (no commas or spaces); a name can be registered once.
        higher_is_better: the table's arrow; a summary group flips lower-is-better means (``1 − mean``).
        description: one line for listings.
        needs: the shared perturbation sequences to embed: ``"deletion"``, ``"insertion"``, ``"masked"``.
        in_all: part of ``"all"``.
        reruns_method: the metric re-runs the explanation's method (``evaluate`` then checks that the method
            is registered and that its config fits, before any forward, and calls the metric outside
            inference mode so that gradient methods work).
        same_size: both images must have one size (checked before any forward).
        group: summary group (e.g. ``"G1"``): the mean of its members, all with one direction.
    """
    if not isinstance(name, str) or not name or any(c in name for c in ", \t\n"):
        raise SimexplainError(f"a metric name is a non-empty word without commas or spaces, got {name!r}")
    higher_is_better = boolean("higher_is_better", higher_is_better)
    needs = (needs,) if isinstance(needs, str) else tuple(needs)
    unknown = [n for n in needs if n not in SEQUENCES]
    if unknown:
        raise SimexplainError(
            f"metric {name!r} needs unknown sequence(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(SEQUENCES)}"
        )
    flags = {
        flag: boolean(flag, value)
        for flag, value in (("in_all", in_all), ("reruns_method", reruns_method), ("same_size", same_size))
    }

    def decorate(fn: MetricFn) -> MetricFn:
        taken = _find(name)
        if taken is not None:
            raise SimexplainError(f"a metric named {taken!r} is already registered; choose another name")
        members = [m for m in _METRICS.values() if group is not None and m.group == group]
        if any(m.higher_is_better != higher_is_better for m in members):
            raise SimexplainError(f"summary group {group!r} mixes higher- and lower-is-better metrics")
        _METRICS[name] = Metric(name, fn, higher_is_better, str(description), needs, group=group, **flags)
        return fn

    return decorate


def unregister(name: str) -> None:
    """Forget metric ``name``; meant for tests and notebooks that registered a metric of their own."""
    found = _find(name)
    if found is None:
        raise SimexplainError(f"no metric named {name!r} is registered")
    del _METRICS[found]


def _find(name: str) -> str | None:
    wanted = name.upper()
    return next((known for known in _METRICS if known.upper() == wanted), None)


def get(name: str) -> Metric:
    """The registered metric ``name`` (case-insensitive)."""
    found = _find(name)
    if found is None:
        raise SimexplainError(f"unknown metric {name!r}; known: {', '.join(_METRICS)} or 'all'")
    return _METRICS[found]


def registered() -> list[Metric]:
    """Every registered metric, in registration order (the order of the paper's tables first)."""
    return list(_METRICS.values())


def resolve_metrics(metrics: str | Sequence[str]) -> list[str]:
    """``"all"`` → every metric registered with ``in_all``; otherwise the names checked (case-insensitive;
    a string may list several, comma-separated), in the caller's order, without repeats.

    Example:
        >>> resolve_metrics("sd, CAD"), resolve_metrics("all")
        (['SD', 'CAD'], ['SI', 'SD', 'CI', 'CD', 'SAD', 'CAD'])
        >>> resolve_metrics("all,MS")[-1]
        'MS'
    """
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",")]
    everything = [m.name for m in _METRICS.values() if m.in_all]
    metrics = [
        name for m in metrics for name in (everything if isinstance(m, str) and m.lower() == "all" else [m])
    ]
    unknown = [m for m in metrics if not isinstance(m, str) or _find(m) is None]
    if unknown:
        raise SimexplainError(
            f"unknown metric {', '.join(map(repr, unknown))}; known: {', '.join(_METRICS)} or 'all'"
        )
    return list(dict.fromkeys(_find(m) for m in metrics))


def summary_group_members() -> dict[str, tuple[list[str], bool]]:
    """Summary group → (its metrics, higher is better), groups in order of first registration."""
    groups: dict[str, tuple[list[str], bool]] = {}
    for metric in _METRICS.values():
        if metric.group is not None:
            groups.setdefault(metric.group, ([], metric.higher_is_better))[0].append(metric.name)
    return groups


class _MetricInfo(Mapping[str, tuple[bool, str]]):
    """A live, read-only view of the registry: name → (higher is better, description)."""

    def __getitem__(self, name: str) -> tuple[bool, str]:
        metric = _METRICS[name]
        return metric.higher_is_better, metric.description

    def __iter__(self) -> Iterator[str]:
        return iter(list(_METRICS))

    def __len__(self) -> int:
        return len(_METRICS)

    def __repr__(self) -> str:
        return repr(dict(self))


# name → (higher is better, one-line meaning), in registration order: the order of the paper's tables first
METRIC_INFO: Mapping[str, tuple[bool, str]] = _MetricInfo()
