"""Reading image files: bad files in one line, bombs, modes, EXIF, arrays at the model input size."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import simexplain
from simexplain import SimexplainError
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
