"""open_clip:ARCH/PRETRAINED offline: a tiny architecture in a local file, open_clip's own calls as truth."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

open_clip = pytest.importorskip("open_clip")

import simexplain  # noqa: E402
from simexplain import SimexplainError, load_model  # noqa: E402

ARCH = "simexplain-tiny-vit"
CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The tiny architecture registered with open_clip and its random weights as a safetensors file."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("open_clip")
    (folder / f"{ARCH}.json").write_text(json.dumps(CONFIG))
    open_clip.add_model_config(folder / f"{ARCH}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(ARCH)
    path = folder / "tiny.safetensors"
    save_file(model.state_dict(), path)
    return path


def test_the_image_tower_embeds_encode_image(weights):
    model = load_model(f"open_clip:{ARCH}/{weights}")
    reference, _, preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=str(weights))
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), reference.encode_image(x), rtol=0, atol=1e-6)
    assert model.provenance["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert model.provenance["revision"] is None and model.provenance["files"] == ["tiny.safetensors"]
    rng = np.random.default_rng(0)
    for width, height in [(61, 45), (45, 80), (33, 20)]:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        ours = simexplain.images.load_image(image, model)[0]
        torch.testing.assert_close(ours, preprocess(image), rtol=0, atol=1e-5)


def test_the_cam_layer_is_the_block_before_the_last_on_the_patch_grid(weights):
    model = load_model(f"open_clip:{ARCH}/{weights}")
    assert model.layer == "transformer.resblocks.0"  # two blocks; the class token is pooled
    assert (model.token_layout.patch_size, model.token_layout.leading_tokens) == (8, 1)
    x1, x2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    _, a1, _, g1, _ = model.activations_and_gradients(x1, x2)
    assert a1.shape == g1.shape == (1, 32, 4, 4) and g1.abs().sum() > 0
    e = simexplain.explain(model, x1, x2, "interaction-cam")
    assert e.grid1.shape == (1, 4, 4) and torch.isfinite(e.map1).all()
    bigger = load_model(f"open_clip:{ARCH}/{weights}", input_size=48)  # position embedding resampled
    assert bigger.preprocessing.input_size == (48, 48)
    assert bigger.embed(torch.rand(1, 3, 48, 48)).shape == (1, 16)


def one_line(call) -> str:
    with pytest.raises(SimexplainError) as caught:
        call()
    assert "\n" not in str(caught.value), caught.value
    return str(caught.value)


def test_a_pickle_holding_code_a_tag_not_cached_and_bad_names_are_one_line(weights, tmp_path, monkeypatch):
    pickled = tmp_path / "whole.pt"
    torch.save(open_clip.create_model(ARCH), pickled)  # a pickled module, not plain tensors
    assert "refused" in one_line(lambda: load_model(f"open_clip:{ARCH}/{pickled}"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = one_line(lambda: load_model("open_clip:ViT-B-32/laion2b_s34b_b79k"))
    assert str(tmp_path / "empty" / "hub") in message
    assert "hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K open_clip_model.safetensors" in message
    assert "tags:" in one_line(lambda: load_model("open_clip:ViT-B-32/no-such-tag"))
    assert "did you mean ViT-B-32" in one_line(lambda: load_model("open_clip:ViT-B-23/x"))
    assert "use open_clip:ARCH/PRETRAINED" in one_line(lambda: load_model("open_clip:ViT-B-32"))
