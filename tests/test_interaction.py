"""pair-interaction: conservation, closed forms, a known correspondence, batching, encoders, ViT taps."""

import copy

import pytest
import torch
from tiny import assert_same_state, model_state
from torch import Tensor, nn

import simexplain
from simexplain import PairModel, SimexplainError, TokenLayout
from simexplain.methods.interaction import projection_matrix


def bias_free_relu_encoder(seed: int = 0) -> nn.Module:
    """Conv → ReLU (tap "1") → Conv → ReLU → mean pool → Linear → ReLU → Linear, no biases: homogeneous."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 12, bias=False),
        nn.ReLU(),
        nn.Linear(12, 5, bias=False),
    ).double()


def pooled_encoder(seed: int = 0) -> nn.Module:
    """The embedding is the mean-pooled tapped layer itself ("1")."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 7, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ).double()


def images(batch: int, size: int = 16, seed: int = 1) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(2, batch, 3, size, size, generator=generator, dtype=torch.float64)
    return x[0], x[1]


@pytest.mark.parametrize("layer", ["1", "3"])
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_interaction_sums_to_the_score_on_a_bias_free_relu_encoder(layer, similarity):
    model = PairModel(bias_free_relu_encoder(), layer=layer, similarity=similarity)
    x1, x2 = images(2)
    before = model_state(model)
    e = simexplain.explain(model, x1, x2, "pair-interaction")
    assert_same_state(before, model_state(model))
    assert torch.allclose(e.interaction.flatten(1).sum(1), e.score, atol=1e-5)
    assert e.extras["residual"].abs().max() < 1e-5
    # The maps are the interaction's marginals, so each sums to the score too.
    assert torch.allclose(e.grid1.flatten(1).sum(1), e.score, atol=1e-5)
    assert torch.allclose(e.grid2.flatten(1).sum(1), e.score, atol=1e-5)


def test_a_head_with_biases_reports_its_residual():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 5)).double()
    e = simexplain.explain(PairModel(encoder, layer="1"), *images(1), "pair-interaction")
    residual = e.extras["residual"]
    assert residual.abs().item() > 1e-3
    assert torch.allclose(e.interaction.sum() + residual, e.extras["explained_score"])
    assert torch.allclose(e.extras["explained_score"], e.score)


def test_mean_pooled_layer_as_embedding_gives_the_closed_form():
    model = PairModel(pooled_encoder(), layer="1")
    x1, _ = images(2, size=15)
    _, x2 = images(2, size=11)  # two sizes: P1 ≠ P2
    e = simexplain.explain(model, x1, x2, "pair-interaction")
    with torch.no_grad():
        a1, a2 = model.encoder[:2](x1), model.encoder[:2](x2)
    p1, p2 = a1.shape[2] * a1.shape[3], a2.shape[2] * a2.shape[3]
    f1, f2 = a1.mean((2, 3)), a2.mean((2, 3))
    expected = torch.einsum("bdp,bdq->bpq", a1.flatten(2), a2.flatten(2))
    expected = expected / (p1 * p2 * f1.norm(dim=1) * f2.norm(dim=1))[:, None, None]
    assert e.interaction.shape == (2, *a1.shape[2:], *a2.shape[2:])
    assert torch.allclose(e.interaction.flatten(1, 2).flatten(2), expected, atol=1e-10)


def test_match_of_a_cell_peaks_at_the_shifted_cell():
    # Patchify conv (4×4 cells), ReLU, mean pool, orthogonal head: exactly equivariant to whole-cell shifts.
    torch.manual_seed(0)
    head = nn.Linear(64, 64, bias=False)
    nn.init.orthogonal_(head.weight)
    encoder = nn.Sequential(
        nn.Conv2d(3, 64, 4, stride=4, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head
    )
    model = PairModel(encoder, layer="1")
    generator = torch.Generator().manual_seed(3)
    x1 = torch.randint(0, 2, (1, 3, 32, 32), generator=generator).float() * 2 - 1
    shift = (2, 3)  # cells
    x2 = torch.roll(x1, (4 * shift[0], 4 * shift[1]), dims=(2, 3))
    e = simexplain.explain(model, x1, x2, "pair-interaction")
    for cell in [(0, 0), (1, 5), (6, 2), (7, 7)]:
        pixel = (4 * cell[0] + 1, 4 * cell[1] + 2)
        grid_row = e.interaction[0, cell[0], cell[1]]
        peak = divmod(int(grid_row.argmax()), grid_row.shape[1])
        assert peak == ((cell[0] + shift[0]) % 8, (cell[1] + shift[1]) % 8)
        point_map = e.match(pixel, image=1)[0]
        y, x = divmod(int(point_map.argmax()), 32)
        assert (y // 4, x // 4) == peak
        # And back: the shifted cell of image 2 matches the cell of image 1.
        back = e.interaction[0, :, :, peak[0], peak[1]]
        assert divmod(int(back.argmax()), 8) == cell


def test_batched_equals_one_by_one_and_does_not_depend_on_batch_size():
    model = PairModel(bias_free_relu_encoder(), layer="3")
    x1, x2 = images(3)
    together = simexplain.explain(model, x1, x2, "pair-interaction", batch_size=2)
    wide = simexplain.explain(model, x1, x2, "pair-interaction", batch_size=64)
    assert torch.allclose(together.interaction, wide.interaction, atol=1e-12)
    for i in range(3):
        alone = simexplain.explain(model, x1[i : i + 1], x2[i : i + 1], "pair-interaction", batch_size=1)
        assert torch.allclose(alone.interaction, together[i].interaction, atol=1e-12)
        assert torch.allclose(alone.map1, together[i].map1, atol=1e-12)


def test_vectorised_backward_equals_one_dimension_at_a_time():
    model = PairModel(bias_free_relu_encoder(), layer="1")
    x1, x2 = images(1)
    e = simexplain.explain(model, x1, x2, "pair-interaction")
    encoder = model.encoder
    with torch.enable_grad():
        relevances = []
        for x in (x1, x2):
            a = encoder[:2](x).detach().requires_grad_(True)
            z = encoder[2:](a)[0]
            rows = [
                (torch.autograd.grad(z[m], a, retain_graph=True)[0] * a).sum(1).flatten() for m in range(5)
            ]
            relevances.append((torch.stack(rows), z.detach()))
    (r1, f1), (r2, f2) = relevances
    expected = (r1.T @ r2) / (f1.norm() * f2.norm())
    assert torch.allclose(e.interaction.flatten(1, 2).flatten(2)[0], expected, atol=1e-12)


def test_shared_equals_asymmetric_with_the_same_weights():
    encoder = bias_free_relu_encoder()
    shared = PairModel(encoder, layer="3")
    asymmetric = PairModel(encoder, encoder_b=copy.deepcopy(encoder), layer="3")
    x1, x2 = images(2)
    a = simexplain.explain(shared, x1, x2, "pair-interaction")
    b = simexplain.explain(asymmetric, x1, x2, "pair-interaction")
    assert torch.allclose(a.interaction, b.interaction, atol=1e-12)
    assert torch.allclose(a.map2, b.map2, atol=1e-12)


class TinyViT(nn.Module):
    """Patch embedding (4 px), a zero class token, one bias-free token MLP block, mean over tokens, a head."""

    def __init__(self, dim: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.patch = nn.Conv2d(3, dim, 4, stride=4, bias=False)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.block = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU())
        self.head = nn.Linear(dim, 5, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1)
        return self.head(self.block(tokens).mean(1))


def test_vit_taps_lay_tokens_on_the_patch_grid_and_conserve():
    model = PairModel(TinyViT(), layer="block", token_layout=TokenLayout(patch_size=4, prefix_tokens=1))
    x1 = torch.rand(2, 3, 16, 12)
    x2 = torch.rand(2, 3, 16, 12)
    e = simexplain.explain(model, x1, x2, "pair-interaction")
    assert e.interaction.shape == (2, 4, 3, 4, 3)
    assert e.map1.shape == (2, 16, 12)
    # A zero class token carries no relevance: the patches hold the whole score.
    assert torch.allclose(e.interaction.flatten(1).sum(1), e.score, atol=1e-5)


def test_timm_vit_block_is_tapped():
    timm = pytest.importorskip("timm")
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=0, depth=2
    )
    model = PairModel(vit, layer="blocks.1", token_layout=TokenLayout(8, vit.num_prefix_tokens))
    x1, x2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    e = simexplain.explain(model, x1, x2, "pair-interaction", projection=16, seed=0, batch_size=16)
    assert e.interaction.shape == (1, 4, 4, 4, 4)
    assert torch.isfinite(e.interaction).all()
    assert torch.allclose(e.interaction.sum() + e.extras["residual"], e.extras["explained_score"], atol=1e-5)


def test_projection_to_all_dimensions_with_an_orthogonal_matrix_equals_no_projection():
    model = PairModel(bias_free_relu_encoder(), layer="3")
    x1, x2 = images(2)
    plain = simexplain.explain(model, x1, x2, "pair-interaction")
    full = simexplain.explain(model, x1, x2, "pair-interaction", projection=5, seed=4)
    q = projection_matrix(5, 5, 4)
    assert torch.allclose(q @ q.T, torch.eye(5, dtype=q.dtype), atol=1e-12)
    assert torch.allclose(plain.interaction, full.interaction, atol=1e-10)
    assert full.config == {"layer": None, "projection": 5, "seed": 4}


def test_a_narrow_projection_explains_the_projected_score_and_records_its_seed():
    model = PairModel(bias_free_relu_encoder(), layer="3", similarity="dot")
    x1, x2 = images(1)
    e = simexplain.explain(model, x1, x2, "pair-interaction", projection=2)
    seed = e.config["seed"]
    assert isinstance(seed, int)
    q = projection_matrix(5, 2, seed)
    with torch.no_grad():
        f1, f2 = model.embed(x1) @ q, model.embed(x2) @ q
    assert torch.allclose(e.extras["explained_score"], (f1 * f2).sum(1))
    assert torch.allclose(e.interaction.sum(), (f1 * f2).sum(), atol=1e-10)
    again = simexplain.explain(model, x1, x2, e.method, **e.config)
    assert torch.equal(again.interaction, e.interaction)


def test_refusals_are_one_line():
    model = PairModel(bias_free_relu_encoder(), layer="3")
    x1, x2 = images(1)
    with pytest.raises(SimexplainError, match="projection=9 exceeds"):
        simexplain.explain(model, x1, x2, "pair-interaction", projection=9)
    with pytest.raises(SimexplainError, match="projection must be a positive integer"):
        simexplain.explain(model, x1, x2, "pair-interaction", projection=0)
    # Another similarity (a distance): the model's score is kept, the embeddings' cosine is decomposed.
    custom = PairModel(bias_free_relu_encoder(), layer="3", similarity=lambda a, b: 1 - (a - b).norm(dim=1))
    e = simexplain.explain(custom, x1, x2, "pair-interaction")
    with torch.no_grad():
        z1, z2 = custom.embed(x1), custom.embed(x2)
    torch.testing.assert_close(e.score, 1 - (z1 - z2).norm(dim=1))
    torch.testing.assert_close(e.extras["explained_score"], torch.cosine_similarity(z1, z2))
    assert e.extras["residual"].abs().max() < 1e-5
    e = simexplain.explain(model, x1, x2, "pair-grad-cam")
    with pytest.raises(SimexplainError, match="keeps no interaction"):
        e.match((0, 0))
    e = simexplain.explain(model, x1, x2, "pair-interaction")
    with pytest.raises(SimexplainError, match="outside image 2"):
        e.match((16, 0), image=2)


def test_slicing_keeps_the_interaction():
    model = PairModel(bias_free_relu_encoder(), layer="3")
    e = simexplain.explain(model, *images(3), "pair-interaction")
    assert torch.equal(e[1:].interaction, e.interaction[1:])
    assert e[-1].match((3, 4), image=2).shape == (1, 16, 16)


def test_per_pair_projection_seeds_match_each_pair_alone():
    model = PairModel(bias_free_relu_encoder(), layer="3")
    x1, x2 = images(3)
    batched = simexplain.explain(
        model, x1, x2, "pair-interaction", projection=3, seed=[7, 8, 9], batch_size=2
    )
    assert batched.config["seed"] == [7, 8, 9]
    for i, seed in enumerate([7, 8, 9]):
        alone = simexplain.explain(
            model, x1[i : i + 1], x2[i : i + 1], "pair-interaction", projection=3, seed=seed
        )
        assert torch.allclose(alone.interaction, batched[i].interaction, atol=1e-12)
        assert batched[i].config["seed"] == [seed]


# ------------------------------------------------------------------------------------------- figure and CLI
def test_the_figure_links_the_strongest_pairs_and_shows_the_point():
    from matplotlib.patches import ConnectionPatch

    from simexplain.figures.interaction import interaction_figure, strongest_links
    from simexplain.figures.output import render_figure

    model = PairModel(bias_free_relu_encoder(), layer="3")
    x1, x2 = images(2)
    e = simexplain.explain(model, x1, x2, "pair-interaction")
    links = strongest_links(e.interaction[1], 4)
    assert [link.value for link in links] == sorted(e.interaction[1].flatten().tolist(), reverse=True)[:4]
    fig = interaction_figure(
        x1.float(), x2.float(), e, model.preprocessing, index=1, top=4, point=(2, (3, 9))
    )
    drawn = [a for a in fig.artists if isinstance(a, ConnectionPatch)]
    assert len(drawn) == sum(link.value > 0 for link in links)
    assert render_figure(fig, "png")[:4] == b"\x89PNG"
    with pytest.raises(SimexplainError, match="keeps no interaction"):
        interaction_figure(x1, x2, simexplain.explain(model, x1, x2, "pair-grad-cam"), model.preprocessing)


def test_cli_point_writes_the_interaction_figure(tmp_path, capsys):
    from simexplain.cli import main, parse_point

    assert parse_point("2:5,7") == (2, (5, 7))
    for bad in ("3:1,2", "1:1", "1:a,b", "1:-1,2"):
        with pytest.raises(SimexplainError, match="--point"):
            parse_point(bad)
    cat = str(simexplain.sample_path("chelsea.jpg"))
    out = tmp_path / "fig.png"
    args = ["explain", cat, cat, "--model", "python:tiny:evaluation_model", "--out", str(out)]
    assert main([*args, "--method", "pair-interaction", "--point", "1:5,30"]) == 0
    assert (tmp_path / "fig-pair-interaction.png").read_bytes()[:4] == b"\x89PNG"
    assert main([*args, "--method", "pair-grad-cam", "--point", "1:5,30"]) == 2
    assert "--point needs --method pair-interaction" in capsys.readouterr().err
