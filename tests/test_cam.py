"""Pair Grad-CAM, Interaction-CAM and Deep Similarity (docs/methods.md, Activation): hand-written references,
chunked batches, the config contract and pairs of different sizes."""

import json

import pytest
import torch
import torch.nn.functional as F
from tiny import CountingEncoder, SmallCNN, assert_same_state, model_state, small_pair_model
from torch import nn

import simexplain
from simexplain import PairModel, SimexplainError, TokenLayout
from simexplain.methods import cam

VARIANTS = [
    ("pair-grad-cam", {}),
    *[
        ("interaction-cam", {"reduction": r, "gradient_interaction": gi})
        for r in cam.REDUCTIONS
        for gi in (False, True)
    ],
    ("deep-similarity", {}),
]


def pair(b: int = 3, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=generator), torch.rand(
        b, 3, size, size, generator=generator
    )


class SpatialCNN(nn.Module):
    """Conv features (tap ``features``) → flatten → Linear: gradients vary over positions, unlike SmallCNN's
    pooled head (whose spatially constant gradients make the gradient interaction matrix rank one)."""

    def __init__(self, size: int = 16, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, stride=2), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * (size // 2) ** 2, 5))

    def forward(self, x):
        return self.head(self.features(x))

    def after_layer(self, f):
        return self.head(f)


def after_layer(net: nn.Module, f: torch.Tensor) -> torch.Tensor:
    return net.after_layer(f) if hasattr(net, "after_layer") else net.head(f.mean((2, 3)))


def hand_tap(net: nn.Module, net_b: nn.Module, x1, x2):
    """Two separate forward passes and torch.autograd.grad: the reference the batched tap must equal."""
    f1, f2 = net.features(x1).requires_grad_(), net_b.features(x2).requires_grad_()
    s = F.cosine_similarity(after_layer(net, f1), after_layer(net_b, f2))
    g1, g2 = torch.autograd.grad(s.sum(), (f1, f2))
    return s.detach(), f1.detach(), f2.detach(), g1, g2


def assert_maps_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Close relative to the map's own scale (CAM values can be ~1e-9, below any fixed atol)."""
    scale = want.abs().max()
    assert scale > 0
    torch.testing.assert_close(got / scale, want / scale, rtol=1e-4, atol=1e-5)


def attention_pool(a):
    """attn reduction by hand: the mean-pooled vector queries the positions (no 1/sqrt(D))."""
    flat = a.flatten(2)
    w = torch.softmax(torch.einsum("bd,bdp->bp", flat.mean(2), flat), 1)
    return (flat * w[:, None]).sum(2)


def hand_maps(a1, a2, g1, g2, reduction=None, gi=False):
    """Paper Eq. 1/2 written out with explicit loops over channels (independent of the library's einsums)."""
    b, d = a1.shape[:2]
    if reduction is None:
        j = torch.ones(b, d)
    else:
        pools = {"mean": lambda a: a.mean((2, 3)), "max": lambda a: a.amax((2, 3)), "attn": attention_pool}
        j = pools[reduction](a1) * pools[reduction](a2)
    if gi:
        c = torch.zeros(b, d, d)
        for i in range(d):
            for k in range(d):
                c[:, i, k] = (g1[:, i] * g2[:, k]).sum((1, 2))
        g1 = c.max(2).values[:, :, None, None].expand_as(a1)
        g2 = c.max(1).values[:, :, None, None].expand_as(a2)
    m1 = sum(a1[:, i] * j[:, i, None, None] * g1[:, i].clamp(min=0) for i in range(d))
    m2 = sum(a2[:, i] * j[:, i, None, None] * g2[:, i].clamp(min=0) for i in range(d))
    return m1, m2


def test_deep_similarity_grids_sum_to_the_cosine_of_pooled_features():
    model = small_pair_model()
    x1, x2 = pair(4)
    e = simexplain.explain(model, x1, x2, "deep-similarity")
    net = model.encoder
    pooled = F.cosine_similarity(net.features(x1).mean((2, 3)), net.features(x2).mean((2, 3)), eps=1e-8)
    torch.testing.assert_close(e.grid1.sum((1, 2)), pooled, atol=1e-5, rtol=0)
    torch.testing.assert_close(e.grid2.sum((1, 2)), pooled, atol=1e-5, rtol=0)
    # Position by position, not just in total: M1[p] = <A1[:,p], ā2> / (hw ||ā1|| ||ā2||).
    a1, a2 = net.features(x1), net.features(x2)
    p1, p2 = a1.mean((2, 3)), a2.mean((2, 3))
    expected = (a1 * p2[:, :, None, None]).sum(1) / (64 * p1.norm(dim=1) * p2.norm(dim=1))[:, None, None]
    assert_maps_close(e.grid1, expected.detach())


def test_pair_as_batch_equals_two_separate_forwards_with_autograd_grad():
    counting = CountingEncoder(SpatialCNN())
    model = PairModel(counting, layer="inner.features")
    x1, x2 = pair(3)
    s, a1, a2, g1, g2 = hand_tap(counting.inner, counting.inner, x1, x2)
    for reduction, gi in [(None, False), ("mean", False), ("max", False), ("mean", True), ("max", True)]:
        counting.calls = counting.images = 0
        if reduction is None:
            e = simexplain.explain(model, x1, x2, "pair-grad-cam")
        else:
            e = simexplain.explain(
                model, x1, x2, "interaction-cam", reduction=reduction, gradient_interaction=gi
            )
        assert (counting.calls, counting.images) == (1, 6)  # one forward of [x1; x2]
        m1, m2 = hand_maps(a1, a2, g1, g2, reduction, gi)
        assert_maps_close(e.grid1, m1)
        assert_maps_close(e.grid2, m2)
        torch.testing.assert_close(e.score, s)


@pytest.mark.parametrize(
    "method, params", VARIANTS, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values()))
)
def test_cam_score_equals_the_model_score_and_maps_are_upsampled_grids(method, params):
    model = small_pair_model()
    x1, x2 = pair(2)
    e = simexplain.explain(model, x1, x2, method, **params)
    torch.testing.assert_close(e.score, model(x1, x2).detach())
    assert e.grid1.shape == e.grid2.shape == (2, 8, 8)
    assert e.map1.shape == e.map2.shape == (2, 16, 16)
    torch.testing.assert_close(e.map1, simexplain.explanation.upsample_maps(e.grid1, (16, 16)))
    assert e.method == method and e.config == {"layer": None, **params}
    assert torch.isfinite(e.map1).all() and e.map1.abs().max() > 0


def test_interaction_cam_with_unit_joint_activation_and_no_gi_equals_pair_grad_cam(monkeypatch):
    model = small_pair_model()
    x1, x2 = pair(3)
    grad_cam = simexplain.explain(model, x1, x2, "pair-grad-cam")
    plain = simexplain.explain(model, x1, x2, "interaction-cam")
    # J matters, so the seam below is what makes them equal.
    with pytest.raises(AssertionError):
        assert_maps_close(plain.grid1, grad_cam.grid1)
    monkeypatch.setattr(cam, "joint_activation", lambda a1, a2, reduction: torch.ones(a1.shape[:2]))
    for reduction in cam.REDUCTIONS:
        e = simexplain.explain(model, x1, x2, "interaction-cam", reduction=reduction)
        assert_maps_close(e.grid1, grad_cam.grid1)
        assert_maps_close(e.grid2, grad_cam.grid2)
        assert_maps_close(e.map1, grad_cam.map1)


def test_attn_reduction_matches_a_hand_computation():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(2, 3, 2, 2, generator=generator, dtype=torch.float64)
    got = cam.reduce_activation(a, "attn")
    for b in range(2):
        vectors = [a[b, :, i, j] for i in range(2) for j in range(2)]
        query = sum(vectors) / 4
        logits = torch.stack([torch.dot(query, v) for v in vectors])  # no 1/sqrt(D)
        weights = logits.exp() / logits.exp().sum()
        torch.testing.assert_close(got[b], sum(w * v for w, v in zip(weights, vectors)))
    # attn sits between mean and max-like pooling: a dominant position pulls it towards that position.
    spike = torch.zeros(1, 2, 3, 3)
    spike[0, :, 1, 1] = 10.0
    torch.testing.assert_close(
        cam.reduce_activation(spike, "attn"), torch.full((1, 2), 10.0), atol=1e-4, rtol=0
    )


def test_attn_interaction_cam_end_to_end_matches_hand_version():
    model = small_pair_model()
    x1, x2 = pair(2)
    _, a1, a2, g1, g2 = hand_tap(model.encoder, model.encoder, x1, x2)
    j = attention_pool(a1) * attention_pool(a2)
    e = simexplain.explain(model, x1, x2, "interaction-cam", reduction="attn")
    assert_maps_close(e.grid1, (a1 * j[:, :, None, None] * g1.clamp(min=0)).sum(1))
    assert_maps_close(e.grid2, (a2 * j[:, :, None, None] * g2.clamp(min=0)).sum(1))


def test_batched_equals_one_pair_at_a_time():
    model = small_pair_model()
    x1, x2 = pair(3)
    for method, params in VARIANTS:
        batched = simexplain.explain(model, x1, x2, method, **params)
        for i in range(3):
            single = simexplain.explain(model, x1[i : i + 1], x2[i : i + 1], method, **params)
            assert_maps_close(batched.grid1[i : i + 1], single.grid1)
            assert_maps_close(batched.grid2[i : i + 1], single.grid2)


@pytest.mark.parametrize("reg_tokens", [0, 2])
def test_timm_vit_block_gives_maps_on_the_patch_grid(reg_tokens):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        depth=3,
        num_classes=0,
        reg_tokens=reg_tokens,
    )
    layout = TokenLayout(patch_size=8, prefix_tokens=vit.num_prefix_tokens)
    model = PairModel(vit, layer="blocks.1", token_layout=layout)
    x1, x2 = pair(2, size=32)
    e = simexplain.explain(model, x1, x2, "pair-grad-cam")
    assert e.grid1.shape == (2, 4, 4) and e.map1.shape == (2, 32, 32)
    torch.testing.assert_close(e.score, model(x1, x2).detach())

    # Hand version: tap the block's tokens, drop the prefix, reshape row-major to the 4×4 patch grid.
    tokens = {}
    handle = vit.blocks[1].register_forward_hook(lambda m, i, o: tokens.setdefault(len(tokens), o))
    try:
        with torch.enable_grad():
            z1, z2 = vit(x1), vit(x2)
            s = F.cosine_similarity(z1, z2)
            t1, t2 = torch.autograd.grad(s.sum(), (tokens[0], tokens[1]))
    finally:
        handle.remove()
    for tok, grad, grid in ((tokens[0], t1, e.grid1), (tokens[1], t2, e.grid2)):
        per_token = (tok * grad.clamp(min=0)).sum(2)[:, vit.num_prefix_tokens :]
        assert_maps_close(grid, per_token.detach().view(2, 4, 4))
    e2 = simexplain.explain(model, x1, x2, "interaction-cam", reduction="attn", gradient_interaction=True)
    assert e2.grid2.shape == (2, 4, 4) and torch.isfinite(e2.map2).all()


def test_default_efficientnet_gives_7x7_grids_at_224():
    model = simexplain.load_model("efficientnet-lite0")
    x1, x2 = pair(1, size=224)
    before = model_state(model)
    e = simexplain.explain(model, x1, x2, "interaction-cam")
    assert e.grid1.shape == e.grid2.shape == (1, 7, 7)
    assert e.map1.shape == (1, 224, 224)
    torch.testing.assert_close(e.score, model(x1, x2).detach())
    assert_same_state(before, model_state(model))


def test_asymmetric_model_taps_each_side_with_its_own_encoder():
    a, b = CountingEncoder(SmallCNN(seed=0)), CountingEncoder(SmallCNN(seed=1))
    model = PairModel(a, encoder_b=b, layer="inner.features")
    x1, x2 = pair(2)
    e = simexplain.explain(model, x1, x2, "pair-grad-cam")
    assert (a.calls, a.images, b.calls, b.images) == (1, 2, 1, 2)
    s, a1, a2, g1, g2 = hand_tap(a.inner, b.inner, x1, x2)
    m1, m2 = hand_maps(a1, a2, g1, g2)
    assert_maps_close(e.grid1, m1)
    assert_maps_close(e.grid2, m2)
    torch.testing.assert_close(e.score, s)
    # Tapping side b with side a's encoder would give a different map: the check above can fail.
    _, _, wrong, _, wrong_g = hand_tap(a.inner, a.inner, x1, x2)
    assert not torch.allclose(e.grid2, hand_maps(a1, wrong, g1, wrong_g)[1])


class Strided(nn.Module):
    """SmallCNN-like encoder with a coarser grid (stride 4) and its own layer name."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=4), nn.ReLU())
        self.head = nn.Linear(8, 6)

    def forward(self, x):
        return self.head(self.trunk(x).mean((2, 3)))


def test_asymmetric_encoders_with_different_grids():
    model = PairModel(SmallCNN(), encoder_b=Strided(), layer="features", layer_b="trunk")
    x1, x2 = pair(2)
    e = simexplain.explain(model, x1, x2, "interaction-cam", reduction="max")
    assert e.grid1.shape == (2, 8, 8) and e.grid2.shape == (2, 4, 4)
    assert e.map1.shape == e.map2.shape == (2, 16, 16)
    d = simexplain.explain(model, x1, x2, "deep-similarity")
    torch.testing.assert_close(d.grid1.sum((1, 2)), d.grid2.sum((1, 2)))
    with pytest.raises(SimexplainError, match="same positions.*8×8 and 4×4"):
        simexplain.explain(model, x1, x2, "interaction-cam", gradient_interaction=True)
    # Images of different sizes on the two sides of an asymmetric model keep their own sizes.
    e = simexplain.explain(model, x1, torch.rand(2, 3, 24, 24), "pair-grad-cam")
    assert e.grid2.shape == (2, 6, 6) and e.map2.shape == (2, 24, 24) and e.map1.shape == (2, 16, 16)


def test_errors_and_the_model_is_left_untouched():
    model = small_pair_model()
    model.encoder.train()
    for p in list(model.parameters())[:2]:
        p.requires_grad_(False)
    before = model_state(model)
    x1, x2 = pair(1)
    with pytest.raises(SimexplainError, match="unknown reduction 'median'"):
        simexplain.explain(model, x1, x2, "interaction-cam", reduction="median")
    with pytest.raises(SimexplainError, match="true or false"):
        simexplain.explain(model, x1, x2, "interaction-cam", gradient_interaction="maybe")
    with pytest.raises(SimexplainError, match="not found"):
        simexplain.explain(model, x1, x2, "pair-grad-cam", layer="nope")
    # A layer that is no name is refused by the registry's LayerName check, also on a direct call.
    with pytest.raises(SimexplainError, match="layer must be a non-empty text"):
        cam.deep_similarity(model, x1, x2, layer=3)
    with pytest.raises(SimexplainError, match="no layer to tap"):
        simexplain.explain(PairModel(SmallCNN()), x1, x2, "deep-similarity")
    for method, params in VARIANTS:
        simexplain.explain(model, x1, x2, method, **params)
    assert_same_state(before, model_state(model))
    assert simexplain.methods.get("interaction-cam").parameters() == {
        "reduction": "mean",
        "gradient_interaction": False,
        "layer": None,
        "batch_size": None,
    }


@pytest.mark.parametrize(
    "method, params",
    [
        ("interaction-cam", {"reduction": "median"}),
        ("interaction-cam", {"gradient_interaction": "maybe"}),
        ("interaction-cam", {"gradient_interaction": 2}),
        ("pair-grad-cam", {"layer": "nope"}),
        ("deep-similarity", {"layer": 3}),
        ("pair-grad-cam", {"batch_size": 0}),
        ("deep-similarity", {"batch_size": 2.5}),
    ],
)
def test_bad_parameters_are_refused_in_one_line_before_any_forward(method, params):
    counting = CountingEncoder(SmallCNN())
    model = PairModel(counting, layer="inner.features")
    x1, x2 = pair(1)
    with pytest.raises(SimexplainError) as error:
        simexplain.explain(model, x1, x2, method, **params)
    assert "\n" not in str(error.value)
    assert counting.calls == 0


def test_gradient_interaction_accepts_command_line_words():
    model = small_pair_model()
    x1, x2 = pair(2)
    for word, value in (("false", False), ("yes", True), (0, False), (1, True)):
        e = simexplain.explain(model, x1, x2, "interaction-cam", gradient_interaction=word)
        assert e.config["gradient_interaction"] is value
        want = simexplain.explain(model, x1, x2, "interaction-cam", gradient_interaction=value)
        assert torch.equal(e.map1, want.map1)


@pytest.mark.parametrize(
    "method, params", VARIANTS, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values()))
)
def test_the_config_is_json_and_reproduces_the_explanation_exactly(method, params):
    model = small_pair_model()
    x1, x2 = pair(3)
    for layer in ({}, {"layer": "features"}):
        e = simexplain.explain(model, x1, x2, method, **params, **layer)
        assert json.loads(json.dumps(e.config)) == e.config
        assert e.config["layer"] == layer.get("layer") and "batch_size" not in e.config
        again = simexplain.explain(model, x1, x2, e.method, **e.config)
        for name in ("map1", "map2", "score", "grid1", "grid2"):
            assert torch.equal(getattr(again, name), getattr(e, name)), name
        assert again.config == e.config and again.extras == e.extras == {}


def test_batch_size_bounds_images_per_forward_and_never_changes_the_maps():
    counting = CountingEncoder(SpatialCNN())
    model = PairModel(counting, layer="inner.features")
    x1, x2 = pair(5)
    for method, params in VARIANTS:
        one = simexplain.explain(model, x1, x2, method, batch_size=1, **params)
        eight = simexplain.explain(model, x1, x2, method, batch_size=8, **params)
        for name in ("grid1", "grid2", "map1", "map2", "score"):
            torch.testing.assert_close(getattr(one, name), getattr(eight, name), rtol=1e-5, atol=1e-7)
    # A shared encoder puts both images of a pair in one forward: batch_size 8 → 4 pairs per forward.
    counting.calls = counting.images = 0
    simexplain.explain(model, x1, x2, "pair-grad-cam", batch_size=8)
    assert (counting.calls, counting.images) == (2, 10)
    counting.calls = 0
    simexplain.explain(model, x1, x2, "pair-grad-cam", batch_size=1)  # at least one pair per forward
    assert counting.calls == 5
    # Two encoders: each forward holds one side's images, so batch_size pairs per chunk.
    a, b = CountingEncoder(SmallCNN(seed=0)), CountingEncoder(SmallCNN(seed=1))
    asymmetric = PairModel(a, encoder_b=b, layer="inner.features")
    simexplain.explain(asymmetric, x1, x2, "deep-similarity", batch_size=2)
    assert (a.calls, a.images, b.calls, b.images) == (3, 5, 3, 5)


@pytest.mark.parametrize(
    "method, params", VARIANTS, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values()))
)
def test_a_shared_encoder_explains_pairs_of_two_sizes(method, params):
    model = small_pair_model()
    x1, x2 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 48, 80)
    if params.get("gradient_interaction"):
        # Gradient interaction pairs the same positions of two grids, here 32×32 and 24×40.
        with pytest.raises(SimexplainError, match="same positions") as error:
            simexplain.explain(model, x1, x2, method, **params)
        assert "\n" not in str(error.value)
        return
    e = simexplain.explain(model, x1, x2, method, batch_size=2, **params)
    assert e.grid1.shape == (2, 32, 32) and e.grid2.shape == (2, 24, 40)
    assert e.map1.shape == (2, 64, 64) and e.map2.shape == (2, 48, 80)
    assert torch.isfinite(e.map1).all() and torch.isfinite(e.map2).all()
    torch.testing.assert_close(e.score, model(x1, x2).detach())
    # Each side keeps its own hand-tapped activations and gradients.
    _, a1, a2, g1, g2 = hand_tap(model.encoder, model.encoder, x1, x2)
    if method == "deep-similarity":
        p1, p2 = a1.mean((2, 3)), a2.mean((2, 3))
        norm = (p1.norm(dim=1) * p2.norm(dim=1))[:, None, None]
        m1 = (a1 * p2[:, :, None, None]).sum(1) / (32 * 32 * norm)
        m2 = (a2 * p1[:, :, None, None]).sum(1) / (24 * 40 * norm)
    else:
        m1, m2 = hand_maps(a1, a2, g1, g2, params.get("reduction"))
    assert_maps_close(e.grid1, m1)
    assert_maps_close(e.grid2, m2)
