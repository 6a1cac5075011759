"""Reading images from every kind of source: bytes, one-line errors, and the decompression-bomb guard."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import simexplain
from simexplain import SimexplainError
from simexplain import images as images_module
from simexplain.images import MAX_PIXELS, load_image, read_image
from simexplain.preprocessing import IDENTITY


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _blank_png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit PNG of ``width×height`` black pixels: a bomb that is tiny on disk.

    Built row block by row block, so neither the pixels nor the raw stream are ever held in memory at once.
    """
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte "none", then the packed bits
    block = row * 512
    parts = [packer.compress(block) for _ in range(height // 512)]
    parts += [packer.compress(row * (height % 512)), packer.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _blank_png(20000, 20000)  # 400 million pixels, a few tens of kilobytes


def _png_bytes(width: int = 30, height: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def _one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message and len(message) < 200, message[:300]
    return message


def _refuses_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any decode fail the test loudly (not as a SimexplainError), to prove the refusal came first."""

    def load(self):
        raise AssertionError("the image was decoded before its size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


# ---------------------------------------------------------------- bytes


def test_encoded_bytes_read_like_the_file(tmp_path):
    data = _png_bytes()
    path = tmp_path / "a.png"
    path.write_bytes(data)
    expected = np.asarray(read_image(path))
    for source in (data, bytearray(data), memoryview(data)):
        image = read_image(source, "upload")
        assert image.mode == "RGB" and image.size == (30, 20)
        assert np.array_equal(np.asarray(image), expected)
    model = simexplain.PairModel(torch.nn.Flatten(), preprocessing=IDENTITY)
    x1, x2 = simexplain.load_images(data, memoryview(data), model)
    assert x1.shape == x2.shape == (1, 3, 224, 224)
    assert torch.equal(x1, load_image(path, model))


def test_bad_bytes_give_one_short_line_naming_the_image_never_the_data():
    model = simexplain.PairModel(torch.nn.Flatten(), preprocessing=IDENTITY)
    junk = b"\x01\x02 not an image " * 30_000  # 500,000 bytes
    with pytest.raises(SimexplainError) as info:
        simexplain.load_images(junk, _png_bytes(), model)
    assert _one_line(info) == "image 1: not an image file Pillow can read"
    with pytest.raises(SimexplainError) as info:
        simexplain.load_images(_png_bytes(), bytearray(junk), model)
    assert _one_line(info) == "image 2: not an image file Pillow can read"
    with pytest.raises(SimexplainError) as info:
        read_image(b"", "image 2")
    assert _one_line(info) == "image 2: empty image data"
    with pytest.raises(SimexplainError) as info:
        read_image(_png_bytes(300, 200)[:400], "photo.png")  # truncated upload
    assert _one_line(info).startswith("photo.png: cannot read image (")
    with pytest.raises(SimexplainError) as info:
        read_image(12345, "image 1")
    assert _one_line(info).startswith("image 1: unsupported image source int")


# ---------------------------------------------------------------- decompression bombs


def test_bomb_bytes_are_refused_in_one_line_and_pillow_settings_are_left_alone(bomb, monkeypatch):
    assert len(bomb) < 200_000
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(SimexplainError) as info:  # Pillow's own guard trips first: caught, same line
        read_image(bomb, "image 1")
    assert _one_line(info) == f"image 1: image too large (400000000 pixels; limit {MAX_PIXELS})"
    assert Image.MAX_IMAGE_PIXELS == before

    # With Pillow's guard switched off by other code, ours still refuses, from the header, before decoding.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    _refuses_without_decoding(monkeypatch)
    with pytest.raises(SimexplainError) as info:
        read_image(memoryview(bomb), "image 2")
    assert _one_line(info) == f"image 2: image too large (20000×20000 pixels; limit {MAX_PIXELS})"
    assert Image.MAX_IMAGE_PIXELS is None  # not touched, not even restored to something else


def test_our_limit_applies_between_pillows_warning_and_error():
    image = _blank_png(10000, 9000)  # 90 million: over the limit, under Pillow's error threshold
    before = Image.MAX_IMAGE_PIXELS
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(SimexplainError) as info:
        read_image(image, "image 1")
    assert _one_line(info) == f"image 1: image too large (10000×9000 pixels; limit {MAX_PIXELS})"
    assert Image.MAX_IMAGE_PIXELS == before


def test_the_module_limit_is_read_at_call_time(monkeypatch):
    monkeypatch.setattr(images_module, "MAX_PIXELS", 100)
    with pytest.raises(SimexplainError) as info:
        read_image(_png_bytes(11, 10), "image 1")
    assert _one_line(info) == "image 1: image too large (11×10 pixels; limit 100)"
    assert read_image(_png_bytes(10, 10)).size == (10, 10)


def test_bomb_paths_and_opened_pil_images_are_refused_before_decoding(bomb, tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    lazy = Image.open(path)  # a caller's own lazily opened image: only the header is read
    _refuses_without_decoding(monkeypatch)
    with pytest.raises(SimexplainError) as info:
        read_image(path)
    assert _one_line(info) == f"{path}: image too large (20000×20000 pixels; limit {MAX_PIXELS})"
    with pytest.raises(SimexplainError) as info:
        read_image(lazy, "image 2")
    assert _one_line(info).startswith("image 2: image too large (20000×20000 pixels")
    lazy.close()


def test_huge_arrays_and_tensors_are_refused_from_their_shape():
    # Broadcast views: no memory behind them, so any conversion before the check would blow up the test.
    array = np.broadcast_to(np.zeros((1, 1, 3), dtype=np.float64), (10000, 20000, 3))
    with pytest.raises(SimexplainError) as info:
        read_image(array, "image 1")
    assert _one_line(info) == f"image 1: image too large (20000×10000 pixels; limit {MAX_PIXELS})"
    tensor = torch.zeros(3, 1, 1).expand(3, 10000, 20000)
    with pytest.raises(SimexplainError) as info:
        read_image(tensor, "image 2")
    assert _one_line(info) == f"image 2: image too large (20000×10000 pixels; limit {MAX_PIXELS})"


# ---------------------------------------------------------------- arrays


def test_small_arrays_and_tensors_of_every_dtype_convert():
    assert read_image(torch.rand(3, 8, 6, dtype=torch.bfloat16)).size == (6, 8)
    assert read_image(torch.randint(0, 256, (1, 5, 7), dtype=torch.uint8)).size == (7, 5)
    assert np.asarray(read_image(np.ones((4, 4), dtype=bool))).min() == 255
    with pytest.raises(SimexplainError) as info:
        read_image(np.zeros((0, 5, 3)), "image 1")
    assert _one_line(info) == "image 1: array of shape (0, 5, 3) holds no pixels"
    with pytest.raises(SimexplainError) as info:
        read_image(np.zeros((2, 3, 4, 5)), "image 2")
    assert _one_line(info).startswith("image 2: array of shape (2, 3, 4, 5) is not")
