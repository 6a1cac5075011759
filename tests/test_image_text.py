"""Image–text pairs on analytic towers: a bag-of-words linear text encoder and a linear patch encoder, whose
word scores and patch–token matrix have closed forms; batched equals one by one; padding scores zero; the
image side equals the image-pair methods against a tower that returns the text's embedding; one-line
errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import simexplain
from simexplain import PairModel, SimexplainError
from simexplain.methods import image_text_methods
from simexplain.methods.cam import reduce_activation
from simexplain.pair import dot
from simexplain.text import BagOfWords

VOCAB = {w: i + 3 for i, w in enumerate("a cat on the sofa dog red car photo of".split())}


def bag_of_words() -> BagOfWords:
    """``g = P · Σ_t mask_t · E[ids_t]``: linear in the token embeddings, bias-free."""
    torch.manual_seed(0)
    return BagOfWords(vocab_size=16, width=6, dim=5)


def tokenizer(specials: bool):
    """Word ids from VOCAB, padded with 0; with ``specials``, 1 before and 2 after every text."""

    def call(texts: list[str]) -> dict:
        rows = [[VOCAB[w] for w in t.split()] for t in texts]
        words = [list(range(len(r))) for r in rows]
        if specials:
            rows = [[1, *r, 2] for r in rows]
            words = [[None, *w, None] for w in words]
        width = max(map(len, rows))
        return {
            "input_ids": [r + [0] * (width - len(r)) for r in rows],
            "attention_mask": [[1] * len(r) + [0] * (width - len(r)) for r in rows],
            "word_ids": [w + [None] * (width - len(w)) for w in words],
        }

    return call


def patch_encoder(dim: int = 5) -> nn.Module:
    """Linear 4×4 patches, bias-free, mean-pooled: ``f = mean_p W·x_p``."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, dim, 4, stride=4, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def model_with(similarity="dot", specials: bool = False, **options) -> PairModel:
    options = {"similarity": similarity} if similarity == "dot" else options
    return PairModel.image_text(
        patch_encoder(), bag_of_words(), tokenizer(specials), layer="0", text_layer="embedding", **options
    )


def pictures(count: int = 3) -> torch.Tensor:
    return torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(2))


TEXTS = ["a cat on the sofa", "a red car", "a dog"]


def closed_form(model: PairModel, x: torch.Tensor, texts: list[str]):
    """``f`` (B×D), the per-token ``P·E_t`` (B×T×D), patch activations ``A`` (B×D×P) and the word mask."""
    tokens = model.text_tower.tokenize(texts)
    with torch.no_grad():
        activations = model.encoder[0](x).flatten(2)
        f = activations.mean(2)
        text = model.text_tower.encoder
        per_token = text.projection(text.embedding(tokens.input_ids)) * tokens.attention_mask[..., None]
    return f, per_token, activations, tokens


def test_word_scores_and_the_patch_token_matrix_equal_their_closed_forms():
    model = model_with(specials=True)
    x = pictures()
    f, per_token, activations, tokens = closed_form(model, x, TEXTS)
    contribution = (per_token * f[:, None]).sum(-1) * tokens.word_mask()  # ⟨f, P·E_t⟩ per word token
    for method in ("input-x-gradient", "integrated-gradients"):
        e = simexplain.explain(model, x, TEXTS, method)
        torch.testing.assert_close(e.token_scores, contribution, rtol=1e-5, atol=1e-6)
    leave_out = simexplain.explain(model, x, TEXTS, "word-occlusion")
    torch.testing.assert_close(torch.cat(leave_out.word_scores), torch.cat(tokens.merge(contribution)))
    only = simexplain.explain(model, x, TEXTS, "word-occlusion", mode="only")
    specials = ((per_token * f[:, None]).sum(-1) * ~tokens.word_mask() * tokens.attention_mask).sum(1)
    expected = [w + s for w, s in zip(tokens.merge(contribution), specials)]  # the word and the specials
    torch.testing.assert_close(torch.cat(only.word_scores), torch.cat(expected))
    pair = simexplain.explain(model, x, TEXTS, "pair-interaction")
    patches = activations / activations.shape[2]  # R_m(x)[p] = A[m,p]/P for a mean-pooled linear layer
    matrix = torch.einsum("bmp,btm->bpt", patches, per_token) * tokens.word_mask()[:, None]
    torch.testing.assert_close(pair.interaction.flatten(1, 2), matrix, rtol=1e-5, atol=1e-6)


def test_the_text_interaction_cam_is_the_cam_rule_over_the_text_tokens():
    model = model_with(specials=True)
    x = pictures()
    f, _, _, tokens = closed_form(model, x, TEXTS)
    e = simexplain.explain(model, x, TEXTS, "interaction-cam", reduction="max")
    text = model.text_tower.encoder
    gradient = f @ text.projection.weight  # ∂⟨f, P·ΣE⟩/∂E_t, the same for every token
    for b in range(len(TEXTS)):
        kept = tokens.attention_mask[b].bool()
        a = text.embedding(tokens.input_ids[b, kept]).detach()  # T×width
        joint = reduce_activation(a.T[None, :, None, :], "max")[0]
        expected = (a * joint * gradient[b].clamp_min(0)).sum(1) * tokens.word_mask()[b, kept]
        torch.testing.assert_close(e.token_scores[b, kept], expected, rtol=1e-5, atol=1e-6)


def test_for_bias_free_homogeneous_towers_the_matrix_sums_to_the_score():
    model = model_with("scaled", logit_scale=7.0)  # 7·cos: the model's own score, no bias
    e = simexplain.explain(model, pictures(), TEXTS, "pair-interaction")
    torch.testing.assert_close(e.interaction.flatten(1).sum(1), e.score, rtol=1e-5, atol=1e-5)
    assert e.extras["residual"].abs().max() < 1e-5
    biased = model_with("scaled", logit_scale=7.0, logit_bias=-2.0)
    e = simexplain.explain(biased, pictures(), TEXTS, "pair-interaction")
    torch.testing.assert_close(e.extras["residual"], torch.full((3,), 0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(e.interaction.flatten(1).sum(1) - 2.0, e.score, rtol=1e-5, atol=1e-5)


def settings(method: str) -> dict:
    known = simexplain.methods.get(method).parameters()
    params = {"seed": 3} if "seed" in known else {}
    params.update(
        {"smooth-grad": {"samples": 3}, "conditional-occlusion": {"window": 8, "stride": 4}}.get(method, {})
    )
    if method == "averaged-transforms":
        params.update(steps=3, noise=True)
    if "batch_size" in known:
        params["batch_size"] = 2  # chunks that cut across pairs
    return params


@pytest.mark.parametrize("method", image_text_methods())
def test_batched_equals_one_pair_at_a_time_and_padding_scores_zero(method):
    model = model_with("scaled", specials=True, logit_scale=5.0)
    x = pictures()
    texts = [TEXTS[0], TEXTS[1], TEXTS[0]]  # two pairs share a text: one image-side call for both
    together = simexplain.explain(model, x, texts, method, **settings(method))
    for i in range(len(texts)):
        alone = simexplain.explain(model, x[i : i + 1], texts[i : i + 1], method, **settings(method))
        torch.testing.assert_close(together.score[i : i + 1], alone.score, rtol=1e-5, atol=1e-6)
        if together.map1 is not None:
            torch.testing.assert_close(together.map1[i : i + 1], alone.map1, rtol=1e-5, atol=1e-6)
        if together.token_scores is not None:
            length = alone.tokens.length
            torch.testing.assert_close(together.token_scores[i : i + 1, :length], alone.token_scores)
            assert (together.token_scores[i, length:] == 0).all()  # padding
            assert (together.token_scores[i][~together.tokens.word_mask()[i]] == 0).all()  # specials
            torch.testing.assert_close(together.word_scores[i], alone.word_scores[0])
    assert together[1].tokens.texts == [texts[1]] and together.config == alone.config


class ReturnsText(nn.Module):
    """An image tower that returns the same embedding for every image; its layer is its output, without
    channels."""

    def __init__(self, embedding: torch.Tensor) -> None:
        super().__init__()
        self.embedding = embedding
        self.layer = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = x.sum((1, 2, 3))[:, None] * 0  # x stays in the graph; its gradient is zero
        return self.embedding.expand(len(x), -1) + kept + self.layer(x[:, :0, :1, :1]).sum((1, 2, 3))[:, None]


@pytest.mark.parametrize(
    "method",
    ["input-x-gradient", "smooth-grad", "averaged-transforms", "conditional-occlusion", "pair-grad-cam"],
)
def test_the_image_side_equals_the_image_pair_method_against_a_tower_returning_the_text_embedding(method):
    model = model_with("scaled", specials=True, logit_scale=5.0)
    x = pictures(1)
    with torch.no_grad():
        text = model.embed(model.text_tower.tokenize([TEXTS[0]]), "b")
    image_pair = PairModel(
        ReturnsText(text),
        encoder_b=model.encoder,
        similarity=lambda z_text, z_image: model.similarity(z_image, z_text),
        layer="layer",
        layer_b="0",
    )
    e = simexplain.explain(model, x, [TEXTS[0]], method, **settings(method))
    reference = simexplain.explain(image_pair, x, x, method, **settings(method))
    torch.testing.assert_close(e.map1, reference.map2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(e.score, reference.score, rtol=1e-5, atol=1e-6)
    if method == "averaged-transforms":
        torch.testing.assert_close(e.image1, reference.image2)  # the path ran on the image


def test_the_image_interaction_cam_weights_channels_by_the_image_activation_alone():
    model = model_with("scaled", logit_scale=5.0)
    x = pictures(2)
    e = simexplain.explain(model, x, TEXTS[:2], "interaction-cam")
    with torch.no_grad():
        text = model.embed(model.text_tower.tokenize(TEXTS[:2]), "b")
    a = model.encoder[0](x).detach().requires_grad_(True)
    score = model.similarity(model.encoder[2](model.encoder[1](a)), text)
    (g,) = torch.autograd.grad(score.sum(), a)
    joint = a.detach().mean((2, 3))[:, :, None, None]  # r(A) of the image: the text has no activation here
    expected = (a.detach() * joint * g.clamp_min(0)).sum(1)
    torch.testing.assert_close(e.grid1, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(SimexplainError, match="gradient_interaction=False"):
        simexplain.explain(model, x, TEXTS[:2], "interaction-cam", gradient_interaction=True)


def test_deleting_a_word_the_caption_does_not_contain_leaves_the_score_unchanged():
    model = model_with("scaled", specials=True, logit_scale=5.0)
    tokens = model.text_tower.tokenize(TEXTS)
    x = pictures()
    with torch.no_grad():
        score = model(x, tokens)
        absent = tokens.without([[7], [3], [9]])  # word indices no text has
        torch.testing.assert_close(model(x, absent), score, rtol=0, atol=0)
        shorter = tokens.without([[1], [], []])  # "cat" out of the first text only
        changed = model(x, shorter)
    assert changed[0] != score[0] and torch.equal(changed[1:], score[1:])
    assert shorter.words[0] == tokens.words[0] and shorter.word_ids[0][:5] == [None, 0, 2, 3, 4]


def one_line(call) -> str:
    with pytest.raises(SimexplainError) as caught:
        call()
    assert "\n" not in str(caught.value), caught.value
    return str(caught.value)


def test_bad_input_is_one_line_each():
    model = model_with("scaled", specials=True)
    x = pictures(1)
    assert one_line(lambda: simexplain.explain(model, x, [""])) == "text 1 is empty"
    short = PairModel.image_text(patch_encoder(), bag_of_words(), tokenizer(True), context_length=4)
    assert "text 1 has 7 tokens; the tokenizer's context holds 4" in one_line(
        lambda: simexplain.explain(short, x, ["a cat on the sofa"])
    )
    image_only = PairModel(patch_encoder(), layer="0")
    assert "has no text tower" in one_line(lambda: simexplain.explain(image_only, x, ["a cat"]))
    assert "has no text tower" in one_line(lambda: simexplain.explain(image_only, x, x, "word-occlusion"))
    assert "no image–text form" in one_line(
        lambda: simexplain.explain(model, x, ["a cat"], "pairwise-occlusion")
    )
    assert "2 images and 1 texts" in one_line(lambda: simexplain.explain(model, pictures(2), ["a cat"]))
    assert "no text holds the word 'sofa'" in one_line(
        lambda: simexplain.explain(model, x, ["a cat"], "pair-interaction").match(word="sofa")
    )


def test_the_model_is_left_as_it_was():
    model = model_with("scaled", specials=True)
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    for method in image_text_methods():
        simexplain.explain(model, pictures(1), TEXTS[:1], method, **settings(method))
    assert all(m.training for m in model.modules()) and flags == [p.requires_grad for p in model.parameters()]
    assert not any(m._forward_hooks for m in model.modules())
    assert model.similarity is not dot
