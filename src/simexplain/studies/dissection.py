"""The augmentation dissection (the paper's Table VII): Averaged Transforms with ONE transform at a time,
plain and guided, scored with SI, SD and SAD.

A dissection is an ordinary evaluation run (:class:`~simexplain.studies.Evaluation`) whose variants are
``averaged-transforms[transform=NAME]`` and ``averaged-transforms[transform=NAME;guided=true]``: it goes into
an evaluation store, resumes and spreads over ``torchrun`` processes exactly like ``evaluate``, and
:func:`~simexplain.studies.write_report` turns a dissection store into ``dissection.md/.csv/.tex``
(:func:`dissection_table`).

Example:
    >>> [v.label for v in dissection_variants("rotate-90,hflip", guided="plain")]
    ['averaged-transforms[transform=rotate-90]', 'averaged-transforms[transform=hflip]']
    >>> dissection_variants("rotate-90")[1].title
    'rotate-90 (G)'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor

from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..pair import PairModel
from ..transforms import get_transform
from .variants import Variant, parse_variants

# Table VII's transforms, in the paper's order.
DISSECTION_TRANSFORMS = (
    "color-jitter",
    "blur",
    "grayscale",
    "solarize",
    "rotate-30",
    "rotate-60",
    "rotate-90",
    "rotate-180",
    "hflip",
)
DISSECTION_METRICS = ("SI", "SD", "SAD")
GUIDED_CHOICES = {"both": (False, True), "plain": (False,), "guided": (True,)}
METHOD = "averaged-transforms"


def dissection_variants(
    transforms: str = "all", *, guided: str = "both", settings: Mapping[str, Any] | None = None
) -> list[Variant]:
    """The dissection's variants: each transform, plain and/or guided, with the run's ``--set`` settings.

    Args:
        transforms: ``all`` (Table VII's nine, :data:`DISSECTION_TRANSFORMS`) or comma-separated names from
            :func:`simexplain.transforms.available_transforms` (``identity``'s row equals Input×Gradient, a
            baseline for the others; ``combine`` is the whole SimCLR colour pipeline).
        guided: ``both`` (the paper's), ``plain`` or ``guided``.
        settings: ``averaged-transforms.KEY`` → value for every variant (e.g. ``mode=strength``, ``steps``);
            ``transform`` and ``guided`` are the dissection's own and refused here.

    Titles are the transform's name, with `` (G)`` for the guided row.
    """
    if guided not in GUIDED_CHOICES:
        raise SimexplainError(f"--guided {guided!r}: choose one of {', '.join(GUIDED_CHOICES)}")
    names = _transform_names(transforms)
    settings = dict(settings or {})
    for key in settings:
        if key in (f"{METHOD}.transform", f"{METHOD}.guided"):
            raise SimexplainError(f"--set {key}: the dissection chooses it (use --transforms / --guided)")
    text = ",".join(
        f"{METHOD}[transform={name}" + (";guided=true]" if flag else "]")
        for name in names
        for flag in GUIDED_CHOICES[guided]
    )
    variants = parse_variants(text, settings)
    titles = [f"{name}{' (G)' if flag else ''}" for name in names for flag in GUIDED_CHOICES[guided]]
    return [Variant(v.label, v.method, v.params, title) for v, title in zip(variants, titles)]


def _transform_names(text: str) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        raise SimexplainError("--transforms: give all or comma-separated transform names")
    if text.strip().lower() == "all":
        return list(DISSECTION_TRANSFORMS)
    names = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            name = get_transform(item).name
        except SimexplainError as error:
            raise SimexplainError(f"--transforms: {error}") from None
        if name in names:
            raise SimexplainError(f"--transforms: {name} is given twice")
        names.append(name)
    return names


class TransformRow(NamedTuple):
    """One transform of a dissection: its name and its plain and guided variants (``None`` when absent), each
    ``label``, ``method``, ``params``, ``title`` as a store keeps them."""

    transform: str
    plain: dict[str, Any] | None
    guided: dict[str, Any] | None

    def variant(self, guided: bool) -> dict[str, Any] | None:
        """The guided or the plain variant."""
        return self.guided if guided else self.plain


def transform_rows(variants: list[dict[str, Any]]) -> list[TransformRow]:
    """A dissection's variants (as a store keeps them) as one row per transform, in run order; other methods
    are left out.

    Example:
        >>> rows = transform_rows([{"method": METHOD, "params": {"transform": "blur", "guided": True}}])
        >>> rows[0].transform, rows[0].plain, rows[0].guided["params"]["guided"]
        ('blur', None, True)
    """
    rows: dict[str, list] = {}
    for variant in variants:
        params = variant.get("params") or {}
        if variant["method"] != METHOD or "transform" not in params:
            continue
        row = rows.setdefault(params["transform"], [None, None])
        row[1 if params.get("guided") else 0] = variant
    return [TransformRow(name, plain, guided) for name, (plain, guided) in rows.items()]


# ---------------------------------------------------------------------------------------------- one pair
@dataclass
class DissectionView:
    """One transform's path and maps for a figure (the paper's Fig. 6).

    Attributes:
        path: ``B×(K+1)×C×H×W``: image 2, then each step of its walk towards the transformed view.
        explanations: Averaged Transforms, then Input×Gradient and Smooth-Grad of the pair (guided when the
            Averaged Transforms explanation is), each a :class:`PairExplanation` of the batch.
    """

    path: Tensor
    explanations: list[PairExplanation]


def dissection_view(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    averaged: PairExplanation,
    known: Mapping[str, PairExplanation] | None = None,
) -> DissectionView:
    """The path of ``averaged`` (an ``averaged-transforms`` explanation of ``(x1, x2)``) redrawn from its
    config, with Input×Gradient and Smooth-Grad of the same pair to compare with. Smooth-Grad takes the
    Averaged Transforms seed; an explanation in ``known`` (method → explanation, e.g. from the same command)
    with the same ``guided`` setting is used instead of a new one.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)))
        >>> x1, x2 = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
        >>> e = simexplain.explain(model, x1, x2, "averaged-transforms", transform="rotate-90", seed=0)
        >>> view = dissection_view(model, x1, x2, e)
        >>> view.path.shape, [v.method for v in view.explanations]
        (torch.Size([1, 11, 3, 8, 8]), ['averaged-transforms', 'input-x-gradient', 'smooth-grad'])
    """
    from ..methods import explain
    from ..methods.saliency import transform_path

    if averaged.method != METHOD:
        raise SimexplainError(f"the steps figure needs an {METHOD} explanation, got {averaged.method!r}")
    config = averaged.config
    path = transform_path(
        model,
        x2,
        transform=config["transform"],
        steps=config["steps"],
        mode=config["mode"],
        seed=config["seed"],
    )
    guided = bool(config.get("guided"))
    known = known or {}
    explanations = [averaged]
    for method, params in (("input-x-gradient", {}), ("smooth-grad", {"seed": config["seed"]})):
        given = known.get(method)
        if given is not None and bool(given.config.get("guided")) == guided:
            explanations.append(given)
        else:
            explanations.append(explain(model, x1, x2, method, guided=guided, **params))
    return DissectionView(path, explanations)


def steps_figure_of(report: Any):
    """The dissection figure (the paper's Fig. 6) of a request's answer (``service.PairReport``) that ran
    ``averaged-transforms``: its path over image 2 above its maps and the two it is compared with. The other
    methods of the request are reused where their settings match (:func:`dissection_view`)."""
    from ..figures.dissection import steps_figure

    explanations = {outcome.method: outcome.explanation for outcome in report.outcomes}
    averaged = explanations[METHOD]
    view = dissection_view(report.model, report.x1, report.x2, averaged, explanations)
    title = f"{report.model.name}: {averaged.config['transform']}"
    return steps_figure(report.x1, view, report.model.preprocessing, title=title)


__all__ = [
    "DissectionView",
    "dissection_view",
    "steps_figure_of",
    "DISSECTION_METRICS",
    "DISSECTION_TRANSFORMS",
    "TransformRow",
    "dissection_variants",
    "transform_rows",
]
