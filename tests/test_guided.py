import threading

import pytest
import torch
import torch.nn.functional as F
from tiny import CountingEncoder, SmallCNN, assert_same_state, model_state
from torch import nn

import simexplain
from simexplain import PairModel, SimexplainError
from simexplain.methods.guided import guided_backprop


class ReusedReLUNet(nn.Module):
    """One nn.ReLU module called twice, a functional F.relu, and a ReLU inside the head."""

    def __init__(self, size: int = 4) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.l1 = nn.Linear(3 * size * size, 10, dtype=torch.float64)
        self.l2 = nn.Linear(10, 10, dtype=torch.float64)
        self.l3 = nn.Linear(10, 9, dtype=torch.float64)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Sequential(
            nn.Linear(9, 8, dtype=torch.float64), nn.ReLU(), nn.Linear(8, 5, dtype=torch.float64)
        )

    def forward(self, x):
        h = self.relu(self.l1(x.flatten(1)))
        h = self.relu(self.l2(h))
        h = F.relu(self.l3(h))
        return self.head(h)


def hand_guided_gradient(net: ReusedReLUNet, x: torch.Tensor, grad_z: torch.Tensor) -> torch.Tensor:
    """Guided backward written out by hand: at every ReLU,
    grad_in = relu(grad_out) · 1[pre-activation > 0]."""
    layers = [net.l1, net.l2, net.l3, net.head[0]]
    pre, h = [], x.flatten(1)
    for layer in layers:
        pre.append(h @ layer.weight.T + layer.bias)
        h = pre[-1].clamp_min(0)
    g = grad_z @ net.head[2].weight
    for layer, p in zip(reversed(layers), reversed(pre), strict=True):
        g = g.clamp_min(0) * (p > 0)
        g = g @ layer.weight
    return g.view_as(x)


def embedding_gradients(model: PairModel, x1: torch.Tensor, x2: torch.Tensor):
    z1, z2 = (model.embed(x).detach().requires_grad_(True) for x in (x1, x2))
    return torch.autograd.grad(model.similarity(z1, z2).sum(), (z1, z2))


def test_guided_gradient_matches_the_hand_written_rule_with_reused_and_functional_relus():
    net = ReusedReLUNet()
    model = PairModel(net, name="reused")
    x1, x2 = torch.randn(3, 3, 4, 4, dtype=torch.float64), torch.randn(3, 3, 4, 4, dtype=torch.float64)
    gz1, gz2 = embedding_gradients(model, x1, x2)
    e = simexplain.explain(model, x1, x2, "input-x-gradient", guided=True)
    torch.testing.assert_close(e.map1, (x1 * hand_guided_gradient(net, x1, gz1)).abs().amax(1))
    torch.testing.assert_close(e.map2, (x2 * hand_guided_gradient(net, x2, gz2)).abs().amax(1))
    plain = simexplain.explain(model, x1, x2, "input-x-gradient")
    assert not torch.allclose(plain.map1, e.map1)  # the rule changed something: the test can fail


def test_every_relu_call_is_counted():
    model = PairModel(ReusedReLUNet())
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    with guided_backprop(model) as guide:
        model(x, x.flip(0))
    assert guide.relu_calls == 4  # ONE shared forward of [x1; x2], four ReLU calls in it


def test_relu6_is_guided_with_its_own_mask():
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(12, 16, dtype=torch.float64), nn.Linear(16, 4, dtype=torch.float64)
    with torch.no_grad():
        lin1.weight.mul_(20)  # push some pre-activations above 6
    model = PairModel(nn.Sequential(nn.Flatten(), lin1, nn.ReLU6(inplace=True), lin2))
    x1, x2 = torch.rand(4, 3, 2, 2, dtype=torch.float64), torch.rand(4, 3, 2, 2, dtype=torch.float64)
    gz1, _ = embedding_gradients(model, x1, x2)
    pre = x1.flatten(1) @ lin1.weight.T + lin1.bias
    assert (pre > 6).any() and (pre < 0).any()
    expected = (((gz1 @ lin2.weight).clamp_min(0) * ((pre > 0) & (pre < 6))) @ lin1.weight).view_as(x1)
    e = simexplain.explain(model, x1, x2, "input-x-gradient", guided=True)
    torch.testing.assert_close(e.map1, (x1 * expected).abs().amax(1))


def test_torchvision_resnet_reuses_relu_modules_and_all_calls_are_guided():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(num_classes=8)
    model = PairModel(net, name="resnet18")
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    relu_modules = sum(isinstance(m, nn.ReLU) for m in net.modules())
    with model.explaining(), guided_backprop(model) as guide:
        model(x, x)
    # 1 stem ReLU + 2 calls per BasicBlock × 8 blocks, from only 9 ReLU modules.
    assert (relu_modules, guide.relu_calls) == (9, 17)


class GeluNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.GELU(), nn.Linear(8, 4))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("method", ["input-x-gradient", "smooth-grad", "averaged-transforms"])
def test_a_model_without_relu_gets_a_clear_error_naming_it(method):
    encoder = CountingEncoder(GeluNet())
    model = PairModel(encoder, name="tiny-vit")
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(SimexplainError, match=r"tiny-vit.*GELU"):
        simexplain.explain(model, x, x, method, guided=True)
    assert encoder.calls == 1  # fails after the first forward, not after 50 samples


def test_nothing_is_left_behind_after_an_exception():
    class Exploding(SmallCNN):
        def forward(self, x):
            F.relu(x)
            raise RuntimeError("boom")

    model = PairModel(Exploding())
    model.encoder.train()
    before = model_state(model)
    with pytest.raises(RuntimeError, match="boom"):
        simexplain.explain(model, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), "smooth-grad", guided=True)
    assert_same_state(before, model_state(model))
    assert torch._C._len_torch_function_stack() == 0
    # A later ordinary backward is not guided: a negative gradient still flows through the ReLU.
    x = torch.ones(3, requires_grad=True)
    (-F.relu(x)).sum().backward()
    assert torch.equal(x.grad, -torch.ones(3))


def test_guided_methods_leave_the_model_untouched():
    model = PairModel(ReusedReLUNet())
    before = model_state(model)
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    for method in ("input-x-gradient", "smooth-grad", "averaged-transforms"):
        simexplain.explain(model, x, x.flip(-1), method, guided=True)
    assert_same_state(before, model_state(model))


def test_every_functional_form_of_relu_is_seen_and_hardtanh_only_with_a_zero_floor():
    model = PairModel(nn.Flatten())
    x = torch.randn(4, requires_grad=True)
    with guided_backprop(model) as guide:
        for out in (
            x.relu(),
            torch.relu(x),
            F.relu(x),
            (x * 1).relu_(),
            torch.relu_(x * 1),
            F.relu6(x),
            F.hardtanh(x, 0.0, 6.0),
            nn.ReLU6()(x),
        ):
            (grad,) = torch.autograd.grad(-out.sum(), x)
            assert grad.abs().max() == 0  # negative gradients are blocked: guided
        F.hardtanh(x)  # bounds (−1, 1): not a ReLU
    assert guide.relu_calls == 8


class Rendezvous(nn.Module):
    """Wraps an encoder; while ``barrier`` is set, each forward waits for the other thread's before and after
    running, so two threads are inside their forwards (and their ReLUs) at the same time."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.barrier: threading.Barrier | None = None

    def forward(self, x):
        if self.barrier is not None:
            self.barrier.wait(timeout=30)
        out = self.inner(x)
        if self.barrier is not None:
            self.barrier.wait(timeout=30)
        return out


@pytest.mark.parametrize("guided", [(True, False), (True, True)], ids=["guided-and-plain", "both-guided"])
def test_two_threads_guide_two_models_at_once_without_touching_each_other(guided):
    # torch keeps the torch-function mode stack per thread: thread A's guided mode must not guide (or count)
    # the ReLUs thread B runs meanwhile. Were the stack shared, B's plain map would come out guided.
    encoders = [Rendezvous(ReusedReLUNet()), Rendezvous(SmallCNN().double())]
    models = [PairModel(encoders[0], name="a"), PairModel(encoders[1], name="b")]
    pairs = [
        (torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)),
        (torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.rand(2, 3, 8, 8, dtype=torch.float64)),
    ]
    expected = [
        simexplain.explain(model, *pair, "input-x-gradient", guided=flag)
        for model, pair, flag in zip(models, pairs, guided, strict=True)
    ]
    other = [
        simexplain.explain(model, *pair, "input-x-gradient", guided=not flag)
        for model, pair, flag in zip(models, pairs, guided, strict=True)
    ]
    assert all(not torch.allclose(e.map1, o.map1) for e, o in zip(expected, other, strict=True))
    before = [model_state(model) for model in models]
    barrier = threading.Barrier(2)
    for encoder in encoders:
        encoder.barrier = barrier
    results, errors = [None, None], []

    def work(i: int) -> None:
        try:
            results[i] = simexplain.explain(models[i], *pairs[i], "input-x-gradient", guided=guided[i])
        except Exception as error:  # reported below: an assertion in a thread would be lost
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and all(r is not None for r in results)
    for got, want in zip(results, expected, strict=True):
        torch.testing.assert_close(got.map1, want.map1)
        torch.testing.assert_close(got.map2, want.map2)
    for encoder in encoders:
        encoder.barrier = None
    for model, state in zip(models, before, strict=True):
        assert_same_state(state, model_state(model))
    assert torch._C._len_torch_function_stack() == 0


def test_the_word_false_turns_guiding_off():
    model = PairModel(GeluNet(), name="tiny-vit")
    x = torch.rand(2, 3, 4, 4)
    e = simexplain.explain(model, x, x.flip(-1), "input-x-gradient", guided="false")  # no ReLU needed
    assert e.config == {"guided": False}
    with pytest.raises(SimexplainError, match="tiny-vit"):
        simexplain.explain(model, x, x.flip(-1), "input-x-gradient", guided="true")
    assert torch._C._len_torch_function_stack() == 0
