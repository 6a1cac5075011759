"""Tiny encoders whose true answers are known, shared by the tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import simexplain


class LinearEncoder(nn.Module):
    """``z = W · flatten(x)``: with cosine similarity the input gradient has a closed form."""

    def __init__(self, size: int = 8, dim: int = 5, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(
            torch.randn(dim, 3 * size * size, generator=generator, dtype=torch.float64)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1).to(self.weight.dtype) @ self.weight.T


def analytic_cosine_gradients(weight: Tensor, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
    """∂cos(Wx1, Wx2)/∂x1 and /∂x2 by hand."""
    u, v = x1.flatten(1) @ weight.T, x2.flatten(1) @ weight.T
    nu, nv = u.norm(dim=1, keepdim=True), v.norm(dim=1, keepdim=True)
    cos = (u * v).sum(1, keepdim=True) / (nu * nv)
    du = v / (nu * nv) - cos * u / nu**2
    dv = u / (nu * nv) - cos * v / nv**2
    return (du @ weight).view_as(x1), (dv @ weight).view_as(x2)


class SmallCNN(nn.Module):
    """Conv → ReLU → Conv → ReLU (tap ``features``) → pooled → Linear head with a ReLU."""

    def __init__(self, width: int = 8, dim: int = 6, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(width, 16), nn.ReLU(), nn.Linear(16, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean((2, 3)))


class RegionEncoder(nn.Module):
    """Sees only the rows/cols ``region`` of the image; everything else cannot affect the embedding."""

    def __init__(self, region: tuple[int, int, int, int], seed: int = 0) -> None:
        super().__init__()
        self.region = region
        self.net = SmallCNN(seed=seed)

    def forward(self, x: Tensor) -> Tensor:
        r0, r1, c0, c1 = self.region
        return self.net(x[:, :, r0:r1, c0:c1])


class CountingEncoder(nn.Module):
    """Wraps an encoder and counts forward calls and images seen."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.images = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        self.images += x.shape[0]
        return self.inner(x)


def small_pair_model(seed: int = 0, **options) -> simexplain.PairModel:
    return simexplain.PairModel(SmallCNN(seed=seed), layer="features", **options)


def model_state(module: nn.Module) -> dict:
    """Everything a method must leave untouched: modes, flags, hooks and weights."""
    return {
        "modes": [m.training for m in module.modules()],
        "flags": [p.requires_grad for p in module.parameters()],
        "hooks": [
            len(m._forward_hooks)
            + len(m._forward_pre_hooks)
            + len(m._backward_hooks)
            + len(getattr(m, "_backward_pre_hooks", {}))
            for m in module.modules()
        ],
        "weights": {k: v.clone() for k, v in module.state_dict().items()},
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before["modes"] == after["modes"]
    assert before["flags"] == after["flags"]
    assert before["hooks"] == after["hooks"]
    assert before["weights"].keys() == after["weights"].keys()
    for key, value in before["weights"].items():
        assert torch.equal(value, after["weights"][key]), key


def evaluation_model(weights: str | None = None, seed: int = 0) -> simexplain.PairModel:
    """A 32×32 CNN for driver tests, loadable by name: ``--model python:tiny:evaluation_model``."""
    from simexplain.preprocessing import Preprocessing

    return simexplain.PairModel(
        SmallCNN(seed=seed),
        layer="features.3",
        preprocessing=Preprocessing(input_size=(32, 32), resize=36),
        name=f"tiny-cnn-{seed}",
    )


def evaluation_model_b(weights: str | None = None) -> simexplain.PairModel:
    """Another model for the driver's "different model into the same store" test."""
    return evaluation_model(weights, seed=1)


# The external methods that real-size models run in the every-method tests: one of each kind (input
# gradients, perturbation, layer, CAM). The others run on the tiny models of test_engine.py: some cost a
# forward per feature or channel (captum's ShapleyValueSampling, grad-cam's ScoreCAM: 2048 for a ResNet-50).
INTEROP_SAMPLE = ("captum:IntegratedGradients", "captum:Occlusion", "captum:LayerGradCam", "grad-cam:GradCAM")


def explain_every_method(model, x1: Tensor, x2: Tensor, small: dict):
    """Yield ``(method, explanation)`` for every method of :func:`methods_at_size` with the ``small``
    settings it takes, each checked: maps at the input's size, finite and not zero everywhere (a map that is
    zero explains nothing, e.g. a CAM on a block whose patches get no gradient), and the model's own score."""
    with torch.no_grad():
        expected = model(x1, x2)
    size = (len(x1), *x1.shape[-2:])
    for method in methods_at_size():
        params = {k: v for k, v in small.items() if k in simexplain.methods.get(method).parameters()}
        e = simexplain.explain(model, x1, x2, method, **params)
        assert e.map1.shape == e.map2.shape == size, method
        assert torch.isfinite(e.map1).all() and torch.isfinite(e.map2).all(), method
        if method != "averaged-transforms":  # its score is the transformed view's
            torch.testing.assert_close(e.score, expected, rtol=1e-4, atol=1e-5)
        peaks = [m.abs().amax((1, 2)).gt(0) for m in (e.map1, e.map2)]
        if method == "pairwise-occlusion":  # each sample credits one image: the other may get nothing
            assert (peaks[0] | peaks[1]).all(), method
        elif method.startswith("grad-cam:"):  # the library ReLUs its CAM: random weights may zero one map
            assert (peaks[0] | peaks[1]).any(), method
        else:
            assert peaks[0].all() and peaks[1].all(), method
        yield method, e


def methods_at_size() -> list[str]:
    """Every built-in image-pair method and the external ones of :data:`INTEROP_SAMPLE` that are installed."""
    return [
        name for name in simexplain.methods.image_pair_methods() if ":" not in name or name in INTEROP_SAMPLE
    ]
