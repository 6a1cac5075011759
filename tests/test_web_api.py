"""The JSON API through FastAPI's test client: every endpoint and error, the downloads, cancel and the queue.

Two tiny CNNs (tests/tiny.py, 32×32 inputs) are served; answers are compared with ``service.run`` on the same
bytes, so a wrong map, score or config fails.
"""

from __future__ import annotations

import io
import json
import re
import struct
import tempfile
import threading
import time
import zlib

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient  # noqa: E402
from tiny import assert_same_state, model_state  # noqa: E402
from webtools import TINY, TINY_B, image_bytes  # noqa: E402

from simexplain import service  # noqa: E402
from simexplain.cli import main  # noqa: E402
from simexplain.web import WebSettings, create_app  # noqa: E402
from simexplain.web.limits import DEFAULT_LIMITS  # noqa: E402

LIMIT = 3_000_000
CAPS = {"samples": 60, "windows": 100, "curve-points": 200}  # the other units keep their defaults


@pytest.fixture(scope="module")
def app():
    return create_app(
        WebSettings(
            models=(TINY, TINY_B),
            upload_limit=LIMIT,
            max_pixels=600_000,
            queue_size=2,
            keep=4,
            work_limits=CAPS,
        )
    )


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as client:
        yield client


def pair(a: bytes | None = None, b: bytes | None = None, names=("a.png", "b.png")) -> dict:
    return {
        "image1": (names[0], image_bytes(0) if a is None else a, "image/png"),
        "image2": (names[1], image_bytes(1) if b is None else b, "image/png"),
    }


def explain(client, data=None, files=None, **kwargs):
    return client.post("/api/explain", files=pair() if files is None else files, data=data or {}, **kwargs)


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and body["error"], body
    return body["error"]


def wait(client, job_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- facts
def test_page_static_files_and_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text
    for name in ("", "static/app.js", "static/style.css"):  # offline: nothing is fetched from elsewhere
        assert not re.search(r"(https?:)?//[a-z]", client.get("/" + name).text), name
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load a CDN's scripts
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("app.js", "javascript"), ("style.css", "css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    for name in ("../app.py", "..%2Fapp.py", "jobs.py", "%2e%2e%2f%2e%2e%2fpyproject.toml"):
        assert client.get(f"/static/{name}").status_code == 404
    assert client.get("/api/samples/chelsea.jpg").content[:2] == b"\xff\xd8"
    assert "no sample" in error_of(client.get("/api/samples/pyproject.toml"), 404)
    assert client.get("/api/samples/..%2F..%2Fcli.py").status_code == 404


def test_health_models_methods(client):
    assert client.get("/api/health").json() == {
        "status": "ok",
        "models": [TINY, TINY_B],
        "pending": 0,
        "capacity": 2,
    }
    models = client.get("/api/models").json()
    assert [(m["name"], m["model_name"], m["default"]) for m in models] == [
        (TINY, "tiny-cnn-0", True),
        (TINY_B, "tiny-cnn-1", False),
    ]
    assert models[0]["input_size"] == [32, 32] and models[0]["layer"] == "features.3"
    from simexplain.methods import available, get

    methods = {m["name"]: m for m in client.get("/api/methods").json()}
    assert list(methods) == list(available())
    assert methods["interaction-cam"]["family"] == get("interaction-cam").family
    assert methods["smooth-grad"]["parameters"]["samples"] == get("smooth-grad").parameters()["samples"]
    json.dumps(methods)  # every default is plain JSON


def test_openapi_describes_the_api(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/explain"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["image1"]  # image2, or a text for a model served with its text tower
    assert set(body["properties"]) >= {"image2", "text", "params", "metrics"}
    answers = schema["paths"]["/api/explain"]["post"]["responses"]
    assert {"200", "400", "413", "422", "429"} <= set(answers)
    # The answer's schema is generated from the service's one answer shape, plus the web's delivery fields.
    from typing_extensions import get_type_hints

    shapes = schema["components"]["schemas"]
    answer = shapes["ExplainAnswer"]
    assert set(answer["properties"]) == set(get_type_hints(service.AnswerJSON)) | {"id", "figures", "inputs"}
    explanation = shapes["ExplanationJSON"]
    assert set(explanation["properties"]) == set(get_type_hints(service.ExplanationJSON))
    assert set(explanation["required"]) == {"method", "config", "score", "seconds", "metrics"}


# ---------------------------------------------------------------------------------------------- answers
def test_explain_answer_matches_the_service(client, app):
    response = explain(client, {"methods": "interaction-cam,input-x-gradient"})
    assert response.status_code == 200, response.text
    answer = response.json()
    model = app.state.simexplain.models[TINY]
    expected = service.run(
        model, image_bytes(0), image_bytes(1), service.prepare("interaction-cam,input-x-gradient")
    )
    assert answer["model"] == TINY and answer["model_name"] == "tiny-cnn-0"
    assert answer["score"] == pytest.approx(float(expected.score[0]), abs=1e-6)
    assert answer["images"] == ["a.png", "b.png"]
    cam, ixg = answer["explanations"]
    assert (cam["method"], ixg["method"]) == ("interaction-cam", "input-x-gradient")
    assert cam["config"] == expected.outcomes[0].config and cam["seconds"] > 0
    assert cam["score"] == pytest.approx(answer["score"], abs=1e-6)
    # Interaction-CAM on its native 16×16 feature grid; Input×Gradient at the 32×32 input.
    grid = expected.outcomes[0].explanation.grid1[0]
    assert torch.tensor(cam["map1"]).shape == grid.shape == (16, 16)
    assert torch.allclose(torch.tensor(cam["map1"]), grid.float(), rtol=1e-4, atol=1e-6)
    assert torch.tensor(ixg["map2"]).shape == (32, 32)
    assert torch.allclose(
        torch.tensor(ixg["map2"]), expected.outcomes[1].explanation.map2[0].float(), atol=1e-5
    )


def test_params_metrics_and_the_second_model(client):
    params = {"smooth-grad.samples": 3, "smooth-grad.seed": 5, "metrics.step": 256}
    data = {"model": TINY_B, "methods": "smooth-grad", "params": json.dumps(params), "metrics": "SI,SD"}
    answer = explain(client, data).json()
    assert answer["model_name"] == "tiny-cnn-1"
    (entry,) = answer["explanations"]
    assert entry["config"]["samples"] == 3 and entry["config"]["seed"] == 5
    assert {"SI", "SD"} <= set(entry["metrics"]["mean"])
    again = explain(client, data).json()["explanations"][0]
    assert again["map1"] == entry["map1"]  # seeded: the same map twice


def test_downloads_png_svg_json_and_inputs(client):
    answer = explain(client).json()
    png = client.get(answer["figures"]["png"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert "attachment" in png.headers["content-disposition"]
    svg = client.get(answer["figures"]["svg"])
    assert svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content[:2000]
    assert client.get(answer["figures"]["json"]).json() == answer
    from PIL import Image

    crop = Image.open(io.BytesIO(client.get(answer["inputs"][0]).content))
    assert crop.size == (32, 32)
    base = answer["figures"]["png"].rsplit("/", 1)[0]
    assert "no such result" in error_of(client.get(base + "/secret.txt"), 404)
    assert "no such result" in error_of(client.get("/api/results/nope/figure.png"), 404)


def test_results_are_bounded_and_files_stay_in_the_private_folder(client, app):
    store = app.state.simexplain.results
    first = explain(client).json()["id"]
    assert client.get(f"/api/results/{first}/figure.svg").status_code == 200
    assert (store.folder / f"{first}.figure.svg").is_file()
    ids = [explain(client).json()["id"] for _ in range(store.keep)]
    assert client.get(f"/api/results/{first}/figure.png").status_code == 404  # the oldest was dropped
    assert not (store.folder / f"{first}.figure.svg").exists()  # with its files
    client.get(f"/api/results/{ids[-1]}/figure.png")
    assert {path.name.split(".")[0] for path in store.folder.iterdir()} <= set(ids)


def test_client_file_names_are_labels_never_paths(client, app, monkeypatch, tmp_path):
    # A 1.5 MB upload would spill to a temporary file in Starlette's default parser: here nothing may.
    def no_disk(*args, **kwargs):
        raise AssertionError("an upload touched the file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_disk)
    big = image_bytes(2, size=700, format="BMP")
    assert 1_000_000 < len(big) < LIMIT
    files = pair(big, None, names=("../../etc/passwd", "C:\\x\\..\\evil\x00.png"))
    response = explain(client, files=files)
    assert response.status_code == 200, response.text
    assert response.json()["images"] == ["passwd", "evil%00.png"]  # shown as labels only


# ---------------------------------------------------------------------------------------------- errors
def test_bad_images_are_400(client):
    assert error_of(explain(client, files=pair(b"not an image")), 400) == (
        "image 1: not an image file (PNG, JPEG, WebP, ... expected)"
    )
    assert "image 2: empty file" == error_of(explain(client, files=pair(None, b"")), 400)
    files = pair()
    del files["image2"]
    assert error_of(explain(client, files=files), 400) == "missing file image2"
    assert "send it as a file" in error_of(
        explain(client, {"image2": "text"}, files={"image1": files["image1"]}), 400
    )
    assert "multipart" in error_of(client.post("/api/explain", json={"image1": "x"}), 400)
    garbled = client.post(
        "/api/explain", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert garbled.status_code == 400 and garbled.json()["error"]
    # A PNG whose header is fine but whose pixel data is broken: decoding fails in the job, one line.
    broken = image_bytes(3)[:-40]
    assert "image 1" in error_of(explain(client, files=pair(broken)), 422)


@pytest.mark.parametrize(
    "data, status, words",
    [
        ({"model": "efficientnet-lite0"}, 422, "unknown model"),
        ({"methods": "grad-magic"}, 422, "unknown method"),
        ({"methods": "smooth-grad", "params": '{"smooth-grad.colour": 1}'}, 422, "no parameter"),
        ({"methods": "smooth-grad", "params": '{"smooth-grad.samples": -1}'}, 422, "samples"),
        ({"methods": "smooth-grad", "params": '{"samples": "many"}'}, 422, "samples"),
        ({"params": "{not json"}, 400, "not valid JSON"),
        ({"params": "[1, 2]"}, 400, "JSON object"),
        ({"metrics": "SI,XYZ"}, 422, "XYZ"),
        ({"params": '{"metrics.colour": 1}'}, 422, "colour"),
    ],
)
def test_bad_requests_are_one_line(client, data, status, words):
    assert words in error_of(explain(client, data), status)


def test_upload_limit_is_413_with_and_without_content_length(client):
    big = b"\0" * (LIMIT + 10)
    assert "upload too large" in error_of(explain(client, files=pair(big)), 413)
    body = (
        b'--x\r\nContent-Disposition: form-data; name="image1"; filename="a"\r\n\r\n' + big + b"\r\n--x--\r\n"
    )
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: chunked
    streamed = client.post(
        "/api/explain", content=chunks, headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert "upload too large" in error_of(streamed, 413)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width×height`` pixels but carries a few bytes of data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_too_many_pixels_is_413_before_decoding(client, monkeypatch):
    from PIL import ImageFile

    def never(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)  # the header alone must decide
    assert "too many pixels (1000×1000; limit 600000)" in error_of(
        explain(client, files=pair(png_header(1000, 1000))), 413
    )
    bomb = png_header(100_000, 100_000)  # past Pillow's own guard too
    assert "too many pixels" in error_of(explain(client, files=pair(None, bomb)), 413)


# ------------------------------------------------------------------------------------------ jobs and queue
def test_job_progress_and_answer(client, app):
    files, data = pair(), {"methods": "interaction-cam,smooth-grad", "params": '{"samples": 4, "seed": 0}'}
    started = client.post("/api/jobs", files=files, data=data)
    assert started.status_code == 202 and started.json()["state"] in ("queued", "running", "done")
    status = wait(client, started.json()["id"])
    assert status["state"] == "done" and status["progress"] == 1.0 and status["error"] is None
    assert [e["method"] for e in status["result"]["explanations"]] == ["interaction-cam", "smooth-grad"]
    assert app.state.simexplain.jobs.get(status["id"]).work is None  # the uploaded bytes are let go
    assert "no such job" in error_of(client.get("/api/jobs/unknown"), 404)
    assert "no such job" in error_of(client.delete("/api/jobs/unknown"), 404)


def test_queue_full_is_429_with_retry_after_and_cancel_stops_jobs(client, app):
    model = app.state.simexplain.models[TINY]
    before = model_state(model.encoder)
    data = {"methods": "smooth-grad", "params": '{"samples": 40, "batch_size": 1, "seed": 0}'}
    with model.locked():  # the worker waits for the model: jobs pile up behind it
        running = client.post("/api/jobs", files=pair(), data=data).json()
        queued = client.post("/api/jobs", files=pair(), data=data).json()
        refused = client.post("/api/jobs", files=pair(), data=data)
        assert "busy" in error_of(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert "busy" in error_of(explain(client), 429)
        assert client.get("/api/health").json()["pending"] == 2
        assert client.delete(f"/api/jobs/{queued['id']}").status_code == 200
        # The first job runs and reaches the model, stopped at the lock; its progress is reported after it.
        deadline = time.monotonic() + 10
        while client.get(f"/api/jobs/{running['id']}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        client.delete(f"/api/jobs/{running['id']}")
    assert wait(client, running["id"])["state"] == "cancelled"
    assert wait(client, queued["id"])["state"] == "cancelled"
    assert client.get("/api/health").json()["pending"] == 0
    assert_same_state(before, model_state(model.encoder))  # the cancelled method left the model as it was
    assert explain(client).status_code == 200  # and the server goes on


def test_cancelling_a_queued_job_frees_its_slot_at_once(client, app):
    model = app.state.simexplain.models[TINY]
    data = {"methods": "smooth-grad", "params": '{"samples": 40, "batch_size": 1, "seed": 0}'}
    with model.locked():  # the first job holds the worker: the second one waits in the queue
        running = client.post("/api/jobs", files=pair(), data=data).json()
        queued = client.post("/api/jobs", files=pair(), data=data).json()
        assert "busy" in error_of(client.post("/api/jobs", files=pair(), data=data), 429)
        cancelled = client.delete(f"/api/jobs/{queued['id']}").json()
        assert (cancelled["state"], cancelled["error"]) == ("cancelled", "cancelled")  # at once, not later
        assert client.get("/api/health").json()["pending"] == 1
        third = client.post("/api/jobs", files=pair(), data=data)
        assert third.status_code == 202, third.text  # the freed slot takes a new job
        assert app.state.simexplain.jobs.get(queued["id"]).work is None  # its upload is let go
        for job in (running, third.json()):
            client.delete(f"/api/jobs/{job['id']}")
    assert {wait(client, job["id"])["state"] for job in (running, third.json())} == {"cancelled"}
    assert client.get("/api/health").json()["pending"] == 0


def test_one_explanation_at_a_time_per_model(client, app):
    model = app.state.simexplain.models[TINY]
    inside, most = [0], [0]
    original = model.embed
    guard = threading.Lock()

    def counting(*args, **kwargs):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.002)
            return original(*args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    model.embed = counting
    try:
        threads = [
            threading.Thread(target=explain, args=(client, {"methods": "smooth-grad"})) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        del model.embed
    assert most[0] == 1


def test_a_field_sent_twice_is_422(client):
    image = ("a.png", image_bytes(0), "image/png")
    twice = [("image1", image), ("image1", ("b.png", image_bytes(5), "image/png")), ("image2", image)]
    assert error_of(explain(client, files=twice), 422) == "field 'image1' is sent twice; send each field once"
    response = explain(client, {"methods": ["smooth-grad", "interaction-cam"]})  # a text field twice
    assert error_of(response, 422) == "field 'methods' is sent twice; send each field once"


# ---------------------------------------------------------------------------------------------- work caps
@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"methods": "smooth-grad", "params": '{"samples": 61}'},
            "smooth-grad.samples=61 over this server's limit of 60 samples per request "
            "(simexplain serve --max-samples)",
        ),
        (  # 29 × 29 windows of 4 pixels on the 32×32 input
            {"methods": "conditional-occlusion", "params": '{"window": 4, "stride": 1}'},
            "conditional-occlusion.stride=1 makes 841 windows, over this server's limit of 100 windows per "
            "request (simexplain serve --max-windows)",
        ),
        (  # 32·32 steps of one pixel, and the untouched image
            {"methods": "input-x-gradient", "metrics": "SI", "params": '{"metrics.step": 1}'},
            "metrics.step=1 makes 1025 curve-points, over this server's limit of 200 curve-points "
            "per request (simexplain serve --max-curve-points)",
        ),
        (
            {"methods": "pair-interaction", "params": '{"projection": 5000}'},
            "pair-interaction.projection=5000 over this server's limit of 4096 dimensions per request "
            "(simexplain serve --max-dimensions)",
        ),
    ],
    ids=["samples", "windows", "curve-points", "dimensions"],
)
def test_work_over_a_cap_is_422_naming_the_setting_and_the_cap(client, data, message):
    assert error_of(explain(client, data), 422) == message
    assert client.get("/api/health").json()["pending"] == 0  # refused before it was queued


def test_work_at_the_caps_is_accepted(client):
    at_caps = {"smooth-grad.samples": 60, "metrics.step": 6, "seed": 0}  # ⌈1024 / 6⌉ + 1 = 172 points
    data = {"methods": "smooth-grad", "params": json.dumps(at_caps), "metrics": "SI"}
    assert explain(client, data).status_code == 200


def test_limits_and_the_work_of_each_method_are_reported(client):
    from simexplain.checks import WORK_UNITS
    from simexplain.methods import available, get

    limits = client.get("/api/limits").json()
    assert {unit: entry["max"] for unit, entry in limits["work"].items()} == {
        unit: CAPS.get(unit, default) for unit, (_, default) in WORK_UNITS.items()
    }
    assert (limits["upload_limit"], limits["queue"], limits["body_timeout"]) == (LIMIT, 2, 30.0)
    methods = {m["name"]: m["work"] for m in client.get("/api/methods").json()}
    assert methods["smooth-grad"] == {"samples": "samples"}
    assert methods["conditional-occlusion"] == {"stride": "windows"}
    assert methods["interaction-cam"] == {}
    assert methods == {name: {k: w.unit for k, w in get(name).work().items()} for name in available()}


def test_unknown_routes_and_verbs_are_json(client):
    assert error_of(client.get("/api/nothing"), 404) == "Not Found"
    assert error_of(client.put("/api/health"), 405) == "Method Not Allowed"


# ---------------------------------------------------------------------------------------------- command line
@pytest.mark.parametrize(
    "args, words",
    [
        (["--port", "0"], "--port 0"),
        (["--model", "no-such-model"], "unknown model"),
        (["--queue", "0"], "--queue"),
        (["--upload-limit", "-1"], "--upload-limit"),
        (["--device", "cuda:99"], "cuda:99"),
        (["--weights", "/no/such/file.pth"], "no such file"),
        (["--weights", __file__, "--weights", __file__], "2 --weights for 1 --model"),
        (["--model", TINY, "--model", TINY], "--model given twice"),
        (["--max-samples", "0"], "--max-samples"),
        (["--max-curve-points", "-3"], "--max-curve-points"),
        (["--body-timeout", "0"], "--body-timeout"),
    ],
)
def test_serve_usage_errors_exit_2_before_loading(args, words, capsys):
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_serve_binds_where_asked_and_says_so(host, warned, monkeypatch, capsys):
    import simexplain.web

    calls = []
    monkeypatch.setattr(
        simexplain.web, "serve", lambda settings, host, port: calls.append((settings, host, port))
    )
    assert main(["serve", "--host", host, "--port", "8123", "--model", TINY, "--queue", "3"]) == 0
    (settings, bound, port), out = calls[0], capsys.readouterr().out
    assert (bound, port, settings.models, settings.queue_size) == (host, 8123, (TINY,), 3)
    assert settings.upload_limit == 20_000_000 and settings.max_pixels == 50_000_000
    assert settings.work_limits == DEFAULT_LIMITS and settings.body_timeout == 30
    assert main(["serve", "--model", TINY, "--max-windows", "9", "--body-timeout", "2.5"]) == 0
    settings = calls[1][0]
    assert settings.work_limits == {**DEFAULT_LIMITS, "windows": 9} and settings.body_timeout == 2.5
    assert ("anyone who can reach this machine" in out) == warned


def test_without_the_web_extra_serve_says_which_extra_in_one_line(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if uvicorn were not installed
    assert main(["serve", "--model", TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "simexplain: error: the web page needs the web extra (uvicorn is missing): "
        "pip install 'simexplain[web]'"
    )


def test_pair_interaction_answers_carry_the_second_order_map(client, app):
    answer = explain(client, {"methods": "pair-interaction,interaction-cam"}).json()
    pair, cam = answer["explanations"]
    model = app.state.simexplain.models[TINY]
    expected = service.run(model, image_bytes(0), image_bytes(1), service.prepare("pair-interaction"))
    interaction = expected.outcomes[0].explanation.interaction[0].float()
    assert torch.tensor(pair["interaction"]).shape == interaction.shape == (16, 16, 16, 16)
    assert torch.allclose(torch.tensor(pair["interaction"]), interaction, rtol=1e-3, atol=1e-7)
    assert "interaction" not in cam or cam["interaction"] is None


def test_serve_loads_each_model_with_its_weights(monkeypatch, capsys, tmp_path):
    import simexplain.web

    weights = tmp_path / "checkpoint.pth"
    weights.write_bytes(b"stand-in: the tiny models take and ignore a weights path")
    monkeypatch.setattr(simexplain.web, "serve", lambda settings, host, port: None)
    loaded, load = [], service.get_model

    def spy(name=None, *, weights=None, **where):
        loaded.append((name, weights))
        return load(name, weights=weights, **where)

    monkeypatch.setattr(service, "get_model", spy)
    assert main(["serve", "--model", TINY, "--model", TINY_B, "--weights", str(weights)]) == 0
    assert loaded == [(TINY, str(weights)), (TINY_B, None)]
