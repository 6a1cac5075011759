"""hf:ORG/NAME models offline: tiny random-weight models in a temporary Hugging Face cache (hub_cache.py).

Embeddings are checked against the library's own call, preprocessing against the repository's own image
processor, CAM grids against the patch grid with the register tokens left out.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("transformers")

from hub_cache import commit_of, put_in_cache, save_repo, tiny_models  # noqa: E402
from tiny import assert_same_state, explain_every_method, model_state  # noqa: E402

import simexplain  # noqa: E402
from simexplain import SimexplainError, load_model  # noqa: E402

EVERY_METHOD = [
    "simexplain-tests/dinov2-reg",
    "simexplain-tests/clip",
    "simexplain-tests/siglip",
    "simexplain-tests/convnext",
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A hub cache holding the tiny models, with HF_HOME pointing at it and the hub offline."""
    home = tmp_path_factory.mktemp("hf-home")
    references = tiny_models()
    for repo, (model, processor) in references.items():
        save_repo(home / "hub", repo, model, processor)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(home))
        patch.delenv("HF_HUB_CACHE", raising=False)
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield home, references


def images(model, count: int = 2, seed: int = 0) -> torch.Tensor:
    size = model.preprocessing.input_size
    return torch.rand(count, 3, *size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- embeddings
def test_dinov2_with_registers_embeds_the_class_token_and_the_patch_mean_without_registers(hub):
    _, references = hub
    reference = references["simexplain-tests/dinov2-reg"][0]
    model = load_model("hf:simexplain-tests/dinov2-reg")
    x = images(model)
    with torch.no_grad():
        out = reference(pixel_values=x)
        torch.testing.assert_close(model.embed(x), out.pooler_output, rtol=0, atol=0)
        patches = out.last_hidden_state[:, 1 + 4 :].mean(1)  # after the class token and 4 registers
        mean = load_model("hf:simexplain-tests/dinov2-reg", embedding="mean-patch")
        torch.testing.assert_close(mean.embed(x), patches, rtol=0, atol=0)
        both = load_model("hf:simexplain-tests/dinov2-reg", embedding="cls+mean")
        torch.testing.assert_close(both.embed(x), torch.cat([out.pooler_output, patches], 1), rtol=0, atol=0)
    layout = model.token_layout
    assert (layout.patch_size, layout.prefix_tokens, layout.register_tokens) == (14, 1, 4)


def test_clip_embeds_get_image_features_and_siglip_convnext_their_pooled_output(hub):
    _, references = hub
    for repo, call in [
        ("simexplain-tests/clip", lambda m, x: m.get_image_features(pixel_values=x).pooler_output),
        ("simexplain-tests/siglip", lambda m, x: m(pixel_values=x).pooler_output),
        ("simexplain-tests/convnext", lambda m, x: m(pixel_values=x).pooler_output),
        ("simexplain-tests/dinov2", lambda m, x: m(pixel_values=x).pooler_output),
        ("simexplain-tests/dinov3", lambda m, x: m(pixel_values=x).pooler_output),
        ("simexplain-tests/siglip-full", lambda m, x: m.get_image_features(pixel_values=x).pooler_output),
    ]:
        model = load_model(f"hf:{repo}")
        x = images(model, 3)
        with torch.no_grad():
            torch.testing.assert_close(model.embed(x), call(references[repo][0], x), rtol=0, atol=1e-6)


def test_other_input_sizes_interpolate_positions_and_keep_the_grid(hub):
    model = load_model("hf:simexplain-tests/dinov2-reg", input_size=(70, 42))
    assert model.preprocessing.input_size == (70, 42)
    assert model.preprocessing.resize == round(64 * 42 / 56)  # the repository's resize, in proportion
    x1, x2 = images(model, 1, 1), images(model, 1, 2)
    _, a1, a2, g1, _ = model.activations_and_gradients(x1, x2)
    assert a1.shape == g1.shape == (1, 32, 5, 3)  # 70 // 14, 42 // 14
    clip = load_model("hf:simexplain-tests/clip", input_size=48)
    _, a1, _, _, _ = clip.activations_and_gradients(images(clip, 1, 1), images(clip, 1, 2))
    assert a1.shape == (1, 32, 6, 6)


# ---------------------------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize(
    "repo",
    [*EVERY_METHOD, "simexplain-tests/dinov2", "simexplain-tests/dinov3", "simexplain-tests/siglip-full"],
)
def test_preprocessing_of_a_pil_image_equals_the_repository_processor(hub, repo):
    _, references = hub
    processor = references[repo][1]
    model = load_model(f"hf:{repo}")
    rng = np.random.default_rng(0)
    for width, height in [(61, 45), (45, 80), (90, 90), (33, 20)]:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        theirs = processor(images=image, return_tensors="pt")["pixel_values"][0]
        ours = simexplain.images.load_image(image, model)[0]
        assert ours.shape == theirs.shape, (width, height)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- layers
def test_the_cam_grid_is_the_patch_grid_without_class_and_register_tokens(hub):
    _, references = hub
    reference = references["simexplain-tests/dinov2-reg"][0]
    model = load_model("hf:simexplain-tests/dinov2-reg")
    # Two blocks; the class token is compared, so the default layer is the block before the last.
    assert model.layer == "model.encoder.layer.0"
    x1, x2 = images(model, 2, 1), images(model, 2, 2)
    captured = []
    handle = reference.encoder.layer[0].register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        reference(pixel_values=x1)
    handle.remove()
    tokens = captured[0]
    assert tokens.shape == (2, 1 + 4 + 16, 32)
    _, a1, _, g1, _ = model.activations_and_gradients(x1, x2)
    expected = tokens[:, 5:].transpose(1, 2).reshape(2, 32, 4, 4)
    torch.testing.assert_close(a1, expected, rtol=0, atol=1e-6)
    assert g1.abs().sum() > 0  # the class token read after the last block reaches these patches


def test_default_layers_follow_what_the_embedding_reads(hub):
    layers = {
        ("simexplain-tests/dinov2-reg", None): "model.encoder.layer.0",
        ("simexplain-tests/dinov2-reg", "mean-patch"): "model.encoder.layer.1",
        ("simexplain-tests/clip", None): "model.encoder.layers.0",
        ("simexplain-tests/siglip", None): "model.encoder.layers.1",  # attention pooling reads every token
        ("simexplain-tests/convnext", None): "model.encoder.stages.1",
        ("simexplain-tests/dinov3", None): "model.model.layer.0",
        ("simexplain-tests/siglip-full", None): "model.encoder.layers.1",
    }
    for (repo, embedding), layer in layers.items():
        options = {"embedding": embedding} if embedding else {}
        assert load_model(f"hf:{repo}", **options).layer == layer, (repo, embedding)
    dinov3 = load_model("hf:simexplain-tests/dinov3")
    assert (dinov3.token_layout.prefix_tokens, dinov3.token_layout.register_tokens) == (1, 4)
    assert dinov3.preprocessing.backend == "float"  # its processor scales to [0, 1] before resizing
    _, a1, _, _, _ = dinov3.activations_and_gradients(images(dinov3, 1, 1), images(dinov3, 1, 2))
    assert a1.shape == (1, 32, 4, 4)
    convnext = load_model("hf:simexplain-tests/convnext")
    assert convnext.token_layout is None
    _, a1, _, _, _ = convnext.activations_and_gradients(images(convnext, 1, 1), images(convnext, 1, 2))
    assert a1.shape == (1, 16, 4, 4)  # 32 / 4 (the stem) / 2 (the second stage)


# ---------------------------------------------------------------------------------------------- every method
SMALL = {"window": 16, "stride": 16, "samples": 2, "steps": 2, "projection": 8}


@pytest.mark.parametrize("repo", EVERY_METHOD)
def test_every_method_runs_and_conserves_what_it_promises(hub, repo):
    model = load_model(f"hf:{repo}")
    x1, x2 = images(model, 1, 1), images(model, 1, 2)
    before = model_state(model)
    assert (x1.shape[-2:], x2.shape[-2:]) == (model.preprocessing.input_size,) * 2
    for method, e in explain_every_method(model, x1, x2, SMALL):
        if method == "deep-similarity":  # the grids sum to the cosine of the pooled layer features
            _, a1, a2, _, _ = model.activations_and_gradients(x1, x2, gradients=False)
            pooled = torch.cosine_similarity(a1.mean((2, 3)), a2.mean((2, 3)))
            torch.testing.assert_close(e.grid1.flatten(1).sum(1), pooled, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(e.grid2.flatten(1).sum(1), pooled, rtol=1e-4, atol=1e-5)
        if method == "pair-interaction":
            assert e.interaction.shape[1:3] == e.grid1.shape[1:3]
    assert_same_state(before, model_state(model))


# ---------------------------------------------------------------------------------------------- provenance
def test_provenance_records_the_commit_and_the_weights_sha256(hub):
    home, _ = hub
    model = load_model("hf:simexplain-tests/clip")
    snapshot = (
        home / "hub" / "models--simexplain-tests--clip" / "snapshots" / commit_of("simexplain-tests/clip")
    )
    digest = hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    assert model.provenance == {
        "source": "hf:simexplain-tests/clip",
        "repository": "simexplain-tests/clip",
        "revision": commit_of("simexplain-tests/clip"),
        "files": ["model.safetensors"],
        "weights_sha256": digest,
    }
    pinned = load_model(f"hf:simexplain-tests/clip@{commit_of('simexplain-tests/clip')}")
    assert pinned.provenance["revision"] == model.provenance["revision"]
    assert pinned.name == f"hf:simexplain-tests/clip@{commit_of('simexplain-tests/clip')}"


# ---------------------------------------------------------------------------------------------- refusals
def one_line(call) -> str:
    with pytest.raises(SimexplainError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_a_model_neither_cached_nor_reachable_is_one_line_with_the_download_command(hub):
    home, _ = hub
    message = one_line(lambda: load_model("hf:simexplain-tests/absent@v2"))
    assert "hf:simexplain-tests/absent@v2" in message and str(home / "hub") in message
    assert "HF_HUB_OFFLINE" in message and "hf download simexplain-tests/absent --revision v2" in message


def test_pickle_weights_remote_code_and_bad_names_are_refused_in_one_line(hub, tmp_path):
    home, references = hub
    model = references["simexplain-tests/dinov2"][0]
    folder = tmp_path / "pickle"
    folder.mkdir()
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    put_in_cache(home / "hub", "simexplain-tests/pickled", folder)
    assert "only pickle weights (pytorch_model.bin)" in one_line(
        lambda: load_model("hf:simexplain-tests/pickled")
    )

    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "config.json").write_text(
        json.dumps({"model_type": "evil", "auto_map": {"AutoModel": "x.Evil"}})
    )
    put_in_cache(home / "hub", "simexplain-tests/custom", custom)
    assert "custom code is never run" in one_line(lambda: load_model("hf:simexplain-tests/custom"))

    assert "use hf:ORG/NAME" in one_line(lambda: load_model("hf:no-slash"))
    assert "drop weights=" in one_line(lambda: load_model("hf:simexplain-tests/clip", weights="x.pth"))
    message = one_line(lambda: load_model("hf:simexplain-tests/siglip", embedding="cls"))
    assert "SigLIP" in message and "pooler, mean-patch, mean" in message


def test_a_vit_classification_checkpoint_without_its_pooler_compares_class_tokens(hub, tmp_path):
    import transformers

    home, _ = hub
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    classifier = transformers.ViTForImageClassification(config).eval()
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    save_repo(home / "hub", "simexplain-tests/vit-classifier", classifier, processor)
    model = load_model("hf:simexplain-tests/vit-classifier")
    assert "class token" in model.description and model.layer == "model.layers.0"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        hidden = classifier.vit(pixel_values=x).last_hidden_state
        torch.testing.assert_close(model.embed(x), hidden[:, 0], rtol=0, atol=1e-6)
        assert model.embed(torch.rand(1, 3, 48, 40)).shape == (1, 32)  # positions interpolated
    assert "no pooler" in one_line(
        lambda: load_model("hf:simexplain-tests/vit-classifier", embedding="pooler")
    )
