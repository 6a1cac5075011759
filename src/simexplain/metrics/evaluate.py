"""``evaluate``: every registered pair metric (the paper's six, maximum sensitivity, your own) for any
:class:`PairExplanation`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from .. import checks
from ..batching import resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation, upsample_maps
from ..methods import available
from ..methods.common import check_pair
from ..pair import PairModel
from .average_drop import masked_images
from .insertion_deletion import (
    BLUR_KERNEL,
    BLUR_SIGMA,
    DEFAULT_STEP,
    curve_fractions,
    curve_points,
    named_curves,
    pixel_ranks,
    sequence_source,
)
from .plan import Segment, embed_segments
from .registry import Metric, MetricInputs, registered, resolve_metrics
from .rerun import checked_method
from .results import MetricResults


def _maps_at_input_size(maps: Tensor, x: Tensor, name: str) -> Tensor:
    maps = maps.detach().to(device=x.device, dtype=torch.float32)
    if not bool(torch.isfinite(maps).all()):
        raise SimexplainError(f"{name} holds NaN or infinite values; metrics need finite maps")
    return upsample_maps(maps, tuple(x.shape[-2:]))


def _is_constant(maps: Tensor) -> Tensor:
    flat = maps.flatten(1)
    return flat.amax(1) == flat.amin(1)


def _curve_points(settings: Mapping[str, Any], size: tuple[int, int]) -> int:
    return curve_points(*size, settings["step"])


# A smaller step means more curve points, each a forward per image: a server caps them (checks.Work).
CurveStep = Annotated[int, checks.Work("curve-points", _curve_points)]


def check_options(
    step: CurveStep = DEFAULT_STEP, blur_kernel: int = BLUR_KERNEL, blur_sigma: float = BLUR_SIGMA
) -> dict[str, int | float]:
    """``evaluate``'s curve settings, checked and in their canonical types (no model needed).

    Example:
        >>> check_options(step=32.0)
        {'step': 32, 'blur_kernel': 11, 'blur_sigma': 5.0}
    """
    kernel = checks.positive_int("blur_kernel", blur_kernel)
    if kernel % 2 == 0:
        raise SimexplainError(f"blur_kernel must be an odd number of pixels, got {blur_kernel!r}")
    return {
        "step": checks.positive_int("step", step),
        "blur_kernel": kernel,
        "blur_sigma": checks.positive_number("blur_sigma", blur_sigma),
    }


def evaluate(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    explanation: PairExplanation,
    metrics: str | Sequence[str] = "all",
    *,
    batch_size: int | None = None,
    step: int = DEFAULT_STEP,
    blur_kernel: int = BLUR_KERNEL,
    blur_sigma: float = BLUR_SIGMA,
    clean: tuple[Tensor, Tensor] | None = None,
) -> MetricResults:
    """Per-pair metrics of an explanation (docs/methods.md, Metrics): insertion/deletion, average drop,
    maximum sensitivity, and any metric registered with :func:`simexplain.metrics.register`.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)))
        >>> x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
        >>> e = simexplain.explain(model, x1, x2)
        >>> r = evaluate(model, x1, x2, e, ["SD", "CAD"], step=32)
        >>> r["SD"].shape, sorted(r.curves)
        (torch.Size([2]), ['CD_1', 'CD_2', 'SD'])

    Args:
        model, x1, x2: the explained pairs (``B×3×H×W`` in model-input space). When the explanation carries
            its own images (Averaged Transforms explains a transformed second view), those are used.
        explanation: any :class:`PairExplanation`, also one built from another tool's maps; maps at a feature
            grid are upsampled bilinearly to input size first. A metric that re-runs the method (``MS``) runs
            it on ``x1, x2`` with exactly ``explanation.config``.
        metrics: registered names (``SI SD CI CD SAD CAD MS`` built in) or ``"all"`` (the first six).
        batch_size: images per forward; ``None`` = 8 on a CPU, 64 on a GPU.
        step: pixels changed per curve step (``⌈HW/step⌉ + 1`` points).
        blur_kernel, blur_sigma: the insertion baseline's Gaussian blur.
        clean: the embeddings ``(f_a(x1), f_b(x2))`` of the inputs when the caller has them already (the
            evaluation driver embeds a pair once for all its method variants); used only when the maps belong
            to the inputs themselves (not to a view the explanation carries).

    Every perturbed sequence is embedded once under inference mode and shared: SD and both CD directions
    come from the same deletion embeddings (only the partner differs), SI and CI from the insertion ones, SAD
    and CAD from the same masked images; the clean images are embedded once. All of these form one virtual
    batch per encoder, embedded in full chunks of ``batch_size``. Every setting is checked before any forward.
    The call holds the model's lock from start to end, and the model is not modified.
    """
    with model.locked():
        options = {"step": step, "blur_kernel": blur_kernel, "blur_sigma": blur_sigma}
        checked = _check_call(model, x1, x2, explanation, metrics, batch_size, options, clean)
        context, values = _forward_metrics(model, checked)
        for metric in checked.chosen:  # outside inference mode: the method may need gradients
            if metric.reruns_method:
                values.update(_run(metric, context))
    ordered = {n: values[n] for n in checked.names}  # the asked-for metrics first, in the caller's order
    ordered.update({k: v for k, v in values.items() if k not in ordered})
    return MetricResults(
        ordered,
        curves=context.curves,
        fractions=context.fractions,
        counts=checked.counts,
        method=explanation.method,
    )


@dataclass
class _Checked:
    """An ``evaluate`` call, checked: the metrics (names asked for, registered entries in the table's
    order, what they need), the curve options, the images the maps belong to and the inputs, the maps at
    input size, the caller's clean embeddings (when usable) and the constant-map count."""

    explanation: PairExplanation
    names: list[str]
    chosen: list[Metric]
    needs: set[str]
    options: dict[str, int | float]
    batch_size: int
    inputs: tuple[Tensor, Tensor]
    x1: Tensor
    x2: Tensor
    map1: Tensor
    map2: Tensor
    given: tuple[Tensor, Tensor] | None
    counts: dict[str, int]


def _check_call(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    explanation: PairExplanation,
    metrics: str | Sequence[str],
    batch_size: int | None,
    options: Mapping[str, Any],
    clean: tuple[Tensor, Tensor] | None,
) -> _Checked:
    """Every check that needs no forward, in one place."""
    names = resolve_metrics(metrics)
    chosen = [m for m in registered() if m.name in names]  # run in the table's order
    options = check_options(**options)
    batch_size = resolve_batch_size(batch_size, model.device)
    if not isinstance(explanation, PairExplanation):
        raise SimexplainError(f"explanation must be a PairExplanation, got {type(explanation).__name__}")
    if len(explanation) == 0:
        raise SimexplainError("the explanation holds no pairs")
    inputs = check_pair(model, x1, x2)  # a metric that re-runs the method starts from these
    x1, x2 = _explained_images(model, inputs, explanation)
    given = _given_clean(clean, explanation, len(x1))
    _check_requirements(chosen, x1, x2, explanation)
    map1 = _maps_at_input_size(explanation.map1, x1, "map1")
    map2 = _maps_at_input_size(explanation.map2, x2, "map2")
    counts = {"constant_maps": int(_is_constant(map1).sum() + _is_constant(map2).sum())}
    needs = {need for metric in chosen for need in metric.needs}
    return _Checked(
        explanation, names, chosen, needs, options, batch_size, inputs, x1, x2, map1, map2, given, counts
    )


def _forward_metrics(model: PairModel, checked: _Checked) -> tuple[MetricInputs, dict[str, Tensor]]:
    """Under inference mode: one chained virtual batch per encoder (every perturbed sequence and clean image
    embedded once), the shared curves, and every metric that does not re-run the method."""
    values: dict[str, Tensor] = {}
    with model.explaining(), torch.inference_mode():
        segments = _segments(
            checked.x1, checked.x2, checked.map1, checked.map2, checked.needs, checked.options
        )
        if checked.given is not None:
            segments = [s for s in segments if not s.name.startswith("clean")]
        z = embed_segments(model, segments, checked.batch_size)
        if checked.given is not None:
            z["clean1"], z["clean2"] = checked.given
        base = model.similarity(z["clean1"], z["clean2"]).double()
        values["base"] = base.cpu()
        context = MetricInputs(
            model=model,
            x1=checked.x1,
            x2=checked.x2,
            inputs=checked.inputs,
            explanation=checked.explanation,
            map1=checked.map1,
            map2=checked.map2,
            base=base,
            embeddings=z,
            counts=checked.counts,
            batch_size=checked.batch_size,
            **checked.options,
        )
        _add_curves(context, checked.needs)
        for metric in checked.chosen:
            if not metric.reruns_method:
                values.update(_run(metric, context))
    return context, values


def _given_clean(
    clean: tuple[Tensor, Tensor] | None, explanation: PairExplanation, pairs: int
) -> tuple[Tensor, Tensor] | None:
    """The caller's clean embeddings, when they describe the images the maps belong to."""
    if clean is None or explanation.image1 is not None or explanation.image2 is not None:
        return None
    z1, z2 = clean
    if not (isinstance(z1, Tensor) and isinstance(z2, Tensor)) or len(z1) != pairs or len(z2) != pairs:
        raise SimexplainError(f"clean must be the two B×D embeddings of the {pairs} pairs")
    return z1.detach(), z2.detach()


def _explained_images(
    model: PairModel, inputs: tuple[Tensor, Tensor], explanation: PairExplanation
) -> tuple[Tensor, Tensor]:
    """The images the maps belong to: the explanation's own views when it carries them, else the inputs."""
    x1, x2 = inputs
    if explanation.image1 is not None:
        x1 = check_pair(model, explanation.image1, x2)[0]
    if explanation.image2 is not None:
        x2 = check_pair(model, x1, explanation.image2)[1]
    if len(x1) != len(explanation):
        raise SimexplainError(f"{len(x1)} pairs of images but {len(explanation)} pairs of maps")
    return x1, x2


def _check_requirements(chosen: list[Metric], x1: Tensor, x2: Tensor, explanation: PairExplanation) -> None:
    """What the chosen metrics need that can be checked before any forward."""
    one_size = [m.name for m in chosen if m.same_size]
    if one_size and x1.shape[-2:] != x2.shape[-2:]:
        raise SimexplainError(
            f"{', '.join(one_size)} need both images at one size, got {tuple(x1.shape[-2:])} "
            f"and {tuple(x2.shape[-2:])}; the conditional metrics work with different sizes"
        )
    rerun = [m.name for m in chosen if m.reruns_method]
    if rerun:
        if explanation.method not in available():
            raise SimexplainError(
                f"{', '.join(rerun)} re-run the method, but {explanation.method!r} is not a registered "
                "method; call simexplain.metrics.max_sensitivity with a method name"
            )
        checked_method(explanation.method, explanation.config)


def _segments(
    x1: Tensor,
    x2: Tensor,
    map1: Tensor,
    map2: Tensor,
    needs: set[str],
    options: Mapping[str, int | float],
) -> list[Segment]:
    """The clean images and every sequence the metrics need, per image, as lazily built segments."""
    curves = "deletion" in needs or "insertion" in needs
    segments = []
    for image, x, maps, side in ((1, x1, map1, "a"), (2, x2, map2, "b")):
        size = "×".join(map(str, x.shape[-2:]))  # images of different sizes cannot share a forward
        segments.append(Segment(f"clean{image}", side, len(x), lambda part, x=x: x[part], size))
        ranks = pixel_ranks(maps) if curves else None  # only the curves need the pixel order
        for kind in ("deletion", "insertion"):
            if kind in needs:
                make, total = sequence_source(x, ranks, kind, **options)
                segments.append(Segment(f"{kind}{image}", side, total, make, size))
        if "masked" in needs:
            masked = Segment(
                f"masked{image}",
                side,
                len(x),
                lambda part, x=x, maps=maps: masked_images(x[part], maps[part]),
                size,
            )
            segments.append(masked)
    return segments


def _add_curves(context: MetricInputs, needs: set[str]) -> None:
    """Shape the sequence embeddings ``B×n×D`` and compute every curve they give, shared by the metrics."""
    z, step = context.embeddings, context.step
    fractions = curve_fractions(*context.x1.shape[-2:], step), curve_fractions(*context.x2.shape[-2:], step)
    clean1, clean2 = z["clean1"], z["clean2"]
    for kind in ("insertion", "deletion"):
        if kind not in needs:
            continue
        z[f"{kind}1"] = z[f"{kind}1"].view(len(clean1), len(fractions[0]), *clean1.shape[1:])
        z[f"{kind}2"] = z[f"{kind}2"].view(len(clean2), len(fractions[1]), *clean2.shape[1:])
        curves, axes = named_curves(
            context.model, kind, z[f"{kind}1"], z[f"{kind}2"], clean1, clean2, fractions
        )
        context.curves.update(curves)
        context.fractions.update(axes)


def _run(metric: Metric, context: MetricInputs) -> dict[str, Tensor]:
    """One metric's values as ``[B]`` float64 CPU tensors, its own name first."""
    out = metric.fn(context)
    values = {metric.name: out} if isinstance(out, Tensor) else dict(out)
    if metric.name not in values:
        raise SimexplainError(f"metric {metric.name!r} returned no value under its own name")
    pairs = len(context.explanation)
    for name, value in values.items():
        if not isinstance(value, Tensor) or tuple(value.shape) != (pairs,):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise SimexplainError(f"metric {metric.name!r} returned {name!r} of shape {shape}, not [{pairs}]")
    return {name: value.detach().double().cpu() for name, value in values.items()}


__all__ = ["check_options", "evaluate", "resolve_metrics"]
