"""The sanity study and ``simexplain sanity`` (docs/studies.md, Sanity checks): the cascade over a batch of
pairs on a tiny 32×32 CNN, its figures, and the command's exit codes."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from tiny import evaluation_model

from simexplain.cli import main
from simexplain.metrics import sanity_check
from simexplain.studies import load_pairs, pair_images, parse_variants
from simexplain.studies.sanity import run_sanity, write_sanity

PNG = b"\x89PNG\r\n\x1a\n"
TINY = "python:tiny:evaluation_model"


@pytest.fixture
def photos(tmp_path):
    """A folder of three small seeded images with structure (a gradient plus noise)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 40)
    for index in range(3):
        pixels = 0.5 * ramp.view(1, 1, 40) * ramp.view(1, 40, 1) + 0.5 * torch.rand(
            3, 40, 40, generator=generator
        )
        array = (pixels.permute(1, 2, 0) * 255).to(torch.uint8).numpy()
        Image.fromarray(array).save(folder / f"image-{index}.png")
    return folder


def test_randomising_every_layer_lowers_the_correlation_of_input_x_gradient(photos):
    model = evaluation_model()
    specs = load_pairs(str(photos))
    results = run_sanity(model, specs, parse_variants("input-x-gradient"))
    result = results["input-x-gradient"]
    assert result.layers[0] == "original" and result.randomised == list(range(len(result.layers)))
    assert result.pairs == [s.id for s in specs] and result.maps1.shape[1] == 3
    assert torch.allclose(result.spearman1[0], torch.ones(3, dtype=result.spearman1.dtype))
    assert result.mean_spearman()[-1] < result.mean_spearman()[1]


def test_the_study_is_the_cascade_of_the_stacked_pairs(photos):
    model = evaluation_model()
    specs = load_pairs(str(photos), limit=2)
    study = run_sanity(model, specs, parse_variants("smooth-grad[samples=3]"), every=2, seed=5)
    result = study["smooth-grad[samples=3]"]
    pairs = [pair_images(s, model) for s in specs]
    x1, x2 = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    params = {"samples": 3, "seed": 5}  # the run's seed reaches a method that sets none
    direct = sanity_check(model, x1, x2, "smooth-grad", method_params=params, every=2, seed=5)
    assert result.layers == direct.layers and torch.equal(result.maps1, direct.maps1)
    assert torch.equal(result.maps2, direct.maps2)
    assert result.randomised == [0, 2, 4]  # 4 layers in the tiny CNN, every second kept


def test_the_callers_model_is_never_changed(photos):
    model = evaluation_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_sanity(model, load_pairs(str(photos), limit=2), parse_variants("input-x-gradient,interaction-cam"))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_write_sanity_writes_one_grid_per_method_and_the_curves(photos, tmp_path):
    variants = parse_variants("input-x-gradient,smooth-grad[samples=2]")
    results = run_sanity(evaluation_model(), load_pairs(str(photos), limit=2), variants)
    written = write_sanity(results, tmp_path / "out" / "sanity")
    names = sorted(p.name for p in written)
    assert names == [
        "sanity-input-x-gradient.png",
        "sanity-input-x-gradient.svg",
        "sanity-smooth-grad-samples-2.png",
        "sanity-smooth-grad-samples-2.svg",
        "spearman.png",
        "spearman.svg",
    ]
    for path in written:
        head = path.read_bytes()[:8]
        assert head == PNG if path.suffix == ".png" else head.startswith(b"<?xml")


def test_cli_writes_the_figures(photos, tmp_path, capsys):
    out = tmp_path / "sanity"
    args = ["sanity", "--pairs", str(photos), "--out", str(out), "--model", TINY, "--limit", "2"]
    args += ["--methods", "input-x-gradient,smooth-grad", "--set", "smooth-grad.samples=2"]
    assert main(args) == 0
    assert (out / "spearman.png").read_bytes()[:8] == PNG
    assert (out / "sanity-input-x-gradient.png").read_bytes()[:8] == PNG
    assert (out / "sanity-smooth-grad.svg").exists()
    assert "input-x-gradient: mean Spearman" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra",
    [
        ["--methods", "no-such-method"],
        ["--set", "smooth-grad.nope=1"],
        ["--set", "metrics.step=2"],
        ["--every", "0"],
        ["--limit", "0"],
        ["--seed", "-1"],
        ["--model", "no-such-model"],
        ["--weights", "missing.pt"],
        ["--device", "warp"],
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(photos, tmp_path, capsys, monkeypatch, extra):
    from simexplain import service

    monkeypatch.setattr(service, "get_model", lambda *a, **k: pytest.fail("model loaded"))
    args = ["sanity", "--pairs", str(photos), "--out", str(tmp_path / "sanity"), *extra]
    assert main(args) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_refuses_a_missing_pair_source_or_out_folder(photos, tmp_path, capsys):
    missing = ["sanity", "--pairs", str(tmp_path / "none"), "--out", str(tmp_path / "sanity")]
    assert main(missing) == 2
    assert main(["sanity", "--pairs", str(photos), "--out", str(tmp_path / "a" / "b")]) == 2
    assert capsys.readouterr().err.count("\n") == 2
