"""Image–text pairs from the hub, offline: tiny random CLIP and SigLIP (hf:) with a tiny tokenizer in a
temporary Hugging Face cache, and a tiny open_clip model; the libraries' own calls are the truth."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
open_clip = pytest.importorskip("open_clip")

from hub_cache import TINY_VIT, put_in_cache  # noqa: E402

import simexplain  # noqa: E402
from simexplain import SimexplainError, load_model  # noqa: E402
from simexplain.methods import image_text_methods  # noqa: E402

WORDS = "a an the cat dog sofa on in photo of red blue car".split()
TEXT = {**TINY_VIT, "num_hidden_layers": 2, "vocab_size": 99, "max_position_embeddings": 16}
TEXT.update(bos_token_id=0, eos_token_id=1, pad_token_id=1)
VISION = {**TINY_VIT, "image_size": 32, "patch_size": 8}
CAPTIONS = ["a cat on the sofa.", "a red car"]


def tiny_tokenizer():
    """A word-level fast tokenizer over a few words, start and end tokens around every text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<unk>": 2, ",": 3, ".": 4}
    vocab.update({w: 5 + i for i, w in enumerate(WORDS)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        model_max_length=16,
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """CLIP and SigLIP (full models, with the tokenizer) in a temporary offline hub cache."""
    t = transformers
    home = tmp_path_factory.mktemp("hf-home")
    torch.manual_seed(0)
    repos = {
        "simexplain-tests/clip-text": (
            t.CLIPModel(t.CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)),
            t.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        ),
        "simexplain-tests/siglip-text": (
            t.SiglipModel(t.SiglipConfig(text_config=TEXT, vision_config=VISION)),
            t.SiglipImageProcessor(size={"height": 32, "width": 32}),
        ),
        "simexplain-tests/siglip-vision": (
            t.SiglipVisionModel(t.SiglipVisionConfig(**VISION)),
            t.SiglipImageProcessor(size={"height": 32, "width": 32}),
        ),
    }
    for repo, (model, processor) in repos.items():
        with tempfile.TemporaryDirectory() as folder:
            model.eval().save_pretrained(folder)
            processor.save_pretrained(folder)
            tiny_tokenizer().save_pretrained(folder)
            put_in_cache(home / "hub", repo, Path(folder))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(home))
        patch.delenv("HF_HUB_CACHE", raising=False)
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield {repo: model for repo, (model, _) in repos.items()}


def images(count: int = 2) -> torch.Tensor:
    return torch.rand(count, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_clip_and_siglip_score_what_the_library_scores(hub):
    tokenizer = tiny_tokenizer()
    x = images()
    for repo in ("simexplain-tests/clip-text", "simexplain-tests/siglip-text"):
        model = load_model(f"hf:{repo}", pair="image-text")
        reference = hub[repo]
        if "siglip" in repo:  # padded to its context, which it attends to, as trained
            inputs = tokenizer(CAPTIONS, padding="max_length", max_length=16, return_tensors="pt")
            inputs.pop("attention_mask")
        else:
            inputs = tokenizer(CAPTIONS, padding=True, return_tensors="pt")
        with torch.no_grad():
            expected = reference(pixel_values=x, **inputs).logits_per_image.diagonal()
            tokens = model.text_tower.tokenize(CAPTIONS)
            torch.testing.assert_close(model(x, tokens), expected, rtol=1e-5, atol=1e-5)
        assert tokens.words[0] == ["a", "cat", "on", "the", "sofa", "."]
        assert model.text_tower.layer == "encoder.text_model.encoder.layers.0"  # the block before the last


def test_every_image_text_method_runs_on_clip_and_siglip_with_zero_padding(hub):
    for repo in ("simexplain-tests/clip-text", "simexplain-tests/siglip-text"):
        model = load_model(f"hf:{repo}", pair="image-text")
        x = images()
        for method in image_text_methods():
            params = {"seed": 0} if "seed" in simexplain.methods.get(method).parameters() else {}
            if method == "smooth-grad":
                params["samples"] = 4
            if method == "conditional-occlusion":
                params.update(window=16, stride=8)
            e = simexplain.explain(model, x, CAPTIONS, method, **params)
            assert len(e) == 2 and torch.isfinite(e.score).all(), method
            if e.map1 is not None:
                assert e.map1.shape == (2, 32, 32) and torch.isfinite(e.map1).all(), method
            if e.token_scores is not None:
                assert torch.isfinite(e.token_scores).all(), method
                outside = ~e.tokens.word_mask()  # padding and the start and end tokens
                assert (e.token_scores[outside] == 0).all(), method
                assert [len(s) for s in e.word_scores] == [6, 3], method


def test_open_clip_with_its_text_tower_scores_what_open_clip_scores(tmp_path):
    from safetensors.torch import save_file

    arch = "simexplain-tiny-clip-text"
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2},
    }
    (tmp_path / f"{arch}.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / f"{arch}.json")
    torch.manual_seed(0)
    reference = open_clip.create_model(arch).eval()
    save_file(reference.state_dict(), tmp_path / "tiny.safetensors")
    model = load_model(f"open_clip:{arch}/{tmp_path / 'tiny.safetensors'}", pair="image-text")
    x = images()
    with torch.no_grad():
        text = open_clip.get_tokenizer(arch)(CAPTIONS)
        image_z, text_z = reference.encode_image(x), reference.encode_text(text)
        cos = torch.nn.functional.cosine_similarity(image_z, text_z)
        tokens = model.text_tower.tokenize(CAPTIONS)
        torch.testing.assert_close(model(x, tokens), reference.logit_scale.exp() * cos, rtol=1e-5, atol=1e-5)
    assert tokens.words == [["a", "cat", "on", "the", "sofa", "."], ["a", "red", "car"]]
    e = simexplain.explain(model, x, CAPTIONS, "pair-interaction")
    assert e.interaction.shape == (2, 4, 4, 12)  # patches × the context's tokens
    assert e.match(word="sofa").shape == (2, 32, 32)
    with pytest.raises(SimexplainError, match="the tokenizer's context holds 12"):
        simexplain.explain(model, x[:1], ["a cat " * 12], "input-x-gradient")


def test_a_vision_tower_alone_is_refused_for_image_text_in_one_line(hub):
    with pytest.raises(SimexplainError) as caught:
        load_model("hf:simexplain-tests/siglip-vision", pair="image-text")
    assert "has no text tower" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(SimexplainError, match="pair must be one of image, image-text"):
        load_model("hf:simexplain-tests/clip-text", pair="text")
