"""timm:NAME.TAG without --weights: timm's pretrained loading, offline, through a local file overlay and
through a temporary hub cache; preprocessing from the pretrained config equals timm's own eval transform."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import timm
import torch
from PIL import Image

pytest.importorskip("huggingface_hub")
pytest.importorskip("safetensors")

from hub_cache import commit_of, put_in_cache  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import simexplain  # noqa: E402
from simexplain import SimexplainError, load_model  # noqa: E402
from simexplain.models.timm_networks import timm_layer_and_layout  # noqa: E402


def released(name: str, folder) -> tuple[torch.nn.Module, object]:
    """A random-weight timm model (head included, as timm publishes it) and its safetensors file."""
    torch.manual_seed(0)
    network = timm.create_model(name, num_classes=1000).eval()
    path = folder / "model.safetensors"
    save_file(network.state_dict(), path)
    return network, path


def pooled(network: torch.nn.Module) -> torch.nn.Module:
    network.reset_classifier(0)
    return network


def test_pretrained_weights_through_a_file_overlay_with_timm_preprocessing(tmp_path):
    network, path = released("test_vit2", tmp_path)  # no class token, one register token, mean pooling
    model = load_model("timm:test_vit2.r160_in1k", pretrained_cfg_overlay={"file": str(path)})
    x = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), pooled(network)(x), rtol=0, atol=1e-6)
    layout = model.token_layout
    assert (layout.patch_size, layout.prefix_tokens, layout.register_tokens) == (16, 0, 1)
    assert model.layer == f"blocks.{len(network.blocks) - 1}"  # mean pooling reads every token
    _, a1, _, g1, _ = model.activations_and_gradients(x[:1], x[1:])
    assert a1.shape == (1, 64, 10, 10) and g1.abs().sum() > 0
    assert model.provenance["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model.encoder))
    rng = np.random.default_rng(0)
    for width, height in [(201, 170), (170, 260), (99, 99)]:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        ours = simexplain.images.load_image(image, model)[0]
        torch.testing.assert_close(ours, transform(image), rtol=0, atol=1e-5)
    small = load_model("timm:test_vit2.r160_in1k", pretrained_cfg_overlay={"file": str(path)}, input_size=64)
    assert small.preprocessing.input_size == (64, 64) and small.preprocessing.resize == int(64 / 0.95)


def test_pretrained_weights_from_the_hub_cache_record_their_commit(tmp_path, monkeypatch):
    (tmp_path / "release").mkdir()
    network, path = released("test_vit", tmp_path / "release")
    put_in_cache(tmp_path / "home" / "hub", "timm/test_vit.r160_in1k", tmp_path / "release")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model("timm:test_vit.r160_in1k")
    assert model.provenance == {
        "source": "timm:test_vit.r160_in1k",
        "repository": "timm/test_vit.r160_in1k",
        "revision": commit_of("timm/test_vit.r160_in1k"),
        "files": ["model.safetensors"],
        "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    assert model.layer == f"blocks.{len(network.blocks) - 2}"  # a class-token ViT: the block before last
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), pooled(network)(x), rtol=0, atol=1e-6)


def one_line(call) -> str:
    with pytest.raises(SimexplainError) as caught:
        call()
    assert "\n" not in str(caught.value), caught.value
    return str(caught.value)


def test_not_cached_a_pickle_with_code_and_an_unknown_tag_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = one_line(lambda: load_model("timm:test_vit.r160_in1k"))
    assert "timm:test_vit.r160_in1k" in message and str(tmp_path / "empty" / "hub") in message
    assert "hf download timm/test_vit.r160_in1k model.safetensors" in message
    whole = tmp_path / "whole.pth"
    torch.save(timm.create_model("test_vit"), whole)  # a pickled module: code, not plain tensors
    assert "refused" in one_line(
        lambda: load_model("timm:test_vit.r160_in1k", pretrained_cfg_overlay={"file": str(whole)})
    )
    assert "tags: test_vit.r160_in1k" in one_line(lambda: load_model("timm:test_vit.nope"))


def test_register_tokens_of_a_timm_vit_are_left_out_of_the_grid():
    network = timm.create_model(
        "vit_small_patch14_reg4_dinov2", img_size=56, embed_dim=32, depth=2, num_heads=2, num_classes=0
    )
    layer, layout = timm_layer_and_layout(network)
    assert layer == "blocks.0" and (layout.prefix_tokens, layout.register_tokens) == (1, 4)
    model = simexplain.PairModel(network, layer=layer, token_layout=layout)
    _, a1, _, _, _ = model.activations_and_gradients(torch.rand(1, 3, 56, 56), torch.rand(1, 3, 56, 56))
    assert a1.shape == (1, 32, 4, 4)
    with torch.no_grad():
        tokens = network.forward_features(torch.rand(1, 3, 56, 56))
    assert tokens.shape[1] == 1 + 4 + 16
