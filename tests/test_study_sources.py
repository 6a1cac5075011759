"""Pair sources of an evaluation: folders, CSV files, DIR1:DIR2, the demo photos; seeds; reading pairs."""

import hashlib
import os

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import SmallCNN

import simexplain
from simexplain import SimexplainError
from simexplain.studies.sources import PairSpec, load_pairs, pair_images, pair_seed


def write_image(path, value=0, size=(20, 18)):
    """A small image whose pixels depend on ``value`` (so images differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(value)
    Image.fromarray(generator.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def model():
    small = simexplain.Preprocessing(input_size=(16, 16), resize=18)
    return simexplain.PairModel(SmallCNN(), layer="features.3", preprocessing=small, name="small")


def one_line_error(call, *words):
    with pytest.raises(SimexplainError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in words), message
    return message


def test_folder_is_searched_recursively_in_natural_order_skipping_hidden_and_other_files(tmp_path):
    for name in ["b/x10.png", "b/x2.JPG", "a.jpeg", "c/d/e.webp", ".hidden.png", ".git/f.png", "notes.txt"]:
        write_image(tmp_path / name) if not name.endswith(".txt") else (tmp_path / name).write_text("hi")
    pairs = load_pairs(str(tmp_path), seed=3)
    assert [p.id for p in pairs] == ["a.jpeg", "b/x2.JPG", "b/x10.png", "c/d/e.webp"]
    assert all(p.image2 is None for p in pairs) and pairs.unmatched == ()
    assert pairs[1].image1 == os.path.join(str(tmp_path), "b", "x2.JPG")
    assert [p.seed for p in pairs] == [pair_seed(3, p.id) for p in pairs]


def test_limit_takes_the_same_first_pairs_and_is_checked(tmp_path):
    for i in range(5):
        write_image(tmp_path / f"img{i}.png", i)
    everything = load_pairs(str(tmp_path))
    assert load_pairs(str(tmp_path), limit=2) == everything[:2]
    assert load_pairs(str(tmp_path), limit=2.0) == everything[:2]
    assert load_pairs(str(tmp_path), limit=50) == everything
    for bad in (0, -1, 2.5, True):
        one_line_error(lambda bad=bad: load_pairs(str(tmp_path), limit=bad), "limit")


def test_pair_seed_is_sha256_of_run_seed_and_id_and_differs_per_id_and_run_seed():
    digest = hashlib.sha256(b"5:cat.jpg").digest()
    assert pair_seed(5, "cat.jpg") == int.from_bytes(digest[:8], "big") % 2**63
    seeds = {pair_seed(run, name) for run in (0, 1) for name in ("a.png", "b.png", "c/a.png")}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)
    one_line_error(lambda: pair_seed(-1, "a"), "seed")


def test_csv_with_ids_resolves_relative_paths_against_its_folder(tmp_path):
    write_image(tmp_path / "imgs/one.png")
    (tmp_path / "pairs.csv").write_text("id,image1,image2\nz, imgs/one.png ,/abs/two.png\na,x.png,y.png\n")
    pairs = load_pairs(str(tmp_path / "pairs.csv"), seed=1)
    assert pairs == [
        PairSpec("a", str(tmp_path / "x.png"), str(tmp_path / "y.png"), pair_seed(1, "a")),
        PairSpec("z", str(tmp_path / "imgs/one.png"), "/abs/two.png", pair_seed(1, "z")),
    ]


def test_csv_without_ids_names_rows_and_keeps_file_order(tmp_path):
    rows = "".join(f"i{n}.png,j{n}.png\n" for n in range(1, 12))
    (tmp_path / "p.csv").write_text("\ufeffimage1,image2\n" + rows)  # a byte-order mark is fine
    pairs = load_pairs(str(tmp_path / "p.csv"))
    assert [p.id for p in pairs] == [f"row-{n}" for n in range(1, 12)]
    assert [os.path.basename(p.image1) for p in pairs] == [f"i{n}.png" for n in range(1, 12)]


@pytest.mark.parametrize(
    "text, words",
    [
        ("image1,other\na.png,b.png\n", ["image2", "found image1, other"]),
        ("", ["image1, image2", "no header"]),
        ("image1,image2\n", ["no pairs"]),
        ("id,image1,image2\na,x.png,y.png\na,u.png,v.png\n", ["'a'", "twice"]),
        ("image1,image2\nx.png,\n", ["row 1", "empty image2"]),
        ("id,image1,image2\n,x.png,y.png\n", ["row 1", "empty id"]),
    ],
)
def test_bad_csv_files_are_refused_in_one_line(tmp_path, text, words):
    (tmp_path / "p.csv").write_text(text)
    one_line_error(lambda: load_pairs(str(tmp_path / "p.csv")), *words)


def test_undecodable_csv_is_one_line(tmp_path):
    (tmp_path / "p.csv").write_bytes(b"image1,image2\n\xff\xfe\x00bad\n")
    one_line_error(lambda: load_pairs(str(tmp_path / "p.csv")), "cannot read as a CSV")


def test_two_folders_are_matched_by_relative_path_and_unmatched_files_reported(tmp_path):
    for name in ["a.png", "sub/b.png", "only1.png"]:
        write_image(tmp_path / "one" / name)
    for name in ["a.png", "sub/b.png", "only2.jpg", "sub/c.png"]:
        write_image(tmp_path / "two" / name)
    one, two = tmp_path / "one", tmp_path / "two"
    pairs = load_pairs(f"{one}:{two}", seed=2)
    assert pairs == [
        PairSpec("a.png", str(one / "a.png"), str(two / "a.png"), pair_seed(2, "a.png")),
        PairSpec("sub/b.png", str(one / "sub/b.png"), str(two / "sub/b.png"), pair_seed(2, "sub/b.png")),
    ]
    assert pairs.unmatched == tuple(
        sorted([str(one / "only1.png"), str(two / "only2.jpg"), str(two / "sub/c.png")])
    )


def test_an_existing_path_with_a_colon_is_not_split(tmp_path):
    folder = tmp_path / "a:b"
    write_image(folder / "x.png")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert [p.id for p in load_pairs(str(folder))] == ["x.png"]


def test_two_folders_errors_are_one_line(tmp_path):
    write_image(tmp_path / "one/a.png")
    write_image(tmp_path / "two/b.png")
    one, two = tmp_path / "one", tmp_path / "two"
    one_line_error(lambda: load_pairs(f"{one}:{two}"), "share no image name", "1 and 1")
    one_line_error(lambda: load_pairs(f"{one}:{tmp_path / 'missing'}"), "no such folder", "missing")


def test_demo_is_the_three_bundled_photos_each_with_a_view():
    pairs = load_pairs("demo", seed=4)
    assert [p.id for p in pairs] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
    assert [p.image1 for p in pairs] == [str(simexplain.sample_path(p.id)) for p in pairs]
    assert all(p.image2 is None and p.seed == pair_seed(4, p.id) for p in pairs)


def test_missing_and_empty_sources_are_one_line(tmp_path):
    write_image(tmp_path / "pic.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.txt").write_text("no images here")
    one_line_error(lambda: load_pairs(""), "no pair source")
    one_line_error(lambda: load_pairs(str(tmp_path / "nothing")), "no such file or folder")
    one_line_error(lambda: load_pairs(str(tmp_path / "empty")), "no images")
    one_line_error(lambda: load_pairs(str(tmp_path / "pic.png")), "an image, not a pair source")


def test_load_pairs_reads_no_image(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert [p.id for p in load_pairs(str(tmp_path))] == ["broken.png"]


def test_view_pair_is_deterministic_matches_demo_pair_and_differs_from_image_1(model):
    spec = PairSpec("chelsea.jpg", str(simexplain.sample_path("chelsea.jpg")), None, 11)
    x1, x2 = pair_images(spec, model)
    again1, again2 = pair_images(spec, model)
    assert x1.shape == x2.shape == (1, 3, 16, 16) and x1.dtype == x2.dtype == model.dtype
    assert torch.equal(x1, again1) and torch.equal(x2, again2) and not torch.equal(x1, x2)
    demo1, demo2, _ = simexplain.service.demo_pair(model, seed=11)
    assert torch.equal(x1, demo1) and torch.equal(x2, demo2)
    other = pair_images(PairSpec("chelsea.jpg", spec.image1, None, 12), model)[1]
    assert not torch.equal(x2, other)


def test_file_pair_reads_both_images_like_load_image(tmp_path, model):
    a, b = write_image(tmp_path / "a.png", 1), write_image(tmp_path / "b.png", 2)
    x1, x2 = pair_images(PairSpec("p", str(a), str(b), 0), model)
    assert torch.equal(x1, simexplain.load_image(a, model)) and torch.equal(
        x2, simexplain.load_image(b, model)
    )
    assert not torch.equal(x1, x2)


def test_double_model_gets_double_inputs(tmp_path):
    small = simexplain.Preprocessing(input_size=(16, 16), resize=18)
    model = simexplain.PairModel(SmallCNN().double(), preprocessing=small)
    a = write_image(tmp_path / "a.png")
    for image2 in (str(a), None):
        assert all(x.dtype == torch.float64 for x in pair_images(PairSpec("a", str(a), image2, 0), model))


def test_unreadable_image_fails_its_own_pair_in_one_line(tmp_path, model):
    good = write_image(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"corrupt")
    one_line_error(lambda: pair_images(PairSpec("bad", str(tmp_path / "bad.png"), None, 0), model), "bad.png")
    one_line_error(
        lambda: pair_images(PairSpec("p", str(good), str(tmp_path / "gone.png"), 0), model), "gone.png"
    )


def test_linked_folders_are_followed_once_and_link_loops_end(tmp_path):
    write_image(tmp_path / "outside/o.png")
    write_image(tmp_path / "data/d.png")
    os.symlink(tmp_path / "outside", tmp_path / "data/linked")
    os.symlink(tmp_path / "data", tmp_path / "data/loop")
    assert [p.id for p in load_pairs(str(tmp_path / "data"))] == ["d.png", "linked/o.png"]
