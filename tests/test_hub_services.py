"""An hf: model wherever a model is named: the evaluation command (its store records the hub revision and the
weights' SHA-256), the web page, and without the hub extra installed (one line naming it)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

pytest.importorskip("transformers")

from hub_cache import commit_of, save_repo, tiny_models  # noqa: E402

from simexplain.cli import main  # noqa: E402
from simexplain.studies.store import Store  # noqa: E402

REPO = "simexplain-services/dinov2-reg"
NAME = f"hf:{REPO}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf-home")
    model, processor = tiny_models()["simexplain-tests/dinov2-reg"]
    snapshot = save_repo(home / "hub", REPO, model, processor)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(home))
        patch.delenv("HF_HUB_CACHE", raising=False)
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()


def test_evaluate_takes_an_hf_model_and_its_store_records_revision_and_sha256(hub, tmp_path, capsys):
    db = tmp_path / "results.sqlite"
    command = ["evaluate", "--pairs", "demo", "--db", str(db), "--model", NAME]
    command += ["--methods", "interaction-cam", "--metrics", "SAD", "--limit", "1", "--seed", "0"]
    assert main(command) == 0, capsys.readouterr().err
    with Store(db, readonly=True) as store:
        facts = store.run_facts()
    assert facts["model"] == NAME and facts["weights_sha256"] == hub
    assert facts["provenance"]["revision"] == commit_of(REPO)
    assert facts["provenance"]["repository"] == REPO and facts["weights"] is None
    assert main(command) == 0  # resumes: the same model, revision and weights
    assert "already stored" in capsys.readouterr().out


def test_the_web_page_lists_and_explains_with_an_hf_model(hub):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from webtools import image_bytes

    from simexplain.web import WebSettings, create_app

    app = create_app(WebSettings(models=(NAME,)))
    with TestClient(app) as client:
        (listed,) = client.get("/api/models").json()
        assert listed["name"] == NAME and listed["input_size"] == [56, 56]
        assert listed["layer"] == "model.encoder.layer.0"
        files = {
            "image1": ("a.png", image_bytes(0), "image/png"),
            "image2": ("b.png", image_bytes(1), "image/png"),
        }
        response = client.post("/api/explain", files=files, data={"methods": "interaction-cam"})
        assert response.status_code == 200, response.text
        (entry,) = response.json()["explanations"]
        assert len(entry["map1"]) == 4 and len(entry["map1"][0]) == 4  # the 56/14 patch grid


WITHOUT_EXTRA = """
import sys
for name in ("transformers", "open_clip", "huggingface_hub", "safetensors"):
    sys.modules[name] = None  # as if the hub extra were not installed
import simexplain
for name, options in (
    ("hf:facebook/dinov2-small", {}),
    ("open_clip:ViT-B-32/laion2b_s34b_b79k", {}),
    ("timm:vit_small_patch14_dinov2.lvd142m", {}),
):
    try:
        simexplain.load_model(name, **options)
    except simexplain.SimexplainError as error:
        assert "pip install 'simexplain[hub]'" in str(error) and "\\n" not in str(error), error
    else:
        raise AssertionError(name)
from simexplain.cli import main
assert main(["explain", "--demo", "--model", "hf:facebook/dinov2-small", "--method", "input-x-gradient"]) == 1
"""


def test_without_the_extra_a_hub_name_is_one_line_naming_it():
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "simexplain[hub]" in result.stderr  # the command line's one-line error


def test_simexplain_models_lists_the_families_each_route_knows(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    hf = out.split("\nhf:\n")[1].split("\nopen_clip:\n")[0]
    assert "families: DINOv2 (cls), DINOv2 with registers (cls)" in hf and "CLIP (projected)" in hf
    assert "SigLIP (pooler)" in hf and "any other AutoModel vision encoder" in hf
    assert "families: ViT (class-token or attention pooling)" in out.split("\nopen_clip:\n")[1]
    assert "timm:NAME.TAG" in out.split("\ntimm:\n")[1]
