"""captum's attributions on pairs: closed forms, one batch through a shared encoder == each branch alone."""

import copy

import pytest
import torch
from tiny import LinearEncoder, SmallCNN, assert_same_state, model_state, small_pair_model

import simexplain
from simexplain.methods.common import scores_and_input_gradients

pytest.importorskip("captum")


def linear_models():
    shared = simexplain.PairModel(LinearEncoder(size=8, seed=0))
    asymmetric = simexplain.PairModel(LinearEncoder(size=8, seed=0), encoder_b=LinearEncoder(size=8, seed=1))
    return {"shared": shared, "asymmetric": asymmetric}


@pytest.mark.parametrize("kind", ["shared", "asymmetric"])
def test_one_step_integrated_gradients_is_input_x_gradient_at_the_path_midpoint(kind):
    # One Gauss-Legendre step from a zero baseline evaluates the gradient at alpha = 1/2:
    # IG = x ⊙ ∇s(x/2) = 2 · [(x/2) ⊙ ∇s(x/2)], simexplain's Input×Gradient of the halved pair before the
    # channel reduction.
    model = linear_models()[kind]
    generator = torch.Generator().manual_seed(0)
    x1, x2 = (torch.rand(3, 3, 8, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    e = simexplain.explain(model, x1, x2, "captum:IntegratedGradients", n_steps=1, baseline="zero")
    with model.explaining():
        _, g1, g2 = scores_and_input_gradients(model, x1 / 2, x2 / 2)
    torch.testing.assert_close(e.extras["attribution1"], x1 * g1, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(e.extras["attribution2"], x2 * g2, rtol=1e-9, atol=1e-12)
    # The reduction is the saliency family's: max_c |a|.
    reference = simexplain.explain(model, x1 / 2, x2 / 2, "input-x-gradient")
    torch.testing.assert_close(e.map1, 2 * reference.map1)
    torch.testing.assert_close(e.map2, 2 * reference.map2)
    torch.testing.assert_close(e.score, model(x1, x2))
    assert e.config["n_steps"] == 1 and e.config["integration"] == "gausslegendre"


def test_captum_occlusion_equals_conditional_occlusion():
    model = small_pair_model()
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    ours = simexplain.explain(model, x1, x2, "conditional-occlusion", window=4, stride=2, fill="zero")
    theirs = simexplain.explain(model, x1, x2, "captum:Occlusion", window=4, stride=2, baseline="zero")
    torch.testing.assert_close(theirs.map1, ours.map1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(theirs.map2, ours.map2, rtol=1e-5, atol=1e-6)


class Counter:
    def __init__(self, module):
        self.batches = []
        self.handle = module.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        self.batches.append(output.shape[0])


@pytest.mark.parametrize(
    "method, params",
    [
        ("captum:LayerGradCam", {}),
        ("captum:LayerIntegratedGradients", {"n_steps": 3}),
        ("captum:LayerGradientXActivation", {}),
    ],
)
def test_layer_method_sees_the_pair_as_one_batch_and_keeps_both_branches(method, params):
    encoder = SmallCNN(seed=3)
    shared = simexplain.PairModel(encoder, layer="features")
    # The same weights as two encoders: captum runs one side at a time, each branch alone.
    separate = simexplain.PairModel(encoder, encoder_b=copy.deepcopy(encoder), layer="features")
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    before = model_state(shared)
    counter = Counter(encoder.features)
    try:
        one_batch = simexplain.explain(shared, x1, x2, method, **params)
    finally:
        counter.handle.remove()
    assert_same_state(before, model_state(shared))
    # Every run of the tapped module saw both images of both pairs at once (path steps stack on top).
    assert counter.batches and all(batch % 4 == 0 for batch in counter.batches), counter.batches
    branches = simexplain.explain(separate, x1, x2, method, **params)
    for side in ("1", "2"):
        grid, alone = getattr(one_batch, "grid" + side), getattr(branches, "grid" + side)
        assert grid.abs().amax((1, 2)).min() > 0, f"image {side} lost its branch"
        torch.testing.assert_close(grid, alone, rtol=1e-4, atol=1e-7)
    assert one_batch.grid1.shape == (2, 8, 8) and one_batch.map1.shape == (2, 16, 16)


def test_shared_layer_module_runs_once_per_captum_forward():
    # LayerGradCam: clean embeddings (1 run) + captum's forward (1 run, both images) + the score (1 run).
    model = small_pair_model()
    counter = Counter(model.encoder.features)
    try:
        simexplain.explain(model, torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), "captum:LayerGradCam")
    finally:
        counter.handle.remove()
    assert counter.batches == [4, 4, 4]


def test_noise_tunnel_is_seeded_and_recorded():
    model = small_pair_model()
    x1, x2 = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    options = {"nt_type": "smoothgrad", "nt_samples": 3, "nt_stdevs": 0.2}
    a = simexplain.explain(model, x1, x2, "captum:Saliency", seed=5, **options)
    b = simexplain.explain(model, x1, x2, "captum:Saliency", seed=5, **options)
    c = simexplain.explain(model, x1, x2, "captum:Saliency", **options)
    assert torch.equal(a.map1, b.map1) and a.config["seed"] == 5
    assert isinstance(c.config["seed"], int)
    again = simexplain.explain(model, x1, x2, c.method, **c.config)
    assert torch.equal(again.map1, c.map1)


def test_a_pairs_random_map_depends_only_on_its_own_seed():
    model = small_pair_model()
    x1, x2 = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    options = {"n_samples": 3, "stdevs": 0.1}
    batch = simexplain.explain(model, x1, x2, "captum:GradientShap", seed=[4, 5, 6], **options)
    alone = simexplain.explain(model, x1[1:2], x2[1:2], "captum:GradientShap", seed=5, **options)
    torch.testing.assert_close(batch.map1[1:2], alone.map1)
    torch.testing.assert_close(batch[1].map2, alone.map2)
    assert batch[1].config["seed"] == [5]


def test_settings_are_checked_before_model_work():
    model = small_pair_model()
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(simexplain.SimexplainError, match="n_steps"):
        simexplain.explain(model, x, x, "captum:IntegratedGradients", n_steps=0)
    with pytest.raises(simexplain.SimexplainError, match="baseline"):
        simexplain.explain(model, x, x, "captum:IntegratedGradients", baseline="grey")
    with pytest.raises(simexplain.SimexplainError, match="n_steps >= 2"):
        simexplain.explain(model, x, x, "captum:IntegratedGradients", n_steps=1, integration="riemann_right")


def test_metrics_and_evaluation_take_captum_methods():
    model = small_pair_model()
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    e = simexplain.explain(model, x1, x2, "captum:GradientShap", n_samples=2, seed=0)
    results = simexplain.metrics.evaluate(model, x1, x2, e, ["SD", "CAD", "MS"], step=64)
    assert results["SD"].shape == (2,) and torch.isfinite(results["CAD"]).all()


@pytest.mark.parametrize(
    "method, params",
    [
        ("captum:IntegratedGradients", {"n_steps": 4}),
        ("captum:Occlusion", {"window": 8, "stride": 4}),
        ("captum:LayerIntegratedGradients", {"n_steps": 3}),
    ],
)
def test_batch_size_is_a_speed_knob_only(method, params):
    model = small_pair_model()
    x1, x2 = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    small = simexplain.explain(model, x1, x2, method, batch_size=2, **params)
    large = simexplain.explain(model, x1, x2, method, batch_size=64, **params)
    torch.testing.assert_close(small.map1, large.map1, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(small.map2, large.map2, rtol=1e-4, atol=1e-7)
    one = simexplain.explain(model, x1[2:], x2[2:], method, **params)  # batched == one pair alone
    torch.testing.assert_close(large.map1[2:], one.map1, rtol=1e-4, atol=1e-7)


def test_deeplift_on_an_encoder_that_reuses_a_relu_says_so_in_one_line():
    relu = torch.nn.ReLU()  # one module called twice per image, as in torchvision's ResNet blocks
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), relu, torch.nn.Conv2d(4, 4, 3), relu, torch.nn.Flatten()
    )
    model = simexplain.PairModel(net)
    x1, x2 = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    with pytest.raises(simexplain.SimexplainError, match="reuses one") as caught:
        simexplain.explain(model, x1, x2, "captum:DeepLift")
    assert "\n" not in str(caught.value) and "captum:IntegratedGradients" in str(caught.value)
