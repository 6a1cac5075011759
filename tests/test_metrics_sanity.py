"""Maximum sensitivity and the sanity check (docs/methods.md, Maximum sensitivity and Sanity check), and the
cascade figure.

Both wrappers re-run a method; its settings travel in ``method_params`` and never bind to the wrapper's own
``samples``/``seed``/``steps``/``batch_size``. A spy on the registry entry records what the method receives.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading

import pytest
import torch
from tiny import (
    CountingEncoder,
    LinearEncoder,
    SmallCNN,
    analytic_cosine_gradients,
    assert_same_state,
    model_state,
    small_pair_model,
)
from torch import Tensor

import simexplain
from simexplain.explanation import PairExplanation
from simexplain.figures.sanity import sanity_figure, spearman_curve_figure
from simexplain.methods import registry
from simexplain.metrics import evaluate, max_sensitivity, randomizable_layers, sanity_check, spearman
from simexplain.metrics.sensitivity import sensitivity_noise

SIZE = 16
METHODS = simexplain.methods.image_pair_methods()
# non-default settings whose names collide with the wrappers' own, and small occlusion windows for 16×16
COLLIDING = {"samples": 3, "seed": 11, "steps": 3, "batch_size": 3}
SMALL = {"window": 8, "stride": 4}


def images(batch: int = 2, seed: int = 0, size: int = SIZE) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.rand(batch, 3, size, size, generator=generator)
    return x1, (x1 + 0.2 * torch.rand(batch, 3, size, size, generator=generator)).clamp(0, 1)


def method_params(name: str) -> dict:
    """The method's colliding (and small-window) settings, each different from its default."""
    defaults = registry.get(name).parameters()
    params = {k: v for k, v in {**COLLIDING, **SMALL}.items() if k in defaults}
    assert all(params[k] != defaults[k] for k in params)
    return params


def spy(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[list[dict], list[PairExplanation]]:
    """Wrap the registry entry of ``name``: every call's keyword settings and result are recorded."""
    entry = registry.get(name)
    calls: list[dict] = []
    results: list[PairExplanation] = []

    @functools.wraps(entry.fn)  # keeps the signature the registry reads the parameters from
    def recorder(model, x1, x2, **params):
        calls.append(params)
        results.append(entry.fn(model, x1, x2, **params))
        return results[-1]

    monkeypatch.setitem(registry._METHODS, name, dataclasses.replace(entry, fn=recorder))
    return calls, results


# ---------------------------------------------------------------- every method, its own settings
@pytest.mark.parametrize("name", METHODS)
def test_max_sensitivity_runs_every_method_with_exactly_its_own_settings(name, monkeypatch) -> None:
    model = small_pair_model()
    x1, x2 = images(batch=2)
    params = method_params(name)
    calls, _ = spy(monkeypatch, name)
    ms = max_sensitivity(
        model, x1, x2, name, method_params=params, samples=2, radius=0.05, seed=4, batch_size=2
    )
    assert ms.shape == (2,) and bool((ms >= 0).all())
    # the clean run, then 2 samples × 2 pairs in chunks of 2 pairs; the method's settings untouched
    assert len(calls) == 1 + math.ceil(2 * 2 / 2)
    assert calls == [params] * len(calls)


@pytest.mark.parametrize("name", METHODS)
def test_sanity_check_runs_every_method_with_exactly_its_own_settings(name, monkeypatch) -> None:
    model = small_pair_model()
    x1, x2 = images(batch=1)
    params = method_params(name)
    calls, _ = spy(monkeypatch, name)
    result = sanity_check(model, x1, x2, name, method_params=params, steps=1, every=1, seed=2, batch_size=2)
    assert result.layers == ["original", "encoder.head.2"]  # the cascade's steps, not the method's
    assert calls == [params, params]


def test_the_wrappers_hand_their_batch_size_only_to_a_method_that_takes_one(monkeypatch) -> None:
    model = small_pair_model()
    x1, x2 = images(batch=2)
    occlusion, _ = spy(monkeypatch, "conditional-occlusion")
    max_sensitivity(model, x1, x2, "conditional-occlusion", method_params=SMALL, samples=1, batch_size=5)
    sanity_check(model, x1, x2, "conditional-occlusion", method_params=SMALL, steps=1, batch_size=5)
    assert occlusion == [{**SMALL, "batch_size": 5}] * 4
    plain, _ = spy(monkeypatch, "input-x-gradient")
    max_sensitivity(model, x1, x2, "input-x-gradient", samples=1, batch_size=5)
    sanity_check(model, x1, x2, "input-x-gradient", steps=1, batch_size=5)
    assert plain == [{}] * 4


@pytest.mark.parametrize("wrapper", ["sensitivity", "sanity"])
def test_an_unseeded_method_keeps_the_seed_its_first_run_drew(wrapper, monkeypatch) -> None:
    model = small_pair_model()
    x1, x2 = images(batch=2)
    calls, results = spy(monkeypatch, "smooth-grad")
    if wrapper == "sensitivity":
        max_sensitivity(model, x1, x2, "smooth-grad", method_params={"samples": 2}, samples=2)
    else:
        sanity_check(model, x1, x2, "smooth-grad", method_params={"samples": 2}, steps=2)
    drawn = results[0].config["seed"]
    assert isinstance(drawn, int) and calls[0] == {"samples": 2}
    assert calls[1:] == [{"samples": 2, "seed": drawn}] * (len(calls) - 1) and len(calls) >= 2


def test_evaluate_reruns_the_method_with_exactly_the_explanation_config(monkeypatch) -> None:
    """Occlusion takes a batch_size (it used to collide with MS's own), Smooth-Grad its own samples/seed."""
    model = small_pair_model()
    x1, x2 = images(batch=2)
    for name, params in (("conditional-occlusion", SMALL), ("smooth-grad", {"samples": 3})):
        e = simexplain.explain(model, x1, x2, name, **params)
        calls, _ = spy(monkeypatch, name)
        r = evaluate(model, x1, x2, e, ["MS"], batch_size=4)
        assert calls == [{**e.config, "batch_size": 4}] * (1 + math.ceil(10 * 2 / 4))
        direct = max_sensitivity(model, x1, x2, name, method_params=e.config, batch_size=4)
        assert torch.equal(r["MS"], direct)
        assert not torch.equal(direct, max_sensitivity(model, x1, x2, name, method_params=e.config, seed=1))


# ---------------------------------------------------------------- maximum sensitivity: values
def test_max_sensitivity_is_zero_without_noise_and_grows_with_samples() -> None:
    model = small_pair_model()
    x1, x2 = images()
    assert torch.equal(
        max_sensitivity(model, x1, x2, "input-x-gradient", samples=3, radius=0.0, seed=0),
        torch.zeros(2, dtype=torch.float64),
    )
    a = max_sensitivity(model, x1, x2, "input-x-gradient", samples=4, seed=7)
    assert bool((a > 0).all())
    # the max over more samples (the first four among them: a pair draws its samples in order) only grows
    more = max_sensitivity(model, x1, x2, "input-x-gradient", samples=8, seed=7)
    assert bool((more >= a).all()) and bool((more > a).any())


def test_max_sensitivity_of_a_linear_encoder_matches_the_closed_form() -> None:
    """Input×Gradient of ``cos(Wx1, Wx2)`` by hand, the noise from each pair's own generator."""
    encoder = LinearEncoder(size=SIZE, dim=5, seed=1)
    model = simexplain.PairModel(encoder)
    x1, x2 = (x.double() for x in images(batch=3))
    samples, radius, seeds = 4, 0.1, [5, 6, 7]
    weight = encoder.weight.detach()

    def input_x_gradient(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        g1, g2 = analytic_cosine_gradients(weight, a, b)
        return (a * g1).abs().amax(1), (b * g2).abs().amax(1)

    expected = []
    for pair, seed in enumerate(seeds):
        noise = torch.rand((samples, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(seed))
        noise = ((2 * noise - 1) * radius).double()  # the same noise for both images
        a, b = x1[pair : pair + 1], x2[pair : pair + 1]
        e1, e2 = input_x_gradient(a, b)
        rho1 = max(float((input_x_gradient(a + n, b + n)[0] - e1).norm() / e1.norm()) for n in noise)
        rho2 = max(float((input_x_gradient(a + n, b + n)[1] - e2).norm() / e2.norm()) for n in noise)
        expected.append((rho1 + rho2) / 2)
    found = max_sensitivity(model, x1, x2, "input-x-gradient", samples=samples, radius=radius, seed=seeds)
    torch.testing.assert_close(found, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=0)


def test_max_sensitivity_adds_the_same_noise_to_both_images_also_through_evaluate() -> None:
    seen: list[Tensor] = []

    @registry.register("test-spy-map", "test", "map = image sums (spy)")
    def spy_map(model, x1, x2) -> PairExplanation:
        seen.append(x1 - x2)
        return PairExplanation(map1=x1.sum(1), map2=x2.sum(1) + 1, method="test-spy-map")

    try:
        model = simexplain.PairModel(LinearEncoder(size=SIZE))
        x1, x2 = (x.double() for x in images(batch=1))
        rho = max_sensitivity(model, x1, x2, "test-spy-map", samples=5, radius=0.1, seed=3)
        for difference in seen:
            torch.testing.assert_close(difference, (x1 - x2).expand_as(difference))  # shared noise cancels

        def formula(seed: int, samples: int, radius: float) -> float:
            generator = torch.Generator().manual_seed(seed)
            noise = ((2 * torch.rand((samples, *x1.shape[1:]), generator=generator) - 1) * radius).double()
            e1, e2 = x1.sum(1), x2.sum(1) + 1
            r1 = max(float(((x1 + n).sum(1) - e1).norm() / e1.norm()) for n in noise)
            r2 = max(float(((x2 + n).sum(1) + 1 - e2).norm() / e2.norm()) for n in noise)
            return (r1 + r2) / 2

        assert float(rho[0]) == pytest.approx(formula(3, 5, 0.1), rel=1e-9)
        # evaluate re-runs the explanation's own method with MS's defaults: 10 samples, radius 0.2, seed 0
        r = evaluate(model, x1, x2, spy_map(model, x1, x2), ["MS"])
        assert float(r["MS"][0]) == pytest.approx(formula(0, 10, 0.2), rel=1e-9)
    finally:
        registry._METHODS.pop("test-spy-map", None)


def test_max_sensitivity_of_a_foreign_explanation_is_a_clear_error() -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = images(batch=1)
    e = PairExplanation(map1=torch.rand(1, SIZE, SIZE), map2=torch.rand(1, SIZE, SIZE), method="other-tool")
    with pytest.raises(simexplain.SimexplainError, match="not a registered method"):
        evaluate(model, x1, x2, e, ["MS"])


# ---------------------------------------------------------------- maximum sensitivity: per-pair randomness
@pytest.mark.parametrize(
    "name, params", [("input-x-gradient", {}), ("smooth-grad", {"samples": 2, "seed": 3})]
)
def test_max_sensitivity_of_a_pair_never_depends_on_the_batch(name: str, params: dict) -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = images(batch=5, seed=1)

    def ms(a: Tensor, b: Tensor, seed: int | list[int] = 9, batch_size: int | None = None) -> Tensor:
        return max_sensitivity(
            model, a, b, name, method_params=params, samples=3, seed=seed, batch_size=batch_size
        )

    together = ms(x1, x2)
    alone = torch.cat([ms(x1[i : i + 1], x2[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(together, alone)
    torch.testing.assert_close(ms(x1, x2, batch_size=1), ms(x1, x2, batch_size=8))
    order = [3, 0, 4, 1, 2]
    torch.testing.assert_close(ms(x1[order], x2[order]), together[order])
    # one noise seed per pair: pair i's value is its value alone under seed i, wherever it sits
    seeds = [21, 22, 23, 24, 25]
    per_pair = ms(x1, x2, seed=seeds)
    torch.testing.assert_close(per_pair[1:2], ms(x1[1:2], x2[1:2], seed=22))
    torch.testing.assert_close(ms(x1[order], x2[order], seed=[seeds[i] for i in order]), per_pair[order])
    assert not torch.equal(per_pair, together)


def test_sensitivity_noise_of_a_pair_is_its_own_seed_s_draws_also_when_seeds_repeat() -> None:
    seeds, samples, radius = [4, 9, 4, 2], 3, 0.25
    for shape2 in ((3, 4, 4), (3, 2, 6)):
        noise1, noise2 = sensitivity_noise((3, 4, 4), shape2, seeds, samples, radius)
        for pair, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(seed)
            first = (2 * torch.rand((samples, 3, 4, 4), generator=generator) - 1) * radius
            second = (
                first
                if shape2 == (3, 4, 4)
                else (2 * torch.rand((samples, *shape2), generator=generator) - 1) * radius
            )
            assert torch.equal(noise1[:, pair], first) and torch.equal(noise2[:, pair], second)
        assert torch.equal(noise1[:, 0], noise1[:, 2]) and not torch.equal(noise1[:, 0], noise1[:, 1])


def test_max_sensitivity_runs_each_noisy_copy_with_its_pair_s_method_seed(monkeypatch) -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = images(batch=2)
    calls, _ = spy(monkeypatch, "smooth-grad")
    max_sensitivity(model, x1, x2, "smooth-grad", method_params={"samples": 2, "seed": [5, 8]}, samples=3)
    seeds = [s for call in calls[1:] for s in call["seed"]]
    assert calls[0]["seed"] == [5, 8] and seeds == [5, 8] * 3  # sample-major: item s·B + b is pair b
    calls.clear()
    max_sensitivity(model, x1, x2, "smooth-grad", method_params={"samples": 2, "seed": 5}, samples=3)
    assert [call["seed"] for call in calls] == [5] * len(calls)  # an int stays an int


# ---------------------------------------------------------------- the model's lock and checks
class CountingLock:
    """A re-entrant lock that counts how often it was taken from the outside (depth 0 → 1)."""

    def __init__(self) -> None:
        self.inner, self.depth, self.outermost = threading.RLock(), 0, 0

    def __enter__(self) -> CountingLock:
        self.inner.acquire()
        self.depth += 1
        self.outermost += self.depth == 1
        return self

    def __exit__(self, *error) -> None:
        self.depth -= 1
        self.inner.release()


@pytest.mark.parametrize("wrapper", ["evaluate", "sensitivity", "sanity"])
def test_each_call_holds_the_model_lock_from_start_to_end(wrapper: str) -> None:
    model = small_pair_model()
    x1, x2 = images(batch=1)
    lock = model._lock = CountingLock()
    if wrapper == "evaluate":
        e = simexplain.explain(model, x1, x2)
        lock.outermost = 0
        evaluate(model, x1, x2, e, ["SD", "MS"], step=64)
    elif wrapper == "sensitivity":
        max_sensitivity(model, x1, x2, "input-x-gradient", samples=2, batch_size=1)
    else:
        sanity_check(model, x1, x2, "input-x-gradient", steps=2)
    assert lock.outermost == 1 and lock.depth == 0  # nested explain calls re-enter, never let go


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, a, b: max_sensitivity(m, a, b, "input-x-gradient", samples=0), "samples"),
        (lambda m, a, b: max_sensitivity(m, a, b, "input-x-gradient", samples=2.5), "samples"),
        (lambda m, a, b: max_sensitivity(m, a, b, "input-x-gradient", radius=-0.1), "radius"),
        (lambda m, a, b: max_sensitivity(m, a, b, "input-x-gradient", radius=float("nan")), "radius"),
        (lambda m, a, b: max_sensitivity(m, a, b, "input-x-gradient", seed=-1), "seed"),
        (lambda m, a, b: max_sensitivity(m, a, b, "input-x-gradient", seed=[1, 2, 3]), "seed"),
        (lambda m, a, b: max_sensitivity(m, a, b, "input-x-gradient", batch_size=0), "batch_size"),
        (lambda m, a, b: max_sensitivity(m, a, b, "smooth-grad", method_params={"radius": 1}), "radius"),
        (lambda m, a, b: max_sensitivity(m, a, b, "smooth-grad", method_params=[1]), "method_params"),
        (lambda m, a, b: max_sensitivity(m, a, b, "no-such-method"), "unknown method"),
        (lambda m, a, b: sanity_check(m, a, b, "input-x-gradient", steps=0), "steps"),
        (lambda m, a, b: sanity_check(m, a, b, "input-x-gradient", every=0), "every"),
        (lambda m, a, b: sanity_check(m, a, b, "input-x-gradient", every=1.5), "every"),
        (lambda m, a, b: sanity_check(m, a, b, "input-x-gradient", seed=True), "seed"),
        (lambda m, a, b: sanity_check(m, a, b, "input-x-gradient", batch_size=-2), "batch_size"),
        (lambda m, a, b: sanity_check(m, a, b, "averaged-transforms", method_params={"every": 2}), "every"),
    ],
)
def test_wrapper_settings_are_checked_before_any_forward(call, message: str) -> None:
    counter = CountingEncoder(SmallCNN())
    model = simexplain.PairModel(counter)
    x1, x2 = images(batch=2)
    with pytest.raises(simexplain.SimexplainError, match=message) as error:
        call(model, x1, x2)
    assert "\n" not in str(error.value) and counter.calls == 0


# ---------------------------------------------------------------- sanity check
def test_spearman_with_ties_and_constants() -> None:
    a = torch.tensor([[[1.0, 2.0, 2.0, 4.0]]])
    assert float(spearman(a, a)) == pytest.approx(1.0)
    assert float(spearman(a, -a)) == pytest.approx(-1.0)
    assert float(spearman(a, torch.zeros_like(a))) == 0.0
    # a batch: each row on its own; tied ranks 1, 2.5, 2.5, 4 against 4, 3, 2, 1 give −4.5 / √(4.5 · 5)
    b = torch.tensor([[[4.0, 3.0, 2.0, 1.0]]])
    batch = spearman(torch.cat([a, a, a]), torch.cat([b, a, torch.zeros_like(a)]))
    torch.testing.assert_close(batch, torch.tensor([-4.5 / math.sqrt(22.5), 1.0, 0.0], dtype=torch.float64))


def test_cascade_order_runs_from_the_output_end() -> None:
    model = small_pair_model()
    steps = randomizable_layers(model)
    assert steps[0] == ["encoder.head.2"] and steps[-1] == ["encoder.features.0"]
    asymmetric = simexplain.PairModel(SmallCNN(seed=0), encoder_b=SmallCNN(seed=1))
    assert randomizable_layers(asymmetric)[0] == ["encoder.head.2", "encoder_b.head.2"]


def test_sanity_check_leaves_the_model_untouched_and_similarity_falls() -> None:
    model = small_pair_model(seed=3)
    before = model_state(model)
    rng = torch.get_rng_state()
    x1, x2 = images(batch=2)
    result = sanity_check(model, x1, x2, "input-x-gradient", seed=0)
    assert_same_state(before, model_state(model))
    assert torch.equal(rng, torch.get_rng_state())  # re-initialisation draws from its own seeded stream
    assert result.layers[0] == "original" and len(result.layers) == 1 + len(randomizable_layers(model))
    assert result.maps1.shape == (len(result.layers), 2, SIZE, SIZE)
    rho = result.mean_spearman()
    assert float(rho[0]) == pytest.approx(1.0)
    assert float(rho[-1]) < 0.9 * float(rho[0]) and float(rho[-1]) < float(rho[1]) + 1e-9
    assert result.ssim1 is None or result.ssim1.shape == result.spearman1.shape
    # each image's own maps are scored against its own original: 1 at step 0, for both images
    for rank, similarity in ((result.spearman1, result.ssim1), (result.spearman2, result.ssim2)):
        torch.testing.assert_close(rank[0], torch.ones(2, dtype=rank.dtype))
        if similarity is not None:
            assert similarity.shape == rank.shape
            torch.testing.assert_close(similarity[0], torch.ones(2, dtype=similarity.dtype))
            assert bool((similarity[-1] < 1).all())
    again = sanity_check(model, x1, x2, "input-x-gradient", seed=0, every=2)
    assert again.layers[-1] == result.layers[-1] and len(again.layers) < len(result.layers)
    torch.testing.assert_close(again.maps1[-1], result.maps1[-1])
    # the original maps are the method's own on the untouched model
    torch.testing.assert_close(result.maps1[0], simexplain.explain(model, x1, x2).map1)


def test_sanity_figure_writes_png_and_svg(tmp_path) -> None:
    model = small_pair_model()
    x1, x2 = images(batch=1)
    result = sanity_check(model, x1, x2, "input-x-gradient", steps=3)
    figure = sanity_figure({"Input×Gradient": result, "again": result}, tmp_path / "cascade.png", every=2)
    assert len(figure.axes) == 4 * 4  # 2 methods × 2 images; image + original + steps 2 and 3
    sanity_figure(result, tmp_path / "cascade.svg")
    spearman_curve_figure(result, tmp_path / "curve.png")
    for name in ("cascade.png", "cascade.svg", "curve.png"):
        assert (tmp_path / name).stat().st_size > 1000
