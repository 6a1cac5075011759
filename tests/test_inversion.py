"""Feature inversion: the feature loss falls, pixels stay in [0, 1], seeds reproduce, the model is kept."""

import pytest
import torch
from tiny import assert_same_state, evaluation_model, model_state

import simexplain
from simexplain import SimexplainError
from simexplain.cli import main
from simexplain.studies.inversion import default_inversion_layers, invert_features

LAYERS = ["features.1", "features.3"]
FAST = {"iterations": 30, "lr": 100.0}  # the paper's lr 1e4 overshoots on this tiny CNN


@pytest.fixture(scope="module")
def image():
    model = evaluation_model()
    pixels = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return model.preprocessing.to_model(pixels)


def test_the_feature_loss_falls_by_half_and_pixels_stay_in_range(image):
    result = invert_features(evaluation_model(), image, LAYERS, **FAST)
    assert result.images.shape == (2, 3, 32, 32) and result.losses.shape == (30, 2)
    assert bool((result.losses[-1] <= 0.5 * result.losses[0]).all()), result.losses[[0, -1]]
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert result.layers == LAYERS


def test_each_image_of_the_batch_answers_to_its_own_layer_only(image):
    together = invert_features(evaluation_model(), image, LAYERS, **FAST)
    alone = invert_features(evaluation_model(), image, LAYERS[:1], **FAST)
    # Image 0 starts from the same noise in both runs and its loss ignores the other image and layer.
    assert torch.allclose(together.images[0], alone.images[0], atol=1e-5)
    assert torch.allclose(together.losses[:, 0], alone.losses[:, 0], rtol=1e-4)


def test_seeds_reproduce_and_the_config_redoes_the_run(image):
    model = evaluation_model()
    first = invert_features(model, image, LAYERS, seed=3, **FAST)
    again = invert_features(model, image, **first.config)
    other = invert_features(model, image, LAYERS, seed=4, **FAST)
    assert torch.equal(first.images, again.images) and torch.equal(first.losses, again.losses)
    assert not torch.equal(first.images, other.images)
    assert first.config == {
        "layers": LAYERS,
        "iterations": 30,
        "lr": 100.0,
        "momentum": 0.9,
        "decay_every": 40,
        "decay": 0.1,
        "seed": 3,
    }


def test_the_callers_model_is_unchanged(image):
    model = evaluation_model()
    model.train()
    model.encoder.head.requires_grad_(False)
    before = model_state(model)
    invert_features(model, image, LAYERS, iterations=3, lr=100.0)
    assert_same_state(before, model_state(model))


def test_an_unknown_layer_is_one_line_naming_the_models_layers(image):
    with pytest.raises(SimexplainError) as error:
        invert_features(evaluation_model(), image, ["features.9"], iterations=2)
    message = str(error.value)
    assert "\n" not in message and "features.9" in message and "features.3" in message


@pytest.mark.parametrize(
    "options", [{"iterations": 0}, {"lr": -1.0}, {"seed": -1}, {"momentum": 2.0}, {"decay_every": 2.5}]
)
def test_bad_settings_are_refused(image, options):
    with pytest.raises(SimexplainError):
        invert_features(evaluation_model(), image, LAYERS, **options)


def test_layers_must_be_a_non_empty_list_of_distinct_names(image):
    for layers in ([], "features.1", ["features.1", "features.1"]):
        with pytest.raises(SimexplainError):
            invert_features(evaluation_model(), image, layers, iterations=2)


def test_default_layers():
    assert default_inversion_layers(simexplain.load_model("efficientnet-lite0")) == [
        "network.blocks.2",
        "network.blocks.4",
        "network.blocks.6",
    ]
    torchvision = pytest.importorskip("torchvision")
    resnet = simexplain.PairModel(torch.nn.ModuleDict({"trunk": torchvision.models.resnet18()}))
    assert default_inversion_layers(resnet) == ["trunk.layer2", "trunk.layer3", "trunk.layer4"]
    with pytest.raises(SimexplainError, match="no default inversion layers"):
        default_inversion_layers(evaluation_model())


def test_cli_writes_a_figure_with_one_row_per_model(tmp_path, capsys):
    out = tmp_path / "inversion.png"
    image = str(simexplain.sample_path("chelsea.jpg"))
    args = ["invert", image, "--model", "python:tiny:evaluation_model"]
    args += ["--model", "python:tiny:evaluation_model_b", "--layers", "features.1,features.3"]
    assert main([*args, "--iterations", "2", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.with_suffix(".svg").exists()
    printed = capsys.readouterr().out
    assert "tiny-cnn-0" in printed and "tiny-cnn-1" in printed


def test_cli_default_model_and_layers(tmp_path):
    out = tmp_path / "inversion.png"
    image = str(simexplain.sample_path("chelsea.jpg"))
    assert main(["invert", image, "--iterations", "1", "--out", str(out)]) == 0
    assert out.exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--iterations", "0"],
        ["--seed", "-1"],
        ["--layers", "features.1,"],
        ["--model", "no-such-model"],
        ["--weights", "missing.pt"],
        ["--device", "warp"],
    ],
)
def test_cli_usage_errors_exit_2(tmp_path, capsys, extra):
    image = str(simexplain.sample_path("chelsea.jpg"))
    assert main(["invert", image, *extra, "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_unknown_layer_exits_2(tmp_path, capsys):
    image = str(simexplain.sample_path("chelsea.jpg"))
    args = ["invert", image, "--model", "python:tiny:evaluation_model", "--layers", "nope"]
    assert main([*args, "--out", str(tmp_path / "x.png")]) == 2
    assert "features.3" in capsys.readouterr().err
