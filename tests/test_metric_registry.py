"""The metric registry: one registered function is a metric evaluate, the table and the groups know about;
evaluate's own settings are checked before any forward."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from tiny import CountingEncoder, LinearEncoder
from torch import Tensor

import simexplain
from simexplain import metrics
from simexplain.explanation import PairExplanation
from simexplain.metrics import METRIC_INFO, MetricInputs, evaluate, format_table, resolve_metrics

SIZE, STEP = 16, 16


def pairs(batch: int = 2) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    x1 = torch.randn(batch, 3, SIZE, SIZE, generator=generator)
    return x1, x1 + 0.3 * torch.randn(batch, 3, SIZE, SIZE, generator=generator)


def maps(batch: int = 2) -> PairExplanation:
    generator = torch.Generator().manual_seed(1)
    return PairExplanation(*torch.rand(2, batch, SIZE, SIZE, generator=generator))


@contextmanager
def registered(name: str, fn, **options) -> Iterator[None]:
    """A metric registered for one test, unregistered afterwards."""
    metrics.register(name, **options)(fn)
    try:
        yield
    finally:
        metrics.unregister(name)


def clean_similarity(inputs: MetricInputs) -> Tensor:
    return inputs.base


def test_a_registered_metric_reaches_evaluate_the_table_and_all() -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = pairs()
    with registered("BASE", clean_similarity, higher_is_better=True, description="clean similarity"):
        assert METRIC_INFO["BASE"] == (True, "clean similarity")
        assert resolve_metrics("all")[-1] == "BASE" and resolve_metrics("base, SD") == ["BASE", "SD"]
        r = evaluate(model, x1, x2, maps(), ["base"], step=STEP)
        assert list(r)[:2] == ["BASE", "base"]
        torch.testing.assert_close(r["BASE"], model(x1, x2).double())
        table = format_table(r)
        assert table.splitlines()[0] == "| method | pairs | BASE ↑ |"
        assert f"{float(r['BASE'].mean()):.4f}" in table.splitlines()[2]
    assert "BASE" not in METRIC_INFO and "BASE" not in resolve_metrics("all")
    with pytest.raises(simexplain.SimexplainError, match="unknown metric 'BASE'"):
        evaluate(model, x1, x2, maps(), ["BASE"], step=STEP)


def test_a_metric_shares_the_sequences_it_needs_with_the_built_in_ones() -> None:
    counter = CountingEncoder(LinearEncoder(size=SIZE))
    model = simexplain.PairModel(counter)
    x1, x2 = pairs()
    seen: list[MetricInputs] = []

    def last_deletion_point(inputs: MetricInputs) -> dict[str, Tensor]:
        seen.append(inputs)
        z = inputs.embeddings
        fully_deleted = inputs.model.similarity(z["deletion1"][:, -1], z["deletion2"][:, -1])
        return {"LAST": fully_deleted, "LAST_first": inputs.curves["SD"][:, 0]}

    options = {"higher_is_better": False, "description": "SD at its last point", "needs": ("deletion",)}
    with registered("LAST", last_deletion_point, **options):
        evaluate(model, x1, x2, maps(), ["SD"], step=STEP)
        alone = counter.images
        counter.images = 0
        r = evaluate(model, x1, x2, maps(), ["SD", "LAST"], step=STEP)
        assert counter.images == alone  # no sequence embedded twice
        torch.testing.assert_close(r["LAST"], r.curves["SD"][:, -1])
        torch.testing.assert_close(r["LAST_first"], r["base"])
        assert seen[0].embeddings["deletion1"].shape[:2] == (2, SIZE * SIZE // STEP + 1)


def test_summary_groups_come_from_the_registry() -> None:
    scores = {"SI": 0.6, "CI": 0.8, "SD": 0.2, "CD": 0.4, "SAD": 0.5, "CAD": 0.3, "XI": 0.1}
    assert metrics.summary_groups(scores)["G1"] == pytest.approx(0.7)
    with registered("XI", clean_similarity, higher_is_better=True, description="x", in_all=False, group="G1"):
        assert metrics.summary_groups(scores)["G1"] == pytest.approx(0.5)  # mean(0.6, 0.8, 0.1)
        assert "XI" not in resolve_metrics("all")
    with pytest.raises(simexplain.SimexplainError, match="mixes"):
        metrics.register("YD", higher_is_better=False, description="y", group="G1")(clean_similarity)
    assert "YD" not in METRIC_INFO


def test_registration_mistakes_are_one_line_errors() -> None:
    mistakes = [
        ({"name": "sd", "higher_is_better": False, "description": "again"}, "already registered"),
        ({"name": "A,B", "higher_is_better": True, "description": "d"}, "without commas"),
        ({"name": "Z", "higher_is_better": "maybe", "description": "d"}, "higher_is_better"),
        ({"name": "Z", "higher_is_better": True, "description": "d", "needs": ("blur",)}, "unknown sequence"),
    ]
    for options, message in mistakes:
        name = options.pop("name")
        with pytest.raises(simexplain.SimexplainError, match=message) as error:
            metrics.register(name, **options)(clean_similarity)
        assert "\n" not in str(error.value)
    with pytest.raises(simexplain.SimexplainError, match="no metric named"):
        metrics.unregister("NOPE")
    assert list(METRIC_INFO) == ["SI", "SD", "CI", "CD", "SAD", "CAD", "MS"]


def test_a_metric_must_return_one_value_per_pair_under_its_own_name() -> None:
    model = simexplain.PairModel(LinearEncoder(size=SIZE))
    x1, x2 = pairs()
    with registered("MEAN", lambda inputs: inputs.base.mean(), higher_is_better=True, description="d"):
        with pytest.raises(simexplain.SimexplainError, match=r"not \[2\]"):
            evaluate(model, x1, x2, maps(), ["MEAN"], step=STEP)
    with registered("OTHER", lambda inputs: {"else": inputs.base}, higher_is_better=True, description="d"):
        with pytest.raises(simexplain.SimexplainError, match="its own name"):
            evaluate(model, x1, x2, maps(), ["OTHER"], step=STEP)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"step": 0}, "step"),
        ({"step": 2.5}, "step"),
        ({"blur_kernel": 4}, "odd"),
        ({"blur_kernel": 0}, "blur_kernel"),
        ({"blur_sigma": 0.0}, "blur_sigma"),
        ({"blur_sigma": float("inf")}, "blur_sigma"),
        ({"batch_size": 0}, "batch_size"),
        ({"metrics": ["SD", "XY"]}, "unknown metric 'XY'"),
    ],
)
def test_evaluate_settings_are_checked_before_any_forward(options: dict, message: str) -> None:
    counter = CountingEncoder(LinearEncoder(size=SIZE))
    model = simexplain.PairModel(counter)
    x1, x2 = pairs()
    with pytest.raises(simexplain.SimexplainError, match=message) as error:
        evaluate(model, x1, x2, maps(), **{"metrics": "all", **options})
    assert "\n" not in str(error.value) and counter.calls == 0


def test_check_options_gives_canonical_types() -> None:
    assert metrics.check_options(step=32.0, blur_kernel=5, blur_sigma=2) == {
        "step": 32,
        "blur_kernel": 5,
        "blur_sigma": 2.0,
    }
