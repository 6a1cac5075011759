"""The augmentation dissection (Table VII): runs, store, report and command; and the sanity figures' link."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import evaluation_model
from torch import nn

import simexplain
from simexplain import SimexplainError
from simexplain.cli import main
from simexplain.figures.dissection import steps_figure
from simexplain.methods.saliency import transform_path
from simexplain.studies import Evaluation, Store, evaluate_pairs, load_pairs, parse_variants, write_report
from simexplain.studies.dissection import (
    DISSECTION_TRANSFORMS,
    dissection_variants,
    dissection_view,
    transform_rows,
)

TESTS = Path(__file__).resolve().parent
METRICS = ["SI", "SD", "SAD"]


def _stored(db) -> dict:
    with Store(db, readonly=True) as store:
        return {(p, v, m): value for p, v, m, value in store.metric_rows()}


def _dissect(db, transforms, *, guided="both", settings=None, limit=2, metrics=METRICS, model=None):
    variants = dissection_variants(transforms, guided=guided, settings=settings)
    model = model or evaluation_model()
    run = Evaluation(model, variants, metrics, {"step": 64}, seed=5, study="dissection")
    return evaluate_pairs(run, load_pairs("demo", seed=5, limit=limit), db, progress=False)


def _bias_free_model() -> simexplain.PairModel:
    """A 32×32 CNN without a bias in its head, so the pairs' metrics differ from method to method."""
    from simexplain.preprocessing import Preprocessing

    torch.manual_seed(0)
    net = nn.Sequential(
        *(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.Tanh()),
        *(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 6, bias=False)),
    )
    return simexplain.PairModel(net, layer="3", preprocessing=Preprocessing(input_size=(32, 32), resize=36))


def test_identity_transform_equals_input_x_gradient_in_the_store(tmp_path):
    model = _bias_free_model()
    _dissect(tmp_path / "dissect.sqlite", "identity,rotate-90", model=model)
    variants = parse_variants("input-x-gradient,input-x-gradient[guided=true]")
    run = Evaluation(model, variants, METRICS, {"step": 64}, seed=5)
    evaluate_pairs(run, load_pairs("demo", seed=5, limit=2), tmp_path / "ixg.sqlite", progress=False)
    dissection, reference = _stored(tmp_path / "dissect.sqlite"), _stored(tmp_path / "ixg.sqlite")
    pairs = {pair for pair, _, _ in reference}
    assert len(pairs) == 2
    for guided, method in [("", "input-x-gradient"), (";guided=true", "input-x-gradient[guided=true]")]:
        for pair in pairs:
            for metric in METRICS:
                identity = dissection[pair, f"averaged-transforms[transform=identity{guided}]", metric]
                assert identity == pytest.approx(reference[pair, method, metric], abs=1e-6)
    # the check can fail: the plain and guided maps, and a real transform, score differently
    differs = [
        abs(reference[p, "input-x-gradient", m] - reference[p, "input-x-gradient[guided=true]", m]) > 1e-4
        or abs(
            dissection[p, "averaged-transforms[transform=rotate-90]", m] - reference[p, "input-x-gradient", m]
        )
        > 1e-4
        for p in pairs
        for m in ("SI", "SD")
    ]
    assert all(differs)


def test_every_transform_is_a_row_with_its_top_marked(tmp_path):
    db = tmp_path / "dissect.sqlite"
    summary = _dissect(
        db, "all", guided="plain", settings={"averaged-transforms.steps": 2}, limit=1, metrics=["SAD"]
    )
    assert (summary.done, summary.failed) == (len(DISSECTION_TRANSFORMS), 0)
    written = {p.name for p in write_report([db], tmp_path / "report", bootstrap=20)}
    assert {"dissection.md", "dissection.csv", "dissection.tex", "pairs.csv"} <= written
    assert "tables.md" not in written  # a dissection store alone has no Tables I–VI
    with open(tmp_path / "report" / "dissection.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["method"] for r in rows] == list(DISSECTION_TRANSFORMS)
    assert {r["table"] for r in rows} == {"VII"} and {r["metric"] for r in rows} == {"SAD"}
    best = min(float(r["mean"]) for r in rows)
    assert [r["best"] == "*" for r in rows] == [float(r["mean"]) == best for r in rows]
    markdown = (tmp_path / "report" / "dissection.md").read_text()
    assert "| transform | SAD ↓ |" in markdown and "rotate-180" in markdown
    stored = {label for _, label, _ in _stored(db)}
    assert stored == {f"averaged-transforms[transform={name}]" for name in DISSECTION_TRANSFORMS}


def test_variants_titles_and_settings():
    variants = dissection_variants("solarise,flip", settings={"averaged-transforms.mode": "strength"})
    assert [v.title for v in variants] == ["solarize", "solarize (G)", "hflip", "hflip (G)"]
    assert all(v.params["mode"] == "strength" for v in variants)
    assert [name for name, *_ in transform_rows([vars(v) for v in variants])] == ["solarize", "hflip"]
    with pytest.raises(SimexplainError, match="unknown transform 'spin'"):
        dissection_variants("rotate-90,spin")
    with pytest.raises(SimexplainError, match="given twice"):
        dissection_variants("solarize,solarise")
    with pytest.raises(SimexplainError, match="the dissection chooses it"):
        dissection_variants("blur", settings={"averaged-transforms.transform": "blur"})
    with pytest.raises(SimexplainError, match="--guided"):
        dissection_variants("blur", guided="sometimes")


def test_a_dissection_and_an_evaluation_of_one_model_report_side_by_side(tmp_path):
    _dissect(tmp_path / "dissect.sqlite", "rotate-90", guided="guided", limit=1)
    run = Evaluation(evaluation_model(), parse_variants("input-x-gradient"), METRICS, {"step": 64}, seed=5)
    evaluate_pairs(run, load_pairs("demo", seed=5, limit=1), tmp_path / "eval.sqlite", progress=False)
    out = tmp_path / "report"
    written = {p.name for p in write_report([tmp_path / "eval.sqlite", tmp_path / "dissect.sqlite"], out)}
    assert {"tables.md", "dissection.md"} <= written
    assert "rotate-90" not in (out / "tables.md").read_text()
    assert "| transform | SI (G) ↑ | SD (G) ↓ | SAD (G) ↓ |" in (out / "dissection.md").read_text()


def _cli(*args):
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "simexplain", *map(str, args)]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)


def test_dissect_command_resumes_and_refuses_bad_input_before_work(tmp_path, capsys):
    db = tmp_path / "d.sqlite"
    common = ["--pairs", "demo", "--limit", "1", "--db", db, "--model", "python:tiny:evaluation_model"]
    first = _cli(
        "dissect", *common, "--transforms", "hflip,grayscale", "--set", "averaged-transforms.steps=2"
    )
    assert first.returncode == 0, first.stderr
    assert "4 explanations scored" in first.stdout
    again = _cli(
        "dissect", *common, "--transforms", "hflip,grayscale", "--set", "averaged-transforms.steps=2"
    )
    assert "0 explanations scored, 4 already stored" in again.stdout
    for bad, message in [
        (["--transforms", "twirl"], "unknown transform 'twirl'"),
        (["--set", "averaged-transforms.guided=true"], "the dissection chooses it"),
        (["--metrics", "XX"], "XX"),
    ]:
        assert main(["dissect", "--pairs", "demo", "--db", str(tmp_path / "new.sqlite"), *bad]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "new.sqlite").exists()


def test_sanity_results_recorded_in_the_store_are_linked_by_the_report(tmp_path):
    db = tmp_path / "eval.sqlite"
    run = Evaluation(evaluation_model(), parse_variants("input-x-gradient"), ["SAD"], seed=5)
    evaluate_pairs(run, load_pairs("demo", seed=5, limit=1), db, progress=False)
    model = ["--model", "python:tiny:evaluation_model", "--pairs", "demo", "--limit", "2"]
    result = _cli("sanity", *model, "--methods", "input-x-gradient", "--out", tmp_path / "sanity", "--db", db)
    assert result.returncode == 0, result.stderr
    with Store(db, readonly=True) as store:
        study = store.run_facts()["sanity"]["input-x-gradient"]
        with pytest.raises(SimexplainError, match="not 'other-model'"):
            Store.record_sanity(store, "other-model", {})
    assert study["spearman"][0] == pytest.approx(1.0) and study["pairs"] == 2
    assert np.isfinite(study["spearman"]).all() and len(study["spearman"]) == len(study["layers"])
    write_report([db], tmp_path / "report", bootstrap=10)
    text = (tmp_path / "report" / "tables.md").read_text()
    assert "## Sanity checks: tiny-cnn-0" in text
    assert "[sanity-input-x-gradient.png](../sanity/sanity-input-x-gradient.png)" in text


@pytest.mark.parametrize("mode", ["blend", "strength"])
def test_the_path_redrawn_from_the_config_ends_at_the_explained_view(mode):
    model = _bias_free_model()
    x1, x2 = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    e = simexplain.explain(
        model, x1, x2, "averaged-transforms", transform="combine", steps=4, mode=mode, seed=[3, 9]
    )
    path = transform_path(model, x2, transform="combine", steps=4, mode=mode, seed=[3, 9])
    assert path.shape == (2, 5, 3, 32, 32)
    torch.testing.assert_close(path[:, 0], x2)
    torch.testing.assert_close(path[:, -1], e.image2)
    assert (path[:, 1] - path[:, 0]).abs().amax() > 1e-3  # it moves


def test_dissection_view_reuses_explanations_of_the_same_guidance(monkeypatch):
    model = _bias_free_model()
    x1, x2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    averaged = simexplain.explain(
        model, x1, x2, "averaged-transforms", transform="hflip", guided=True, seed=4
    )
    plain = simexplain.explain(model, x1, x2, "input-x-gradient")
    guided = simexplain.explain(model, x1, x2, "input-x-gradient", guided=True)
    view = dissection_view(model, x1, x2, averaged, {"input-x-gradient": plain})
    assert [e.config.get("guided") for e in view.explanations] == [True, True, True]
    torch.testing.assert_close(view.explanations[1].map1, guided.map1)
    assert view.explanations[2].config["seed"] == 4
    assert dissection_view(model, x1, x2, averaged, {"input-x-gradient": guided}).explanations[1] is guided
    fig = steps_figure(x1, view, model.preprocessing, title="hflip")
    assert len(fig.axes) == 11 + 6 + 1  # the path, three methods × two images, the colour bar
    with pytest.raises(SimexplainError, match="needs an averaged-transforms explanation"):
        dissection_view(model, x1, x2, plain)


def test_steps_figure_command(tmp_path, capsys):
    images = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
        images.append(path)
    assert main(["explain", *map(str, images), "--steps-figure", str(tmp_path / "s.png")]) == 2
    assert "add --method averaged-transforms" in capsys.readouterr().err
    result = _cli(
        "explain", *images, "--model", "python:tiny:evaluation_model", "--method", "averaged-transforms",
        "--set", "averaged-transforms.transform=rotate-30", "--steps-figure", tmp_path / "steps.png",
        "--json", tmp_path / "r.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "steps.png").stat().st_size > 10_000 and (tmp_path / "steps.svg").is_file()
    assert json.loads((tmp_path / "r.json").read_text())["steps_figure"][0].endswith("steps.png")
