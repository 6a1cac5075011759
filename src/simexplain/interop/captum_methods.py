"""captum's attributions on pairs: ``captum:NAME`` methods (extra ``simexplain[captum]``; docs/interop.md).

Three ways to run, one per kind of attribution:

* input gradients (``Saliency``, ``InputXGradient``, ``IntegratedGradients``, ``DeepLift``, ``GradientShap``,
  ``GuidedBackprop``, ``Deconvolution``, optionally inside ``NoiseTunnel``): the forward is the
  :class:`~simexplain.pair.PairModel` itself, ``(x1, x2) -> scores``, so both images are attributed at once
  (a path or noise moves both images together). Map ``max_c |a|``, as the saliency family.
* perturbations (``Occlusion``, ``FeatureAblation``, ``ShapleyValueSampling``): the same forward. Occlusion
  and FeatureAblation perturb one image at a time while the other stays clean (conditional, like Conditional
  Occlusion); ShapleyValueSampling's coalitions span the patches of both images. Only forwards, so they run
  on black-box models. Map: the channel mean (signed: a drop is positive).
* layers (``LayerGradCam``, ``LayerIntegratedGradients``, ``LayerConductance``, ``LayerGradientXActivation``,
  ``LayerActivation``): the forward scores each image against its partner's clean embedding, which travels as
  captum's ``additional_forward_args`` (so captum expands it with the inputs). A shared encoder sees both
  images as ONE batch, the tapped module runs once and captum's hook keeps both branches; two encoders (or two
  image sizes) run one side at a time. Grid: the channel sum (as the CAM family), upsampled to the image.

The raw attributions are kept as ``extras["attribution1"]`` / ``extras["attribution2"]``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import checks
from ..batching import resolve_batch_size
from ..errors import SimexplainError
from ..explanation import PairExplanation
from ..methods.occlusion import FILLS, fill_values
from ..methods.registry import register
from ..pair import PairModel
from .common import layer_runs

PREFIX = "captum:"
NT_TYPES = ("none", "smoothgrad", "smoothgrad_sq", "vargrad")
INTEGRATIONS = ("gausslegendre", "riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid")


def _attr() -> Any:
    try:
        import captum.attr
    except ImportError:
        raise SimexplainError(
            "captum methods need the captum package: pip install 'simexplain[captum]'"
        ) from None
    return captum.attr


# ---------------------------------------------------------------------------------------------- settings
def baseline_setting(name: str, value: Any) -> str | float:
    """A baseline: a fill of the occlusion family (``zero``, ``mean``, ``blur``) or a constant number."""
    if isinstance(value, str) and value in FILLS:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return checks.number(name, value)
    raise SimexplainError(f"{name} must be one of {', '.join(FILLS)} or a number, got {value!r}")


Baseline = Annotated["str | float", baseline_setting]
NoiseType = Annotated[str, checks.one_of(NT_TYPES)]
Integration = Annotated[str, checks.one_of(INTEGRATIONS)]
NonNegative = Annotated[float, checks.non_negative_number]


def baseline_images(x: Tensor, baseline: str | float) -> Tensor:
    """The baseline of each image of ``x``, at full size (what captum compares the input with)."""
    if isinstance(baseline, str):
        return fill_values(x, baseline).expand_as(x).contiguous()
    return torch.full_like(x, baseline)


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """captum draws from torch's and numpy's global generators (GradientShap picks baselines with numpy): fork
    both, seed them, and give the caller's back afterwards, also after an exception."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(numpy_state)


def _check_steps(n_steps: int, integration: str) -> None:
    if n_steps < 2 and integration.startswith("riemann"):
        raise SimexplainError(f"integration {integration!r} needs n_steps >= 2 (gausslegendre takes 1)")


def _resolved_seed(seed: int | list[int] | None, x1: Tensor) -> int | list[int]:
    """What the config records: the seed as given (one int, or one per pair), or the one drawn when none
    was (also when the settings draw nothing, so a config always reruns as it ran)."""
    return checks.seeds(seed, len(x1))[0]


def input_map(attribution: Tensor) -> Tensor:
    """``max_c |a|``: the saliency family's reduction of per-channel attributions."""
    return attribution.abs().amax(1)


def perturbation_map(attribution: Tensor) -> Tensor:
    """The channel mean, signed: a perturbation's score drop (equal on every channel for a window)."""
    return attribution.mean(1)


# ---------------------------------------------------------------------------------------------- inputs
def _run_inputs(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    name: str,
    cls_name: str,
    kwargs: dict,
    noise: dict | None,
    seed: int | list[int] | None,
    reduce: Callable = input_map,
    config: dict,
) -> PairExplanation:
    """One captum attribution of the pair score over the inputs ``(x1, x2)``; the PairModel is the forward."""
    attr = _attr()
    algorithm = getattr(attr, cls_name)(_once_per_forward(model, x1, x2) if cls_name == "DeepLift" else model)
    if noise is not None:
        algorithm = attr.NoiseTunnel(algorithm)
        kwargs = {**kwargs, **noise}
    inputs = (x1.detach().requires_grad_(True), x2.detach().requires_grad_(True))
    if seed is None:  # nothing random: all pairs in one call
        a1, a2 = _reused_modules_refused(name, algorithm.attribute, inputs, kwargs)
    else:
        # captum draws from torch's global generator for the whole call: one call per pair, each seeded with
        # its own seed, so a pair's map depends only on its images, the settings and its seed.
        parts = []
        for i, pair_seed in enumerate(checks.seeds(seed, len(x1))[1]):
            with _seeded(pair_seed, x1.device):
                pair = tuple(x[i : i + 1] for x in inputs)
                parts.append(
                    _reused_modules_refused(name, algorithm.attribute, pair, _pair_kwargs(kwargs, i, len(x1)))
                )
        a1, a2 = (torch.cat(side) for side in zip(*parts))
    with torch.no_grad():
        score = model(x1, x2)
    a1, a2 = a1.detach(), a2.detach()
    return PairExplanation(
        map1=reduce(a1),
        map2=reduce(a2),
        score=score,
        method=name,
        config=config,
        extras={"attribution1": a1, "attribution2": a2},
    )


def _reused_modules_refused(name: str, attribute: Callable, inputs: tuple, kwargs: dict) -> tuple:
    """captum's DeepLift refuses a module that runs twice per image (torchvision's ResNet blocks call one ReLU
    three times) with a long RuntimeError: say it in one line, with what to use instead."""
    try:
        return attribute(inputs, **kwargs)
    except RuntimeError as error:
        if "used more than once" not in str(error):
            raise
        raise SimexplainError(
            f"{name}: captum's DeepLift needs every module to run once per image, and this encoder reuses "
            "one (e.g. one ReLU module called several times, as in torchvision's ResNet blocks); use "
            "captum:IntegratedGradients or input-x-gradient"
        ) from None


def _once_per_forward(model: PairModel, x1: Tensor, x2: Tensor) -> PairModel:
    """The model, or, for a shared encoder on images of two sizes (embedded side by side, so every module runs
    twice per forward), a copy whose image 2 goes through a deep copy of the encoder: captum's DeepLift keeps
    one input and output per module and refuses a module that runs twice."""
    if not model.shared or x1.shape[1:] == x2.shape[1:]:
        return model
    return PairModel(
        model.encoder, encoder_b=copy.deepcopy(model.encoder), similarity=model.similarity, name=model.name
    )


def _pair_kwargs(kwargs: dict, i: int, batch: int) -> dict:
    """The settings of pair ``i``: per-pair tensors (the baselines) sliced, the rest as they are."""

    def pick(value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(pick(v) for v in value)
        if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch and batch > 1:
            return value[i : i + 1]
        return value

    return {key: pick(value) for key, value in kwargs.items()}


def _copies_per_forward(batch_size: int | None, x1: Tensor) -> int:
    """How many copies of the whole batch of pairs fit in ``batch_size`` images per forward (2 per pair):
    captum's ``perturbations_per_eval`` and ``nt_samples_batch_size``."""
    return max(1, resolve_batch_size(batch_size, x1.device) // (2 * len(x1)))


def _examples_per_forward(batch_size: int | None, x: Tensor, images_per_example: int) -> int:
    """captum's ``internal_batch_size`` (examples per forward) for ``batch_size`` images per forward; never
    below the number of examples, captum's own floor."""
    return max(len(x), resolve_batch_size(batch_size, x.device) // images_per_example)


def _noise(
    nt_type: str, nt_samples: int, nt_stdevs: float, batch_size: int | None, x1: Tensor
) -> dict | None:
    if nt_type == "none":
        return None
    return {
        "nt_type": nt_type,
        "nt_samples": nt_samples,
        "stdevs": nt_stdevs,
        "nt_samples_batch_size": _copies_per_forward(batch_size, x1),
    }


def _gradient_method(cls_name: str, extra: dict | None = None) -> Callable:
    """``captum:<cls_name>`` for a gradient attribution without a baseline, optionally in a NoiseTunnel."""
    name = PREFIX + cls_name

    def method(
        model: PairModel,
        x1: Tensor,
        x2: Tensor,
        *,
        nt_type: NoiseType = "none",
        nt_samples: checks.Samples = 10,
        nt_stdevs: NonNegative = 0.1,
        seed: checks.SeedSetting = None,
        batch_size: checks.BatchSize = None,
    ) -> PairExplanation:
        seed = _resolved_seed(seed, x1)
        config = {"nt_type": nt_type, "nt_samples": nt_samples, "nt_stdevs": nt_stdevs, "seed": seed}
        return _run_inputs(
            model,
            x1,
            x2,
            name=name,
            cls_name=cls_name,
            kwargs=dict(extra or {}),
            noise=_noise(nt_type, nt_samples, nt_stdevs, batch_size, x1),
            seed=seed if nt_type != "none" else None,
            config=config,
        )

    return method


def _baseline_method(cls_name: str) -> Callable:
    """``captum:<cls_name>`` for an attribution against a baseline (DeepLift), optionally in a NoiseTunnel."""
    name = PREFIX + cls_name

    def method(
        model: PairModel,
        x1: Tensor,
        x2: Tensor,
        *,
        baseline: Baseline = "zero",
        nt_type: NoiseType = "none",
        nt_samples: checks.Samples = 10,
        nt_stdevs: NonNegative = 0.1,
        seed: checks.SeedSetting = None,
        batch_size: checks.BatchSize = None,
    ) -> PairExplanation:
        seed = _resolved_seed(seed, x1)
        config = {
            "baseline": baseline,
            "nt_type": nt_type,
            "nt_samples": nt_samples,
            "nt_stdevs": nt_stdevs,
            "seed": seed,
        }
        kwargs = {"baselines": (baseline_images(x1, baseline), baseline_images(x2, baseline))}
        return _run_inputs(
            model,
            x1,
            x2,
            name=name,
            cls_name=cls_name,
            kwargs=kwargs,
            noise=_noise(nt_type, nt_samples, nt_stdevs, batch_size, x1),
            seed=seed if nt_type != "none" else None,
            config=config,
        )

    return method


def integrated_gradients(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    baseline: Baseline = "zero",
    n_steps: checks.Steps = 50,
    integration: Integration = "gausslegendre",
    nt_type: NoiseType = "none",
    nt_samples: checks.Samples = 10,
    nt_stdevs: NonNegative = 0.1,
    seed: checks.SeedSetting = None,
    batch_size: checks.BatchSize = None,
) -> PairExplanation:
    """captum's IntegratedGradients of the pair score, both images along one path from their baselines.

    ``integration`` is captum's ``method`` (renamed: ``method`` names the simexplain method); one
    ``gausslegendre`` step from a zero baseline is ``x ⊙ ∂s/∂x`` taken at ``x/2``. ``batch_size`` (images
    per forward, two per pair) sets captum's ``internal_batch_size`` and the NoiseTunnel's
    ``nt_samples_batch_size``.
    """
    _check_steps(n_steps, integration)
    seed = _resolved_seed(seed, x1)
    config = {
        "baseline": baseline,
        "n_steps": n_steps,
        "integration": integration,
        "nt_type": nt_type,
        "nt_samples": nt_samples,
        "nt_stdevs": nt_stdevs,
        "seed": seed,
    }
    kwargs = {
        "baselines": (baseline_images(x1, baseline), baseline_images(x2, baseline)),
        "n_steps": n_steps,
        "method": integration,
        "internal_batch_size": _examples_per_forward(batch_size, x1, 2),
    }
    return _run_inputs(
        model,
        x1,
        x2,
        name=PREFIX + "IntegratedGradients",
        cls_name="IntegratedGradients",
        kwargs=kwargs,
        noise=_noise(nt_type, nt_samples, nt_stdevs, batch_size, x1),
        seed=seed if nt_type != "none" else None,
        config=config,
    )


def gradient_shap(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    baseline: Baseline = "zero",
    n_samples: checks.Samples = 20,
    stdevs: NonNegative = 0.0,
    seed: checks.SeedSetting = None,
) -> PairExplanation:
    """captum's GradientShap: expected gradients between the baseline and the pair (``n_samples`` random
    points, Gaussian noise ``stdevs`` on the inputs)."""
    seed = _resolved_seed(seed, x1)
    config = {"baseline": baseline, "n_samples": n_samples, "stdevs": stdevs, "seed": seed}
    kwargs = {
        "baselines": (baseline_images(x1, baseline), baseline_images(x2, baseline)),
        "n_samples": n_samples,
        "stdevs": stdevs,
    }
    return _run_inputs(
        model,
        x1,
        x2,
        name=PREFIX + "GradientShap",
        cls_name="GradientShap",
        kwargs=kwargs,
        noise=None,
        seed=seed,
        config=config,
    )


# ---------------------------------------------------------------------------------------------- perturbations
def occlusion(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    window: checks.Count = 64,
    stride: checks.Stride = 8,
    baseline: Baseline = "zero",
    batch_size: checks.BatchSize = None,
) -> PairExplanation:
    """captum's Occlusion of each image with the other clean: a ``window``² square (clipped to the image)
    slid by ``stride``, filled with the baseline; a pixel gets the mean score drop of the windows over it."""
    shapes = tuple((3, min(window, x.shape[-2]), min(window, x.shape[-1])) for x in (x1, x2))
    kwargs = {
        "sliding_window_shapes": shapes,
        "strides": ((3, stride, stride), (3, stride, stride)),
        "baselines": (baseline_images(x1, baseline), baseline_images(x2, baseline)),
        "perturbations_per_eval": _copies_per_forward(batch_size, x1),
    }
    config = {"window": window, "stride": stride, "baseline": baseline}
    return _run_inputs(
        model,
        x1,
        x2,
        name=PREFIX + "Occlusion",
        cls_name="Occlusion",
        kwargs=kwargs,
        noise=None,
        seed=None,
        reduce=perturbation_map,
        config=config,
    )


def patch_masks(x1: Tensor, x2: Tensor, patch: int) -> tuple[Tensor, Tensor]:
    """captum feature masks: ``patch``² squares, numbered through image 1 then image 2 (each ablated alone).

    Example:
        >>> m1, m2 = patch_masks(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 2, 2), 2)
        >>> m1[0, 0].tolist(), m2[0, 0].tolist()
        ([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]], [[4, 4], [4, 4]])
    """
    masks, offset = [], 0
    for x in (x1, x2):
        height, width = x.shape[-2:]
        rows = torch.arange(height, device=x.device) // patch
        cols = torch.arange(width, device=x.device) // patch
        per_row = (width + patch - 1) // patch
        ids = rows[:, None] * per_row + cols[None, :] + offset
        masks.append(ids.view(1, 1, height, width))
        offset = int(ids.max()) + 1
    return masks[0], masks[1]


def _ablation_method(cls_name: str, sampled: bool) -> Callable:
    name = PREFIX + cls_name

    def method(
        model: PairModel,
        x1: Tensor,
        x2: Tensor,
        *,
        patch: checks.Patch = 16,
        baseline: Baseline = "zero",
        n_samples: checks.Samples = 25,
        seed: checks.SeedSetting = None,
        batch_size: checks.BatchSize = None,
    ) -> PairExplanation:
        seed = _resolved_seed(seed, x1) if sampled else None  # FeatureAblation draws nothing
        kwargs = {
            "feature_mask": patch_masks(x1, x2, patch),
            "baselines": (baseline_images(x1, baseline), baseline_images(x2, baseline)),
            "perturbations_per_eval": _copies_per_forward(batch_size, x1),
        }
        config = {"patch": patch, "baseline": baseline}
        if sampled:
            kwargs["n_samples"] = n_samples
            config.update(n_samples=n_samples, seed=seed)
        return _run_inputs(
            model,
            x1,
            x2,
            name=name,
            cls_name=cls_name,
            kwargs=kwargs,
            noise=None,
            seed=seed,
            reduce=perturbation_map,
            config=config,
        )

    if not sampled:  # FeatureAblation draws nothing: no n_samples, no seed

        def plain(
            model: PairModel,
            x1: Tensor,
            x2: Tensor,
            *,
            patch: checks.Patch = 16,
            baseline: Baseline = "zero",
            batch_size: checks.BatchSize = None,
        ) -> PairExplanation:
            return method(model, x1, x2, patch=patch, baseline=baseline, batch_size=batch_size)

        return plain
    return method


# ---------------------------------------------------------------------------------------------- layers
class PartnerScores(nn.Module):
    """Each image's score against its partner's clean embedding: ``forward(x, partner, first) -> N``.

    ``first[i]`` says whether row ``i`` is an image 1 (``sim(z, partner)``) or an image 2
    (``sim(partner, z)``; a user similarity need not be symmetric). ``partner`` and ``first`` are captum's
    additional forward arguments, so captum expands them together with the inputs.
    """

    def __init__(self, model: PairModel, side: str) -> None:
        super().__init__()
        self.model = model
        self.side = side

    def forward(self, x: Tensor, partner: Tensor, first: Tensor) -> Tensor:
        z = self.model.embed(x, self.side)
        return torch.where(first, self.model.similarity(z, partner), self.model.similarity(partner, z))


def _token_grad_cam(
    attr: Any, model: PairModel, side: str, layer: str | None, x: Tensor, args: tuple
) -> Tensor:
    """LayerGradCam at a transformer layer: captum pools the gradients over dims 2+, which for tokens
    ``B×N×D`` is the feature axis, so its formula ``Σ_d mean_p(G) · A`` is applied here on the patch grid,
    to captum's layer activations and layer gradients."""
    forward, module, hw = PartnerScores(model, side), model.layer_module(side, layer), tuple(x.shape[-2:])
    acts = attr.LayerActivation(forward, module).attribute(x, additional_forward_args=args)
    grads = attr.LayerGradientXActivation(forward, module, multiply_by_inputs=False).attribute(
        x, additional_forward_args=args
    )
    a, g = model.as_grid(acts, hw), model.as_grid(grads, hw)
    return (g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True)


def _run_layer(
    model: PairModel,
    x1: Tensor,
    x2: Tensor,
    *,
    name: str,
    cls_name: str,
    layer: str | None,
    kwargs: Callable[[Tensor], dict],
    config: dict,
) -> PairExplanation:
    attr = _attr()
    model.layer_module("a", layer)
    model.layer_module("b", layer)  # an unknown layer fails before any forward
    attributions = []
    for side, x, partner, first in layer_runs(model, x1, x2):
        algorithm = getattr(attr, cls_name)(PartnerScores(model, side), model.layer_module(side, layer))
        a = algorithm.attribute(x, additional_forward_args=(partner, first), **kwargs(x))
        if cls_name == "LayerGradCam" and a.dim() == 3:
            a = _token_grad_cam(attr, model, side, layer, x, (partner, first))
        attributions.append(a.detach())
    if len(attributions) == 1:
        attributions = list(attributions[0].chunk(2))
    a1, a2 = (model.as_grid(a, tuple(x.shape[-2:])) for a, x in zip(attributions, (x1, x2)))
    grid1, grid2 = a1.sum(1), a2.sum(1)
    with torch.no_grad():
        score = model(x1, x2)
    return PairExplanation.from_grids(
        grid1,
        grid2,
        x1.shape[-2:],
        x2.shape[-2:],
        score=score,
        method=name,
        config=config,
        extras={"attribution1": a1, "attribution2": a2},
    )


def _layer_method(cls_name: str) -> Callable:
    """``captum:<cls_name>`` for a layer attribution at a point (no path)."""
    name = PREFIX + cls_name

    def method(
        model: PairModel, x1: Tensor, x2: Tensor, *, layer: checks.LayerName = None
    ) -> PairExplanation:
        return _run_layer(
            model,
            x1,
            x2,
            name=name,
            cls_name=cls_name,
            layer=layer,
            kwargs=lambda x: {},
            config={"layer": layer},
        )

    return method


def _layer_path_method(cls_name: str) -> Callable:
    """``captum:<cls_name>`` for a layer attribution along a path from the baseline (each image moves alone,
    its partner stays clean)."""
    name = PREFIX + cls_name

    def method(
        model: PairModel,
        x1: Tensor,
        x2: Tensor,
        *,
        layer: checks.LayerName = None,
        baseline: Baseline = "zero",
        n_steps: checks.Steps = 50,
        integration: Integration = "gausslegendre",
        batch_size: checks.BatchSize = None,
    ) -> PairExplanation:
        _check_steps(n_steps, integration)

        def kwargs(x: Tensor) -> dict:
            return {
                "baselines": baseline_images(x, baseline),
                "n_steps": n_steps,
                "method": integration,
                "internal_batch_size": _examples_per_forward(batch_size, x, 1),
            }

        config = {"layer": layer, "baseline": baseline, "n_steps": n_steps, "integration": integration}
        return _run_layer(
            model, x1, x2, name=name, cls_name=cls_name, layer=layer, kwargs=kwargs, config=config
        )

    return method


# ---------------------------------------------------------------------------------------------- registration
def _register(cls_name: str, family: str, description: str, fn: Callable) -> None:
    fn.__name__ = fn.__qualname__ = "captum_" + cls_name
    fn.__doc__ = fn.__doc__ or f"captum's {cls_name} on the pair (docs/interop.md)."
    register(PREFIX + cls_name, family, f"captum {cls_name}: {description}")(fn)


_register("Saliency", "saliency", "|∂s/∂x| of the pair score", _gradient_method("Saliency"))
_register("InputXGradient", "saliency", "x ⊙ ∂s/∂x of the pair score", _gradient_method("InputXGradient"))
_register(
    "GuidedBackprop", "saliency", "guided backprop of the pair score", _gradient_method("GuidedBackprop")
)
_register("Deconvolution", "saliency", "deconvolution of the pair score", _gradient_method("Deconvolution"))
_register(
    "IntegratedGradients", "saliency", "both images along one path from a baseline", integrated_gradients
)
_register("DeepLift", "saliency", "DeepLift (Rescale) against a baseline", _baseline_method("DeepLift"))
_register("GradientShap", "saliency", "expected gradients from a baseline", gradient_shap)
_register("Occlusion", "perturbation", "sliding-window occlusion, one image at a time", occlusion)
_register(
    "FeatureAblation",
    "perturbation",
    "patch ablation, one image at a time",
    _ablation_method("FeatureAblation", sampled=False),
)
_register(
    "ShapleyValueSampling",
    "perturbation",
    "sampled Shapley values of patches of both images",
    _ablation_method("ShapleyValueSampling", sampled=True),
)
_register(
    "LayerGradCam",
    "activation",
    "Grad-CAM at a layer, both branches of a shared encoder",
    _layer_method("LayerGradCam"),
)
_register(
    "LayerGradientXActivation",
    "activation",
    "activation ⊙ gradient at a layer",
    _layer_method("LayerGradientXActivation"),
)
_register(
    "LayerActivation", "activation", "the layer's activation (no gradient)", _layer_method("LayerActivation")
)
_register(
    "LayerIntegratedGradients",
    "activation",
    "integrated gradients of a layer's output",
    _layer_path_method("LayerIntegratedGradients"),
)
_register(
    "LayerConductance",
    "activation",
    "conductance of a layer's neurons",
    _layer_path_method("LayerConductance"),
)
