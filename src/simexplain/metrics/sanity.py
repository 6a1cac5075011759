"""Sanity check (docs/methods.md, Sanity check): cascading randomisation of the model's layers from the
output end.

Adebayo et al. (2018): a map that still looks the same once the layers it explains are random does not depend
on the model. The cascade works on a deep copy, so the caller's model never changes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .. import checks
from ..batching import resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation, normalize_maps, upsample_maps
from ..methods import explain
from ..methods.common import check_pair
from ..methods.registry import Method
from ..pair import PairModel
from ..preprocessing import Preprocessing
from .rerun import checked_method, first_run_seed, with_batch_size


def _average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..n along the last dimension of ``B×n`` values, tied values sharing their average rank."""
    ordered, order = values.sort(dim=1, stable=True)
    positions = torch.arange(values.shape[1], device=values.device).expand_as(ordered)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    # first and last sorted position of each run of equal values; their mid-point (1-based) is the shared rank
    first = torch.where(starts, positions, 0).cummax(1).values
    last = torch.where(ends, positions, values.shape[1]).flip(1).cummin(1).values.flip(1)
    return torch.empty_like(ordered, dtype=torch.float64).scatter_(1, order, (first + last).double() / 2 + 1)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of each pair of maps (``B×H×W`` → ``[B]``), ties by average rank.

    A constant map carries no order, so its correlation with anything is 0 (not NaN).

    Example:
        >>> a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
        >>> round(spearman(a, a).item(), 6), round(spearman(a, -a).item(), 6)
        (1.0, -1.0)
    """
    ru, rv = _average_ranks(a.flatten(1).cpu()), _average_ranks(b.flatten(1).cpu())
    ru, rv = ru - ru.mean(1, keepdim=True), rv - rv.mean(1, keepdim=True)
    denominator = ru.norm(dim=1) * rv.norm(dim=1)
    correlation = (ru * rv).sum(1) / denominator.where(denominator > 0, torch.ones_like(denominator))
    return correlation.where(denominator > 0, torch.zeros_like(correlation)).clamp(-1, 1)


def ssim(a: Tensor, b: Tensor) -> Tensor | None:
    """SSIM of each pair of min–max scaled maps (``[B]``), or ``None`` without scikit-image (optional)."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        return None
    a, b = normalize_maps(a.double()).cpu().numpy(), normalize_maps(b.double()).cpu().numpy()
    side = min(a.shape[-2:])
    window = min(7, side if side % 2 else side - 1)
    if window < 3:
        return None
    return torch.tensor([structural_similarity(u, v, data_range=1.0, win_size=window) for u, v in zip(a, b)])


def _owners(encoder: nn.Module) -> list[str]:
    """Names of the modules that own parameters directly, in registration (≈ forward) order."""
    return [
        name
        for name, module in encoder.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    ]


def randomizable_layers(model: PairModel) -> list[list[str]]:
    """The cascade's steps, output end first: each step lists the modules (named in the ``PairModel``, e.g.
    ``encoder.fc``) re-initialised together; an asymmetric model randomises the same layer in both encoders.

    Example:
        >>> from torch import nn
        >>> m = PairModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)))
        >>> randomizable_layers(m)[-1]
        ['encoder.0']
    """
    names_a = _owners(model.encoder)
    steps = []
    if model.encoder_b is not None:
        names_b = _owners(model.encoder_b)
        # modules of encoder 'b' only (a predictor head, say) sit at its output end
        steps += [[f"encoder_b.{n}"] for n in reversed(names_b) if n not in names_a]
        steps += [[f"encoder.{n}"] + ([f"encoder_b.{n}"] if n in names_b else []) for n in reversed(names_a)]
    else:
        steps += [[f"encoder.{n}"] for n in reversed(names_a)]
    return steps


def _reinitialize(module: nn.Module, seed: int) -> None:
    """The layer's own initialiser (``reset_parameters``), else a normal draw at the parameter's own scale."""
    devices = [p.device.index for p in module.parameters(recurse=False) if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=devices), torch.no_grad():  # the caller's RNG stream stays as it was
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
            return
        for param in module.parameters(recurse=False):
            scale = float(param.double().std()) if param.numel() > 1 else 0.0
            param.normal_(0.0, scale if scale > 0 else 0.01)


@dataclass
class SanityResult:
    """Maps along the cascade; index 0 is the untouched model.

    Attributes:
        method: the method checked.
        layers: label of each kept step (``"original"``, then the last layer randomised so far).
        maps1, maps2: ``S×B×H×W`` maps at input size.
        spearman1, spearman2: ``S×B`` rank correlation with the original maps (1 at step 0).
        ssim1, ssim2: ``S×B`` SSIM with the original maps, or ``None`` without scikit-image.
        scores: ``S×B`` similarity of each pair under the (partly) randomised model.
        image1, image2: the model-input images, for figures.
        preprocessing: the model's, to show the images in pixel space.
    """

    method: str
    layers: list[str]
    maps1: Tensor
    maps2: Tensor
    spearman1: Tensor
    spearman2: Tensor
    ssim1: Tensor | None
    ssim2: Tensor | None
    scores: Tensor
    image1: Tensor
    image2: Tensor
    preprocessing: Preprocessing | None = None

    def mean_spearman(self) -> Tensor:
        """``[S]``: rank correlation with the original, averaged over pairs and both images."""
        return (self.spearman1 + self.spearman2).mean(1) / 2

    def passed(self, threshold: float = 0.5) -> bool:
        """True when the fully randomised model's maps correlate less than ``threshold`` with the original."""
        return bool(self.mean_spearman()[-1] < threshold)


def sanity_check(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    method: str,
    *,
    method_params: Mapping[str, Any] | None = None,
    steps: int | None = None,
    every: int = 1,
    seed: int = 0,
    batch_size: int | None = None,
) -> SanityResult:
    """Cascading randomisation from the output end on a deep copy of ``model``, re-running ``method``.

    Example:
        >>> import torch, simexplain
        >>> from torch import nn
        >>> model = simexplain.PairModel(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                              nn.Flatten(), nn.Linear(4 * 8 * 8, 5)))
        >>> x1, x2 = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
        >>> r = sanity_check(model, x1, x2, "smooth-grad", method_params={"samples": 3, "seed": 0})
        >>> r.layers
        ['original', 'encoder.3', 'encoder.0']

    Args:
        method, method_params: the method and its own settings, kept apart from the ones below (a method's
            ``steps`` or ``seed`` never binds to the cascade's).
        steps: randomise at most this many layers (``None``: all of them, down to the input).
        every: run the method after every ``every``-th layer (and after the last one); the cascade is
            cumulative, so skipped steps cost nothing.
        seed: step ``i`` re-initialises its layer under seed ``seed + i``.
        batch_size: handed to the method when it takes a ``batch_size`` and ``method_params`` holds none.

    A seeded method runs at every step with the seed of its first run (the one it drew when none was given),
    so only the randomised layers move the maps. Every setting is checked before any forward; the call holds
    the model's lock, and the model itself never changes.
    """
    with model.locked():
        entry, params = checked_method(method, method_params)
        steps = None if steps is None else checks.positive_int("steps", steps)
        every = checks.positive_int("every", every)
        seed = checks.non_negative_int("seed", seed)
        if batch_size is not None:
            batch_size = resolve_batch_size(batch_size, model.device)
        params = with_batch_size(entry, params, batch_size)
        x1, x2 = check_pair(model, x1, x2)
        work = copy.deepcopy(model)
        cascade = randomizable_layers(work)
        if not cascade:
            raise SimexplainError(f"model {model.name!r} has no parameterised layer to randomise")
        cascade = cascade[: steps if steps is not None else len(cascade)]
        steps_run = _run_cascade(work, x1, x2, (entry, params), cascade, every, seed)
    labels, maps1, maps2, scores = (list(column) for column in zip(*steps_run))
    stack1, stack2 = torch.stack(maps1), torch.stack(maps2)
    spearman1, ssim1 = _against_original(stack1)
    spearman2, ssim2 = _against_original(stack2)
    return SanityResult(
        method=method,
        layers=labels,
        maps1=stack1,
        maps2=stack2,
        spearman1=spearman1,
        spearman2=spearman2,
        ssim1=ssim1,
        ssim2=ssim2,
        scores=torch.stack(scores),
        image1=x1.cpu(),
        image2=x2.cpu(),
        preprocessing=model.preprocessing,
    )


class _Step(NamedTuple):
    """One kept step of the cascade: its label, both maps at input size and the scores (CPU)."""

    label: str
    map1: Tensor
    map2: Tensor
    score: Tensor


def _run_cascade(
    work: PairModel,
    x1: Tensor,
    x2: Tensor,
    method: tuple[Method, dict[str, Any]],
    cascade: list[list[str]],
    every: int,
    seed: int,
) -> list[_Step]:
    """The method on the untouched copy, then after every ``every``-th randomised step (and the last): a
    seeded method keeps the seed of its first run, so only the randomised layers move the maps."""
    entry, params = method

    def run(label: str) -> tuple[_Step, PairExplanation]:
        e = explain(work, x1, x2, entry.name, **params)
        m1 = upsample_maps(e.map1.detach(), tuple(x1.shape[-2:])).cpu()
        m2 = upsample_maps(e.map2.detach(), tuple(x2.shape[-2:])).cpu()
        with torch.inference_mode():
            score = work(x1, x2).detach().cpu()
        return _Step(label, m1, m2, score), e

    first, explanation = run("original")
    params = first_run_seed(entry, params, explanation)
    kept = [first]
    for index, names in enumerate(cascade, start=1):
        for name in names:
            _reinitialize(work.get_submodule(name), seed + index)
        if index % every == 0 or index == len(cascade):
            step, _ = run(names[0])
            kept.append(step)
    return kept


def _against_original(stack: Tensor) -> tuple[Tensor, Tensor | None]:
    """Spearman (``S×B``) and SSIM (``S×B``, or ``None`` without scikit-image) of every step's maps
    ``S×B×H×W`` against step 0's; the Spearman of all steps and pairs is one batch."""
    rho = spearman(stack[0].expand_as(stack).flatten(0, 1), stack.flatten(0, 1)).view(stack.shape[:2])
    similarities = [ssim(stack[0], m) for m in stack]
    return rho, None if similarities[0] is None else torch.stack(similarities)
