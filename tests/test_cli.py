"""The command line: a thin layer over the service; usage errors exit 2 before any model work."""

import json

import pytest

import simexplain
from simexplain import service
from simexplain.cli import main
from simexplain.service import parse_settings

CAT, COFFEE = (str(simexplain.sample_path(n)) for n in ("chelsea.jpg", "coffee.jpg"))


@pytest.fixture
def no_model_work(monkeypatch):
    """Fail the test if the command reaches the model."""

    def refuse(*args, **kwargs):
        raise AssertionError("model work started before the arguments were checked")

    monkeypatch.setattr(service, "get_model", refuse)


def test_explain_writes_figure_and_json_with_every_config(tmp_path, capsys):
    out, report = tmp_path / "fig.png", tmp_path / "out.json"
    args = ["explain", CAT, COFFEE, "--method", "input-x-gradient", "--method", "pairwise-occlusion"]
    args += ["--set", "pairwise-occlusion.samples=4", "--set", "guided=false"]
    assert main([*args, "--out", str(out), "--json", str(report)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.with_suffix(".svg").exists()
    assert "similarity" in capsys.readouterr().out
    document = json.loads(report.read_text())
    configs = {e["method"]: e["config"] for e in document["explanations"]}
    assert configs["input-x-gradient"] == {"guided": False}
    # A seedless pairwise occlusion records the seed it drew, so the figure can be reproduced.
    assert configs["pairwise-occlusion"]["samples"] == 4 and isinstance(
        configs["pairwise-occlusion"]["seed"], int
    )
    assert all(e["seconds"] > 0 for e in document["explanations"])
    assert document["files"] == [str(out), str(out.with_suffix(".svg"))]


def test_json_configs_rerun_to_the_same_maps(tmp_path):
    report = tmp_path / "out.json"
    args = ["explain", CAT, COFFEE, "--method", "smooth-grad", "--set", "samples=2", "--json", str(report)]
    assert main(args) == 0
    config = json.loads(report.read_text())["explanations"][0]["config"]
    model = service.get_model()
    x1, x2 = service.load_pair(model, CAT, COFFEE)
    first = simexplain.explain(model, x1, x2, "smooth-grad", **config)
    again = simexplain.explain(model, x1, x2, "smooth-grad", **config)
    assert first.config == config and (first.map1 == again.map1).all()


def test_metrics_table_and_numbers_in_the_json(tmp_path, capsys):
    report = tmp_path / "out.json"
    args = [
        "explain",
        CAT,
        COFFEE,
        "--method",
        "input-x-gradient",
        "--metrics",
        "SAD,CAD",
        "--json",
        str(report),
    ]
    assert main(args) == 0
    assert "SAD" in capsys.readouterr().out
    metrics = json.loads(report.read_text())["explanations"][0]["metrics"]
    for name in ("SAD", "CAD"):
        value = metrics["mean"][name]
        assert isinstance(value, float) and 0 <= value <= 1, (name, value)


@pytest.mark.parametrize(
    "args, words",
    [
        (["explain", CAT, COFFEE, "--method", "nope"], "unknown method"),
        (["explain", CAT, COFFEE, "--model", "nope"], "unknown model"),
        (["explain", CAT, COFFEE, "--metrics", "XX"], "unknown metric"),
        (["explain", CAT, COFFEE, "--batch-size", "0"], "--batch-size must be a positive integer"),
        (["explain", CAT, COFFEE, "--set", "samples=3", "--method", "input-x-gradient"], "no chosen method"),
        (["explain", CAT, COFFEE, "--set", "smooth-grad.samples=3"], "not among the chosen methods"),
        (["explain", CAT, COFFEE, "--set", "noequals"], "KEY=VALUE"),
        (["explain", CAT, COFFEE, "--out", "/no/such/folder/f.png"], "does not exist"),
        (["explain", CAT, COFFEE, "--json", "/no/such/folder/f.json"], "does not exist"),
        (["explain", CAT, COFFEE, "--out", "figure.gif"], ".png, .svg"),
        (["explain", CAT, COFFEE, "--weights", "/no/such/file.pth"], "no such file"),
        (["explain", CAT, COFFEE, "--device", "cuda:7"], "device"),
        (["explain", CAT, COFFEE, "--device", "tpu-ish"], "device"),
        (["explain", CAT], "exactly two images"),
        (["explain"], "--demo"),
    ],
)
def test_usage_errors_exit_2_with_one_line_before_any_model_work(args, words, no_model_work, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("simexplain: error:") and words in err, err


def test_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        main(["explain", "--no-such-flag"])
    assert info.value.code == 2


def test_unreadable_images_exit_with_one_line_naming_them(tmp_path, capsys):
    text, empty, corrupt = tmp_path / "notes.png", tmp_path / "empty.png", tmp_path / "corrupt.jpg"
    text.write_text("this is not an image")
    empty.write_bytes(b"")
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 50)
    # A path that cannot be an image is a usage error (2, before the model); contents are read later (1).
    for bad, status in ((text, 1), (corrupt, 1), (empty, 2), (tmp_path / "missing.jpg", 2), (tmp_path, 2)):
        assert main(["explain", CAT, str(bad), "--method", "input-x-gradient"]) == status, bad
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(bad) in err, err


def test_lists_models_and_methods(capsys):
    assert main(["models"]) == 0
    assert "efficientnet-lite0" in capsys.readouterr().out
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("input-x-gradient ")
    # one column for the descriptions and the parameters, however long a name is
    (column,) = {len(line) - len(line.lstrip()) for line in lines[1::2]}
    assert all(line[column - 1] == " " and line[column] != " " for line in lines[::2])


def test_demo_writes_a_png(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["explain", "--demo", "--method", "input-x-gradient", "--out", str(out), "--seed", "1"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "SUPERVISED" in capsys.readouterr().out


def test_settings_are_parsed_strictly():
    assert parse_settings(["guided=false", "samples=3", "x.transform=rotate-90", "scale=(0.1, 0.2)"]) == [
        ("guided", False),
        ("samples", 3),
        ("x.transform", "rotate-90"),
        ("scale", (0.1, 0.2)),
    ]


def test_the_demo_is_the_same_every_time(tmp_path):
    reports = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.json"
        assert (
            main(
                [
                    "explain",
                    "--demo",
                    "--method",
                    "averaged-transforms",
                    "--json",
                    str(path),
                    "--out",
                    str(tmp_path / f"{name}.png"),
                ]
            )
            == 0
        )
        reports.append(json.loads(path.read_text())["explanations"][0])
    assert reports[0]["config"] == reports[1]["config"] and reports[0]["config"]["seed"] == 0
    assert reports[0]["score"] == reports[1]["score"]
