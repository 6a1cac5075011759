import pytest
import torch
from tiny import CountingEncoder, SmallCNN, assert_same_state, model_state, small_pair_model
from torch import nn

import simexplain
from simexplain import PairModel, SimexplainError, TokenLayout


def test_shared_encoder_runs_the_pair_as_one_batch_and_matches_separate_calls():
    counting = CountingEncoder(SmallCNN())
    model = PairModel(counting)
    x1, x2 = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    scores = model(x1, x2)
    assert counting.calls == 1 and counting.images == 6
    separate = torch.nn.functional.cosine_similarity(model.embed(x1), model.embed(x2, "b"))
    torch.testing.assert_close(scores, separate)


def test_asymmetric_model_uses_each_encoder_for_its_side():
    a, b = SmallCNN(seed=0), SmallCNN(seed=1)
    model = PairModel(a, encoder_b=b)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(model.embed(x, "b"), b(x))
    torch.testing.assert_close(model(x, x), torch.nn.functional.cosine_similarity(a(x), b(x)))
    assert not model.shared


def test_pair_model_puts_encoder_in_eval_and_accepts_callable_similarity():
    encoder = SmallCNN().train()
    model = PairModel(encoder, similarity=lambda z1, z2: (z1 - z2).pow(2).sum(1).neg())
    assert not encoder.training
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(model(x, x), torch.zeros(2))


def test_unknown_similarity_and_bad_layer_are_clear_errors():
    with pytest.raises(SimexplainError, match="unknown similarity"):
        PairModel(SmallCNN(), similarity="euclid")
    model = PairModel(SmallCNN(), layer="nope")
    with pytest.raises(SimexplainError, match="not found"):
        model.activations_and_gradients(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_activation_taps_split_a_shared_batch_and_match_a_hand_written_version():
    model = small_pair_model()
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    score, a1, a2, g1, g2 = model.activations_and_gradients(x1, x2)
    net = model.encoder
    f1, f2 = net.features(x1).requires_grad_(), net.features(x2).requires_grad_()
    s = torch.nn.functional.cosine_similarity(net.head(f1.mean((2, 3))), net.head(f2.mean((2, 3))))
    h1, h2 = torch.autograd.grad(s.sum(), (f1, f2))
    torch.testing.assert_close(score, s.detach())
    torch.testing.assert_close(a1, f1.detach())
    torch.testing.assert_close(a2, f2.detach())
    torch.testing.assert_close(g1, h1)
    torch.testing.assert_close(g2, h2)


def test_token_layout_drops_prefix_tokens_and_builds_the_patch_grid():
    tokens = torch.arange(2 * (1 + 6) * 4, dtype=torch.float32).view(2, 7, 4)
    grid = TokenLayout(patch_size=8, prefix_tokens=1).to_grid(tokens, (16, 24))
    assert grid.shape == (2, 4, 2, 3)
    torch.testing.assert_close(grid[0, :, 0, 1], tokens[0, 2])
    with pytest.raises(SimexplainError, match="token layout"):
        TokenLayout(patch_size=8, prefix_tokens=2).to_grid(tokens, (16, 24))


def test_explaining_restores_modes_flags_and_hooks_even_after_an_exception():
    encoder = SmallCNN().train()
    model = PairModel(encoder)
    encoder.head.train()  # a caller's odd mix of modes must come back as it was
    before = model_state(model)
    with pytest.raises(RuntimeError), model.explaining():
        assert all(not p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert_same_state(before, model_state(model))


def test_default_model_is_the_offline_supervised_efficientnet():
    model = simexplain.load_model("efficientnet-lite0")
    assert "SUPERVISED" in model.description
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        assert model.embed(x).shape == (1, 1280)


def test_unknown_model_lists_known_ones():
    with pytest.raises(SimexplainError, match="efficientnet-lite0"):
        simexplain.load_model("resnet9000")


def test_encoder_must_be_a_module():
    with pytest.raises(SimexplainError):
        PairModel(lambda x: x)  # type: ignore[arg-type]
    assert isinstance(PairModel.from_module(nn.Flatten()), PairModel)


def test_tapping_a_module_that_runs_twice_per_forward_is_a_clear_error():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.block(self.block(x)).mean((2, 3))

    model = PairModel(Twice(), layer="block")
    with pytest.raises(SimexplainError, match="'block' runs more than once"):
        model.activations_and_gradients(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    assert not model.encoder.block._forward_hooks  # released after the error


def test_images_of_two_sizes_are_embedded_side_by_side_through_a_shared_encoder():
    counting = CountingEncoder(SmallCNN())
    model = PairModel(counting, layer="inner.features")
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 12, 20)
    z1, z2 = model.embed_pair(x1, x2)
    torch.testing.assert_close(z1, model.embed(x1))
    torch.testing.assert_close(z2, model.embed(x2))
    score, a1, a2, g1, g2 = model.activations_and_gradients(x1, x2)
    assert a1.shape[-2:] == g1.shape[-2:] == (8, 8) and a2.shape[-2:] == g2.shape[-2:] == (6, 10)
    torch.testing.assert_close(score, model(x1, x2))


class _Returns(nn.Module):
    def __init__(self, make):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.make = make

    def forward(self, x):
        return self.make(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda z: (z, z), "a tuple of 2 items"),
        (lambda z: {"embedding": z}, "a dict with keys embedding"),
        (lambda z: z[:, :, None, None], "shape (2, 2, 1, 1)"),
        (lambda z: z[:1], "shape (1, 2) for 2 images"),
    ],
)
def test_an_encoder_that_does_not_return_one_b_by_d_tensor_gets_one_line(make, words):
    model = PairModel(_Returns(make), name="odd")
    with pytest.raises(SimexplainError, match="returned") as info:
        simexplain.explain(model, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    message = str(info.value)
    assert words in message and "'odd'" in message and "\n" not in message


def test_inputs_are_cast_to_the_model_dtype_and_non_finite_inputs_are_refused():
    model = PairModel(SmallCNN())
    x1, x2 = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    plain = simexplain.explain(model, x1, x2)
    for dtype in (torch.float64, torch.float16):
        other = simexplain.explain(model, x1.to(dtype), x2.to(dtype))
        assert other.map1.dtype == torch.float32
        torch.testing.assert_close(other.map1, plain.map1, atol=2e-3, rtol=2e-2)
    for bad in (float("nan"), float("inf")):
        broken = x2.clone()
        broken[0, 0, 0, 0] = bad
        with pytest.raises(SimexplainError, match="x2 holds NaN or infinite values"):
            simexplain.explain(model, x1, broken)


def test_a_pair_model_copies_and_pickles_with_a_fresh_lock():
    import copy
    import pickle

    model = PairModel(SmallCNN(), layer="features")
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert twin._lock is not model._lock
        with twin.locked():
            x = torch.rand(1, 3, 8, 8)
            torch.testing.assert_close(twin(x, x), model(x, x))


def test_the_lock_makes_other_threads_wait():
    import threading

    model = PairModel(SmallCNN())
    entered = threading.Event()
    order = []

    def other():
        entered.set()
        with model.explaining():
            order.append("other")

    with model.explaining():
        thread = threading.Thread(target=other)
        thread.start()
        entered.wait(5)
        thread.join(0.2)  # blocked on the lock: still alive
        assert thread.is_alive()
        order.append("first")
    thread.join(5)
    assert order == ["first", "other"]


@pytest.mark.parametrize("sizes", [((16, 16), (16, 16)), ((16, 16), (12, 20))])
def test_activations_without_gradients_equal_the_tap_and_run_no_backward(sizes, monkeypatch):
    model = small_pair_model()
    x1, x2 = torch.rand(2, 3, *sizes[0]), torch.rand(2, 3, *sizes[1])
    score, a1, a2, _, _ = model.activations_and_gradients(x1, x2)
    calls = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    score_only, b1, b2, g1, g2 = model.activations_and_gradients(x1, x2, gradients=False)
    assert calls == [] and g1 is None and g2 is None
    for got, want in ((score_only, score), (b1, a1), (b2, a2)):
        assert torch.equal(got, want)
    deep = simexplain.explain(model, x1, x2, "deep-similarity")
    assert calls == [] and torch.equal(deep.score, score)
