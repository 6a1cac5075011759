"""Retrieval: ranking, the query's work done once for K matches, the on-disk gallery cache, the CLI."""

import json
import os
import warnings

import pytest
import torch
from PIL import Image
from tiny import CountingEncoder, SmallCNN, evaluation_model
from torch import nn

import simexplain
from simexplain import SimexplainError
from simexplain.retrieval import embed_gallery, explain_top_k, query_copies

OCCLUSION = {"window": 8, "stride": 8}  # 16×16 images: 2×2 = 4 windows per image


def counting_model():
    encoder = CountingEncoder(SmallCNN(seed=2))
    return simexplain.PairModel(encoder, layer="inner.features.3", name="counting"), encoder


def gallery_with_near_duplicates(query: torch.Tensor, size: int = 10) -> torch.Tensor:
    generator = torch.Generator().manual_seed(5)
    gallery = torch.rand(size, 3, 16, 16, generator=generator)
    gallery[7] = query[0] + 0.01 * torch.randn(3, 16, 16, generator=generator)
    gallery[3] = query[0] + 0.03 * torch.randn(3, 16, 16, generator=generator)
    return gallery


def test_near_duplicates_rank_first_and_maps_equal_the_pairs_one_by_one():
    model, _ = counting_model()
    query = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    gallery = gallery_with_near_duplicates(query)
    result = explain_top_k(model, query, gallery, 3, "conditional-occlusion", **OCCLUSION)
    assert result.indices[:2].tolist() == [7, 3]
    assert result.shared_query
    assert torch.all(result.scores[:-1] >= result.scores[1:])
    alone = simexplain.explain(
        model, query.expand(3, -1, -1, -1), gallery[result.indices], "conditional-occlusion", **OCCLUSION
    )
    torch.testing.assert_close(result.explanation.map1, alone.map1)
    torch.testing.assert_close(result.explanation.map2, alone.map2)
    torch.testing.assert_close(result.explanation.score, result.scores)
    assert result.explanation.config == alone.config


def test_the_query_occluded_copies_are_embedded_once_for_k_matches():
    model, encoder = counting_model()
    query = torch.rand(1, 3, 16, 16)
    gallery = torch.rand(10, 3, 16, 16)
    k, windows = 4, 4
    explain_top_k(model, query, gallery, k, "conditional-occlusion", **OCCLUSION)
    # gallery once + clean query once + the query's windows once + every match's windows
    assert encoder.images == 10 + 1 + windows + k * windows
    encoder.images = 0
    simexplain.explain(model, query.expand(k, -1, -1, -1), gallery[:k], "conditional-occlusion", **OCCLUSION)
    assert encoder.images == 2 * k + 2 * k * windows  # K independent pairs: the query's copies K times


def test_a_second_run_embeds_no_gallery_image_again(tmp_path):
    model, encoder = counting_model()
    query = torch.rand(1, 3, 16, 16)
    gallery = torch.rand(6, 3, 16, 16)
    first = embed_gallery(model, gallery, cache=tmp_path, batch_size=4)
    assert encoder.images == 6
    encoder.images = 0
    again = embed_gallery(model, gallery, cache=tmp_path)
    assert encoder.images == 0 and torch.equal(first, again)
    grown = torch.cat([gallery, torch.rand(2, 3, 16, 16)])
    explain_top_k(model, query, grown, 2, "pair-grad-cam", cache=tmp_path)
    assert encoder.images == 2 + 1 + 1 + 2  # the two new images, the query, its tapped forward, the matches
    # Other weights: another key, nothing reused.
    other, other_encoder = counting_model()
    with torch.no_grad():
        other_encoder.inner.head[0].weight.add_(1.0)
    embed_gallery(other, gallery, cache=tmp_path)
    assert other_encoder.images == 6


def test_other_methods_explain_the_k_pairs_in_one_call():
    model, _ = counting_model()
    query = torch.rand(1, 3, 16, 16)
    gallery = gallery_with_near_duplicates(query)[:6]
    result = explain_top_k(model, query, gallery, 2, "pair-interaction")
    assert not result.shared_query and result.explanation.interaction.shape[0] == 2
    document = result.to_json()
    assert [m["index"] for m in document["matches"]] == result.indices.tolist()
    assert document["matches"][0]["label"] == f"gallery[{result.indices[0]}]"
    with pytest.raises(SimexplainError, match="k=7 exceeds"):
        explain_top_k(model, query, gallery, 7)
    assert result.embedded == 6
    with pytest.raises(SimexplainError, match="no parameter"):
        explain_top_k(model, query, gallery, 2, "pair-grad-cam", window=3)


def _gallery_folder(folder, count=4):
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    for i in range(count):
        pixels = (torch.rand(40, 40, 3, generator=generator) * 255).byte().numpy()
        Image.fromarray(pixels).save(folder / f"g{i}.png")
    return folder


def test_cli_retrieve_writes_figure_json_and_reuses_its_cache(tmp_path, capsys):
    from simexplain.cli import main

    folder = _gallery_folder(tmp_path / "gallery")
    query = tmp_path / "query.png"
    query.write_bytes((folder / "g2.png").read_bytes()[:-1] + b"\0")  # not the same bytes: ranked
    out, report, cache = tmp_path / "top.png", tmp_path / "top.json", tmp_path / "cache"
    args = ["retrieve", str(query), str(folder), "--top", "2", "--model", "python:tiny:evaluation_model"]
    args += [
        "--method",
        "conditional-occlusion",
        "--set",
        "window=16",
        "--set",
        "stride=16",
        "--cache",
        str(cache),
    ]
    assert main([*args, "--out", str(out), "--json", str(report)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    document = json.loads(report.read_text())
    assert document["matches"][0]["rank"] == 1 and document["matches"][0]["label"].startswith(str(folder))
    assert document["gallery"] == {"images": 4, "embedded": 4, "keep_query": False, "left_out": []}
    assert main([*args, "--out", str(out), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["gallery"]["embedded"] == 0
    assert "left out" not in capsys.readouterr().out
    assert main([*args[:-2], "--top", "0", "--out", str(out)]) == 2
    assert main(["retrieve", str(query), str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_cli_retrieve_leaves_out_a_query_inside_the_gallery_unless_keep_query(tmp_path, capsys):
    from simexplain.cli import main

    folder = _gallery_folder(tmp_path / "gallery", 5)
    (folder / "g4.png").write_bytes((folder / "g1.png").read_bytes())  # a copy of the query, another name
    query, report = folder / "g1.png", tmp_path / "top.json"
    args = ["retrieve", str(query), str(folder), "--model", "python:tiny:evaluation_model"]
    args += ["--method", "input-x-gradient", "--cache", str(tmp_path / "cache"), "--json", str(report)]

    assert main([*args, "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "left out" in line] == [
        "left out, the query's own content (same SHA-256): g1.png, g4.png (--keep-query ranks it)"
    ]
    document = json.loads(report.read_text())
    assert {m["label"] for m in document["matches"]} == {str(folder / f"g{i}.png") for i in (0, 2, 3)}
    assert document["gallery"]["left_out"] == [
        {"index": 1, "label": str(folder / "g1.png")},
        {"index": 4, "label": str(folder / "g4.png")},
    ]
    assert document["gallery"]["embedded"] == 3  # the copies are not embedded either

    assert main([*args, "--top", "4"]) == 2  # refused before the model is loaded
    assert (
        "--top=4 exceeds the gallery's 5 images less 2 with the query's content (--keep-query keeps them)"
        in (capsys.readouterr().err)
    )
    assert main([*args, "--top", "5", "--keep-query"]) == 0
    document = json.loads(report.read_text())
    copies = [m["score"] for m in document["matches"] if m["index"] in (1, 4)]
    assert copies == pytest.approx([1.0, 1.0], abs=1e-6)  # ranked with the query's own score
    assert document["gallery"]["keep_query"] and document["gallery"]["left_out"] == []


def test_a_query_tensor_inside_the_gallery_is_not_ranked_unless_kept():
    model = simexplain.PairModel(nn.Flatten())  # the pixels as embedding: random images are far apart
    gallery = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    query = gallery[4:5].clone()
    result = explain_top_k(model, query, gallery, 5, "input-x-gradient")
    assert result.left_out == [4] and 4 not in result.indices.tolist()
    assert sorted(result.indices.tolist()) == [0, 1, 2, 3, 5]
    assert result.to_json()["gallery"]["left_out"] == [{"index": 4, "label": "gallery[4]"}]
    ranked = embed_gallery(model, gallery[[0, 1, 2, 3, 5]])
    expected = model.similarity(model.embed(query, "a").expand(5, -1), ranked).topk(5)
    torch.testing.assert_close(result.scores, expected.values)
    assert torch.equal(result.matches, gallery[result.indices])  # positions mapped back to gallery indices
    with pytest.raises(SimexplainError, match=r"k=6 exceeds the gallery's 6 images less 1 .*keep_query=True"):
        explain_top_k(model, query, gallery, 6, "input-x-gradient")

    kept = explain_top_k(model, query, gallery, 6, "input-x-gradient", keep_query=True)
    assert kept.indices[0].item() == 4 and kept.left_out == [] and kept.keep_query
    assert kept.scores[0].item() == pytest.approx(1.0, abs=1e-6)
    near = gallery.clone()
    near[4] += 1e-3  # another content: ranked
    assert explain_top_k(model, query, near, 1, "input-x-gradient").left_out == []


def test_same_size_files_are_hashed_and_only_equal_bytes_left_out(tmp_path):
    a, b, c = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "c.bin"
    a.write_bytes(b"0123456789")
    b.write_bytes(b"0123456780")  # same size, other bytes
    c.write_bytes(b"0123456789")
    assert query_copies(a, [a, b, c, tmp_path / "missing.png", torch.rand(3, 2, 2)]) == [0, 2]
    assert query_copies(str(a), [str(b)]) == [] and query_copies(b"0123456789", [a]) == []


def test_the_figure_titles_each_match_by_its_file_name(tmp_path):
    from simexplain.figures.retrieval import retrieval_figure

    folder = _gallery_folder(tmp_path / "a_folder_with_a_rather_long_name_that_would_be_cut", 3)
    model = evaluation_model()
    result = explain_top_k(model, folder / "g0.png", folder, 3, "input-x-gradient", keep_query=True)
    titles = [ax.get_title() for ax in retrieval_figure(result, model.preprocessing).axes]
    assert sorted(titles[3::2]) == ["g0.png", "g1.png", "g2.png"]
    assert all(str(folder) in m["label"] for m in result.to_json()["matches"])  # the JSON keeps the path


@pytest.mark.parametrize(
    "method, params",
    [
        ("pair-grad-cam", {}),
        ("interaction-cam", {"reduction": "attn", "gradient_interaction": True}),
        ("deep-similarity", {}),
    ],
)
def test_a_cam_taps_the_query_once_and_equals_the_pairs_one_by_one(method, params):
    model, encoder = counting_model()
    query = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    gallery = gallery_with_near_duplicates(query)
    k = 4
    result = explain_top_k(model, query, gallery, k, method, batch_size=3, **params)
    assert result.shared_query
    assert encoder.images == 10 + 1 + 1 + k  # gallery, clean query, the query's tapped forward, the matches
    pairs = simexplain.explain(model, query.expand(k, -1, -1, -1), gallery[result.indices], method, **params)
    torch.testing.assert_close(result.explanation.map1, pairs.map1)
    torch.testing.assert_close(result.explanation.map2, pairs.map2)
    torch.testing.assert_close(result.explanation.score, pairs.score)
    assert result.explanation.config == pairs.config


@pytest.mark.parametrize(
    "method, params",
    [
        ("input-x-gradient", {}),
        ("input-x-gradient", {"guided": True}),
        ("smooth-grad", {"samples": 3, "seed": 5, "batch_size": 3}),
        ("smooth-grad", {"samples": 2, "shared_noise": False, "guided": True, "sigma": 0.2}),
    ],
)
def test_a_saliency_method_embeds_the_query_once_and_equals_the_pairs_one_by_one(method, params):
    model, encoder = counting_model()
    query = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    gallery = gallery_with_near_duplicates(query)
    k, samples = 4, params.get("samples", 1)
    torch.manual_seed(0)  # a seedless Smooth-Grad draws its seed here, and below the same one
    result = explain_top_k(model, query, gallery, k, method, **params)
    assert result.shared_query
    # gallery, clean query, then per noisy sample (one for Input×Gradient): the query once, the k matches
    assert encoder.images == 10 + 1 + samples * (1 + k)
    torch.manual_seed(0)
    pairs = simexplain.explain(model, query.expand(k, -1, -1, -1), gallery[result.indices], method, **params)
    torch.testing.assert_close(result.explanation.map1, pairs.map1)
    torch.testing.assert_close(result.explanation.map2, pairs.map2)
    torch.testing.assert_close(result.explanation.score, pairs.score)
    assert result.explanation.config == pairs.config


def test_one_seed_per_match_leaves_nothing_to_share():
    model, _ = counting_model()
    query = torch.rand(1, 3, 16, 16)
    gallery = torch.rand(5, 3, 16, 16)
    result = explain_top_k(model, query, gallery, 2, "smooth-grad", samples=2, seed=[1, 2])
    assert not result.shared_query and result.explanation.config["seed"] == [1, 2]


# ---------------------------------------------------------------- the cache, checked when read
def _entries(model, gallery, root):
    from simexplain.retrieval import EmbeddingCache, content_key, model_fingerprint

    folder = EmbeddingCache(root, model_fingerprint(model)).folder
    return [folder / f"{content_key(item)}.pt" for item in gallery]


def _rewrite(path, **changes):
    entry = torch.load(path, weights_only=True)
    torch.save({**entry, **changes}, path)


def test_bad_cache_entries_are_embedded_again_with_one_warning_line(tmp_path):
    from simexplain.cache import CacheWarning

    model, encoder = counting_model()
    gallery = torch.rand(5, 3, 16, 16)
    clean = embed_gallery(model, gallery)
    embed_gallery(model, gallery, cache=tmp_path)
    entries = _entries(model, gallery, tmp_path)
    _rewrite(entries[0], embedding=torch.full((6,), float("nan")))
    _rewrite(entries[1], embedding=torch.ones(5), shape=[5])  # another size, recorded as its own
    entries[2].write_bytes(b"\x80\x02 not a torch file")  # corrupt
    torch.save(torch.ones(6), entries[3])  # a bare tensor: no key, no shape
    encoder.images = 0
    with pytest.warns(CacheWarning) as warned:
        again = embed_gallery(model, gallery, cache=tmp_path)
    (line,) = [str(w.message) for w in warned]
    assert "4 entries not usable" in line and "NaN" in line and "\n" not in line
    assert "weights_only" not in line  # torch's own advice is never passed on for a cache
    assert encoder.images == 4
    torch.testing.assert_close(again, clean)
    encoder.images = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: read back without a word
        torch.testing.assert_close(embed_gallery(model, gallery, cache=tmp_path), clean)
    assert encoder.images == 0


def test_a_cached_embedding_of_another_size_is_found_when_every_image_comes_from_the_cache(tmp_path):
    from simexplain.cache import CacheWarning

    model, encoder = counting_model()
    gallery = torch.rand(3, 3, 16, 16)
    clean = embed_gallery(model, gallery, cache=tmp_path)
    _rewrite(_entries(model, gallery, tmp_path)[2], embedding=torch.ones(4), shape=[4])
    encoder.images = 0
    with pytest.warns(CacheWarning, match="1 entry not usable .*an embedding of 4 values"):
        torch.testing.assert_close(embed_gallery(model, gallery, cache=tmp_path), clean)
    assert encoder.images == 1


def test_a_cache_folder_that_cannot_be_used_is_one_line(tmp_path, monkeypatch):
    model, _ = counting_model()
    gallery = torch.rand(2, 3, 16, 16)
    file = tmp_path / "file"
    file.write_text("not a folder")
    for bad, words in ((file, "a file, not a folder"), (file / "below", "cannot create the folder")):
        with pytest.raises(SimexplainError) as raised:
            embed_gallery(model, gallery, cache=bad)
        assert words in str(raised.value) and "\n" not in str(raised.value)
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # root may write anywhere: pretend
    with pytest.raises(SimexplainError, match="not writable"):
        embed_gallery(model, gallery, cache=tmp_path / "cache")


def test_every_cache_lives_under_the_one_root(monkeypatch, tmp_path):
    from simexplain.cache import cache_root
    from simexplain.models import face
    from simexplain.retrieval import default_cache_dir

    monkeypatch.setenv("SIMEXPLAIN_CACHE", str(tmp_path / "own"))
    assert default_cache_dir() == tmp_path / "own" / "embeddings" == cache_root() / "embeddings"
    assert face.cache_dir() == tmp_path / "own" / "face-api"
    monkeypatch.delenv("SIMEXPLAIN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir().parent == face.cache_dir().parent == tmp_path / "xdg" / "simexplain"
