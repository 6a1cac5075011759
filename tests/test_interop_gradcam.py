"""pytorch-grad-cam's CAMs on pairs: a shared encoder's one batch keeps both branches."""

import copy

import pytest
import torch
from tiny import SmallCNN, assert_same_state, model_state, small_pair_model

import simexplain

pytest.importorskip("pytorch_grad_cam")


@pytest.mark.parametrize("cam", ["GradCAM", "HiResCAM", "EigenCAM", "ScoreCAM"])
def test_cam_on_a_shared_encoder_equals_each_branch_alone(cam):
    encoder = SmallCNN(seed=1)  # a seed whose Grad-CAM is positive somewhere on both images
    shared = simexplain.PairModel(encoder, layer="features")
    separate = simexplain.PairModel(encoder, encoder_b=copy.deepcopy(encoder), layer="features")
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    before = model_state(shared)
    batches = []
    handle = encoder.features.register_forward_hook(lambda m, i, o: batches.append(o.shape[0]))
    try:
        one_batch = simexplain.explain(shared, x1, x2, "grad-cam:" + cam, batch_size=8)
    finally:
        handle.remove()
    assert_same_state(before, model_state(shared))
    assert batches[0] == 2  # the CAM's own forward: both images of the pair in one batch
    branches = simexplain.explain(separate, x1, x2, "grad-cam:" + cam, batch_size=8)
    for side in ("map1", "map2"):
        maps = getattr(one_batch, side)
        assert maps.amax((1, 2)).min() > 0, f"{side} lost its branch"
        torch.testing.assert_close(maps, getattr(branches, side), rtol=1e-3, atol=1e-4)  # maps in [0, 1]
    assert one_batch.map1.shape == (2, 16, 16) and one_batch.method == "grad-cam:" + cam


def test_grad_cam_matches_captum_layer_grad_cam_up_to_scaling():
    # Both compute relu(Σ_d mean_p(∂s/∂A) · A) at the layer; the library min-max scales and resizes it.
    pytest.importorskip("captum")
    model = small_pair_model(seed=2)
    x1, x2 = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    ours = simexplain.explain(model, x1, x2, "grad-cam:GradCAM")
    theirs = simexplain.explain(model, x1, x2, "captum:LayerGradCam")
    grid = theirs.grid1.clamp_min(0)[0]
    assert grid.max() > 0
    # same ranking of the feature-grid cells: the 2×2 blocks of the 16×16 map over each 8×8 cell
    cells = torch.nn.functional.avg_pool2d(ours.map1[None], 2)[0, 0]
    order = torch.argsort(grid.flatten(), descending=True)[:5]
    assert torch.argsort(cells.flatten(), descending=True)[:1].item() in order.tolist()


def test_unknown_layer_is_one_line_before_work():
    model = small_pair_model()
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(simexplain.SimexplainError, match="layer 'nope' not found"):
        simexplain.explain(model, x, x, "grad-cam:GradCAM", layer="nope")


class TinyTokens(torch.nn.Module):
    """Patch embedding (4 px) + a class token → one tapped token block → mean-pooled embedding."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Conv2d(3, 6, 4, stride=4)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 6))
        self.block = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.GELU())

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1)
        return self.block(tokens).mean(1)


@pytest.mark.parametrize(
    "method", ["grad-cam:GradCAM", "captum:LayerGradientXActivation", "captum:LayerGradCam"]
)
def test_transformer_tokens_become_the_patch_grid(method):
    if method not in simexplain.methods.available():
        pytest.skip("extra not installed")
    layout = simexplain.pair.TokenLayout(patch_size=4, prefix_tokens=1)
    encoder = TinyTokens()
    shared = simexplain.PairModel(encoder, layer="block", token_layout=layout)
    separate = simexplain.PairModel(
        encoder, encoder_b=copy.deepcopy(encoder), layer="block", token_layout=layout
    )
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    one_batch = simexplain.explain(shared, x1, x2, method)
    branches = simexplain.explain(separate, x1, x2, method)
    assert one_batch.map1.shape == (2, 16, 16)
    torch.testing.assert_close(one_batch.map2, branches.map2, rtol=1e-3, atol=1e-4)
    if method == "captum:LayerGradCam":  # Grad-CAM's formula on the patch grid, against the model's own tap
        with shared.explaining():
            _, a1, _, g1, _ = shared.activations_and_gradients(x1, x2)
        expected = (g1.mean((2, 3), keepdim=True) * a1).sum(1)
        torch.testing.assert_close(one_batch.grid1, expected, rtol=1e-4, atol=1e-8)
