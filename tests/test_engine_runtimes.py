"""Inference engines (docs/engine.md): every engine equals PyTorch, refuses what differs, keys its cache."""

from __future__ import annotations

import copy
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from tiny import CountingEncoder, SmallCNN, assert_same_state, model_state
from torch import nn

import simexplain
from simexplain import SimexplainError, engines
from simexplain.engines import graphs, registry

EXPORTED = [
    name if registry.installed(name) else pytest.param(name, marks=pytest.mark.skip(f"{name} not installed"))
    for name in ("onnxruntime", "openvino")
]
STEP = 128  # 9 curve points at 32×32
# Every stand-in (CNN, ViT), sharing (shared, asymmetric) and size (one, two) appears with each engine.
CASES = [
    ("cnn", True, "same"),
    ("cnn", False, "two-sizes"),
    ("vit", True, "two-sizes"),
    ("vit", False, "same"),
]


@pytest.fixture(autouse=True)
def graph_cache(tmp_path_factory, monkeypatch):
    """Graphs go to one temporary folder per test session; warnings about engines become errors unless a test
    expects them (a silent fallback would pass every equality below)."""
    folder = tmp_path_factory.getbasetemp() / "engine-cache"
    monkeypatch.setenv("SIMEXPLAIN_CACHE", str(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("error", engines.EngineWarning)
        yield folder / "engines"


def tiny_vit(seed: int) -> nn.Module:
    """A two-block ViT without position embeddings, so it takes any size that is a multiple of 8."""
    torch.manual_seed(seed)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32,
        patch_size=8,
        embed_dim=16,
        depth=2,
        num_heads=2,
        num_classes=0,
        pos_embed="none",
        dynamic_img_size=True,
    )


def stand_in(kind: str, shared: bool) -> simexplain.PairModel:
    if kind == "cnn":
        encoders = SmallCNN(seed=0), None if shared else SmallCNN(seed=1)
        return simexplain.PairModel(encoders[0], encoder_b=encoders[1], layer="features.3", name="cnn")
    encoders = tiny_vit(0), None if shared else tiny_vit(1)
    layout = simexplain.TokenLayout(patch_size=8, prefix_tokens=1)
    return simexplain.PairModel(
        encoders[0], encoder_b=encoders[1], layer="blocks.1", token_layout=layout, name="vit"
    )


def images(sizes: str) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    second = (32, 32) if sizes == "same" else (48, 40)
    return torch.rand(2, 3, 32, 32, generator=generator), torch.rand(2, 3, *second, generator=generator)


def assert_relative(
    got: torch.Tensor, expected: torch.Tensor, tolerance: float = 1e-4, name: str = ""
) -> None:
    """``max|got − expected| ≤ tolerance · max(max|expected|, 0.01)`` (NaN where the other is NaN too).

    The floor: a value near 0 here is a difference of near-equal cosines (SAD of a tiny random CNN is 5e-6),
    whose float32 rounding (6e-8) no runtime controls.
    """
    assert got.shape == expected.shape, name
    both = ~(got.isnan() & expected.isnan())
    scale = float(expected[both].abs().max()) if both.any() else 0.0
    difference = float((got[both].double() - expected[both].double()).abs().max()) if both.any() else 0.0
    assert difference <= tolerance * max(scale, 0.01), (name, difference, scale)


def gradient_free_results(model: simexplain.PairModel, x1: torch.Tensor, x2: torch.Tensor) -> dict:
    """Embeddings, every metric that the sizes allow and both occlusion maps: all gradient-free passes."""
    names = ["SI", "SD", "CI", "CD", "SAD", "CAD"] if x1.shape == x2.shape else ["CI", "CD", "SAD", "CAD"]
    with torch.inference_mode():
        out = {"z1": model.embed(x1, "a").clone(), "z2": model.embed(x2, "b").clone()}
    saliency = simexplain.explain(model, x1, x2, "input-x-gradient")  # gradients: PyTorch whatever the engine
    out["saliency"] = saliency.map1
    values = simexplain.metrics.evaluate(model, x1, x2, saliency, names, step=STEP, batch_size=8)
    out.update({name: values[name] for name in names})
    occlusions = {
        "conditional-occlusion": {"window": 16, "stride": 8},
        "pairwise-occlusion": {"samples": 16, "seed": 0},
    }
    for method, settings in occlusions.items():
        e = simexplain.explain(model, x1, x2, method, **settings)
        out[f"{method} 1"], out[f"{method} 2"] = e.map1, e.map2
    return out


@pytest.mark.parametrize("engine", EXPORTED)
@pytest.mark.parametrize(("kind", "shared", "sizes"), CASES, ids=["-".join(map(str, case)) for case in CASES])
def test_each_engine_equals_pytorch_on_every_gradient_free_pass(engine, kind, shared, sizes):
    model = stand_in(kind, shared)
    x1, x2 = images(sizes)
    before = model_state(model)
    model.engine = "torch"
    expected = gradient_free_results(model, x1, x2)
    model.engine = engine
    got = gradient_free_results(model, x1, x2)
    for side, described in engines.describe(model)["encoders"].items():
        assert (described["engine"], described["fallbacks"]) == (engine, []), side
    assert torch.equal(got.pop("saliency"), expected.pop("saliency"))  # the gradient pass stayed in PyTorch
    for name, value in expected.items():
        assert_relative(got[name], value, name=name)
    assert_same_state(before, model_state(model))


class AttentionPool(nn.Module):
    """Patches through ``nn.MultiheadAttention`` (CLIP's and open_clip's attention), mean-pooled."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patches = nn.Conv2d(3, 16, 8, 8)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        return self.attention(tokens, tokens, tokens, need_weights=False)[0].mean(1)


@pytest.mark.parametrize("engine", EXPORTED)
def test_multihead_attention_exports_through_its_plain_operators(engine):
    model = simexplain.PairModel(AttentionPool().eval(), layer="patches", name="attention", engine="torch")
    x1, x2 = images("same")
    with torch.inference_mode():
        expected = model.embed(x1, "a").clone()
        model.engine = engine  # without grad its fast path is one operator that ONNX lacks: a fallback
        got = model.embed(x1, "a").clone()
    assert engines.describe(model)["encoders"]["a"]["fallbacks"] == []
    assert_relative(got, expected)
    assert torch.backends.mha.get_fastpath_enabled()  # the global switch is restored


def test_the_compile_engine_equals_pytorch():
    model = stand_in("cnn", shared=True)
    x1, x2 = images("same")
    model.engine = "torch"
    with torch.inference_mode():
        expected = model.embed(torch.cat([x1, x2, x1[:1]]))
    model.engine = "compile"
    with torch.inference_mode():
        got = [
            model.embed(torch.cat([x1, x2])),
            model.embed(x1[:1]),
            model.embed(torch.cat([x1, x2, x1[:1]])),
        ]
    assert engines.describe(model)["encoders"]["a"]["engine"] == "compile"
    assert_relative(got[2], expected)
    assert_relative(torch.cat(got[:2]), expected)


def test_auto_keeps_small_encoders_in_pytorch_and_exports_big_ones(monkeypatch):
    model = stand_in("cnn", shared=True)
    assert model.engine == "auto" and engines.describe(model)["label"] == "torch (fp32)"
    monkeypatch.setattr(registry, "AUTO_MIN_PARAMETERS", 10)
    model.engine = "auto"  # setting it again re-resolves
    fastest = next(name for name in registry.AUTO_ORDER["cpu"] if registry.installed(name))
    assert engines.describe(model)["encoders"]["a"]["engine"] == fastest
    assert registry.resolve("auto", "bf16", torch.device("cpu"), 10**9) == "torch"
    assert registry.resolve("auto", "fp32", torch.device("cuda"), 10**9) == "torch"


def test_only_inference_mode_outside_taps_reaches_the_engine():
    counting = CountingEncoder(SmallCNN())
    model = simexplain.PairModel(counting, layer="inner.features.3", engine="onnxruntime")
    x = torch.rand(4, 3, 32, 32)
    with torch.inference_mode():
        model.embed(x)  # builds: the export and the probe run the encoder
    calls = counting.calls
    with torch.inference_mode():
        model.embed(x)
        assert counting.calls == calls  # the graph ran
        model.activations_and_gradients(x, x, gradients=False)  # a tapped forward runs the encoder
        assert counting.calls == calls + 1
        handle = counting.inner.register_forward_hook(lambda *args: None)
        model.embed(x)  # any hook: PyTorch
        handle.remove()
        assert counting.calls == calls + 2
    with torch.no_grad():
        model.embed(x)  # no_grad is not inference mode: PyTorch
    assert counting.calls == calls + 3


def test_a_graph_that_differs_is_refused_in_one_line_and_pytorch_runs():
    class Branchy(nn.Module):
        """Data-dependent control flow: a trace keeps one branch."""

        def __init__(self) -> None:
            super().__init__()
            self.net = SmallCNN()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) if x.std() < 0.1 else -self.net(x)

    model = simexplain.PairModel(Branchy(), engine="onnxruntime", name="branchy")
    flat = 0.5 + 0.01 * torch.rand(4, 3, 32, 32)  # the trace sees noise: the other branch
    with pytest.warns(engines.EngineWarning) as caught, torch.inference_mode():
        z = model.embed(flat)
        again = model.embed(flat)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert "'branchy'" in str(caught[0].message) and "onnxruntime differs from PyTorch" in str(
        caught[0].message
    )
    with torch.no_grad():
        assert torch.equal(z, model.encoder(flat)) and torch.equal(again, z)
    assert engines.describe(model)["encoders"]["a"]["engine"] == "torch"


def test_an_encoder_that_cannot_be_exported_falls_back_with_one_line():
    class Antialiased(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = SmallCNN()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(F.interpolate(x, scale_factor=0.5, mode="bicubic", antialias=True))

    model = simexplain.PairModel(Antialiased(), engine="onnxruntime", name="aa")
    x = torch.rand(3, 3, 32, 32)
    with pytest.warns(engines.EngineWarning) as caught, torch.inference_mode():
        z = model.embed(x)
        model.embed(x[:1])
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert "\n" not in message and "failed" in message and "upsample_bicubic2d_aa" in message, message
    with torch.no_grad():
        assert torch.equal(z, model.encoder(x))


def test_the_cache_is_keyed_by_the_weights_and_a_changed_file_is_exported_again(graph_cache):
    x = torch.rand(2, 3, 32, 32)

    def embedded(model: simexplain.PairModel) -> torch.Tensor:
        with torch.inference_mode():
            return model.embed(x)

    before = set(graph_cache.glob("*.onnx")) if graph_cache.exists() else set()
    first = simexplain.PairModel(SmallCNN(seed=3), engine="onnxruntime")
    embedded(first)
    made = set(graph_cache.glob("*.onnx")) - before
    assert len(made) == 1
    other = simexplain.PairModel(SmallCNN(seed=4), engine="onnxruntime")
    embedded(other)
    assert len(set(graph_cache.glob("*.onnx")) - before) == 2  # other weights, another graph

    (path,) = made
    sidecar = path.with_suffix(".json")
    path.write_bytes(path.read_bytes()[:-16] + b"\0" * 16)  # a changed file on disk
    again = simexplain.PairModel(SmallCNN(seed=3), engine="onnxruntime")
    z = embedded(again)
    assert graphs.file_sha256(path) == graphs._read_json(sidecar)["sha256"]  # exported again
    with torch.no_grad():
        assert_relative(z, again.encoder(x))

    with torch.no_grad():  # weights changed in place after the runner was built: rebuilt, new graph
        first.encoder.head[2].bias.add_(1.0)
    assert_relative(embedded(first), first.encoder(x).detach())
    assert len(set(graph_cache.glob("*.onnx")) - before) == 3


def test_a_graph_or_a_remembered_failure_of_an_older_exporter_is_not_reused(monkeypatch):
    example = torch.rand(2, 3, 8, 8)
    key = graphs.graph_key("weights", example, "onnxruntime", "1.0")
    assert graphs.graph_key("weights", example, "onnxruntime", "1.0") == key
    monkeypatch.setattr(graphs, "EXPORTER_REVISION", graphs.EXPORTER_REVISION + 1)
    assert graphs.graph_key("weights", example, "onnxruntime", "1.0") != key


def test_wrappers_of_the_same_weights_with_other_outputs_do_not_share_a_graph():
    a, b = tiny_vit(0), tiny_vit(0)
    b.global_pool = "avg"  # not in the repr
    assert engines.fingerprint(a) != engines.fingerprint(b)
    assert engines.fingerprint(a) == engines.fingerprint(tiny_vit(0))


def test_settings_are_checked_in_one_line_and_load_model_passes_them():
    with pytest.raises(SimexplainError, match="unknown engine 'tensorrt'; known: auto, torch"):
        simexplain.PairModel(SmallCNN(), engine="tensorrt")
    with pytest.raises(SimexplainError, match="runs fp32 only, not bf16"):
        simexplain.PairModel(SmallCNN(), engine="onnxruntime", precision="bf16")
    model = simexplain.PairModel(SmallCNN(), precision="bf16")
    with pytest.raises(SimexplainError, match="unknown precision 'fp8'"):
        model.precision = "fp8"
    loaded = simexplain.load_model("efficientnet-lite0", engine="torch", precision="bf16")
    assert (loaded.engine, loaded.precision) == ("torch", "bf16")


def test_bf16_autocasts_the_gradient_free_passes_and_returns_fp32():
    model = simexplain.PairModel(SmallCNN(), precision="bf16")
    x = torch.rand(4, 3, 32, 32)
    with torch.inference_mode():
        z = model.embed(x)
    with torch.no_grad():
        reference = model.embed(x)  # no inference mode: fp32 PyTorch
    assert z.dtype == torch.float32 and not torch.equal(z, reference)
    assert_relative(z, reference, 3e-2)


def test_copies_keep_the_setting_but_not_the_runners_and_randomised_copies_run_pytorch(graph_cache):
    model = simexplain.PairModel(SmallCNN(seed=5), engine="onnxruntime", precision="fp32")
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        model.embed(x)
    assert model._engines.built
    graphs_before = set(graph_cache.glob("*.onnx"))
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert (twin.engine, twin.precision, twin._engines.built) == ("onnxruntime", "fp32", {})
        with torch.inference_mode():
            twin.embed(x)  # the same weights: the same graph
        assert engines.describe(twin)["encoders"]["a"]["engine"] == "onnxruntime"
        with torch.no_grad():
            twin.encoder.head[2].weight.mul_(-1.0)  # what the sanity cascade does to its copy
        with torch.inference_mode():
            z = twin.embed(x)
        with torch.no_grad():
            assert torch.equal(z, twin.encoder(x))
        assert engines.describe(twin)["encoders"]["a"]["engine"] == "torch"
    assert set(graph_cache.glob("*.onnx")) == graphs_before  # nothing exported for the randomised copies
    assert model._engines.built


def test_black_boxes_keep_their_own_runtime():
    model = simexplain.PairModel.from_embedding_function(lambda x: x.mean((2, 3)))
    assert engines.describe(model)["encoders"]["a"]["engine"] == "own runtime (black box)"


def test_cache_root_honours_the_variables_in_order(monkeypatch, tmp_path):
    from simexplain.cache import cache_root

    monkeypatch.delenv("SIMEXPLAIN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "simexplain"
    monkeypatch.setenv("SIMEXPLAIN_CACHE", str(tmp_path / "own"))
    assert cache_root() == tmp_path / "own"
    monkeypatch.delenv("SIMEXPLAIN_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "simexplain"


def test_the_examples_of_docs_engine_run(tmp_path):
    doc = Path(__file__).resolve().parents[1] / "docs" / "engine.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    environment = {**os.environ, "SIMEXPLAIN_CACHE": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(blocks)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "onnxruntime (fp32)"


def test_the_least_recently_used_graphs_go_first_beyond_the_limit(tmp_path):
    for age, name in enumerate(["new", "middle", "old"]):
        graph = tmp_path / f"{name}.onnx"
        graph.write_bytes(b"x" * 100)
        graph.with_suffix(".json").write_text("{}")
        os.utime(graph, (1_000_000 - age, 1_000_000 - age))
    graphs.prune(tmp_path, limit=250, keep=tmp_path / "new.onnx")
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["middle.json", "middle.onnx", "new.json", "new.onnx"]
