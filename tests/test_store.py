"""The evaluation store refuses another run naming what differs, in words: model, weights, each setting."""

import pytest

from simexplain import SimexplainError
from simexplain.studies.store import Store

SETTINGS = {
    "variants": ["input-x-gradient", "smooth-grad[samples=10]"],
    "metrics": ["SAD"],
    "metric_options": {"step": 224},
    "seed": 0,
}
IDENTITY = {"model": "m", "weights_sha256": None, "fingerprint": "f1"}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.check_run(IDENTITY, {"settings": SETTINGS})
        yield store


def _refusal(store, identity, settings=None):
    with pytest.raises(SimexplainError) as raised:
        store.refuse_other_run({**IDENTITY, **identity}, settings)
    message = str(raised.value)
    assert "\n" not in message and message.endswith("use another --db to keep results apart")
    return message


def test_another_model_or_weights_is_named(store):
    assert "another model ('m' here, 'n' now)" in _refusal(store, {"model": "n"})
    message = _refusal(store, {"weights_sha256": "ab" * 32})
    assert "other weights (built-in here, sha256 abababababababab now)" in message


def test_each_differing_setting_is_named_with_both_values(store):
    now = {**SETTINGS, "metrics": ["SAD", "SD"], "seed": 3, "metric_options": {"step": 32}}
    message = _refusal(store, {"fingerprint": "f2"}, now)
    assert "metrics SAD here, SAD, SD now" in message and "seed 0 here, 3 now" in message
    assert "metric options step=224 here, step=32 now" in message
    assert "variants" not in message and "f1" not in message  # the same variants; no fingerprint


def test_check_run_names_the_settings_and_a_bare_identity_lists_the_stored_ones(store):
    with pytest.raises(SimexplainError, match="other settings: variants input-x-gradient, smooth-grad"):
        store.check_run({**IDENTITY, "fingerprint": "f2"}, {"settings": {**SETTINGS, "variants": []}})
    message = _refusal(store, {"fingerprint": "f2"})  # only the identity: what the store holds
    assert "other settings (here: variants input-x-gradient, smooth-grad[samples=10]; metrics SAD" in message
