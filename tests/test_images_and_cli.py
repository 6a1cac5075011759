import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import simexplain
from simexplain import SimexplainError
from simexplain.cli import main
from simexplain.images import load_image, read_image
from simexplain.preprocessing import IDENTITY


def _huge_png(path, width=40000, height=40000):
    """A tiny file whose header claims a huge image (a decompression bomb)."""
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 16  # PNG signature (8) + chunk length (4) + b"IHDR" (4)
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


@pytest.fixture
def bad_files(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 50)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    huge = tmp_path / "huge.png"
    _huge_png(huge)
    return {"corrupt": corrupt, "empty": empty, "text": text, "huge": huge, "missing": tmp_path / "nope.jpg"}


def test_bad_files_give_one_clear_line_naming_the_file(bad_files):
    for kind, path in bad_files.items():
        with pytest.raises(SimexplainError) as info:
            read_image(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, kind
    with pytest.raises(SimexplainError, match="too large"):
        read_image(bad_files["huge"])


def test_image_modes_are_converted_and_exif_orientation_applied(tmp_path):
    gray16 = Image.fromarray(np.full((20, 30), 65535, dtype=np.uint16))
    assert read_image(gray16).mode == "RGB"
    assert np.asarray(read_image(gray16)).min() == 255
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert np.asarray(read_image(rgba))[0, 0].tolist() == [255, 255, 255]  # transparent → white
    palette = Image.new("P", (10, 10))
    assert read_image(palette).mode == "RGB"
    rotated = tmp_path / "rotated.jpg"
    image = Image.new("RGB", (40, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise" orientation tag
    image.save(rotated, exif=exif)
    assert read_image(rotated).size == (20, 40)


def test_arrays_and_tensors_load_at_the_model_input_size():
    model = simexplain.PairModel(torch.nn.Flatten(), preprocessing=IDENTITY)
    x1, x2 = simexplain.load_images(np.random.rand(300, 400, 3), torch.rand(3, 260, 270), model)
    assert x1.shape == x2.shape == (1, 3, 224, 224)
    with pytest.raises(SimexplainError, match="shape"):
        load_image(np.zeros((4, 4, 7)), model)


def test_cli_explains_two_images_and_writes_figure_and_json(tmp_path, capsys):
    out, report = tmp_path / "fig.png", tmp_path / "out.json"
    paths = [str(simexplain.sample_path(n)) for n in ("chelsea.jpg", "coffee.jpg")]
    code = main(["explain", *paths, "--method", "input-x-gradient", "--out", str(out), "--json", str(report)])
    assert code == 0
    assert out.stat().st_size > 10_000 and out.with_suffix(".svg").exists()
    assert "similarity" in capsys.readouterr().out
    assert '"input-x-gradient"' in report.read_text()


def test_cli_errors_are_one_line_with_status_1(bad_files, capsys):
    good = str(simexplain.sample_path("chelsea.jpg"))
    for path in bad_files.values():
        assert main(["explain", good, str(path), "--method", "input-x-gradient"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(path) in err
    assert main(["explain", good, good, "--method", "nope"]) == 1
    assert "unknown method" in capsys.readouterr().err
    assert main(["explain", good, good, "--model", "nope"]) == 1
    assert "known:" in capsys.readouterr().err


def test_cli_usage_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        main(["explain", "--no-such-flag"])
    assert info.value.code == 2


def test_cli_lists_models_and_methods(capsys):
    assert main(["models"]) == 0
    assert "efficientnet-lite0" in capsys.readouterr().out
    assert main(["methods"]) == 0
    assert "input-x-gradient" in capsys.readouterr().out


def test_cli_demo_writes_a_png(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["explain", "--demo", "--method", "input-x-gradient", "--out", str(out), "--seed", "1"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "SUPERVISED" in capsys.readouterr().out


def test_cli_set_routes_parameters_to_the_methods_that_have_them():
    from simexplain.cli import method_params

    params = method_params(
        ["smooth-grad", "interaction-cam"], ["samples=3", "interaction-cam.reduction=max"], 7
    )
    assert params == {"smooth-grad": {"samples": 3, "seed": 7}, "interaction-cam": {"reduction": "max"}}
    with pytest.raises(SimexplainError, match="no chosen method"):
        method_params(["input-x-gradient"], ["samples=3"], None)


def test_cli_metrics_print_a_table_and_go_into_the_json(tmp_path, capsys):
    report = tmp_path / "out.json"
    paths = [str(simexplain.sample_path(n)) for n in ("chelsea.jpg", "coffee.jpg")]
    code = main(
        ["explain", *paths, "--method", "input-x-gradient", "--metrics", "SAD,CAD", "--json", str(report)]
    )
    assert code == 0
    assert "SAD" in capsys.readouterr().out
    import json

    metrics = json.loads(report.read_text())["metrics"]["input-x-gradient"]
    assert "SAD" in json.dumps(metrics) and "CAD" in json.dumps(metrics)
