"""One request through every door: ``explain``, ``evaluate``, ``retrieve`` and the web API accept and refuse
the same settings with the same one-line message (one table of cases), and hand out the same numbers."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient  # noqa: E402
from webtools import TINY, image_bytes  # noqa: E402

from simexplain.cli import main  # noqa: E402
from simexplain.studies import Store  # noqa: E402
from simexplain.web import WebSettings, create_app  # noqa: E402

# (methods, metrics asked for, --set settings, expected): each method's config holds the expected values, or
# the refusal's one line holds the expected words. Methods without randomness, so configs compare whole.
IXG, OCCLUSION, CAM = "input-x-gradient", "conditional-occlusion", "interaction-cam"
CASES = [
    ([IXG], False, ["guided=true"], {IXG: {"guided": True}}),
    ([IXG], False, ["input-x-gradient.guided=yes"], {IXG: {"guided": True}}),
    ([IXG], False, ["input-x-gradient.guided=true", "guided=false"], {IXG: {"guided": True}}),
    ([OCCLUSION], False, ["window=16", f"{OCCLUSION}.stride=8.0"], {OCCLUSION: {"window": 16, "stride": 8}}),
    ([CAM], False, ["reduction=max", "gradient_interaction=1"], {CAM: {"gradient_interaction": True}}),
    ([IXG, OCCLUSION], False, ["guided=true", "window=8"], {IXG: {"guided": True}, OCCLUSION: {"window": 8}}),
    ([CAM], True, ["metrics.step=256", "reduction=attn"], {CAM: {"reduction": "attn"}}),
    ([IXG], False, ["samples=3"], "setting 'samples': no chosen method has a parameter 'samples'"),
    ([IXG], False, ["smooth-grad.samples=3"], "'smooth-grad' is not among the chosen methods"),
    ([IXG], False, ["metrics.step=32"], "setting 'metrics.step': no metrics are asked for"),
    ([IXG], True, ["metrics.steps=32"], "the metrics have no setting 'steps'"),
    ([IXG], True, ["metrics.step=0"], "setting 'metrics.step': step must be a positive integer"),
    ([OCCLUSION], False, ["window=-1"], "setting 'window': window must be a positive integer"),
    ([IXG], False, ["guided=maybe"], "setting 'guided': guided must be true or false"),
    ([IXG], False, ["guided=true", "guided=false"], "setting 'guided' is given twice"),
    ([IXG], False, [".guided=true"], "setting '.guided': write KEY=VALUE"),
    ([IXG], False, ["input-x-gradient.=true"], "write KEY=VALUE"),
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("doors")
    gallery = folder / "gallery"
    gallery.mkdir()
    for index in range(3):
        (gallery / f"g{index}.png").write_bytes(image_bytes(index))
    return {"a": gallery / "g0.png", "b": gallery / "g1.png", "gallery": gallery, "root": folder}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(WebSettings(models=(TINY,)))) as client:
        yield client


def cli(args: list, capsys) -> tuple[int, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.err.strip().removeprefix("simexplain: error: ")


def through_explain(case, files, capsys, tmp_path) -> dict | str:
    methods, metrics, settings, _ = case
    args = ["explain", files["a"], files["b"], "--model", TINY, "--json", tmp_path / "explain.json"]
    args += [f"--method={m}" for m in methods] + [f"--set={s}" for s in settings]
    status, error = cli(args + (["--metrics", "SI"] if metrics else []), capsys)
    if status != 0:
        return error
    answer = json.loads((tmp_path / "explain.json").read_text())
    return {e["method"]: e["config"] for e in answer["explanations"]}


def through_evaluate(case, files, capsys, tmp_path) -> dict | str:
    methods, metrics, settings, _ = case
    db = tmp_path / "evaluate.sqlite"
    args = ["evaluate", "--pairs", "demo", "--limit", "1", "--db", db, "--model", TINY]
    args += ["--methods", ",".join(methods), "--metrics", "SI" if metrics else "none"]
    status, error = cli(args + [f"--set={s}" for s in settings], capsys)
    if status != 0:
        return error
    with Store(db, readonly=True) as store:
        method_of = {v["label"]: v["method"] for v in store.variants()}
        return {method_of[item.variant]: item.config for item in store.items()}


def through_retrieve(case, files, capsys, tmp_path) -> dict | str | None:
    methods, metrics, settings, _ = case
    if len(methods) != 1 or metrics:
        return None  # one method, no metrics: all retrieve can be asked
    args = ["retrieve", files["a"], files["gallery"], "--top", "2", "--model", TINY, "--method", methods[0]]
    args += ["--cache", tmp_path / "cache", "--json", tmp_path / "retrieve.json"]
    status, error = cli(args + [f"--set={s}" for s in settings], capsys)
    if status != 0:
        return error
    return {methods[0]: json.loads((tmp_path / "retrieve.json").read_text())["config"]}


def through_web(case, files, client) -> dict | str:
    methods, metrics, settings, _ = case
    # The settings as a JSON object of texts, as the page sends them; written by hand to keep a repeated key.
    params = (
        "{"
        + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, _, v in (s.partition("=") for s in settings))
        + "}"
    )
    data = {"methods": ",".join(methods), "params": params, **({"metrics": "SI"} if metrics else {})}
    images = {
        name: (files[key].name, files[key].read_bytes(), "image/png")
        for name, key in (("image1", "a"), ("image2", "b"))
    }
    response = client.post("/api/explain", files=images, data=data)
    if response.status_code != 200:
        assert response.status_code == 422, response.text
        return response.json()["error"]
    return {e["method"]: e["config"] for e in response.json()["explanations"]}


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c[2]) + (" +metrics" if c[1] else "") for c in CASES])
def test_every_door_accepts_and_refuses_the_same_settings(case, files, client, capsys, tmp_path):
    found = {
        "explain": through_explain(case, files, capsys, tmp_path),
        "evaluate": through_evaluate(case, files, capsys, tmp_path),
        "retrieve": through_retrieve(case, files, capsys, tmp_path),
        "web": through_web(case, files, client),
    }
    found = {door: result for door, result in found.items() if result is not None}
    first = found["explain"]
    assert all(result == first for result in found.values()), found
    expected = case[3]
    if isinstance(expected, str):
        assert isinstance(first, str) and expected in first and "\n" not in first, first
    else:
        assert isinstance(first, dict) and list(first) == list(expected), first
        for method, values in expected.items():
            assert values.items() <= first[method].items(), (method, first[method])


def test_a_web_answer_and_explain_json_hold_the_same_numbers(files, client, capsys, tmp_path):
    methods, settings = "interaction-cam,smooth-grad", ["samples=3", "seed=4", "metrics.step=128"]
    out = tmp_path / "answer.json"
    args = ["explain", files["a"], files["b"], "--model", TINY, "--metrics", "SI,SD,SAD,CAD", "--json", out]
    args += [f"--method={m}" for m in methods.split(",")] + [f"--set={s}" for s in settings]
    assert cli(args, capsys)[0] == 0
    from_cli = json.loads(out.read_text())
    images = {
        name: (files[key].name, files[key].read_bytes(), "image/png")
        for name, key in (("image1", "a"), ("image2", "b"))
    }
    params = json.dumps(dict(s.split("=") for s in settings))
    response = client.post(
        "/api/explain", files=images, data={"methods": methods, "params": params, "metrics": "SI,SD,SAD,CAD"}
    )
    from_web = response.json()
    assert from_web["model"] == from_cli["model"] == TINY and from_web["model_name"] == from_cli["model_name"]
    assert from_web["score"] == from_cli["score"] and from_web["device"] == from_cli["device"]
    assert len(from_web["explanations"]) == len(from_cli["explanations"]) == 2
    for web, cli_answer in zip(from_web["explanations"], from_cli["explanations"]):
        same = ("method", "config", "score", "metrics")
        assert {k: web[k] for k in same} == {k: cli_answer[k] for k in same}
        assert web["metrics"]["mean"]["SAD"] is not None
    # the web's answer is the service's shape plus its own delivery fields
    assert set(from_web) - set(from_cli) == {"id", "figures", "inputs"}
