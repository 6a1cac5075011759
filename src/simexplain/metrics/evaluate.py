"""``evaluate``: the six pair metrics of the paper's tables for any :class:`PairExplanation`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..batching import resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation, upsample_maps
from ..methods.common import check_pair
from ..pair import PairModel
from .average_drop import average_drop_scores, masked_images, undefined_count
from .insertion_deletion import (
    BLUR_KERNEL,
    BLUR_SIGMA,
    DEFAULT_STEP,
    auc,
    curve_fractions,
    curves_from_sequences,
    pixel_ranks,
    sequence_source,
)
from .plan import Segment, embed_segments
from .results import MetricResults

METRICS: tuple[str, ...] = ("SI", "SD", "CI", "CD", "SAD", "CAD")  # "all": the paper's tables I–IV
EXTRA_METRICS: tuple[str, ...] = ("MS",)  # maximum sensitivity re-runs the method: asked for by name only


def resolve_metrics(metrics: str | Sequence[str]) -> list[str]:
    """``"all"`` → :data:`METRICS`; otherwise validate the names (case-insensitive), keeping their order."""
    if isinstance(metrics, str):
        metrics = list(METRICS) if metrics.lower() == "all" else [m.strip() for m in metrics.split(",")]
    names = [m.upper() for m in metrics]
    unknown = [m for m in names if m not in METRICS + EXTRA_METRICS]
    if unknown:
        raise SimexplainError(
            f"unknown metric {', '.join(map(repr, unknown))}; known: {', '.join(METRICS + EXTRA_METRICS)} or 'all'"
        )
    return list(dict.fromkeys(names))


def _maps_at_input_size(maps: Tensor, x: Tensor, name: str) -> Tensor:
    maps = maps.detach().to(device=x.device, dtype=torch.float32)
    if not bool(torch.isfinite(maps).all()):
        raise SimexplainError(f"{name} holds NaN or infinite values; metrics need finite maps")
    return upsample_maps(maps, tuple(x.shape[-2:]))


def _is_constant(maps: Tensor) -> Tensor:
    flat = maps.flatten(1)
    return flat.amax(1) == flat.amin(1)


def evaluate(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    explanation: PairExplanation,
    metrics: str | Sequence[str] = METRICS,
    *,
    batch_size: int | None = None,
    step: int = DEFAULT_STEP,
    blur_kernel: int = BLUR_KERNEL,
    blur_sigma: float = BLUR_SIGMA,
) -> MetricResults:
    """Per-pair metrics of an explanation (SPEC 4): insertion/deletion, average drop, maximum sensitivity.

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
        model, x1, x2: the explained pairs (``B×3×H×W`` in model-input space). When the explanation carries its
            own images (Averaged Transforms explains a transformed second view), those are used.
        explanation: any :class:`PairExplanation`, also one built from another tool's maps; maps at a feature
            grid are upsampled bilinearly to input size first.
        metrics: names from ``SI SD CI CD SAD CAD MS`` or ``"all"`` (the first six).
        batch_size: images per forward; ``None`` = 8 on a CPU, 64 on a GPU.
        step: pixels changed per curve step (``⌈HW/step⌉ + 1`` points).
        blur_kernel, blur_sigma: the insertion baseline's Gaussian blur.

    Every perturbed sequence is embedded once under inference mode and shared: SD and both CD directions come
    from the same deletion embeddings (only the partner differs), SI and CI from the insertion ones, SAD and CAD
    from the same masked images; the clean images are embedded once. All of these form one virtual batch per
    encoder, embedded in full chunks of ``batch_size``. The model is not modified.
    """
    names = resolve_metrics(metrics)
    if len(explanation) == 0:
        raise SimexplainError("the explanation holds no pairs")
    x1, x2 = check_pair(model, x1, x2)
    batch_size = resolve_batch_size(batch_size, x1.device)
    inputs = x1, x2  # maximum sensitivity re-runs the method on the inputs, not on a view it produced
    x1 = check_pair(model, explanation.image1, x2)[0] if explanation.image1 is not None else x1
    x2 = check_pair(model, x1, explanation.image2)[1] if explanation.image2 is not None else x2
    if len(x1) != len(explanation):
        raise SimexplainError(f"{len(x1)} pairs of images but {len(explanation)} pairs of maps")
    if any(n in ("SI", "SD") for n in names) and x1.shape[-2:] != x2.shape[-2:]:
        raise SimexplainError(
            f"simultaneous insertion/deletion needs both images at one size, got {tuple(x1.shape[-2:])} "
            f"and {tuple(x2.shape[-2:])}; the conditional metrics work with different sizes"
        )
    map1 = _maps_at_input_size(explanation.map1, x1, "map1")
    map2 = _maps_at_input_size(explanation.map2, x2, "map2")

    values: dict[str, Tensor] = {}
    curves: dict[str, Tensor] = {}
    fractions: dict[str, Tensor] = {}
    counts = {"constant_maps": int(_is_constant(map1).sum() + _is_constant(map2).sum())}
    deletion = any(n in names for n in ("SD", "CD"))
    insertion = any(n in names for n in ("SI", "CI"))
    average_drop = any(n in names for n in ("SAD", "CAD"))
    with model.explaining(), torch.inference_mode():
        options = {"step": step, "blur_kernel": blur_kernel, "blur_sigma": blur_sigma}
        segments = []
        for image, x, maps, side in ((1, x1, map1, "a"), (2, x2, map2, "b")):
            size = "×".join(map(str, x.shape[-2:]))  # images of different sizes cannot share a forward
            segments.append(Segment(f"clean{image}", side, len(x), lambda part, x=x: x[part], size))
            ranks = (
                pixel_ranks(maps) if deletion or insertion else None
            )  # only the curves need the pixel order
            for kind, wanted in (("deletion", deletion), ("insertion", insertion)):
                if wanted:
                    make, total = sequence_source(x, ranks, kind, **options)
                    segments.append(Segment(f"{kind}{image}", side, total, make, size))
            if average_drop:
                segments.append(
                    Segment(
                        f"masked{image}",
                        side,
                        len(x),
                        lambda part, x=x, maps=maps: masked_images(x[part], maps[part]),
                        size,
                    )
                )
        # one chained virtual batch per encoder: each perturbed sequence and the clean images embedded once
        z = embed_segments(model, segments, batch_size)
        clean1, clean2 = z["clean1"], z["clean2"]
        values["base"] = model.similarity(clean1, clean2).double().cpu()
        frac1, frac2 = curve_fractions(*x1.shape[-2:], step), curve_fractions(*x2.shape[-2:], step)
        for kind, simultaneous, conditional in (("insertion", "SI", "CI"), ("deletion", "SD", "CD")):
            if f"{kind}1" not in z:
                continue
            seq1 = z[f"{kind}1"].view(len(x1), len(frac1), *clean1.shape[1:])
            seq2 = z[f"{kind}2"].view(len(x2), len(frac2), *clean2.shape[1:])
            found = curves_from_sequences(model, seq1, seq2, clean1, clean2)
            if "simultaneous" in found:
                curves[simultaneous], fractions[simultaneous] = found["simultaneous"].double().cpu(), frac1
            curves[f"{conditional}_1"], fractions[f"{conditional}_1"] = (
                found["conditional_1"].double().cpu(),
                frac1,
            )
            curves[f"{conditional}_2"], fractions[f"{conditional}_2"] = (
                found["conditional_2"].double().cpu(),
                frac2,
            )
            if simultaneous in names:
                values[simultaneous] = auc(curves[simultaneous], frac1)
            if conditional in names:
                one, two = auc(curves[f"{conditional}_1"], frac1), auc(curves[f"{conditional}_2"], frac2)
                values[conditional], values[f"{conditional}_1"], values[f"{conditional}_2"] = (
                    (one + two) / 2,
                    one,
                    two,
                )
        if average_drop:
            drops = average_drop_scores(model.similarity, clean1, clean2, z["masked1"], z["masked2"])
            for name in ("SAD", "CAD"):
                if name in names:
                    keys = [name, f"{name}_increase"] + ([f"{name}_1", f"{name}_2"] if name == "CAD" else [])
                    values.update({k: drops[k].cpu() for k in keys})
                    counts[f"{name}_undefined"] = undefined_count(drops[name])
    if "MS" in names:
        values["MS"] = _sensitivity_of(model, *inputs, explanation, batch_size)
    ordered = {n: values[n] for n in names}
    ordered.update({k: v for k, v in values.items() if k not in ordered})
    return MetricResults(
        ordered, curves=curves, fractions=fractions, counts=counts, method=explanation.method
    )


def _sensitivity_of(
    model: PairModel, x1: Tensor, x2: Tensor, explanation: PairExplanation, batch_size: int
) -> Tensor:
    from ..methods import registry
    from .sensitivity import max_sensitivity

    if explanation.method not in registry.available():
        raise SimexplainError(
            f"maximum sensitivity re-runs the method, but {explanation.method!r} is not a registered method; "
            "call simexplain.metrics.max_sensitivity with a method name"
        )
    known = registry.get(explanation.method).parameters()
    params = {k: v for k, v in explanation.params.items() if k in known}
    return max_sensitivity(model, x1, x2, explanation.method, batch_size=batch_size, **params)


__all__ = ["EXTRA_METRICS", "METRICS", "evaluate", "resolve_metrics"]
