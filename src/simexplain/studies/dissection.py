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
from typing import Any

from ..errors import SimexplainError
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


def transform_rows(variants: list[dict[str, Any]]) -> list[tuple[str, dict | None, dict | None]]:
    """A dissection's variants (``label``, ``method``, ``params``, ``title`` each, as a store keeps them) as
    rows ``(transform, plain variant, guided variant)`` in run order; other methods are left out."""
    rows: dict[str, list] = {}
    for variant in variants:
        params = variant.get("params") or {}
        if variant["method"] != METHOD or "transform" not in params:
            continue
        row = rows.setdefault(params["transform"], [None, None])
        row[1 if params.get("guided") else 0] = variant
    return [(name, plain, guided) for name, (plain, guided) in rows.items()]


__all__ = [
    "DISSECTION_METRICS",
    "DISSECTION_TRANSFORMS",
    "dissection_variants",
    "transform_rows",
]
