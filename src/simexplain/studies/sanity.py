"""The sanity study (the paper's Fig. 13): the cascading randomisation of
:func:`simexplain.metrics.sanity_check` for each chosen method over a few pairs, drawn as one grid per method
and one Spearman/SSIM plot.

The cascade randomises a deep copy of the model, layer by layer from the output end; the caller's model never
changes (docs/studies.md, Sanity checks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from .. import checks
from ..errors import SimexplainError
from ..figures.output import save_figure
from ..figures.sanity import sanity_grid_figure, spearman_band_figure
from ..methods import get
from ..metrics.sanity import SanityResult, randomizable_layers, sanity_check
from ..pair import PairModel
from .sources import PairSpec, pair_images
from .variants import Variant


@dataclass
class SanityStudy(SanityResult):
    """A :class:`SanityResult` of a study, with the pairs' ids and the cascade's depth at each kept step.

    Attributes:
        pairs: the id of each pair (the batch's order).
        randomised: how many layers are random at each kept step (0 for the original model).
    """

    pairs: list[str] = field(default_factory=list)
    randomised: list[int] = field(default_factory=list)


def run_sanity(
    model: PairModel,
    specs: Sequence[PairSpec],
    variants: Sequence[Variant],
    *,
    every: int = 1,
    seed: int = 0,
    batch_size: int | None = None,
) -> dict[str, SanityResult]:
    """The cascade for each variant over all ``specs`` stacked as one batch: label → :class:`SanityStudy`.

    The pairs must all have the model's input size (a folder or ``demo`` source always does). A variant of a
    seeded method that sets no ``seed`` of its own runs with ``seed``, so a run is the same every time; step
    ``i`` of the cascade re-initialises its layer under ``seed + i`` (as in ``sanity_check``).

    Example:
        >>> import simexplain
        >>> from simexplain.preprocessing import Preprocessing
        >>> from simexplain.studies import load_pairs, parse_variants
        >>> from torch import nn
        >>> small = Preprocessing(input_size=(16, 16), resize=18)
        >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                              nn.Flatten(), nn.Linear(4 * 16 * 16, 5)), preprocessing=small)
        >>> results = run_sanity(model, load_pairs("demo", limit=2), parse_variants("input-x-gradient"))
        >>> r = results["input-x-gradient"]
        >>> r.layers, r.randomised, tuple(r.maps1.shape)
        (['original', 'encoder.3', 'encoder.0'], [0, 1, 2], (3, 2, 16, 16))
    """
    every = checks.positive_int("every", every)
    seed = checks.non_negative_int("seed", seed)
    if not specs:
        raise SimexplainError("no pairs for the sanity check")
    if not variants:
        raise SimexplainError("no method chosen for the sanity check")
    pairs = [pair_images(spec, model) for spec in specs]
    sizes = {tuple(x.shape[-2:]) for pair in pairs for x in pair}
    if len(sizes) > 1:
        raise SimexplainError(
            f"the sanity check stacks its pairs as one batch; their images differ in size "
            f"({', '.join('×'.join(map(str, s)) for s in sorted(sizes))})"
        )
    firsts, seconds = zip(*pairs)
    x1, x2 = torch.cat(firsts), torch.cat(seconds)
    steps = {names[0]: index for index, names in enumerate(randomizable_layers(model), start=1)}
    results: dict[str, SanityResult] = {}
    for variant in variants:
        params = dict(variant.params)
        if "seed" in get(variant.method).parameters() and params.get("seed") is None:
            params["seed"] = seed
        result = sanity_check(
            model, x1, x2, variant.method, method_params=params, every=every, seed=seed, batch_size=batch_size
        )
        kept = {f.name: getattr(result, f.name) for f in fields(SanityResult)}
        randomised = [0] + [steps[label] for label in result.layers[1:]]
        results[variant.label] = SanityStudy(**kept, pairs=[s.id for s in specs], randomised=randomised)
    return results


def _file_name(label: str) -> str:
    """A variant's label as a file name: ``smooth-grad[samples=8]`` → ``smooth-grad-samples-8``."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", label).strip("-.") or "method"


def write_sanity(results: Mapping[str, SanityResult], out_dir: str | Path) -> list[Path]:
    """Write ``sanity-<label>.png/.svg`` (one grid per method: rows are pairs, columns the original map and
    the maps after each randomised layer) and ``spearman.png/.svg`` (rank correlation, and SSIM when
    computed, against the number of randomised layers, one line per method with the min–max band over
    pairs) into ``out_dir`` (made if missing). Returns the written paths.

    Example:
        >>> write_sanity(run_sanity(model, specs, variants), "sanity")  # doctest: +SKIP
        [PosixPath('sanity/sanity-input-x-gradient.png'), ..., PosixPath('sanity/spearman.svg')]
    """
    if not results:
        raise SimexplainError("no sanity-check results to write")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [_file_name(label) for label in results]
    if len(set(names)) != len(names):
        raise SimexplainError(f"two methods would share a figure's file name: {', '.join(names)}")
    written: list[str] = []
    for name, (label, result) in zip(names, results.items()):
        written += save_figure(sanity_grid_figure(result, title=label), out / f"sanity-{name}.png")
    written += save_figure(spearman_band_figure(results), out / "spearman.png")
    return [Path(path) for path in written]


def sanity_summary(results: Mapping[str, SanityResult], out_dir: str | Path) -> dict[str, dict]:
    """What a store keeps of a sanity study (:meth:`~simexplain.studies.Store.record_sanity`), per variant
    label: the grid figure's absolute path, the layers randomised at each kept step, and the rank correlation
    (and SSIM, or ``None``) with the original maps averaged over pairs and both images."""
    out = Path(out_dir).resolve()
    summary = {}
    for label, result in results.items():
        ssim = None if result.ssim1 is None else ((result.ssim1 + result.ssim2).mean(1) / 2).tolist()
        summary[label] = {
            "figure": str(out / f"sanity-{_file_name(label)}.png"),
            "spearman_figure": str(out / "spearman.png"),
            "layers": list(result.layers),
            "randomised": list(getattr(result, "randomised", [])),
            "pairs": int(result.maps1.shape[1]),
            "spearman": [round(float(v), 6) for v in result.mean_spearman()],
            "ssim": None if ssim is None else [round(float(v), 6) for v in ssim],
        }
    return summary


__all__ = ["SanityStudy", "run_sanity", "sanity_summary", "write_sanity"]
