"""Model zoo: official checkpoint layouts, strict loading, safe unpickling, and every model under every
family.

Stand-in checkpoints are built from the layout manifests in ``tests/data/checkpoints`` (copies of the
project's ``shared/checkpoints``): every key, shape, dtype, container entry and prefix of the real files,
random values. The embedding after ``load_model`` is compared with a forward pass written here by hand from
the same tensors.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny import explain_every_method
from torch import Tensor

import simexplain
from simexplain import SimexplainError, load_model
from simexplain.models import ZOO, available
from simexplain.models.checkpoints import describe_checkpoint, load_checkpoint
from simexplain.models.resnets import BarlowTwins, DINOResNet, SimSiam, resnet50_trunk
from simexplain.models.simclr import RELEASED, Architecture, SimCLRv2
from simexplain.models.vits import MoCoV3, vit_base16

MANIFESTS = Path(os.environ.get("SIMEXPLAIN_MANIFESTS", Path(__file__).parent / "data" / "checkpoints"))
SIZE = 64


# ---------------------------------------------------------------- stand-in checkpoints from a manifest


def manifest(file: str) -> dict:
    return json.loads((MANIFESTS / file).read_text())


def state_dict_specs(m: dict) -> list[tuple[list[str], dict, dict]]:
    """(state_dict_path, tensors, counts) for the main state dict and every other one in the file."""
    main = m["counts"].get("this_state_dict", m["counts"])
    return [(m["state_dict_path"], m["tensors"], main)] + [
        (extra["state_dict_path"], extra["tensors"], extra["counts"])
        for extra in m.get("more_state_dicts", [])
    ]


def standin_tensor(key: str, spec: dict, generator: torch.Generator) -> Tensor:
    shape = spec["shape"]
    if spec["dtype"] == "int64":
        return torch.zeros(shape, dtype=torch.int64)
    if key.endswith("running_var"):
        # randn would give negative variances and NaN embeddings: keep them positive.
        return torch.rand(shape, generator=generator) + 0.5
    value = torch.randn(shape, generator=generator)
    if len(shape) >= 2:
        # Fan-in scaling keeps a 50-layer forward finite with random weights.
        value /= math.sqrt(math.prod(shape[1:]))
    return value


def build_container(m: dict, seed: int = 0) -> object:
    """The official top-level object of ``m`` (README of the manifests, "Using them in a test")."""
    generator = torch.Generator().manual_seed(seed)
    states = {
        tuple(path): {k: standin_tensor(k, spec, generator) for k, spec in tensors.items()}
        for path, tensors, _ in state_dict_specs(m)
    }
    container = m["container"]
    if container["type"] == "state_dict":
        return states[()]
    values = container.get("values", {})
    obj: dict = {}
    for key, kind in container["keys"].items():
        if kind == "state_dict":
            obj[key] = states[(key,)]
        elif kind == "int":
            obj[key] = values.get(key, 1)
        elif kind == "str":
            obj[key] = values.get(key, "x")
        elif kind == "omitted":
            obj[key] = {"state": {}, "param_groups": []}
        elif kind == "argparse.Namespace":
            obj[key] = argparse.Namespace(**values.get(key, {}))
        else:
            obj[key] = values.get(key, {})
    return obj


def save_official(m: dict, directory: Path, seed: int = 0) -> tuple[Path, object]:
    obj = build_container(m, seed)
    path = directory / m["file"]
    torch.save(obj, path)
    return path, obj


def stripped(state: dict) -> dict:
    return {k.removeprefix("module."): v for k, v in state.items()}


# ---------------------------------------------------------------- hand-written forwards from raw tensors


def bn(x: Tensor, sd: dict, p: str) -> Tensor:
    return F.batch_norm(
        x,
        sd[f"{p}.running_mean"],
        sd[f"{p}.running_var"],
        sd.get(f"{p}.weight"),
        sd.get(f"{p}.bias"),
        False,
        0.0,
        1e-5,
    )


def conv(x: Tensor, w: Tensor, stride: int = 1) -> Tensor:
    return F.conv2d(x, w, stride=stride, padding=(w.shape[-1] - 1) // 2)


def torchvision_trunk(sd: dict, x: Tensor, p: str = "") -> Tensor:
    """Pooled torchvision ResNet-50 features: stride on the 3×3 conv, ``downsample`` shortcut."""
    x = F.max_pool2d(F.relu(bn(conv(x, sd[f"{p}conv1.weight"], 2), sd, f"{p}bn1")), 3, 2, 1)
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        for i in range(blocks):
            q = f"{p}layer{stage}.{i}"
            stride = 2 if i == 0 and stage > 1 else 1
            h = F.relu(bn(conv(x, sd[f"{q}.conv1.weight"]), sd, f"{q}.bn1"))
            h = F.relu(bn(conv(h, sd[f"{q}.conv2.weight"], stride), sd, f"{q}.bn2"))
            h = bn(conv(h, sd[f"{q}.conv3.weight"]), sd, f"{q}.bn3")
            short = (
                bn(conv(x, sd[f"{q}.downsample.0.weight"], stride), sd, f"{q}.downsample.1") if i == 0 else x
            )
            x = F.relu(h + short)
    return x.mean((2, 3))


def simclr_trunk(sd: dict, x: Tensor, sk: bool) -> Tensor:
    """Pooled TF-SimCLR ResNet features from the converted ``resnet`` state dict."""
    if sk:
        x = F.relu(bn(conv(x, sd["net.0.0.weight"], 2), sd, "net.0.1.0"))
        x = F.relu(bn(conv(x, sd["net.0.2.weight"]), sd, "net.0.3.0"))
        x = F.relu(bn(conv(x, sd["net.0.4.weight"]), sd, "net.0.5.0"))
    else:
        x = F.relu(bn(conv(x, sd["net.0.0.weight"], 2), sd, "net.0.1.0"))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage in range(1, 5):
        i = 0
        while f"net.{stage}.blocks.{i}.net.0.weight" in sd:
            q = f"net.{stage}.blocks.{i}"
            stride = 2 if i == 0 and stage > 1 else 1
            h = F.relu(bn(conv(x, sd[f"{q}.net.0.weight"]), sd, f"{q}.net.1.0"))
            if sk:
                both = F.relu(
                    bn(conv(h, sd[f"{q}.net.2.main_conv.0.weight"], stride), sd, f"{q}.net.2.main_conv.1.0")
                )
                a, b = both.chunk(2, dim=1)
                g = (a + b).mean((2, 3), keepdim=True)
                g = F.relu(
                    bn(conv(g, sd[f"{q}.net.2.mixing_conv.0.weight"]), sd, f"{q}.net.2.mixing_conv.1.0")
                )
                ma, mb = conv(g, sd[f"{q}.net.2.mixing_conv.2.weight"]).chunk(2, dim=1)
                wa = torch.exp(ma) / (torch.exp(ma) + torch.exp(mb))
                h = a * wa + b * (1 - wa)
                h = bn(conv(h, sd[f"{q}.net.3.weight"]), sd, f"{q}.net.4.0")
            else:
                h = F.relu(bn(conv(h, sd[f"{q}.net.2.weight"], stride), sd, f"{q}.net.3.0"))
                h = bn(conv(h, sd[f"{q}.net.4.weight"]), sd, f"{q}.net.5.0")
            if i == 0 and sk:
                s = F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 2, 2) if stride > 1 else x
                short = bn(conv(s, sd[f"{q}.projection.shortcut.2.weight"]), sd, f"{q}.projection.bn.0")
            elif i == 0:
                short = bn(conv(x, sd[f"{q}.projection.shortcut.weight"], stride), sd, f"{q}.projection.bn.0")
            else:
                short = x
            x = F.relu(h + short)
            i += 1
    return x.mean((2, 3))


def mlp(sd: dict, x: Tensor, p: str, plan: str) -> Tensor:
    """A head from its layer plan: L = linear, B = batch norm, R = ReLU, G = GELU (indices in order)."""
    for i, op in enumerate(plan):
        q = f"{p}{i}"
        if op == "L":
            x = F.linear(x, sd[f"{q}.weight"], sd.get(f"{q}.bias"))
        elif op == "B":
            x = bn(x, sd, q)
        elif op == "R":
            x = F.relu(x)
        elif op == "G":
            x = F.gelu(x)
    return x


def vit(sd: dict, x: Tensor, p: str = "") -> Tensor:
    """ViT-B/16 CLS token after the final LayerNorm (224×224 input: no position-embedding resampling)."""
    t = (
        F.conv2d(x, sd[f"{p}patch_embed.proj.weight"], sd[f"{p}patch_embed.proj.bias"], stride=16)
        .flatten(2)
        .transpose(1, 2)
    )
    t = torch.cat([sd[f"{p}cls_token"].expand(len(x), -1, -1), t], 1) + sd[f"{p}pos_embed"]

    def ln(v: Tensor, q: str) -> Tensor:
        return F.layer_norm(v, (768,), sd[f"{q}.weight"], sd[f"{q}.bias"], 1e-6)

    for i in range(12):
        q = f"{p}blocks.{i}"
        qkv = F.linear(ln(t, f"{q}.norm1"), sd[f"{q}.attn.qkv.weight"], sd[f"{q}.attn.qkv.bias"])
        qh, kh, vh = qkv.unflatten(-1, (3, 12, 64)).permute(2, 0, 3, 1, 4)
        attn = (qh @ kh.transpose(-1, -2) / 8.0).softmax(-1) @ vh
        t = t + F.linear(
            attn.transpose(1, 2).flatten(2), sd[f"{q}.attn.proj.weight"], sd[f"{q}.attn.proj.bias"]
        )
        h = F.gelu(F.linear(ln(t, f"{q}.norm2"), sd[f"{q}.mlp.fc1.weight"], sd[f"{q}.mlp.fc1.bias"]))
        t = t + F.linear(h, sd[f"{q}.mlp.fc2.weight"], sd[f"{q}.mlp.fc2.bias"])
    return ln(t, f"{p}norm")[:, 0]


def assert_embeddings_close(actual: Tensor, expected: Tensor) -> None:
    assert actual.shape == expected.shape and torch.isfinite(expected).all()
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * scale)
    # The similarity the methods explain must agree too, not only the raw vectors.
    torch.testing.assert_close(
        F.cosine_similarity(actual[:1], actual[1:]),
        F.cosine_similarity(expected[:1], expected[1:]),
        rtol=1e-4,
        atol=1e-5,
    )


# ----------------------------------------------------------- key layout of every manifest (meta device: fast)


def _simclr(tag):
    return SimCLRv2(Architecture.parse(tag))


LAYOUTS = [
    ("simclrv2_r50_1x_sk0_ema.pth.json", ["resnet"], lambda: _simclr("r50_1x_sk0").resnet),
    ("simclrv2_r50_1x_sk0_ema.pth.json", ["head"], lambda: _simclr("r50_1x_sk0").head),
    ("simclrv2_r50_1x_sk1_ema.pth.json", ["resnet"], lambda: _simclr("r50_1x_sk1").resnet),
    ("simclrv2_r50_1x_sk1_ema.pth.json", ["head"], lambda: _simclr("r50_1x_sk1").head),
    ("simclrv2_r50_2x_sk0_ema.pth.json", ["resnet"], lambda: _simclr("r50_2x_sk0").resnet),
    ("simclrv2_r50_2x_sk0_ema.pth.json", ["head"], lambda: _simclr("r50_2x_sk0").head),
    ("barlowtwins_checkpoint.pth.json", ["model"], BarlowTwins),
    ("barlowtwins_resnet50.pth.json", [], resnet50_trunk),
    ("simsiam_checkpoint_0099.pth.tar.json", ["state_dict"], SimSiam),
    ("mocov3_vit-b-300ep.pth.tar.json", ["state_dict"], MoCoV3),
    ("dino_resnet50_pretrain.pth.json", [], resnet50_trunk),
    ("dino_resnet50_pretrain_full_checkpoint.pth.json", ["teacher"], DINOResNet),
    ("dino_resnet50_pretrain_full_checkpoint.pth.json", ["student"], DINOResNet),
    ("dino_vitbase16_pretrain.pth.json", [], vit_base16),
]


def test_every_manifest_state_dict_has_a_layout_check():
    covered = {(file, tuple(path)) for file, path, _ in LAYOUTS}
    wanted = {
        (f.name, tuple(path))
        for f in MANIFESTS.glob("*.json")
        for path, _, _ in state_dict_specs(json.loads(f.read_text()))
        if path != ["dino_loss"]  # DINO's loss centre: a training buffer, no network loads it
    }
    assert wanted and wanted == covered


@pytest.mark.parametrize(
    ("file", "path", "factory"), LAYOUTS, ids=[f"{f}:{'/'.join(p)}" for f, p, _ in LAYOUTS]
)
def test_library_state_dict_equals_the_official_layout(file, path, factory):
    spec, counts = next(
        (tensors, counts) for p, tensors, counts in state_dict_specs(manifest(file)) if p == path
    )
    with torch.device("meta"):
        module = factory()
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in module.state_dict().items()]
    theirs = [(k.removeprefix("module."), s["shape"], s["dtype"]) for k, s in spec.items()]
    assert ours == theirs
    assert sum(p.numel() for p in module.parameters()) == counts["parameters"]
    assert len(ours) == counts["tensors"]


# Published sizes (SimCLRv2 paper, Table of ResNet variants, millions of parameters without the fc layer).
SIMCLR_SIZES_M = {
    "r50_1x_sk0": 24,
    "r50_1x_sk1": 35,
    "r50_2x_sk0": 94,
    "r50_2x_sk1": 140,
    "r101_1x_sk0": 43,
    "r101_1x_sk1": 65,
    "r101_2x_sk0": 170,
    "r101_2x_sk1": 257,
    "r152_1x_sk0": 58,
    "r152_1x_sk1": 89,
    "r152_2x_sk0": 233,
    "r152_2x_sk1": 354,
    "r152_3x_sk1": 795,
}


def test_simclr_variants_without_manifest_have_their_published_sizes():
    assert set(SIMCLR_SIZES_M) == set(RELEASED)
    for tag, millions in SIMCLR_SIZES_M.items():
        with torch.device("meta"):
            resnet = SimCLRv2(Architecture.parse(tag)).resnet
        count = sum(p.numel() for name, p in resnet.named_parameters() if not name.startswith("fc."))
        assert abs(count / 1e6 - millions) <= 1, tag  # the paper rounds; r152 2x reads 232.3 here


def test_simclr_variant_names_parse_and_refuse_nonsense():
    assert Architecture.parse("/ckpt/r152_3x_sk1_ema.pth") == Architecture(152, 3, True)
    assert Architecture.parse("r101_2x_sk0").model_name == "simclrv2-r101-2x"
    with pytest.raises(SimexplainError, match="r50_1x_sk0"):
        Architecture.parse("resnet50.pth")


# ---------------------------------------------------------------- save → load_model → hand-written forward


def _x(seed: int = 1, size: int = SIZE) -> Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _roundtrip(tmp_path: Path, file: str) -> tuple[Path, object]:
    return save_official(manifest(file), tmp_path)


def test_simclrv2_r50_1x_roundtrip(tmp_path):
    path, obj = _roundtrip(tmp_path, "simclrv2_r50_1x_sk0_ema.pth.json")
    # The generic name reads the variant (r50_1x_sk0) from the official file name.
    model = load_model("simclrv2", weights=path, input_size=SIZE)
    x = _x()
    expected = mlp(obj["head"], simclr_trunk(obj["resnet"], x, sk=False), "layers.", "LBRLBRLB")
    assert_embeddings_close(model.embed(x), expected)
    assert (
        model.name == "simclrv2-r50-1x" and model.layer == "resnet.net.4" and model.preprocessing.is_identity
    )
    assert model.preprocessing.input_size == (SIZE, SIZE)


@pytest.mark.slow
def test_simclrv2_named_entry_and_backbone_embedding(tmp_path):
    path, obj = _roundtrip(tmp_path, "simclrv2_r50_1x_sk0_ema.pth.json")
    x = _x()
    backbone = load_model("simclrv2-r50-1x", weights=path, embedding="backbone")
    assert_embeddings_close(backbone.embed(x), simclr_trunk(obj["resnet"], x, sk=False))


def test_simsiam_roundtrip_predictor_and_projector(tmp_path):
    path, obj = _roundtrip(tmp_path, "simsiam_checkpoint_0099.pth.tar.json")
    sd = stripped(obj["state_dict"])
    x = _x()
    projector = mlp(sd, torchvision_trunk(sd, x, "encoder."), "encoder.fc.", "LBRLBRLB")
    model = load_model("simsiam-r50", weights=path, input_size=SIZE)
    assert_embeddings_close(model.embed(x), mlp(sd, projector, "predictor.", "LBRL"))
    assert model.layer == "encoder.layer4"
    # The projector option is the same network without the predictor: swap the mode, no second load.
    model.encoder.embedding = "projector"
    assert_embeddings_close(model.embed(x), projector)


@pytest.mark.parametrize(
    ("file", "name", "warning", "described"),
    [
        ("dino_resnet50_pretrain.pth.json", "dino-r50", "pooled 2048-d", "pooled 2048-d"),
        (
            "barlowtwins_resnet50.pth.json",
            "barlowtwins-r50",
            "no projector",
            "not the paper's 8192-d projector output",
        ),
    ],
)
def test_backbone_only_release_roundtrip_says_pooled_feature(tmp_path, file, name, warning, described):
    path, obj = _roundtrip(tmp_path, file)
    with pytest.warns(UserWarning, match=warning):
        model = load_model(name, weights=path, input_size=SIZE)
    x = _x()
    assert_embeddings_close(model.embed(x), torchvision_trunk(obj, x))
    assert model.layer == "layer4" and described in model.description


@pytest.mark.slow
def test_simclrv2_sk1_and_2x_roundtrips(tmp_path):
    x = _x()
    for file, name, sk in (
        ("simclrv2_r50_1x_sk1_ema.pth.json", "simclrv2-r50-1x-sk1", True),
        ("simclrv2_r50_2x_sk0_ema.pth.json", "simclrv2-r50-2x", False),
    ):
        path, obj = _roundtrip(tmp_path, file)
        expected = mlp(obj["head"], simclr_trunk(obj["resnet"], x, sk=sk), "layers.", "LBRLBRLB")
        assert_embeddings_close(load_model(name, weights=path).embed(x), expected)
        path.unlink()


@pytest.mark.slow
def test_barlowtwins_full_checkpoint_roundtrip(tmp_path):
    path, obj = _roundtrip(tmp_path, "barlowtwins_checkpoint.pth.json")
    sd = stripped(obj["model"])
    x = _x()
    expected = mlp(sd, torchvision_trunk(sd, x, "backbone."), "projector.", "LBRLBRL")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the full checkpoint has its projector: no warning
        model = load_model("barlowtwins-r50", weights=path)
    assert_embeddings_close(model.embed(x), expected)
    assert model.layer == "backbone.layer4"


@pytest.mark.slow
def test_dino_r50_full_checkpoint_roundtrip_needs_only_namespace_allowlisted(tmp_path):
    path, obj = _roundtrip(tmp_path, "dino_resnet50_pretrain_full_checkpoint.pth.json")
    with pytest.raises(SimexplainError, match="refused"):
        load_checkpoint(path)  # the pickled argparse.Namespace is refused unless allow-listed
    sd = obj["teacher"]
    x = _x()
    pooled = torchvision_trunk(sd, x, "backbone.")
    bottleneck = F.normalize(mlp(sd, pooled, "head.mlp.", "LBGL"), dim=-1)
    model = load_model("dino-r50", weights=path)
    assert_embeddings_close(model.embed(x), F.linear(bottleneck, sd["head.last_layer.weight"]))
    assert_embeddings_close(load_model("dino-r50", weights=path, embedding="bottleneck").embed(x), bottleneck)
    student = stripped(obj["student"])
    assert_embeddings_close(
        load_model("dino-r50", weights=path, network="student", embedding="backbone").embed(x),
        torchvision_trunk(student, x, "backbone."),
    )


@pytest.mark.slow
def test_dino_vit_roundtrip(tmp_path):
    path, obj = _roundtrip(tmp_path, "dino_vitbase16_pretrain.pth.json")
    x = _x(size=224)
    model = load_model("dino-vit-b16", weights=path)
    assert_embeddings_close(model.embed(x), vit(obj, x))
    assert model.layer == "blocks.10" and model.token_layout.patch_size == 16


@pytest.mark.slow
def test_mocov3_roundtrip_is_asymmetric_by_default(tmp_path):
    path, obj = _roundtrip(tmp_path, "mocov3_vit-b-300ep.pth.tar.json")
    sd = stripped(obj["state_dict"])
    x = _x(size=224)
    head = "LBRLBRLB"
    query = mlp(sd, mlp(sd, vit(sd, x, "base_encoder."), "base_encoder.head.", head), "predictor.", "LBRLB")
    key = mlp(sd, vit(sd, x, "momentum_encoder."), "momentum_encoder.head.", head)
    model = load_model("mocov3-vit-b", weights=path)
    assert not model.shared and model.layer_b == "momentum_encoder.blocks.10"
    assert_embeddings_close(model.embed(x, "a"), query)
    assert_embeddings_close(model.embed(x, "b"), key)
    torch.testing.assert_close(model(x, x), F.cosine_similarity(query, key), rtol=1e-4, atol=1e-5)
    symmetric = load_model("mocov3-vit-b", weights=path, symmetric=True, block=5)
    assert symmetric.shared and symmetric.layer == "base_encoder.blocks.5"
    assert_embeddings_close(symmetric.embed(x, "b"), query)


def test_dino_vit_forward_matches_hand_written_vit_at_a_small_input():
    # The ViT round trips are slow (0.3–0.9 GB files); this checks the same forward without a file, at
    # 64×64: the stored 14×14 position table is resampled to 4×4 (timm's bicubic resampling, given to the
    # hand forward).
    from timm.layers import resample_abs_pos_embed

    model = simexplain.models.dino_vit_b16(input_size=SIZE)
    sd = dict(model.encoder.state_dict())
    sd["pos_embed"] = resample_abs_pos_embed(
        sd["pos_embed"], (SIZE // 16, SIZE // 16), (14, 14), num_prefix_tokens=1
    )
    x = _x()
    with torch.no_grad():
        assert_embeddings_close(model.embed(x), vit(sd, x))


# ---------------------------------------------------------------- refusals: pickles, mismatches, wrong files


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {_RunsCode.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "ran"
    _RunsCode.marker = marker
    path = tmp_path / "r50_1x_sk0_ema.pth"
    with open(path, "wb") as handle:
        pickle.dump({"resnet": _RunsCode(), "head": {}}, handle)
    torch.save({"resnet": _RunsCode(), "head": {}}, tmp_path / "zip.pth")
    for file in (path, tmp_path / "zip.pth"):
        with pytest.raises(SimexplainError, match="refused") as info:
            load_model("simclrv2-r50-1x", weights=file)
        assert "\n" not in str(info.value)
    assert not marker.exists()


def test_missing_extra_and_misshaped_keys_are_listed_in_one_line(tmp_path):
    m = manifest("simsiam_checkpoint_0099.pth.tar.json")
    obj = build_container(m)
    state = obj["state_dict"]
    del state["module.predictor.3.bias"]
    state["module.encoder.extra.weight"] = torch.zeros(3)
    state["module.encoder.fc.6.weight"] = torch.zeros(7, 2048)
    path = tmp_path / m["file"]
    torch.save(obj, path)
    with pytest.raises(SimexplainError) as info:
        load_model("simsiam-r50", weights=path)
    message = str(info.value)
    assert "\n" not in message
    assert "missing: predictor.3.bias" in message
    assert "unexpected: encoder.extra.weight" in message
    assert "wrong shape: encoder.fc.6.weight (7, 2048)" in message


def test_truncated_and_non_checkpoint_files_give_one_clear_line(tmp_path):
    path, _ = _roundtrip(tmp_path, "dino_resnet50_pretrain.pth.json")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    junk = tmp_path / "notes.pth"
    junk.write_text("not a checkpoint\n")
    short = tmp_path / "short.pth"
    short.write_text("junk\n")  # torch.load raises a bare KeyError on these bytes
    noise = tmp_path / "noise.pth"
    noise.write_bytes(bytes(range(256)) * 4)
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00")
    for file in (path, junk, short, noise, broken, tmp_path / "absent.pth"):
        with pytest.raises(SimexplainError) as info:
            load_model("dino-r50", weights=file)
        assert "\n" not in str(info.value)
        assert str(file) in str(info.value)
        assert "refused" not in str(info.value)  # foreign bytes are not mistaken for a code-running pickle


def _keys_only(file: str) -> object:
    """The official container with empty tensors: enough for anything that only reads keys."""
    m = manifest(file)
    states = {tuple(path): {k: torch.empty(0) for k in t} for path, t, _ in state_dict_specs(m)}
    if m["container"]["type"] == "state_dict":
        return states[()]
    return {key: states.get((key,), 0) for key in m["container"]["keys"]}


@pytest.mark.parametrize(
    ("file", "guess"),
    [
        ("simclrv2_r50_2x_sk0_ema.pth.json", "SimCLRv2"),
        ("barlowtwins_checkpoint.pth.json", "Barlow Twins"),
        ("barlowtwins_resnet50.pth.json", "ResNet-50 trunk"),
        ("simsiam_checkpoint_0099.pth.tar.json", "SimSiam"),
        ("mocov3_vit-b-300ep.pth.tar.json", "MoCo v3"),
        ("dino_resnet50_pretrain.pth.json", "ResNet-50 trunk"),
        ("dino_resnet50_pretrain_full_checkpoint.pth.json", "DINO full"),
        ("dino_vitbase16_pretrain.pth.json", "dino-vit-b16"),
    ],
)
def test_every_official_layout_is_recognised_in_error_messages(file, guess):
    assert guess in describe_checkpoint(_keys_only(file))


def test_one_models_file_handed_to_another_loader_names_the_right_model(tmp_path):
    dino, _ = _roundtrip(tmp_path, "dino_resnet50_pretrain.pth.json")
    simclr, _ = _roundtrip(tmp_path, "simclrv2_r50_1x_sk0_ema.pth.json")
    cases = [
        ("mocov3-vit-b", dino, "ResNet-50 trunk"),
        ("simsiam-r50", dino, "ResNet-50 trunk"),
        ("dino-vit-b16", dino, "ResNet-50 trunk"),
        ("dino-r50", simclr, "SimCLRv2"),
        ("simclrv2-r50-2x", simclr, "simclrv2-r50-1x"),  # the file name says 1x
    ]
    for name, file, expected in cases:
        with pytest.raises(SimexplainError, match=expected) as info:
            load_model(name, weights=file)
        assert "\n" not in str(info.value), name


def test_zoo_models_need_their_file_and_reject_unknown_options():
    for name in ZOO:
        with pytest.raises(SimexplainError, match="needs its checkpoint"):
            load_model(name)
    with pytest.raises(SimexplainError, match="unknown option"):
        simexplain.models.simsiam_r50(embedding="logits")
    with pytest.raises(SimexplainError, match="block"):
        simexplain.models.dino_vit_b16(block=12)


def test_every_registry_entry_states_embedding_input_and_layer():
    for entry in available().values():
        assert entry.embedding and entry.preprocessing and entry.layer, entry.name


# ---------------------------------------------------------------- registry policy and builder options


def test_register_model_refuses_a_name_registered_twice(monkeypatch):
    from simexplain.models import registry

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # leave the real registry untouched

    def first(weights=None, *, input_size=224):
        raise AssertionError("not built here")

    def second(weights=None, *, input_size=224):
        raise AssertionError("not built here")

    facts = {"embedding": "e", "preprocessing": "p", "layer": "l"}
    registry.register_model("test-twice", "first", **facts)(first)
    for name in ("test-twice", "efficientnet-lite0"):
        before = registry.available()[name]
        with pytest.raises(SimexplainError, match="already registered") as info:
            registry.register_model(name, "second", **facts)(second)
        assert "\n" not in str(info.value) and name in str(info.value)
        assert registry.available()[name] is before  # the first registration stays


def test_every_registered_builder_takes_input_size():
    import inspect

    for name, entry in available().items():
        if name == "python:":  # the user's function gets every option as it is
            continue
        assert "input_size" in inspect.signature(entry.builder).parameters, name


def test_default_model_takes_input_size_and_embeds_at_it():
    default = load_model("efficientnet-lite0")
    model = load_model("efficientnet-lite0", input_size=160)
    p = model.preprocessing
    assert p.input_size == (160, 160) and p.resize == round(160 * 256 / 224)
    assert (p.mean, p.std) == (default.preprocessing.mean, default.preprocessing.std)
    assert default.preprocessing.input_size == (224, 224) and default.preprocessing.resize == 256
    x1, x2 = simexplain.load_images(
        simexplain.sample_path("chelsea.jpg"), simexplain.sample_path("coffee.jpg"), model
    )
    assert x1.shape == x2.shape == (1, 3, 160, 160)
    with torch.no_grad():
        z = model.embed(torch.cat([x1, x2]))
        assert z.shape == (2, 1280) and torch.isfinite(z).all()
        # Same weights at any size: only the preprocessing facts follow input_size.
        torch.testing.assert_close(z, default.embed(torch.cat([x1, x2])))
    wide = simexplain.models.efficientnet_lite0(input_size=(160, 128)).preprocessing
    assert wide.input_size == (160, 128) and wide.resize == round(128 * 256 / 224)
    with pytest.raises(SimexplainError, match="too small"):
        load_model("efficientnet-lite0", input_size=8)


def test_an_option_the_builder_does_not_take_is_named_in_one_line():
    cases = [
        ("efficientnet-lite0", {}, {"size": 160}, ["size", "input_size"]),
        # Checked before the file is read (the path does not exist).
        ("simsiam-r50", {"weights": "absent.pth"}, {"blok": 3}, ["blok", "embedding", "input_size"]),
        # A registered SimCLRv2 name fixes its variant: variant= is not one of its options.
        ("simclrv2-r50-1x", {"weights": "absent.pth"}, {"variant": "r50_2x_sk0"}, ["variant", "embedding"]),
    ]
    for name, weights, options, words in cases:
        with pytest.raises(SimexplainError) as info:
            load_model(name, **weights, **options)
        message = str(info.value)
        assert "\n" not in message and "does not take option" in message, name
        for word in words:
            assert word in message, (name, word)


# ---------------------------------------------------------------- user models: torchvision: and timm:


def test_torchvision_user_model_from_a_weights_file(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path / "mine.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    model = load_model("torchvision:resnet18", weights=path, num_classes=10, input_size=SIZE)
    x = _x()
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), reference(x))
    assert model.layer == "layer4" and model.preprocessing.mean == simexplain.IMAGENET.mean
    with pytest.raises(SimexplainError, match="did you mean resnet18"):
        load_model("torchvision:resnet-18", weights=path)
    with pytest.raises(SimexplainError, match="needs a weights file"):
        load_model("torchvision:resnet18")
    # Options go on to torchvision; one that it refuses too is named in one line, not a TypeError.
    with pytest.raises(SimexplainError, match="option colour is not taken") as info:
        load_model("torchvision:resnet18", weights=path, num_classes=10, colour="red")
    assert "\n" not in str(info.value) and "input_size" in str(info.value)


def test_timm_user_vit_at_a_small_input(tmp_path):
    import timm

    reference = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, dynamic_img_size=True
    ).eval()
    path = tmp_path / "model.safetensors"  # the format of timm's releases: tensors only, no pickle
    from safetensors.torch import save_file

    save_file(reference.state_dict(), path)
    model = load_model("timm:vit_tiny_patch16_224", weights=path, input_size=SIZE)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), reference(x))
    assert model.layer == "blocks.10" and model.token_layout.prefix_tokens == 1
    assert model.preprocessing.mean == (0.5, 0.5, 0.5) and model.preprocessing.input_size == (SIZE, SIZE)
    assert model.preprocessing.resize == round(SIZE / reference.pretrained_cfg["crop_pct"])
    _, a1, _, _, _ = model.activations_and_gradients(x, x)
    assert a1.shape == (2, 192, SIZE // 16, SIZE // 16)


# ---------------------------------------------------------------- every zoo model × one method of each family

# One model per code path in the default run (TF ResNet with SK, torchvision ResNet with heads,
# asymmetric ViT); the rest of the zoo runs under -m slow.
FAST_ZOO = ["simclrv2-r50-1x-sk1", "simsiam-r50", "mocov3-vit-b"]


# Keep the per-method work small at 64×64 (only parameters a method has are passed; pair-interaction
# explains a 32-d projection, since its cost grows with the embedding width: 8192 for Barlow Twins).
SMALL_PARAMS = {"window": 32, "stride": 32, "samples": 4, "steps": 2, "projection": 32}


@pytest.mark.parametrize(
    "name", [n if n in FAST_ZOO else pytest.param(n, marks=pytest.mark.slow) for n in ZOO]
)
def test_zoo_model_runs_every_method(name):
    options = {"variant": "r50_1x_sk0"} if name == "simclrv2" else {}  # the generic name needs a variant
    model = available()[name].builder(
        weights=None, input_size=SIZE, **options
    )  # random weights: architecture only
    assert "RANDOM WEIGHTS" in model.description
    x1, x2 = _x(1), _x(2)
    assert x1.shape[-2:] == x2.shape[-2:] == (SIZE, SIZE)
    for _ in explain_every_method(model, x1, x2, SMALL_PARAMS):
        pass  # each method checked as it is yielded
