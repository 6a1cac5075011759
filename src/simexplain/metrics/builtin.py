"""The built-in metrics, registered in the order of the paper's tables (docs/methods.md, Metrics).

Each is one registered function over the shared :class:`MetricInputs`: the curves come from the deletion and
insertion sequences embedded once for all of them, the average drops from the masked images.
"""

from __future__ import annotations

from torch import Tensor

from .average_drop import drops, undefined_count
from .insertion_deletion import auc
from .registry import MetricInputs, register, registered
from .sensitivity import max_sensitivity


def _conditional(inputs: MetricInputs, name: str) -> dict[str, Tensor]:
    """Both directions of a conditional curve metric and their mean."""
    one = auc(inputs.curves[f"{name}_1"], inputs.fractions[f"{name}_1"])
    two = auc(inputs.curves[f"{name}_2"], inputs.fractions[f"{name}_2"])
    return {name: (one + two) / 2, f"{name}_1": one, f"{name}_2": two}


@register(
    "SI",
    higher_is_better=True,
    description="simultaneous insertion AUC",
    needs=("insertion",),
    same_size=True,
    group="G1",
)
def simultaneous_insertion(inputs: MetricInputs) -> Tensor:
    return auc(inputs.curves["SI"], inputs.fractions["SI"])


@register(
    "SD",
    higher_is_better=False,
    description="simultaneous deletion AUC",
    needs=("deletion",),
    same_size=True,
    group="G2",
)
def simultaneous_deletion(inputs: MetricInputs) -> Tensor:
    return auc(inputs.curves["SD"], inputs.fractions["SD"])


@register(
    "CI",
    higher_is_better=True,
    description="conditional insertion AUC (mean of both directions)",
    needs=("insertion",),
    group="G1",
)
def conditional_insertion(inputs: MetricInputs) -> dict[str, Tensor]:
    return _conditional(inputs, "CI")


@register(
    "CD",
    higher_is_better=False,
    description="conditional deletion AUC (mean of both directions)",
    needs=("deletion",),
    group="G2",
)
def conditional_deletion(inputs: MetricInputs) -> dict[str, Tensor]:
    return _conditional(inputs, "CD")


@register(
    "SAD",
    higher_is_better=False,
    description="simultaneous average drop",
    needs=("masked",),
    group="G3",
)
def simultaneous_average_drop(inputs: MetricInputs) -> dict[str, Tensor]:
    z = inputs.embeddings
    drop, increase = drops(inputs.base, inputs.model.similarity(z["masked1"], z["masked2"]))
    inputs.counts["SAD_undefined"] = undefined_count(drop)
    return {"SAD": drop, "SAD_increase": increase}


@register(
    "CAD",
    higher_is_better=False,
    description="conditional average drop (mean of both directions)",
    needs=("masked",),
    group="G3",
)
def conditional_average_drop(inputs: MetricInputs) -> dict[str, Tensor]:
    z, similarity = inputs.embeddings, inputs.model.similarity
    one, one_up = drops(inputs.base, similarity(z["masked1"], z["clean2"]))  # image 1 masked, image 2 clean
    two, two_up = drops(inputs.base, similarity(z["clean1"], z["masked2"]))
    mean = (one + two) / 2  # NaN when the base is non-positive
    inputs.counts["CAD_undefined"] = undefined_count(mean)
    return {"CAD": mean, "CAD_increase": (one_up + two_up) / 2, "CAD_1": one, "CAD_2": two}


@register(
    "MS",
    higher_is_better=False,
    description="maximum sensitivity",
    in_all=False,  # it re-runs the method 1 + samples times: asked for by name only
    reruns_method=True,
)
def maximum_sensitivity(inputs: MetricInputs) -> Tensor:
    e = inputs.explanation
    # exactly the explanation's own settings; MS's own (samples, radius, seed) never mix with them
    return max_sensitivity(
        inputs.model, *inputs.inputs, e.method, method_params=e.config, batch_size=inputs.batch_size
    )


METRICS: tuple[str, ...] = tuple(m.name for m in registered() if m.in_all)  # built-in "all": tables I–IV
EXTRA_METRICS: tuple[str, ...] = tuple(m.name for m in registered() if not m.in_all)  # built-in, by name only
